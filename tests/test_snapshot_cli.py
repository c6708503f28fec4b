"""Snapshots of real runs in the local and S3 stores, and the CLI over them."""

from __future__ import annotations

import os
import sys

import pytest
from click.testing import CliRunner
from temporalio.client import Client

from harness.cli import main
from harness.config import ConfigError, FarlineConfig
from harness.runs import start_run
from harness.snapshot_store import open_snapshot_store
from harness.specs import RunRequest, RunState, RunStatus
from tests.script_helpers import exec_call, script
from tests.test_cli import run_command
from tests.worker_processes import wait_for

BUILD = (
    "mkdir -p out empty && printf 'report\\n' > out/report.txt && printf '#!/bin/sh\\necho hi\\n' > run.sh "
    "&& chmod 755 run.sh && python3 -m venv --without-pip venv "
    "&& python3 -c 'import random, sys; random.seed(7); sys.stdout.buffer.write(random.randbytes(3000000))' "
    "> out/data.bin"
)


def store_settings(kind: str, request: pytest.FixtureRequest) -> dict[str, object]:
    if kind == "local":
        return {}
    server = request.getfixturevalue("s3_server")
    return {
        "snapshot_store": "s3",
        "s3_bucket": server.bucket,
        "s3_prefix": f"runs-{os.urandom(4).hex()}/",
        "s3_endpoint_url": server.endpoint_url,
        "s3_region": server.region,
        "s3_access_key_id": server.access_key_id,
        "s3_secret_access_key": server.secret_access_key,
    }


def environment(config: FarlineConfig) -> dict[str, str]:
    """The FARLINE_* variables that give the CLI this config's snapshot store."""
    values = config.model_dump(mode="json")
    values["s3_secret_access_key"] = (
        config.s3_secret_access_key.get_secret_value() if config.s3_secret_access_key else None
    )
    names = ["data_dir", "snapshot_store", "s3_bucket", "s3_prefix", "s3_endpoint_url", "s3_region"]
    names += ["s3_access_key_id", "s3_secret_access_key"]
    return {FarlineConfig.ENVIRONMENT[name]: str(values[name]) for name in names if values[name] is not None}


@pytest.mark.parametrize("kind", ["local", "s3"])
async def test_runs_snapshot_into_the_store_and_the_cli_restores_them(
    kind: str,
    request: pytest.FixtureRequest,
    client: Client,
    scripted_model,
    make_config,
    running_worker,
    tmp_path,
) -> None:
    server = scripted_model(
        script(exec_call(BUILD), exec_call("echo more >> out/report.txt"), {"message": "ok"})
    )
    config = make_config(server, **store_settings(kind, request))
    async with running_worker(config):
        first = await start_run(client, config, RunRequest(agent="demo", task="build"))
        assert (await first.result()).state is RunState.COMPLETED
        status = await first.query("status", result_type=RunStatus)
        # the same work again, in another run: it uploads nothing the store has
        again_server = scripted_model(script(exec_call(BUILD), {"message": "ok"}))
        again_config = config.model_copy(update={"openai_base_url": again_server.base_url})
        second = await start_run(client, again_config, RunRequest(agent="demo", task="build"))
        assert (await second.result()).state is RunState.COMPLETED

    store = open_snapshot_store(config)
    records = store.snapshots(first.id)
    assert [record.reason for record in records] == ["turn 1", "turn 2"]
    assert records[-1].snapshot_id == status.snapshot_id and status.snapshots == 2
    assert records[0].uploaded_bytes > 3_000_000 and records[0].changed_files == records[0].files
    assert records[1].changed_files == 1 and records[1].uploaded_bytes < 200
    # the second run made the same files: it shares every blob and uploads nothing
    repeated = store.snapshots(second.id)
    assert repeated[0].uploaded_bytes == 0 and repeated[0].changed_files == repeated[0].files

    runner = CliRunner()
    env = environment(config)
    listed = runner.invoke(main, ["snapshots", first.id], env=env)
    assert listed.exit_code == 0, listed.output
    assert records[0].snapshot_id[:16] in listed.output and "turn 2" in listed.output

    target = tmp_path / "restored"
    restored = runner.invoke(main, ["restore", records[-1].snapshot_id[:10], str(target)], env=env)
    assert restored.exit_code == 0, restored.output
    assert (target / "out" / "report.txt").read_text() == "report\nmore\n"
    assert os.stat(target / "run.sh").st_mode & 0o777 == 0o755
    assert os.stat(target).st_mode & 0o777 == 0o777 & ~_umask()
    assert (target / "empty").is_dir() and not any((target / "empty").iterdir())
    assert os.readlink(target / "venv" / "bin" / "python3").startswith("/")
    assert len((target / "out" / "data.bin").read_bytes()) == 3_000_000

    refused = runner.invoke(main, ["restore", records[-1].snapshot_id, str(target)], env=env)
    assert refused.exit_code != 0 and "not an empty directory" in refused.output
    missing = runner.invoke(main, ["restore", "0" * 64, str(tmp_path / "nothing")], env=env)
    assert missing.exit_code != 0 and "not in" in missing.output
    assert not (tmp_path / "nothing").exists()

    # gc: an orphan blob goes (once old enough), every referenced one stays
    store.put_blob("f" * 64, b"orphan")
    spared = runner.invoke(main, ["gc"], env=env)
    assert spared.exit_code == 0 and "deleted 0" in spared.output and "1 unreferenced" in spared.output
    collected = runner.invoke(main, ["gc", "--grace-hours", "0"], env=env)
    assert collected.exit_code == 0 and "deleted 1 " in collected.output, collected.output
    assert not store.has_blob("f" * 64)
    again = runner.invoke(main, ["restore", records[0].snapshot_id, str(tmp_path / "first")], env=env)
    assert again.exit_code == 0, again.output
    assert (tmp_path / "first" / "out" / "report.txt").read_text() == "report\n"


async def test_pause_and_resume_from_the_cli(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    server = scripted_model(
        script(
            exec_call("echo before > kept.txt; sleep 1"),
            exec_call("cat kept.txt"),
            {"message": "{last_tool_output}"},
        )
    )
    config = make_config(server)
    env = {"FARLINE_TEMPORAL_ADDRESS": config.temporal_address}
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="demo", task="pause"))
        code, output = await run_command(sys.executable, "-m", "harness.cli", "pause", handle.id, env=env)
        assert code == 0 and "pausing" in output, output

        async def paused() -> bool:
            status = await handle.query("status", result_type=RunStatus)
            return status.state is RunState.PAUSED

        await wait_for(paused)
        code, output = await run_command(sys.executable, "-m", "harness.cli", "status", handle.id, env=env)
        assert code == 0 and "paused" in output, output
        code, output = await run_command(sys.executable, "-m", "harness.cli", "resume", handle.id, env=env)
        assert code == 0 and "resumed" in output
        result = await handle.result()
    assert result.state is RunState.COMPLETED and "before" in result.final_message
    code, output = await run_command(sys.executable, "-m", "harness.cli", "pause", "no-such-run", env=env)
    assert code != 0 and "cannot signal run 'no-such-run'" in output


def test_s3_store_needs_a_bucket() -> None:
    with pytest.raises(ConfigError, match="FARLINE_S3_BUCKET"):
        FarlineConfig.from_env({"FARLINE_SNAPSHOT_STORE": "s3"})
    with pytest.raises(ConfigError, match="FARLINE_SNAPSHOT_STORE: Input should be 'local' or 's3'"):
        FarlineConfig.from_env({"FARLINE_SNAPSHOT_STORE": "ftp"})
    result = CliRunner().invoke(main, ["gc"], env={"FARLINE_SNAPSHOT_STORE": "s3", "FARLINE_S3_BUCKET": ""})
    assert result.exit_code != 0 and "FARLINE_S3_BUCKET" in result.output


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask
