"""Big payloads leave the history through Temporal's external storage; the run never fails on size."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import StorageDriverClaim, StorageDriverRetrieveContext, StorageDriverStoreContext
from temporalio.worker import Replayer

from harness.config import FarlineConfig
from harness.payload_storage import LocalPayloadDriver, PayloadMissing, farline_data_converter, payload_driver
from harness.runs import start_run
from harness.specs import CompactionSettings, RunRequest, RunResult, RunState
from harness.temporal_client import with_farline_converter
from tests.script_helpers import exec_call, script, tool_outputs
from workflows.agent_run import AgentRun

# 50 MB of output; the model is shown up to its budget (100,000 tokens: about 400 KB) of it
FLOOD = "head -c 50000000 /dev/urandom | base64 -w 0; echo; echo end-of-flood"
TURNS = 6


async def test_a_run_with_outputs_past_temporals_limits_completes(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    turns = [exec_call(FLOOD, max_output_tokens=100_000) for _ in range(TURNS)]
    server = scripted_model(script(*turns, {"message": "done"}))
    config = make_config(server)
    async with running_worker(config):
        # a window big enough that no compaction replaces the context: it must travel whole
        request = RunRequest(
            agent="demo", task="flood", compaction=CompactionSettings(context_window=2_000_000)
        )
        handle = await start_run(client, config, request)
        reader = with_farline_converter(client, config)
        result = await reader.get_workflow_handle(handle.id, result_type=RunResult).result()

    assert result.state is RunState.COMPLETED and result.turns == TURNS + 1
    outputs = tool_outputs(server)
    assert len(outputs) == TURNS and all(len(output) > 300_000 for output in outputs)
    assert all("end-of-flood" in output for output in outputs)
    # the model's last input held every output: far past Temporal's 2 MB payload limit
    assert sum(len(output) for output in outputs) > 2_000_000

    history = await handle.fetch_history()
    largest = max(event.ByteSize() for event in history.events)
    assert largest < config.payload_threshold_bytes + 64 * 1024
    assert any(config.payloads_dir.rglob("*")), "nothing went to external storage"
    # the history, references and all, replays with Farline's converter
    replayer = Replayer(workflows=[AgentRun], data_converter=farline_data_converter(config))
    await replayer.replay_workflow(history)


async def test_the_local_driver_verifies_what_it_reads(tmp_path: Path) -> None:
    driver = LocalPayloadDriver(tmp_path / "payloads")
    payload = Payload(metadata={"encoding": b"binary/plain"}, data=b"x" * 1000)
    [claim] = await driver.store(StorageDriverStoreContext(), [payload])
    [back] = await driver.retrieve(StorageDriverRetrieveContext(), [claim])
    assert back == payload
    stored = next(path for path in (tmp_path / "payloads").rglob("*") if path.is_file())
    stored.write_bytes(stored.read_bytes()[:-1] + b"y")
    with pytest.raises(PayloadMissing, match="corrupt"):
        await driver.retrieve(StorageDriverRetrieveContext(), [claim])
    with pytest.raises(PayloadMissing, match="missing"):
        await driver.retrieve(StorageDriverRetrieveContext(), [StorageDriverClaim({"sha256": "0" * 64})])


async def test_the_s3_driver_round_trips_through_a_real_s3_server(s3_server, tmp_path: Path) -> None:
    config = FarlineConfig(
        data_dir=tmp_path,
        payload_store="s3",
        s3_bucket=s3_server.bucket,
        s3_prefix="payload-test/",
        s3_endpoint_url=s3_server.endpoint_url,
        s3_region=s3_server.region,
        s3_access_key_id=s3_server.access_key_id,
        s3_secret_access_key=s3_server.secret_access_key,
    )
    driver = payload_driver(config)
    payload = Payload(metadata={"encoding": b"binary/plain"}, data=b"z" * 300_000)
    [claim] = await driver.store(StorageDriverStoreContext(), [payload])
    assert claim.claim_data["key"].startswith("v0")
    [back] = await driver.retrieve(StorageDriverRetrieveContext(), [claim])
    assert back == payload
