"""Manifest entries on S3, against the real S3-compatible server: copied in, and mounted with rclone."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import uuid
from pathlib import Path

import pytest
from temporalio.client import Client

from harness.runs import start_run
from harness.snapshot_store import open_snapshot_store
from harness.specs import RunRequest, RunState, RunStatus
from sandbox_providers.base import SandboxRef
from sandbox_providers.local import LocalProvider
from sandbox_providers.rclone_mount import mounts_under
from tests.s3_server import S3Server
from tests.script_helpers import exec_call, script


def s3_settings(server: S3Server) -> dict[str, object]:
    return {
        "s3_endpoint_url": server.endpoint_url,
        "s3_region": server.region,
        "s3_access_key_id": server.access_key_id,
        "s3_secret_access_key": server.secret_access_key,
    }


def put_objects(server: S3Server, objects: dict[str, bytes]) -> None:
    client = server.client()
    for key, data in objects.items():
        client.put_object(Bucket=server.bucket, Key=key, Body=data)


def history_text(events: list) -> str:
    return "\n".join(json.dumps(str(event)) for event in events)


async def test_objects_under_an_s3_prefix_are_copied_in_with_the_workers_keys(
    client: Client, scripted_model, make_config, running_worker, s3_server: S3Server
) -> None:
    prefix = f"inputs-{uuid.uuid4().hex[:8]}"
    put_objects(
        s3_server,
        {
            f"{prefix}/a.txt": b"alpha\n",
            f"{prefix}/sub/b.bin": bytes(range(256)) * 40,
            f"{prefix}x/not-mine.txt": b"a sibling prefix\n",
        },
    )
    server = scripted_model(
        script(
            exec_call("cat data/a.txt; wc -c < data/sub/b.bin; ls data; env"),
            {"message": "{last_tool_output}"},
        )
    )
    config = make_config(server, **s3_settings(s3_server))
    request = RunRequest.model_validate(
        {
            "agent": "demo",
            "task": "t",
            "manifest": {
                "entries": [{"kind": "s3", "path": "data", "bucket": s3_server.bucket, "prefix": prefix}]
            },
        }
    )
    async with running_worker(config):
        handle = await start_run(client, config, request)
        result = await handle.result()
        history = [event async for event in handle.fetch_history_events()]
    output = result.final_message or ""
    assert result.state is RunState.COMPLETED
    assert "alpha" in output and "10240" in output
    assert "not-mine" not in output  # "inputs-x" is not under "inputs-x/"
    assert s3_server.secret_access_key not in output
    assert s3_server.secret_access_key not in history_text(history)


async def test_named_credentials_that_the_worker_lacks_fail_the_start_with_what_to_set(
    client: Client, scripted_model, make_config, running_worker, s3_server: S3Server
) -> None:
    server = scripted_model(script({"message": "never"}))
    config = make_config(server, **s3_settings(s3_server))
    request = RunRequest.model_validate(
        {
            "agent": "demo",
            "task": "t",
            "manifest": {
                "entries": [{"kind": "s3", "path": "d", "bucket": s3_server.bucket, "credentials": "archive"}]
            },
        }
    )
    async with running_worker(config):
        handle = await start_run(client, config, request)
        with pytest.raises(Exception) as failure:
            await handle.result()
    message = str(failure.value.cause.cause)  # type: ignore[attr-defined]
    assert "manifest entry 1 (s3 'd')" in message
    assert "FARLINE_CREDENTIALS_ARCHIVE_ACCESS_KEY_ID" in message


def fuse_problem() -> str | None:
    """Why buckets cannot be mounted on this machine, or None."""
    if shutil.which("rclone") is None:
        return "rclone is not installed (apt-get install rclone fuse3)"
    if not Path("/dev/fuse").exists() or not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "no usable /dev/fuse here"
    return None


@pytest.mark.skipif(fuse_problem() is not None, reason=f"cannot mount with FUSE: {fuse_problem()}")
async def test_a_bucket_mounted_with_rclone_is_read_only_left_out_of_snapshots_and_remounted(
    client: Client, scripted_model, make_config, running_worker, s3_server: S3Server
) -> None:
    prefix = f"mounted-{uuid.uuid4().hex[:8]}"
    put_objects(s3_server, {f"{prefix}/report.csv": b"a,b\n1,2\n"})
    server = scripted_model(
        script(
            exec_call(
                "cat lake/report.csv; (echo x > lake/new.txt) 2>&1 || echo write-refused; "
                "echo kept > mine.txt; "
                "cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c SECRET || true"
            ),
            exec_call("sleep 60", yield_time_ms=30000),
            exec_call("cat lake/report.csv mine.txt"),
            {"message": "{last_tool_output}"},
        )
    )
    config = make_config(server, **s3_settings(s3_server))
    request = RunRequest.model_validate(
        {
            "agent": "demo",
            "task": "t",
            "manifest": {
                "entries": [
                    {
                        "kind": "s3_mount",
                        "path": "lake",
                        "bucket": s3_server.bucket,
                        "prefix": prefix,
                        "description": "The data lake",
                    }
                ]
            },
        }
    )
    async with running_worker(config):
        handle = await start_run(client, config, request)
        while len(server.requests) < 2:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)
        first = await handle.query("status", result_type=RunStatus)
        assert first.sandbox_id is not None
        sandbox_dir = config.sandboxes_dir / first.sandbox_id
        assert mounts_under(sandbox_dir)
        # the first command's output, as the model saw it
        seen = str(server.requests[1].body["input"])
        await LocalProvider(config.sandboxes_dir).destroy(
            SandboxRef(provider="local", sandbox_id=first.sandbox_id)
        )
        # the tear down detached the mount before deleting anything
        assert not mounts_under(sandbox_dir)
        result = await handle.result()
        final = await handle.query("status", result_type=RunStatus)
        history = [event async for event in handle.fetch_history_events()]
    assert "a,b" in seen and "write-refused" in seen
    assert "\\n0\\n" in seen or "\n0\n" in seen  # no SECRET variable visible in any sandbox process
    assert result.state is RunState.COMPLETED and final.rehydrations == 1
    # remounted in the new sandbox, and the workspace came back from the snapshot
    assert "a,b\n1,2\nkept" in (result.final_message or "")
    # the bucket is still whole: nothing was deleted through the mount
    listed = s3_server.client().list_objects_v2(Bucket=s3_server.bucket, Prefix=prefix)
    assert [entry["Key"] for entry in listed["Contents"]] == [f"{prefix}/report.csv"]
    store = open_snapshot_store(config)
    for record in store.snapshots(handle.id):
        paths = {entry.path for entry in store.get_tree(record.snapshot_id).entries}
        assert "mine.txt" in paths and not any(path.startswith("lake") for path in paths)
    assert s3_server.secret_access_key not in history_text(history)
    assert "lake/  [mounted: s3://" in server.requests[0].body["instructions"]
