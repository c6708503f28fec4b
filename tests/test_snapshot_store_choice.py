"""A run chooses its snapshot store, independently of its provider and of the workers' own store:
its snapshots (and its rehydration) go through an S3 bucket named in the request, with keys
named, never given (a real SeaweedFS)."""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from temporalio.client import Client

from harness.object_store_s3 import S3ObjectStore
from harness.runs import start_run
from harness.snapshot_store import SnapshotStore
from harness.specs import RunRequest, RunResult, RunState, SnapshotStoreChoice
from tests.s3_server import S3Server
from tests.script_helpers import exec_call, script, tool_outputs
from tests.test_rehydration import kill_sandbox, status_of
from tests.worker_processes import wait_for


def chosen_store(s3_server: S3Server, prefix: str, credentials: str) -> SnapshotStoreChoice:
    return SnapshotStoreChoice(
        kind="s3",
        bucket=s3_server.bucket,
        prefix=prefix,
        endpoint_url=s3_server.endpoint_url,
        region=s3_server.region,
        credentials=credentials,
    )


async def test_a_runs_snapshots_go_to_its_own_store_and_it_rehydrates_from_there(
    client: Client, scripted_model, make_config, running_worker, s3_server: S3Server, monkeypatch
) -> None:
    monkeypatch.setenv("FARLINE_CREDENTIALS_RUNS_ACCESS_KEY_ID", s3_server.access_key_id)
    monkeypatch.setenv("FARLINE_CREDENTIALS_RUNS_SECRET_ACCESS_KEY", s3_server.secret_access_key)
    prefix = f"chosen/{uuid.uuid4().hex[:10]}"
    server = scripted_model(
        script(
            exec_call("mkdir -p out && echo 'kept in the bucket' > out/a.txt"),
            exec_call("sleep 30; echo slept", yield_time_ms=20000),
            exec_call("cat out/a.txt"),
            {"message": "{last_tool_output}"},
        )
    )
    # the workers' own store is a local directory
    config = make_config(server, snapshot_store="local")
    request = RunRequest(agent="demo", task="t", snapshot_store=chosen_store(s3_server, prefix, "runs"))
    async with running_worker(config):
        handle = await start_run(client, config, request)

        async def sleeping() -> bool:
            return (await status_of(handle)).turn == 2 and bool(
                list(config.sandboxes_dir.glob("*/procs/t2-*"))
            )

        await wait_for(sleeping)
        status = await status_of(handle)
        assert status.snapshot_store == request.snapshot_store and status.snapshots == 1
        assert status.sandbox_id is not None
        await kill_sandbox(config, status.sandbox_id)
        result: RunResult = await asyncio.wait_for(handle.result(), timeout=60)
        status = await status_of(handle)
        history = await handle.fetch_history()

    assert result.state is RunState.COMPLETED and "kept in the bucket" in result.final_message
    assert status.rehydrations == 1 and "sandbox was lost and replaced" in tool_outputs(server)[1]
    # every snapshot of the run is in the bucket, under the run's prefix, and none in the workers' store
    bucket_store = SnapshotStore(
        S3ObjectStore(
            bucket=s3_server.bucket,
            prefix=prefix,
            endpoint_url=s3_server.endpoint_url,
            region=s3_server.region,
            access_key_id=s3_server.access_key_id,
            secret_access_key=s3_server.secret_access_key,
        )
    )
    in_bucket = bucket_store.snapshots(handle.id)
    assert len(in_bucket) == status.snapshots >= 1 and in_bucket[-1].snapshot_id == status.snapshot_id
    assert not list(config.snapshots_dir.glob(f"runs/{handle.id}/*"))
    # the keys were looked up on the worker: they are nowhere in the run's history
    assert s3_server.secret_access_key not in json.dumps(history.to_json_dict())


async def test_a_store_whose_credentials_the_worker_lacks_fails_the_run_saying_what_to_set(
    client: Client, scripted_model, make_config, running_worker, s3_server: S3Server
) -> None:
    server = scripted_model(script(exec_call("echo one"), {"message": "never"}))
    config = make_config(server)
    request = RunRequest(agent="demo", task="t", snapshot_store=chosen_store(s3_server, "x", "nowhere"))
    async with running_worker(config):
        handle = await start_run(client, config, request)
        with pytest.raises(Exception) as failure:
            await asyncio.wait_for(handle.result(), timeout=60)
    text = repr(failure.value) + repr(getattr(failure.value, "cause", None))
    cause = failure.value
    while getattr(cause, "cause", None) is not None:
        cause = cause.cause  # type: ignore[attr-defined]
        text += str(cause)
    assert "FARLINE_CREDENTIALS_NOWHERE_ACCESS_KEY_ID" in text


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"kind": "s3"}, "an 's3' snapshot store needs its bucket"),
        ({"kind": "local", "bucket": "abc"}, "a 'local' snapshot store takes no bucket"),
        ({"kind": "s3", "bucket": "abc", "prefix": "a/../b"}, "a relative key prefix without '..'"),
        ({"kind": "s3", "bucket": "abc", "endpoint_url": "ftp://x"}, "is not an http(s) URL"),
        ({"kind": "s3", "bucket": "abc", "credentials": "no-dashes"}, "String should match pattern"),
    ],
)
def test_a_malformed_store_is_refused_with_what_to_fix(fields: dict, problem: str) -> None:
    with pytest.raises(ValueError, match=None) as refused:
        RunRequest.model_validate({"agent": "demo", "task": "t", "snapshot_store": fields})
    assert problem in str(refused.value)
