"""The daytona provider at the SDK boundary, on the fake Daytona SDK (tests/fake_clouds/daytona_fake.py),
whose sandboxes are real containers of the podman service.

What is checked here: the calls the provider makes (network blocked unless allowed, the run's
environment only, explicit timeouts, options mapped to the create parameters), that any worker
finds a sandbox again by its name, the ways a sandbox is gone, Daytona's quirks (a stopped,
archived or paused sandbox is started again; a recoverable error is recovered; root through
sudo), the native `suspend`, and that every recorded call binds to the real SDK's signatures.
The protocol itself is the contract suite's (tests/providers, factory_daytona.py).

The real SDK cannot be installed next to Farline (it pins other pydantic and OpenTelemetry
versions), so the signatures are copied below from its source (daytona 0.226.1). When a Python
with the SDK is found (FARLINE_DAYTONA_SDK_PYTHON, else /tmp/sdkvenv/bin/python), the copy is
compared with the installed SDK and the recorded calls are bound to the real methods too;
otherwise that test is skipped, saying why.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.sandbox_options import OptionsError
from sandbox_providers.base import (
    ProcessSpec,
    SandboxConfig,
    SandboxError,
    SandboxGone,
    SandboxRef,
    SandboxUnavailable,
)
from sandbox_providers.daytona import DaytonaProvider
from tests.fake_clouds.daytona_fake import (
    NAME_LABEL,
    SUDO_LOG,
    Call,
    DaytonaError,
    FakeDaytonaCloud,
    SandboxState,
)

REAL_SDK_VERSION = "0.226.1"
SDK_PYTHON = os.environ.get("FARLINE_DAYTONA_SDK_PYTHON", "/tmp/sdkvenv/bin/python")


# -- the real SDK's signatures, copied from daytona 0.226.1 (annotations left out) ---------------------


class RealAsyncDaytona:  # daytona/_async/daytona.py
    def __init__(self, config=None): ...

    async def create(self, params=None, *, timeout=60, on_snapshot_create_logs=None): ...

    async def get(self, sandbox_id_or_name, request_timeout=None): ...

    async def close(self): ...


class RealAsyncSandbox:  # daytona/_async/sandbox.py
    async def refresh_data(self, request_timeout=None): ...

    async def start(self, timeout=60): ...

    async def stop(self, timeout=60, force=False): ...

    async def recover(self, timeout=60): ...

    async def wait_for_sandbox_start(self, timeout=60): ...

    async def delete(self, timeout=60, wait=False): ...


class RealAsyncProcess:  # daytona/_async/process.py
    async def exec(self, command, cwd=None, env=None, timeout=None): ...


class RealAsyncFileSystem:  # daytona/_async/filesystem.py; download_file really is (self, *args)
    async def upload_file(self, src, dst, timeout=1800): ...

    async def download_file(self, *args): ...


REAL_METHODS: dict[str, Any] = {
    f"{cls.__name__.removeprefix('Real')}.{name}": getattr(cls, name)
    for cls in (RealAsyncDaytona, RealAsyncSandbox, RealAsyncProcess, RealAsyncFileSystem)
    for name in vars(cls)
    if not name.startswith("__") or name == "__init__"
}
# where each lives in the real package
REAL_PATHS = {
    "AsyncDaytona": "daytona.AsyncDaytona",
    "AsyncSandbox": "daytona.AsyncSandbox",
    "AsyncProcess": "daytona._async.process.AsyncProcess",
    "AsyncFileSystem": "daytona._async.filesystem.AsyncFileSystem",
}
_BASE_FIELDS = {
    "name", "language", "os_user", "env_vars", "labels", "public", "auto_stop_interval",
    "auto_pause_interval", "auto_archive_interval", "auto_delete_interval", "ttl_minutes",
    "queue_timeout", "volumes", "secrets", "network_block_all", "kvm", "network_allow_list",
    "domain_allow_list", "outbound_proxy_url", "otel_endpoint_override", "ephemeral", "spot",
    "linked_sandbox", "target",
}  # fmt: skip
REAL_FIELDS = {
    "CreateSandboxFromImageParams": _BASE_FIELDS | {"image", "resources"},
    "CreateSandboxFromSnapshotParams": _BASE_FIELDS | {"snapshot"},
    "Resources": {"cpu", "memory", "disk", "gpu", "gpu_type"},
}
# the SDK methods that take a timeout for the server or for a wait: the provider always gives one
TIMED = {
    "AsyncDaytona.create",
    "AsyncSandbox.start",
    "AsyncSandbox.stop",
    "AsyncSandbox.recover",
    "AsyncSandbox.wait_for_sandbox_start",
    "AsyncSandbox.delete",
    "AsyncProcess.exec",
    "AsyncFileSystem.upload_file",
    "AsyncFileSystem.download_file",
}


def check_binds(calls: list[Call]) -> list[str]:
    """What in `calls` does not fit the real SDK (its signatures and model fields)."""
    problems = []
    for call in calls:
        method = REAL_METHODS.get(call.name)
        if method is None:
            problems.append(f"{call.name}: not in the table of real signatures")
            continue
        try:
            inspect.signature(method).bind(None, *call.args, **call.kwargs)
        except TypeError as error:
            problems.append(f"{call.name}{call.args!r:.80}{call.kwargs}: {error}")
        if call.name == "AsyncDaytona.create":
            params = call.args[0]
            kind = type(params).__name__
            if not params.model_fields_set <= REAL_FIELDS[kind]:
                problems.append(f"{kind}: no such fields {params.model_fields_set - REAL_FIELDS[kind]}")
            resources = getattr(params, "resources", None)
            if resources is not None and not set(vars(resources)) <= REAL_FIELDS["Resources"]:
                problems.append(f"Resources: fields {set(vars(resources))}")
        if call.name == "AsyncFileSystem.download_file" and not (
            len(call.args) == 2 and isinstance(call.args[0], str) and isinstance(call.args[1], int)
        ):
            # the real method tells (remote_path, timeout) from (remote_path, local_path) by type
            problems.append(f"download_file{call.args!r}: not (remote path, int timeout)")
    return problems


# -- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture
async def cloud(podman_service: Any) -> AsyncIterator[FakeDaytonaCloud]:
    cloud = await asyncio.to_thread(FakeDaytonaCloud, podman_service.base_url, podman_service.image)
    try:
        yield cloud
    finally:
        await asyncio.to_thread(cloud.close)


def on(cloud: FakeDaytonaCloud, **settings: Any) -> DaytonaProvider:
    return DaytonaProvider(sdk=cloud.sdk, labels={"farline.test": cloud.label}, **settings)


def inspect_container(cloud: FakeDaytonaCloud, name: str) -> dict[str, Any]:
    record = cloud.find(name)
    assert record is not None and record.container_id is not None
    return cloud.engine.api.inspect_container(record.container_id)


async def in_sandbox(cloud: FakeDaytonaCloud, name: str, command: str) -> str:
    """A command run through the fake SDK directly, as a test's own probe."""
    sandbox = await cloud.sdk.AsyncDaytona().get(name)
    return (await sandbox.process.exec(command, timeout=30)).result


def params_of(cloud: FakeDaytonaCloud, name: str) -> Any:
    return next(c.args[0] for c in cloud.calls_named("AsyncDaytona.create") if c.args[0].name == name)


# -- creating ------------------------------------------------------------------------------------------


async def test_create_blocks_the_network_and_passes_only_the_runs_environment(
    cloud: FakeDaytonaCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-worker-secret")
    provider = on(cloud)
    await provider.create("dt-env", SandboxConfig(env={"FOO": "bar"}))
    params = params_of(cloud, "farline-dt-env")
    assert type(params).__name__ == "CreateSandboxFromSnapshotParams" and params.snapshot is None
    assert params.network_block_all is True
    assert params.env_vars == {"FOO": "bar"}
    assert params.labels["farline.sandbox"] == "dt-env" and params.labels["farline.owner"] == "harness"
    assert params.auto_stop_interval == 15 and params.os_user is None
    info = inspect_container(cloud, "farline-dt-env")
    assert info["HostConfig"]["NetworkMode"] == "none"
    assert "FOO=bar" in info["Config"]["Env"]
    assert not [entry for entry in info["Config"]["Env"] if "OPENAI" in entry or "sk-worker" in entry]

    await provider.create("dt-net", SandboxConfig(network=True))
    assert params_of(cloud, "farline-dt-net").network_block_all is False
    assert inspect_container(cloud, "farline-dt-net")["HostConfig"]["NetworkMode"] != "none"
    # the sandbox's user is root here: nothing goes through sudo
    assert not [c for c in cloud.calls_named("AsyncProcess.exec") if "sudo -n" in c.args[0]]
    untimed = [c for c in cloud.calls if c.name in TIMED and not _timeout_given(c)]
    assert not untimed, f"SDK calls left at the SDK's or server's default timeout: {untimed}"
    assert {c.kwargs["timeout"] for c in cloud.calls_named("AsyncProcess.exec")} == {600}


def _timeout_given(call: Call) -> bool:
    if call.name == "AsyncFileSystem.download_file":
        return len(call.args) == 2
    return call.kwargs.get("timeout") is not None


async def test_options_map_to_the_create_parameters(cloud: FakeDaytonaCloud) -> None:
    provider = on(cloud, snapshot="worker-snapshot", target="eu", auto_stop_minutes=30)
    for options, refusal in (
        ({"cpu": 2}, "apply only to a sandbox built from an `image`"),
        ({"snapshot": "s", "memory_gib": 2}, "apply only"),
        ({"image": "python:3.12-slim", "snapshot": "s"}, "not both"),
        ({"gpu": 1}, "it takes:"),
    ):
        with pytest.raises(OptionsError, match=refusal):
            await provider.create("dt-refused", SandboxConfig(options=options))
    assert not cloud.calls_named("AsyncDaytona.create"), "refused options reach no sandbox"

    image_options = {
        "image": "python:3.12-slim",
        "cpu": 1,
        "memory_gib": 1,
        "disk_gib": 3,
        "target": "us",
        "auto_stop_minutes": 0,
    }
    await provider.create("dt-image", SandboxConfig(options=image_options))
    params = params_of(cloud, "farline-dt-image")
    assert type(params).__name__ == "CreateSandboxFromImageParams"
    assert params.image == "python:3.12-slim"
    assert (params.resources.cpu, params.resources.memory, params.resources.disk) == (1, 1, 3)
    assert (params.target, params.auto_stop_interval) == ("us", 0)
    limits = inspect_container(cloud, "farline-dt-image")["HostConfig"]
    assert (limits["NanoCpus"], limits["Memory"]) == (1_000_000_000, 1 << 30)

    await provider.create("dt-snapshot", SandboxConfig())
    params = params_of(cloud, "farline-dt-snapshot")
    assert type(params).__name__ == "CreateSandboxFromSnapshotParams"
    assert (params.snapshot, params.target, params.auto_stop_interval) == ("worker-snapshot", "eu", 30)


async def test_any_worker_finds_the_sandbox_and_create_is_idempotent(cloud: FakeDaytonaCloud) -> None:
    first, second, third = on(cloud), on(cloud), on(cloud)
    ref = await first.create("dt-shared", SandboxConfig())
    await first.write_file(ref, "kept.txt", b"kept")
    # a retried create activity on other workers, racing: the same sandbox, nothing new made
    assert await asyncio.gather(
        second.create("dt-shared", SandboxConfig()), third.create("dt-shared", SandboxConfig())
    ) == [ref, ref]
    assert len(cloud.calls_named("AsyncDaytona.create")) == 1
    assert await third.read_file(ref, "kept.txt") == b"kept"

    # two fresh workers racing to create a new one: one sandbox
    racing = await asyncio.gather(
        on(cloud).create("dt-race", SandboxConfig()), on(cloud).create("dt-race", SandboxConfig())
    )
    assert racing[0] == racing[1]
    assert len([c for c in cloud.containers() if c.labels.get(NAME_LABEL) == "farline-dt-race"]) == 1
    assert await on(cloud).health(racing[0])


# -- gone, and the quirks ------------------------------------------------------------------------------


async def test_the_ways_a_sandbox_is_gone(cloud: FakeDaytonaCloud) -> None:
    provider = on(cloud)
    vanished = await provider.create("dt-vanished", SandboxConfig())
    await cloud.vanish("farline-dt-vanished")
    with pytest.raises(SandboxGone):
        await provider.read_file(vanished, "x")
    assert not await provider.health(vanished)
    await provider.destroy(vanished)  # nothing left: not an error

    # deleted by another worker: still listed for a while, as `destroyed`
    deleted = await provider.create("dt-deleted", SandboxConfig())
    await on(cloud).destroy(deleted)
    assert cloud.state_of("farline-dt-deleted") == SandboxState.DESTROYED
    with pytest.raises(SandboxGone, match="destroyed"):
        await provider.list_dir(deleted)

    # an error Daytona cannot recover from: gone, and deleted so that it costs nothing
    failed = await provider.create("dt-failed", SandboxConfig())
    await cloud.fail("farline-dt-failed", recoverable=False, reason="disk lost")
    with pytest.raises(SandboxGone, match="disk lost"):
        await provider.read_file(failed, "x")
    assert cloud.state_of("farline-dt-failed") == SandboxState.DESTROYED
    # ... and the workflow's next step, a create under the same id, gets a new one
    await provider.create("dt-failed", SandboxConfig())
    assert cloud.state_of("farline-dt-failed") == SandboxState.STARTED


async def test_a_recoverable_error_is_recovered_and_a_lost_runner_is_no_loss(cloud: FakeDaytonaCloud) -> None:
    provider = on(cloud)
    ref = await provider.create("dt-recover", SandboxConfig())
    await provider.write_file(ref, "kept.txt", b"kept")
    await cloud.fail("farline-dt-recover", recoverable=True)
    assert await provider.read_file(ref, "kept.txt") == b"kept"
    assert [c.kwargs for c in cloud.calls_named("AsyncSandbox.recover")] == [{"timeout": 300.0}]

    # the container died under a sandbox Daytona still lists as started: an error to retry, not gone
    record = cloud.find("farline-dt-recover")
    assert record is not None
    await asyncio.to_thread(cloud.engine.api.stop, record.container_id, timeout=1)
    with pytest.raises(SandboxError) as raised:
        await provider.read_file(ref, "kept.txt")
    assert not isinstance(raised.value, SandboxGone)


async def test_a_stopped_archived_or_paused_sandbox_is_started_again(cloud: FakeDaytonaCloud) -> None:
    provider = on(cloud)
    name = "farline-dt-quirk"
    ref = await provider.create("dt-quirk", SandboxConfig())
    await provider.write_file(ref, "kept.txt", b"kept")
    sleeper = await provider.start_process(ref, ProcessSpec(process_id="sleeper", argv=["sleep", "300"]))
    assert sleeper.running

    await cloud.pause(name)
    with pytest.raises(DaytonaError):  # the toolbox refuses until the sandbox is started
        await in_sandbox(cloud, name, "true")
    assert (await provider.process_state(ref, "sleeper")).running, "a paused sandbox keeps its processes"

    for what_daytona_did in (cloud.auto_stop, cloud.archive):
        await what_daytona_did(name)
        assert cloud.state_of(name) != SandboxState.STARTED
        with pytest.raises(DaytonaError):
            await in_sandbox(cloud, name, "true")
        assert await provider.read_file(ref, "kept.txt") == b"kept"
        assert cloud.state_of(name) == SandboxState.STARTED
    assert (await provider.process_state(ref, "sleeper")).lost, "a stop ends the processes"
    assert [c.kwargs for c in cloud.calls_named("AsyncSandbox.start")] == [{"timeout": 300.0}] * 3


async def test_the_setup_runs_through_sudo_when_the_user_is_not_root(podman_service: Any) -> None:
    # the fake cannot grant root to a user; this checks the command lines the provider sends
    cloud = await asyncio.to_thread(
        FakeDaytonaCloud, podman_service.base_url, podman_service.image, sudo_stand_in=True
    )
    try:
        provider = on(cloud, os_user="sandbox")
        ref = await provider.create("dt-sudo", SandboxConfig())
        await provider.write_file(ref, "a.txt", b"a")
        assert params_of(cloud, "farline-dt-sudo").os_user == "sandbox"
        through_sudo = [c.args[0] for c in cloud.calls_named("AsyncProcess.exec") if "sudo -n" in c.args[0]]
        assert len(through_sudo) == 1 and " setup sandbox" in through_sudo[0]
        log = await in_sandbox(cloud, "farline-dt-sudo", f"cat {SUDO_LOG}")
        assert log == "sudo -n --\n"
        assert (await in_sandbox(cloud, "farline-dt-sudo", "stat -c %U /workspace")).strip() == "sandbox"
    finally:
        await asyncio.to_thread(cloud.close)


# -- errors of the SDK ---------------------------------------------------------------------------------


async def test_a_server_timeout_is_an_error_to_retry(cloud: FakeDaytonaCloud) -> None:
    ref = await on(cloud).create("dt-timeout", SandboxConfig())
    # a start that waits longer for its command than the server lets the exec run
    impatient = on(cloud, command_timeout_s=1, start_wait_s=2)
    with pytest.raises(SandboxError, match="timed out"):
        await impatient.start_process(ref, ProcessSpec(process_id="slow", argv=["sleep", "30"]))
    assert await impatient.health(ref)


async def test_without_the_sdk_or_credentials_the_provider_is_unavailable(
    cloud: FakeDaytonaCloud, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the module imports without the SDK (CI has none): it is imported on first use
    probe = "import sys, sandbox_providers.daytona; assert 'daytona' not in sys.modules"
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=Path(__file__).parent.parent)
    settings = SimpleNamespace(
        daytona_snapshot=None,
        daytona_image="python:3.12-slim",
        daytona_cpu=2,
        daytona_memory_gib=4,
        daytona_disk_gib=None,
        daytona_target="eu",
        daytona_auto_stop_minutes=60,
        daytona_os_user=None,
    )
    monkeypatch.setitem(sys.modules, "daytona", None)  # what an absent package looks like to import
    with pytest.raises(SandboxUnavailable, match=r"pip install 'farline\[daytona\]'"):
        await DaytonaProvider().create("dt-nosdk", SandboxConfig())
    with pytest.raises(SandboxUnavailable, match=r"pip install 'farline\[daytona\]'"):
        DaytonaProvider.from_config(settings)  # type: ignore[arg-type]  # the worker does not start
    monkeypatch.setitem(sys.modules, "daytona", cloud.sdk)
    built = DaytonaProvider.from_config(settings)  # type: ignore[arg-type]
    assert built.sdk is cloud.sdk
    assert (built.image, built.cpu, built.memory_gib, built.target, built.auto_stop_minutes) == (
        "python:3.12-slim",
        2,
        4,
        "eu",
        60,
    )

    cloud.authenticated = False
    with pytest.raises(SandboxUnavailable, match="DAYTONA_API_KEY"):
        await on(cloud).create("dt-noauth", SandboxConfig())


# -- the native primitive ------------------------------------------------------------------------------


async def test_suspend_stops_the_sandbox_and_its_next_use_starts_it(cloud: FakeDaytonaCloud) -> None:
    provider = on(cloud)
    ref = await provider.create("dt-suspend", SandboxConfig())
    await provider.write_file(ref, "kept.txt", b"kept")
    await provider.start_process(ref, ProcessSpec(process_id="sleeper", argv=["sleep", "300"]))
    assert await provider.suspend(ref) is True
    assert cloud.state_of("farline-dt-suspend") == SandboxState.STOPPED
    assert await on(cloud).suspend(ref) is False  # already stopped, from any worker
    assert [c.kwargs for c in cloud.calls_named("AsyncSandbox.stop")] == [{"timeout": 300.0}]

    assert await on(cloud).read_file(ref, "kept.txt") == b"kept"
    assert cloud.state_of("farline-dt-suspend") == SandboxState.STARTED
    assert (await provider.process_state(ref, "sleeper")).lost

    with pytest.raises(SandboxError, match="user-owned"):
        await provider.suspend(SandboxRef(provider="daytona", sandbox_id="farline-dt-suspend", owner="user"))
    await cloud.vanish("farline-dt-suspend")
    with pytest.raises(SandboxGone):
        await provider.suspend(ref)


# -- the calls against the real SDK --------------------------------------------------------------------


@pytest.fixture(scope="module")
async def recorded_calls(podman_service: Any) -> list[Call]:
    """Every call of a run through create, files, a stop and start, suspend, recover, destroy."""
    cloud = await asyncio.to_thread(FakeDaytonaCloud, podman_service.base_url, podman_service.image)
    try:
        provider = on(cloud)
        ref, _ = await asyncio.gather(
            provider.create("dt-calls", SandboxConfig(options={"image": "debian:12", "cpu": 1})),
            on(cloud).create("dt-calls", SandboxConfig(options={"image": "debian:12", "cpu": 1})),
        )
        await provider.write_file(ref, "a.bin", bytes(range(256)))
        assert await provider.read_file(ref, "a.bin") == bytes(range(256))
        await cloud.auto_stop("farline-dt-calls")
        await provider.list_dir(ref)
        await provider.suspend(ref)
        await provider.list_dir(ref)
        await cloud.fail("farline-dt-calls", recoverable=True)
        await provider.scan_workspace(ref)
        await provider.destroy(ref)
        await provider.close()
        return list(cloud.calls)
    finally:
        await asyncio.to_thread(cloud.close)


def test_recorded_calls_bind_to_the_sdk_signatures(recorded_calls: list[Call]) -> None:
    names = {call.name for call in recorded_calls}
    assert names >= TIMED - {"AsyncSandbox.wait_for_sandbox_start"}, names
    assert not check_binds(recorded_calls)


REAL_SDK_PROBE = r"""
import importlib, inspect, json, sys
import daytona
from importlib.metadata import version
request = json.load(sys.stdin)
def resolve(path):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)
def shape(function):
    return [[p.name, p.kind.name, repr(p.default)] for p in inspect.signature(function).parameters.values()]
methods, problems = {}, []
def method(name):
    owner, _, attribute = name.partition(".")
    return getattr(resolve(request["paths"][owner]), attribute)
for name in request["methods"]:
    methods[name] = shape(method(name))
for name, nargs, kwargs in request["calls"]:
    function = method(name)
    try:
        inspect.signature(function).bind(None, *range(nargs), **dict.fromkeys(kwargs))
    except TypeError as error:
        problems.append(f"{name}: {error}")
fields = {
    "CreateSandboxFromImageParams": sorted(daytona.CreateSandboxFromImageParams.model_fields),
    "CreateSandboxFromSnapshotParams": sorted(daytona.CreateSandboxFromSnapshotParams.model_fields),
    "Resources": sorted(inspect.signature(daytona.Resources).parameters),
}
answer = {"version": version("daytona"), "methods": methods, "fields": fields, "problems": problems}
json.dump(answer, sys.stdout)
"""


def sdk_python() -> str:
    if not Path(SDK_PYTHON).exists():
        pytest.skip(f"no Python with the Daytona SDK at {SDK_PYTHON} (set FARLINE_DAYTONA_SDK_PYTHON)")
    found = subprocess.run([SDK_PYTHON, "-c", "import daytona"], capture_output=True, check=False)
    if found.returncode != 0:
        pytest.skip(f"{SDK_PYTHON} cannot import daytona: {found.stderr.decode()[-300:]}")
    return SDK_PYTHON


def test_the_copied_signatures_are_the_real_sdks(recorded_calls: list[Call]) -> None:
    python = sdk_python()
    request = {
        "methods": sorted(REAL_METHODS),
        "paths": REAL_PATHS,
        "calls": [[c.name, len(c.args), sorted(c.kwargs)] for c in recorded_calls],
    }
    answer = subprocess.run(
        [python, "-c", REAL_SDK_PROBE],
        input=json.dumps(request),
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    real = json.loads(answer.stdout)
    assert not real["problems"], real["problems"]
    for name, method in REAL_METHODS.items():
        copied = [
            [p.name, p.kind.name, repr(p.default)] for p in inspect.signature(method).parameters.values()
        ]
        assert copied == real["methods"][name], f"{name} differs in daytona {real['version']}"
    assert {kind: set(fields) for kind, fields in real["fields"].items()} == REAL_FIELDS
    if real["version"] != REAL_SDK_VERSION:
        print(f"checked against daytona {real['version']} (copied from {REAL_SDK_VERSION})")
