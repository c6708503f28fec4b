"""A FAKE of the Daytona SDK's async surface (`daytona` 0.226.1), backed by real containers.

Daytona's cloud cannot be reached from here, so `FakeDaytonaCloud` plays the service: each
sandbox is a container of the podman service (tests/podman_service.py) running the test image,
whatever image or snapshot was asked for, and `cloud.sdk` is a module-like namespace with the
SDK names the provider uses (`AsyncDaytona`, the create parameter models, `Resources`, the
errors). Real processes run in the containers. Every SDK call is recorded in `cloud.calls`
(name, args, kwargs), so tests can check them against the real SDK's signatures.

Reproduced from the SDK's source and the daemon's documented behaviour:
- `create` fails with DaytonaConflictError (409) for a name in use; it adds the
  `code-toolbox-language` label; `network_block_all=True` gives the container no network
  (network mode "none"); `env_vars` are the sandbox's environment (besides PATH and HOME);
  `Resources` exist only on image parameters (cpu -> cores, memory -> GiB).
- `get(id_or_name)` raises DaytonaNotFoundError (404) for an unknown sandbox; a deleted one is
  still found for a while, in state `destroyed`.
- The sandbox object is a snapshot: `state` changes only through its own calls and
  `refresh_data()`, as in the SDK.
- `process.exec(command)` hands the shell string to the first of zsh, bash and sh on its stdin
  (as the daemon does), runs it as the sandbox's OS user, and returns one text of stdout and
  stderr together, decoded as UTF-8 with errors="replace" (Go's JSON encoding replaces bad
  bytes the same way); a non-zero exit does not raise; without `timeout` the server's default
  of 10 s applies, and a command that runs over raises DaytonaTimeoutError (408).
- `fs.upload_file(bytes, path)` and `fs.download_file(path[, timeout])` move bytes unchanged,
  as the sandbox's user; `download_file` takes only positional arguments (its real signature
  is `(self, *args)`), and a missing file is DaytonaFileNotFoundError (a DaytonaNotFoundError).
- Toolbox calls (exec, files) on a sandbox that is not started fail with a DaytonaError (the
  SDK does not document which one; 400 here) until `start()`: Daytona's auto-stop.
- `AsyncDaytona()` without credentials raises DaytonaAuthenticationError (`cloud.authenticated`).

What the service does on its own is driven by the tests: `auto_stop`, `archive`, `pause`
(the container is stopped or paused and the state set), `fail` (state `error`), `vanish`
(container and record gone).

Not reproduced: the real service's images and users (the sandbox's OS user defaults to root
here: the test image has no `daytona` user and no sudo; with `sudo_stand_in=True` commands run
as root while the sandbox reports its `os_user`, and a logging `sudo` shim, which grants
nothing, stands in for the image's sudo), build logs, volumes, regions, billing, ttl, auto-archive
and auto-delete timers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from dataclasses import dataclass
from enum import StrEnum
from types import SimpleNamespace
from typing import Any

import docker
from docker.errors import DockerException, NotFound
from docker.utils.socket import STDERR, frames_iter
from pydantic import BaseModel, ConfigDict

FAKE_LABEL = "farline.fake-daytona"
NAME_LABEL = "farline.fake-daytona.name"
LANGUAGE_LABEL = "code-toolbox-language"
DEFAULT_EXEC_TIMEOUT_S = 10
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SUDO_LOG = "/tmp/fake-sudo.log"
# logs each use (its first two arguments) and drops sudo's own options; grants nothing (the
# commands already run as root)
SUDO_SHIM = """#!/bin/sh
printf 'sudo %s %s\\n' "$1" "$2" >> @LOG@
while [ $# -gt 0 ]; do case $1 in -n) shift ;; -u) shift 2 ;; --) shift; break ;; *) break ;; esac; done
exec "$@"
""".replace("@LOG@", SUDO_LOG)


# -- the SDK's errors (daytona/common/errors.py) -----------------------------------------------------


class DaytonaError(Exception):
    def __init__(
        self,
        message: str,
        status_code: int | None = None,
        headers: dict[str, Any] | None = None,
        code: str | None = None,
        source: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.headers = dict(headers or {})
        self.code = code
        self.source = source


class DaytonaNotFoundError(DaytonaError):
    pass


class DaytonaAuthenticationError(DaytonaError):
    pass


class DaytonaConflictError(DaytonaError):
    pass


class DaytonaBadRequestError(DaytonaError):
    pass


class DaytonaTimeoutError(DaytonaError):
    pass


class DaytonaFileNotFoundError(DaytonaNotFoundError):
    pass


# -- the SDK's models ---------------------------------------------------------------------------------


class SandboxState(StrEnum):
    CREATING = "creating"
    RESTORING = "restoring"
    DESTROYED = "destroyed"
    DESTROYING = "destroying"
    STARTED = "started"
    STOPPED = "stopped"
    STARTING = "starting"
    STOPPING = "stopping"
    ERROR = "error"
    BUILD_FAILED = "build_failed"
    PENDING_BUILD = "pending_build"
    BUILDING_SNAPSHOT = "building_snapshot"
    UNKNOWN = "unknown"
    PULLING_SNAPSHOT = "pulling_snapshot"
    ARCHIVED = "archived"
    ARCHIVING = "archiving"
    RESIZING = "resizing"
    SNAPSHOTTING = "snapshotting"
    FORKING = "forking"
    PAUSING = "pausing"
    PAUSED = "paused"
    RESUMING = "resuming"


@dataclass
class Resources:
    cpu: int | None = None
    memory: int | None = None
    disk: int | None = None
    gpu: int | None = None


class CreateSandboxBaseParams(BaseModel):
    """The fields of the SDK's model the fake honours or records (a typo is refused)."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str | None = None
    language: str | None = None
    os_user: str | None = None
    env_vars: dict[str, str] | None = None
    labels: dict[str, str] | None = None
    auto_stop_interval: int | None = None
    auto_archive_interval: int | None = None
    auto_delete_interval: int | None = None
    network_block_all: bool | None = None
    target: str | None = None


class CreateSandboxFromImageParams(CreateSandboxBaseParams):
    image: str
    resources: Resources | None = None


class CreateSandboxFromSnapshotParams(CreateSandboxBaseParams):
    snapshot: str | None = None


@dataclass
class ExecutionArtifacts:
    stdout: str = ""
    charts: list[Any] | None = None


@dataclass
class ExecuteResponse:
    exit_code: int
    result: str
    artifacts: ExecutionArtifacts | None = None


@dataclass(frozen=True)
class Call:
    """One SDK call: `name` is `<SDK class>.<method>` ("AsyncSandbox.start")."""

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


@dataclass
class _Record:
    """The service's side of one sandbox."""

    id: str
    name: str
    params: CreateSandboxBaseParams
    labels: dict[str, str]
    user: str
    state: SandboxState = SandboxState.CREATING
    container_id: str | None = None
    shell: str = "sh"
    recoverable: bool | None = None
    error_reason: str | None = None


class FakeDaytonaCloud:
    """The service behind the fake SDK: sandboxes as containers of a Docker-API engine."""

    def __init__(
        self,
        base_url: str,
        image: str,
        *,
        default_os_user: str = "root",
        sudo_stand_in: bool = False,
    ) -> None:
        self.engine = docker.DockerClient(base_url=base_url, timeout=120, max_pool_size=32)
        self.image = image
        self.default_os_user = default_os_user
        self.sudo_stand_in = sudo_stand_in
        self.label = uuid.uuid4().hex[:12]
        self.calls: list[Call] = []
        self.authenticated = True
        self._records: dict[str, _Record] = {}
        cloud = self

        class BoundAsyncDaytona(AsyncDaytona):
            _cloud = cloud

        self.sdk = SimpleNamespace(
            AsyncDaytona=BoundAsyncDaytona,
            CreateSandboxFromImageParams=CreateSandboxFromImageParams,
            CreateSandboxFromSnapshotParams=CreateSandboxFromSnapshotParams,
            Resources=Resources,
            SandboxState=SandboxState,
            DaytonaError=DaytonaError,
            DaytonaNotFoundError=DaytonaNotFoundError,
            DaytonaAuthenticationError=DaytonaAuthenticationError,
            DaytonaConflictError=DaytonaConflictError,
            DaytonaBadRequestError=DaytonaBadRequestError,
            DaytonaTimeoutError=DaytonaTimeoutError,
            DaytonaFileNotFoundError=DaytonaFileNotFoundError,
        )

    # -- for tests ---------------------------------------------------------------------------------

    def record(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.calls.append(Call(name, args, dict(kwargs)))

    def calls_named(self, name: str) -> list[Call]:
        return [call for call in self.calls if call.name == name]

    def find(self, id_or_name: str) -> _Record | None:
        record = self._records.get(id_or_name)
        if record is not None:
            return record
        return next((r for r in self._records.values() if r.name == id_or_name), None)

    def state_of(self, name: str) -> SandboxState | None:
        record = self.find(name)
        return None if record is None else record.state

    async def auto_stop(self, name: str) -> None:
        """What Daytona does to a sandbox idle for `auto_stop_interval` minutes."""
        record = self._must(name)
        await asyncio.to_thread(self.engine.api.stop, record.container_id, timeout=1)
        record.state = SandboxState.STOPPED

    async def archive(self, name: str) -> None:
        """A stopped sandbox moved to cheaper storage (auto-archive)."""
        await self.auto_stop(name)
        self._must(name).state = SandboxState.ARCHIVED

    async def pause(self, name: str) -> None:
        record = self._must(name)
        await asyncio.to_thread(self.engine.api.pause, record.container_id)
        record.state = SandboxState.PAUSED

    async def fail(self, name: str, *, recoverable: bool, reason: str = "runner lost") -> None:
        record = self._must(name)
        await asyncio.to_thread(self.engine.api.stop, record.container_id, timeout=1)
        record.state, record.recoverable, record.error_reason = SandboxState.ERROR, recoverable, reason

    async def vanish(self, name: str) -> None:
        """The sandbox deleted behind the harness's back (from the dashboard, by its ttl)."""
        record = self._must(name)
        await asyncio.to_thread(self.remove_container, record)
        del self._records[record.id]

    def containers(self) -> list[Any]:
        return self.engine.containers.list(all=True, filters={"label": f"{FAKE_LABEL}={self.label}"})

    def close(self) -> None:
        for container in self.containers():
            container.remove(force=True)
        self.engine.close()

    def _must(self, name: str) -> _Record:
        record = self.find(name)
        if record is None:
            raise KeyError(f"no fake sandbox {name!r}")
        return record

    # -- the service ---------------------------------------------------------------------------------

    def live(self, record_id: str) -> _Record:
        """The record of a sandbox the API still knows; DaytonaNotFoundError otherwise."""
        record = self._records.get(record_id)
        if record is None:
            raise DaytonaNotFoundError(f"Sandbox with ID or name {record_id} not found", 404)
        return record

    def toolbox(self, record_id: str) -> _Record:
        """The record of a started sandbox, for a toolbox call (exec, files)."""
        record = self.live(record_id)
        if record.state == SandboxState.DESTROYED:
            raise DaytonaNotFoundError(f"Sandbox {record_id} not found", 404)
        if record.state != SandboxState.STARTED:
            raise DaytonaBadRequestError(
                f"Sandbox {record_id} is not started (state {record.state.value})", 400
            )
        return record

    async def create(self, params: CreateSandboxBaseParams) -> _Record:
        name = params.name or uuid.uuid4().hex
        existing = self.find(name)
        if existing is not None and existing.state != SandboxState.DESTROYED:
            raise DaytonaConflictError(f"Sandbox with name {name} already exists", 409)
        if existing is not None:
            del self._records[existing.id]
        record = _Record(
            id=str(uuid.uuid4()),
            name=name,
            params=params,
            labels={**(params.labels or {}), LANGUAGE_LABEL: params.language or "python"},
            user=params.os_user or self.default_os_user,
        )
        self._records[record.id] = record  # the name is taken from here on
        try:
            await asyncio.to_thread(self._start_container, record)
        except Exception as error:
            del self._records[record.id]
            raise DaytonaError(f"Failed to create sandbox: {error}", 500) from error
        record.state = SandboxState.STARTED
        return record

    def _start_container(self, record: _Record) -> None:
        params = record.params
        limits: dict[str, Any] = {}
        resources = getattr(params, "resources", None)
        if resources is not None and resources.cpu is not None:
            limits["nano_cpus"] = int(resources.cpu * 1e9)
        if resources is not None and resources.memory is not None:
            limits["mem_limit"] = f"{resources.memory}g"
        home = "/root" if record.user == "root" else f"/home/{record.user}"
        exec_as_root = self.sudo_stand_in
        container = self.engine.containers.create(
            self.image,
            command=["sleep", "infinity"],
            name=f"fake-daytona-{record.id}",
            labels={FAKE_LABEL: self.label, NAME_LABEL: record.name},
            environment={"PATH": DEFAULT_PATH, "HOME": home, **(params.env_vars or {})},
            user="root" if exec_as_root else record.user,
            network_mode="none" if params.network_block_all else "bridge",
            init=True,
            **limits,
        )
        record.container_id = container.id
        container.start()
        found = self.run(record, ["sh", "-c", "command -v zsh || command -v bash || command -v sh"])
        record.shell = found[0].decode().strip().splitlines()[0] if found[2] == 0 else "sh"
        if exec_as_root:
            install = "mkdir -p /usr/local/bin && cat > /usr/local/bin/sudo && chmod 755 /usr/local/bin/sudo"
            _, err, code = self.run(record, ["sh", "-c", install], stdin=SUDO_SHIM.encode())
            if code != 0:
                raise RuntimeError(f"cannot install the sudo shim: {err.decode(errors='replace')}")

    def exec_user(self, record: _Record) -> str:
        return "root" if self.sudo_stand_in else record.user

    def run(
        self,
        record: _Record,
        argv: list[str],
        stdin: bytes | None = None,
        environment: dict[str, str] | None = None,
        workdir: str | None = None,
        combined: bool = False,
    ) -> tuple[bytes, bytes, int]:
        """Run argv in the container as the sandbox's user: (stdout, stderr, exit code); with
        `combined`, both streams in the first, as written."""
        try:
            return self._run(record, argv, stdin, environment, workdir, combined)
        except DockerException as error:  # the daemon in the sandbox is unreachable
            raise DaytonaError(f"Bad gateway: {error}", 502) from error

    def _run(
        self,
        record: _Record,
        argv: list[str],
        stdin: bytes | None,
        environment: dict[str, str] | None,
        workdir: str | None,
        combined: bool,
    ) -> tuple[bytes, bytes, int]:
        api = self.engine.api
        exec_id = api.exec_create(
            record.container_id,
            argv,
            stdin=stdin is not None,
            user=self.exec_user(record),
            environment=environment,
            workdir=workdir,
        )["Id"]
        stream = api.exec_start(exec_id, socket=True)
        raw = getattr(stream, "_sock", stream)
        out: list[bytes] = []
        err: list[bytes] = []
        try:
            if stdin is not None:
                raw.sendall(stdin)
            raw.shutdown(socket.SHUT_WR)
            for kind, chunk in frames_iter(stream, tty=False):
                (err if kind == STDERR and not combined else out).append(chunk)
        finally:
            stream.close()
            raw.close()
        code = api.exec_inspect(exec_id).get("ExitCode")
        return b"".join(out), b"".join(err), code if isinstance(code, int) else -1

    def remove_container(self, record: _Record) -> None:
        if record.container_id is not None:
            with contextlib.suppress(NotFound):
                self.engine.api.remove_container(record.container_id, force=True)


class AsyncDaytona:
    """daytona._async.daytona.AsyncDaytona, on the fake cloud."""

    _cloud: FakeDaytonaCloud

    def __init__(self, config: Any = None) -> None:
        self._cloud.record("AsyncDaytona.__init__", (), {"config": config} if config is not None else {})
        if not self._cloud.authenticated:
            raise DaytonaAuthenticationError(
                "Authentication credentials not found. Set DAYTONA_API_KEY, or both DAYTONA_JWT_TOKEN "
                "and DAYTONA_ORGANIZATION_ID. These can also be provided via DaytonaConfig."
            )

    async def create(
        self,
        params: CreateSandboxBaseParams | None = None,
        *,
        timeout: float = 60,
        on_snapshot_create_logs: Any = None,
    ) -> AsyncSandbox:
        kwargs: dict[str, Any] = {"timeout": timeout}
        if on_snapshot_create_logs is not None:
            kwargs["on_snapshot_create_logs"] = on_snapshot_create_logs
        self._cloud.record("AsyncDaytona.create", (params,), kwargs)
        record = await self._cloud.create(params or CreateSandboxFromSnapshotParams())
        return AsyncSandbox(self._cloud, record)

    async def get(self, sandbox_id_or_name: str, request_timeout: float | None = None) -> AsyncSandbox:
        self._cloud.record("AsyncDaytona.get", (sandbox_id_or_name,), _given(request_timeout=request_timeout))
        record = self._cloud.find(sandbox_id_or_name)
        if record is None:
            raise DaytonaNotFoundError(f"Failed to get sandbox: Sandbox {sandbox_id_or_name} not found", 404)
        return AsyncSandbox(self._cloud, record)

    async def close(self) -> None:
        self._cloud.record("AsyncDaytona.close", (), {})


def _given(**kwargs: Any) -> dict[str, Any]:
    """The keyword arguments a caller gave (those not at their default of None)."""
    return {name: value for name, value in kwargs.items() if value is not None}


class AsyncSandbox:
    """daytona._async.sandbox.AsyncSandbox: a snapshot of the sandbox's data, refreshed by its calls."""

    def __init__(self, cloud: FakeDaytonaCloud, record: _Record) -> None:
        self._cloud = cloud
        self.id = record.id
        self.fs = AsyncFileSystem(cloud, record.id)
        self.process = AsyncProcess(cloud, record.id)
        self._load(record)

    def _load(self, record: _Record) -> None:
        params = record.params
        self.name = record.name
        self.user = record.user
        self.labels = dict(record.labels)
        self.env = dict(params.env_vars or {})
        self.network_block_all = bool(params.network_block_all)
        self.auto_stop_interval = params.auto_stop_interval if params.auto_stop_interval is not None else 15
        self.target = params.target or "us"
        self.state = record.state
        self.recoverable = record.recoverable
        self.error_reason = record.error_reason

    def _record(self, method: str, *args: Any, **kwargs: Any) -> None:
        self._cloud.record(f"AsyncSandbox.{method}", args, kwargs)

    async def refresh_data(self, request_timeout: float | None = None) -> None:
        self._record("refresh_data", **_given(request_timeout=request_timeout))
        self._load(self._cloud.live(self.id))

    async def start(self, timeout: float | None = 60) -> None:
        self._record("start", timeout=timeout)
        record = self._cloud.live(self.id)
        if record.state in (SandboxState.STOPPED, SandboxState.ARCHIVED):
            await asyncio.to_thread(self._cloud.engine.api.start, record.container_id)
        elif record.state == SandboxState.PAUSED:
            await asyncio.to_thread(self._cloud.engine.api.unpause, record.container_id)
        elif record.state != SandboxState.STARTED:
            raise DaytonaError(f"Failed to start sandbox: sandbox is {record.state.value}", 400)
        record.state = SandboxState.STARTED
        self._load(record)

    async def stop(self, timeout: float | None = 60, force: bool = False) -> None:
        self._record("stop", timeout=timeout, **({"force": force} if force else {}))
        record = self._cloud.live(self.id)
        if record.state == SandboxState.STARTED:
            await asyncio.to_thread(self._cloud.engine.api.stop, record.container_id, timeout=1)
            record.state = SandboxState.STOPPED
        elif record.state != SandboxState.STOPPED:
            raise DaytonaError(f"Failed to stop sandbox: sandbox is {record.state.value}", 400)
        self._load(record)

    async def recover(self, timeout: float | None = 60) -> None:
        self._record("recover", timeout=timeout)
        record = self._cloud.live(self.id)
        if record.state != SandboxState.ERROR or not record.recoverable:
            raise DaytonaError("Failed to recover sandbox: it is not in a recoverable error", 400)
        await asyncio.to_thread(self._cloud.engine.api.start, record.container_id)
        record.state, record.recoverable, record.error_reason = SandboxState.STARTED, None, None
        self._load(record)

    async def wait_for_sandbox_start(self, timeout: float | None = 60) -> None:
        self._record("wait_for_sandbox_start", timeout=timeout)
        deadline = time.monotonic() + timeout if timeout else None
        while True:
            record = self._cloud.live(self.id)
            self._load(record)
            if record.state == SandboxState.STARTED:
                return
            if record.state in (SandboxState.ERROR, SandboxState.BUILD_FAILED, SandboxState.DESTROYED):
                raise DaytonaError(f"Sandbox {self.id} entered error state: {record.state.value}")
            if deadline is not None and time.monotonic() > deadline:
                raise DaytonaTimeoutError(
                    f"Sandbox {self.id} failed to become ready within {timeout} seconds"
                )
            await asyncio.sleep(0.05)

    async def delete(self, timeout: float | None = 60, wait: bool = False) -> None:
        self._record("delete", timeout=timeout, wait=wait)
        record = self._cloud.live(self.id)
        await asyncio.to_thread(self._cloud.remove_container, record)
        record.state = SandboxState.DESTROYED
        self._load(record)


class AsyncProcess:
    """daytona._async.process.AsyncProcess (exec only)."""

    def __init__(self, cloud: FakeDaytonaCloud, record_id: str) -> None:
        self._cloud = cloud
        self._id = record_id

    async def exec(
        self,
        command: str,
        cwd: str | None = None,
        env: dict[str, str] | None = None,
        timeout: int | None = None,
    ) -> ExecuteResponse:
        self._cloud.record("AsyncProcess.exec", (command,), _given(cwd=cwd, env=env, timeout=timeout))
        record = self._cloud.toolbox(self._id)
        limit = timeout or DEFAULT_EXEC_TIMEOUT_S
        # the daemon pipes the command into the shell's stdin; `timeout` stands in for its timer
        argv = ["timeout", "-s", "KILL", str(limit), record.shell]
        started = time.monotonic()
        output, _, code = await asyncio.to_thread(
            self._cloud.run, record, argv, command.encode(), env, cwd, True
        )
        if code in (124, 137) and time.monotonic() - started >= limit:
            raise DaytonaTimeoutError(
                f"Command execution timed out after {limit} seconds. The timeout can be increased by "
                "adjusting the timeout parameter in the request.",
                408,
            )
        text = output.decode("utf-8", errors="replace")
        return ExecuteResponse(
            exit_code=code, result=text, artifacts=ExecutionArtifacts(stdout=text, charts=[])
        )


class AsyncFileSystem:
    """daytona._async.filesystem.AsyncFileSystem (upload_file and download_file with bytes)."""

    def __init__(self, cloud: FakeDaytonaCloud, record_id: str) -> None:
        self._cloud = cloud
        self._id = record_id

    async def upload_file(self, src: str | bytes, dst: str, timeout: int = 30 * 60) -> None:
        self._cloud.record("AsyncFileSystem.upload_file", (src, dst), {"timeout": timeout})
        record = self._cloud.toolbox(self._id)
        data = src if isinstance(src, bytes) else open(src, "rb").read()  # noqa: SIM115
        script = 'cat > "$1"'
        _, err, code = await asyncio.to_thread(self._cloud.run, record, ["sh", "-c", script, "sh", dst], data)
        if code != 0:
            raise DaytonaError(f"Failed to upload files: {err.decode(errors='replace').strip()}", 400)

    async def download_file(self, *args: Any) -> bytes:
        self._cloud.record("AsyncFileSystem.download_file", args, {})
        if not (len(args) == 1 or (len(args) == 2 and isinstance(args[1], int))):
            raise TypeError("the fake supports download_file(remote_path[, timeout]) only")
        record = self._cloud.toolbox(self._id)
        argv = ["sh", "-c", '[ -f "$1" ] || exit 44; exec cat -- "$1"', "sh", args[0]]
        out, err, code = await asyncio.to_thread(self._cloud.run, record, argv)
        if code == 44:
            raise DaytonaFileNotFoundError(f"Failed to download file: file not found: {args[0]}", 404)
        if code != 0:
            raise DaytonaError(f"Failed to download file: {err.decode(errors='replace').strip()}", 400)
        return out
