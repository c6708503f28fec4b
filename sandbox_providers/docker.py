"""The docker sandbox provider: one long-lived container per sandbox, through the Docker API.

Works with any engine that speaks the Docker API (Docker, or podman's `podman system
service`), through the `docker` Python SDK. A sandbox is a container named
`<name_prefix><sandbox id>`, labelled `farline.sandbox=<id>`, that runs `sleep infinity`
under the engine's init (which reaps the orphans of detached processes). It has:

- the configured image, user, and limits (cpus, memory without swap, pids);
- network mode `none` unless SandboxConfig.network (then `networked_mode`, "bridge");
- an environment of HOME=<workspace>, LANG=C.UTF-8, TERM=dumb, PATH (when the image sets
  none), the image's own variables, and SandboxConfig.env: nothing of the worker's;
- the workspace at `workspace_path`, owned by the user, and the processes' state under
  /var/farline, outside the workspace;
- no new privileges (setuid programs do not raise them).

Every operation is one `docker exec` of a POSIX shell script (docker_scripts.py) as the
sandbox's user; processes run under a detached supervisor inside the container, so they,
their output and their exit codes outlive the worker. Ended processes' states and outputs
are immutable, and cached here by container id: an exec round trip costs ~100 ms on podman,
so a short command comes back, output and all, from the exec that started it.

A container that no longer exists, or no longer runs, is SandboxGone: the workflow
rehydrates from that. A harness-owned container found dead is removed then.

User-owned containers: a ref with owner "user" names an existing container (name or id) and
is used as it is; `destroy` refuses to remove it. Its first command makes the workspace and
state directories (as root) if they are missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
import shlex
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import docker
import structlog
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.utils.socket import STDERR, frames_iter
from requests.exceptions import RequestException

from harness.config import FarlineConfig
from sandbox_providers.base import (
    WORKSPACE_PATH,
    BucketMount,
    FileEntry,
    OutputChunk,
    ProcessNotFound,
    ProcessSpec,
    ProcessState,
    SandboxConfig,
    SandboxError,
    SandboxGone,
    SandboxLimitError,
    SandboxPathError,
    SandboxRef,
    SandboxUnavailable,
    WorkspaceStat,
)
from sandbox_providers.docker_archives import (
    checked_import,
    file_entries,
    normalized_export,
    parse_listing,
    workspace_stats,
)
from sandbox_providers.docker_scripts import (
    IS_A_DIRECTORY,
    MAX_KEPT_PROCESSES,
    NO_STATE_DIR,
    NO_SUCH_PROCESS,
    NOT_A_DIRECTORY,
    NOT_FOUND,
    OPERATIONS,
    PATH_REFUSED,
    PROCESS_DELETED,
    PROCESS_ENDED,
    READ_BLOCK,
    STATUS_MARK,
    STDIN_NOT_READ,
    SUPERVISOR,
    TOO_MANY_PROCESSES,
)
from sandbox_providers.workspace_fs import split_relative

log = structlog.get_logger(__name__)

LABEL_SANDBOX = "farline.sandbox"
LABEL_OWNER = "farline.owner"
LABEL_CONFIG = "farline.config"
STATE_DIR = "/var/farline"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# an ended process's whole output comes back with its state when it is at most this long
INLINE_OUTPUT_BYTES = 1024 * 1024
# ended processes' states and outputs kept in memory, in bytes of output
CACHE_BYTES = 64 * 1024 * 1024
# the most one read_output returns
MAX_READ_BYTES = 16 * 1024 * 1024
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
# the exit codes the scripts use for answers, not failures
_ANSWERS = {
    0,
    PATH_REFUSED,
    NOT_FOUND,
    IS_A_DIRECTORY,
    NOT_A_DIRECTORY,
    NO_SUCH_PROCESS,
    PROCESS_DELETED,
    TOO_MANY_PROCESSES,
    PROCESS_ENDED,
    NO_STATE_DIR,
    STDIN_NOT_READ,
}
_DEAD_STATES = {"exited", "dead", "stopped"}
EXEC_ATTEMPTS = 3


def _check_id(kind: str, value: str) -> str:
    if not _ID.match(value) or set(value) == {"."}:
        raise SandboxPathError(f"invalid {kind} id {value!r}: use 1 to 128 of A-Z a-z 0-9 _ . -")
    return value


def _check_env(env: dict[str, str]) -> None:
    for name, value in env.items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise SandboxError(
                f"invalid environment variable {name!r}: no '=' or NUL in names, no NUL in values"
            )


def _seconds(text: str) -> float | None:
    """A time from the sandbox; a supervisor that could not fork `date` (no pids left) wrote none."""
    try:
        return float(text)
    except ValueError:
        return None


def _config_label(config: SandboxConfig) -> str:
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]


class _ExecNotStarted(Exception):
    """The engine lost or refused an exec before it ran: trying again is safe."""


@dataclass(frozen=True)
class _Result:
    # the script's exit status, from the last line of its stderr; None when it never got to
    # write one (it did not start, or was killed)
    code: int | None
    stdout: bytes
    stderr: bytes

    @classmethod
    def of(cls, stdout: bytes, stderr: bytes) -> _Result:
        # the last mark is the script's own (whatever it ran wrote before it); what may follow
        # is the engine's (podman reports a reset attach when a script leaves stdin unread)
        rest, mark, tail = stderr.rpartition(STATUS_MARK.encode())
        status = tail.partition(b"\n")[0]
        if mark and status.isdigit():
            return cls(code=int(status), stdout=stdout, stderr=rest.removesuffix(b"\n"))
        return cls(code=None, stdout=stdout, stderr=stderr)

    @property
    def message(self) -> str:
        return self.stderr.decode(errors="replace").strip()


@dataclass(frozen=True)
class _Container:
    id: str
    name: str
    user: str
    # made by this harness for a harness-owned sandbox: removed when found dead
    harness_owned: bool = False


class DockerProvider:
    """Sandboxes as containers of a Docker-API engine (see the module docstring)."""

    name = "docker"

    def __init__(
        self,
        image: str,
        *,
        base_url: str | None = None,
        client_factory: Callable[[], docker.DockerClient] | None = None,
        cpus: float | None = None,
        memory: int | str | None = None,
        pids_limit: int | None = 1024,
        network_mode: str = "none",
        networked_mode: str = "bridge",
        user: str | None = None,
        workspace_path: str = WORKSPACE_PATH,
        name_prefix: str = "farline-",
        labels: dict[str, str] | None = None,
        start_wait_s: float = 0.1,
        timeout_s: float = 300.0,
    ) -> None:
        self.image = image
        self.base_url = base_url
        self.cpus = cpus
        self.memory = memory
        self.pids_limit = pids_limit
        # the network mode of a sandbox without network, and of one with
        self.network_mode = network_mode
        self.networked_mode = networked_mode
        self.user = user
        self.workspace_path = workspace_path.rstrip("/") or "/"
        self.name_prefix = name_prefix
        self.labels = dict(labels or {})
        # how long start_process waits for a command to end, to return its output at once
        self.start_wait_s = start_wait_s
        self.timeout_s = timeout_s
        self._client_factory = client_factory or self._default_client
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()
        self._ended: OrderedDict[tuple[str, str], tuple[ProcessState, bytes]] = OrderedDict()
        self._ended_bytes = 0

    @classmethod
    def from_config(cls, config: FarlineConfig) -> DockerProvider:
        if config.docker_image is None:
            raise SandboxUnavailable("the docker provider needs an image: set FARLINE_DOCKER_IMAGE")
        return cls(
            config.docker_image,
            base_url=config.docker_url,
            user=config.docker_user,
            cpus=config.docker_cpus,
            memory=config.docker_memory,
            pids_limit=config.docker_pids_limit,
            networked_mode=config.docker_network,
        )

    def _default_client(self) -> docker.DockerClient:
        if self.base_url is None:
            return docker.from_env(timeout=int(self.timeout_s), max_pool_size=32)
        return docker.DockerClient(base_url=self.base_url, timeout=int(self.timeout_s), max_pool_size=32)

    def _docker(self) -> docker.DockerClient:
        with self._client_lock:
            if self._client is None:
                try:
                    self._client = self._client_factory()
                except DockerException as error:
                    raise SandboxUnavailable(
                        f"cannot reach the Docker engine ({self.base_url or 'DOCKER_HOST'}): {error}"
                    ) from error
            return self._client

    # -- sandboxes -----------------------------------------------------------------------------------

    async def create(self, sandbox_id: str, config: SandboxConfig) -> SandboxRef:
        _check_id("sandbox", sandbox_id)
        _check_env(config.env)
        container = await self._in_thread(self._create_sync, sandbox_id, config)
        await self._setup(container)
        log.info(
            "sandbox.created",
            sandbox_id=sandbox_id,
            container=container.id[:12],
            network=config.network,
            env=sorted(config.env),
        )
        return SandboxRef(provider=self.name, sandbox_id=sandbox_id)

    def _create_sync(self, sandbox_id: str, config: SandboxConfig) -> _Container:
        api = self._docker().api
        name = self.name_prefix + sandbox_id
        for _attempt in range(5):
            try:
                info = api.inspect_container(name)
            except NotFound:
                try:
                    self._new_container(name, sandbox_id, config)
                except APIError as error:
                    if error.status_code == 409:  # created meanwhile by another attempt
                        continue
                    raise
                continue
            labels = info["Config"].get("Labels") or {}
            if labels.get(LABEL_SANDBOX) != sandbox_id:
                raise SandboxError(f"a container named {name!r} exists and is not the sandbox {sandbox_id!r}")
            status = info["State"]["Status"]
            if status == "running":
                if labels.get(LABEL_CONFIG) != _config_label(config):
                    log.warning(
                        "sandbox.config_kept", sandbox_id=sandbox_id, reason="exists with another config"
                    )
                return _Container(id=info["Id"], name=name, user=info["Config"].get("User") or "")
            if status in ("created", "configured"):
                api.start(info["Id"])
                self._check_started(info["Id"], name)
                continue
            # it ran and stopped: a sandbox that died; a new one replaces it
            log.warning("sandbox.dead_container_replaced", sandbox_id=sandbox_id, status=status)
            api.remove_container(info["Id"], force=True)
        raise SandboxError(f"could not create the container {name!r}: it keeps changing under us")

    def _new_container(self, name: str, sandbox_id: str, config: SandboxConfig) -> None:
        client = self._docker()
        try:
            image_env = client.api.inspect_image(self.image)["Config"].get("Env") or []
        except ImageNotFound:
            try:
                client.images.pull(self.image)
            except (APIError, ImageNotFound) as error:
                raise SandboxUnavailable(f"cannot pull the sandbox image {self.image!r}: {error}") from error
            image_env = client.api.inspect_image(self.image)["Config"].get("Env") or []
        environment = {"HOME": self.workspace_path, "LANG": "C.UTF-8", "TERM": "dumb"}
        if not any(entry.startswith("PATH=") for entry in image_env):
            environment["PATH"] = DEFAULT_PATH
        environment.update(config.env)
        limits: dict[str, Any] = {}
        if self.cpus is not None:
            limits["nano_cpus"] = int(self.cpus * 1e9)
        if self.memory is not None:
            limits["mem_limit"] = self.memory
            limits["memswap_limit"] = self.memory  # no swap on top
        if self.pids_limit is not None:
            limits["pids_limit"] = self.pids_limit
        client.containers.create(
            self.image,
            command=["sleep", "infinity"],
            name=name,
            labels={
                **self.labels,
                LABEL_SANDBOX: sandbox_id,
                LABEL_OWNER: "harness",
                LABEL_CONFIG: _config_label(config),
            },
            environment=environment,
            user=self.user or "",
            working_dir=self.workspace_path,
            network_mode=self.networked_mode if config.network else self.network_mode,
            init=True,
            security_opt=["no-new-privileges"],
            **limits,
        )

    def _check_started(self, container_id: str, name: str) -> None:
        info = self._docker().api.inspect_container(container_id)
        if not info["State"]["Running"]:
            logs = self._docker().api.logs(container_id, tail=20).decode(errors="replace").strip()
            raise SandboxUnavailable(
                f"the sandbox container {name!r} (image {self.image!r}) stopped at once "
                f"({info['State'].get('Error') or info['State']['Status']}): {logs or 'no output'}; "
                "the image needs a POSIX shell and `sleep infinity`"
            )

    async def _setup(self, container: _Container) -> None:
        """As root: the workspace and the state dir, owned by the sandbox's user."""
        result = await self._exec(container, ["setup", container.user], user="0")
        if result.code != 0:
            raise SandboxUnavailable(
                f"cannot prepare {self.workspace_path} and {STATE_DIR} in the sandbox container "
                f"{container.name!r}: {result.message or f'exit code {result.code}'}"
            )

    async def health(self, ref: SandboxRef) -> bool:
        try:
            await self._container(ref)
        except SandboxError:
            return False
        return True

    async def destroy(self, ref: SandboxRef) -> None:
        self._check_ref(ref)
        if ref.owner == "user":
            raise SandboxError(f"sandbox {ref.sandbox_id!r} is user-owned: the harness never removes it")
        name = self._container_name(ref)
        try:
            removed = await self._in_thread(self._remove_sync, name)
        except NotFound:
            return
        self._forget(removed)
        log.info("sandbox.destroyed", sandbox_id=ref.sandbox_id, container=removed[:12])

    def _remove_sync(self, name: str) -> str:
        api = self._docker().api
        container_id = api.inspect_container(name)["Id"]
        with contextlib.suppress(NotFound):  # removed meanwhile
            api.remove_container(container_id, force=True)
        return container_id

    async def mount_bucket(self, ref: SandboxRef, mount: BucketMount) -> None:
        raise SandboxUnavailable(
            "the docker provider does not mount buckets (it would need FUSE and extra privileges in the "
            "container); use the local provider for runs with mounts"
        )

    # -- processes -----------------------------------------------------------------------------------

    async def start_process(self, ref: SandboxRef, spec: ProcessSpec) -> ProcessState:
        container = await self._container(ref)
        process_id = _check_id("process", spec.process_id)
        workdir = "/".join(split_relative(spec.workdir))
        _check_env(spec.env)
        if any("\0" in arg for arg in spec.argv):
            raise SandboxError("argv must not contain NUL bytes")
        env = {**({"TERM": "xterm"} if spec.tty else {}), **spec.env}
        argv = ["env", *(f"{name}={value}" for name, value in env.items()), *spec.argv] if env else spec.argv
        tty_command = f"exec {shlex.join(argv)}" if spec.tty else ""
        steps = str(max(0, round(self.start_wait_s * 100)))
        args = ["start", SUPERVISOR, process_id, workdir, tty_command, steps, str(INLINE_OUTPUT_BYTES), *argv]
        result = await self._exec(container, args)
        if result.code == NO_STATE_DIR:  # a user's container, used for the first time
            await self._setup(container)
            result = await self._exec(container, args)
        self._raise_for(result, process_id=process_id, sandbox_id=ref.sandbox_id)
        started, _, report = result.stdout.partition(b"\n")
        state = self._remember(container, self._parse_state(process_id, report))
        log.info(
            "sandbox.process_started" if started == b"started" else "sandbox.process_attached",
            sandbox_id=ref.sandbox_id,
            process_id=process_id,
            argv0=spec.argv[0],
            tty=spec.tty,
            running=state.running,
        )
        return state

    async def process_state(self, ref: SandboxRef, process_id: str) -> ProcessState:
        container = await self._container(ref)
        _check_id("process", process_id)
        cached = self._ended.get((container.id, process_id))
        if cached is not None:
            self._ended.move_to_end((container.id, process_id))
            return cached[0]
        result = await self._exec(container, ["state", process_id, str(INLINE_OUTPUT_BYTES)])
        self._raise_for(result, process_id=process_id, sandbox_id=ref.sandbox_id)
        return self._remember(container, self._parse_state(process_id, result.stdout))

    async def read_output(self, ref: SandboxRef, process_id: str, offset: int, max_bytes: int) -> OutputChunk:
        if offset < 0 or max_bytes < 0:
            raise SandboxError("offset and max_bytes must not be negative")
        container = await self._container(ref)
        _check_id("process", process_id)
        cached = self._ended.get((container.id, process_id))
        if cached is not None:
            data = cached[1][offset : offset + max_bytes]
            return OutputChunk(data=data, offset=offset, next_offset=offset + len(data))
        wanted = min(max_bytes, MAX_READ_BYTES)
        result = await self._exec(container, ["output", process_id, str(offset), str(wanted)])
        self._raise_for(result, process_id=process_id, sandbox_id=ref.sandbox_id)
        skip = offset % READ_BLOCK
        data = result.stdout[skip : skip + wanted]
        return OutputChunk(data=data, offset=offset, next_offset=offset + len(data))

    async def write_stdin(self, ref: SandboxRef, process_id: str, data: bytes) -> None:
        container = await self._container(ref)
        _check_id("process", process_id)
        result = await self._exec(container, ["stdin", process_id], stdin=data)
        if result.code == PROCESS_ENDED:
            ended = "lost" if result.message == "lost" else f"exit code {result.message}"
            raise SandboxError(f"process {process_id!r} has ended ({ended}); its stdin is closed")
        if result.code == STDIN_NOT_READ:
            raise SandboxError(
                f"process {process_id!r} is not reading its stdin (or has just ended); "
                f"not all of the {len(data)} bytes were written"
            )
        self._raise_for(result, process_id=process_id, sandbox_id=ref.sandbox_id)

    async def kill_process(self, ref: SandboxRef, process_id: str) -> None:
        container = await self._container(ref)
        _check_id("process", process_id)
        if (container.id, process_id) in self._ended:
            return
        result = await self._exec(container, ["kill", process_id])
        self._raise_for(result, process_id=process_id, sandbox_id=ref.sandbox_id)
        log.info("sandbox.process_killed", sandbox_id=ref.sandbox_id, process_id=process_id)

    @staticmethod
    def _parse_state(process_id: str, report: bytes) -> tuple[ProcessState, bytes | None]:
        """The `report` of the script: a state line, then the whole output of an ended process."""
        header, _, output = report.partition(b"\n")
        try:
            tag, status, code, size, started, ended = header.decode().split(" ")
            if tag != "farline-state" or status not in ("running", "exited", "lost"):
                raise ValueError(tag)
            state = ProcessState(
                process_id=process_id,
                running=status == "running",
                exit_code=None if code == "-" else int(code),
                lost=status == "lost",
                output_size=int(size),
                started_at=_seconds(started),
                ended_at=_seconds(ended),
            )
        except ValueError as error:
            raise SandboxError(f"unreadable process state from the sandbox: {header[:200]!r}") from error
        if state.running or len(output) < state.output_size or state.output_size > INLINE_OUTPUT_BYTES:
            return state, None
        return state, output[: state.output_size]

    def _remember(self, container: _Container, parsed: tuple[ProcessState, bytes | None]) -> ProcessState:
        """An ended process with its whole output never changes again: keep it."""
        state, output = parsed
        if output is None:
            return state
        key = (container.id, state.process_id)
        if key not in self._ended:
            self._ended[key] = (state, output)
            self._ended_bytes += len(output)
            while self._ended_bytes > CACHE_BYTES and self._ended:
                _, (_, dropped) = self._ended.popitem(last=False)
                self._ended_bytes -= len(dropped)
        return state

    def _forget(self, container_id: str) -> None:
        for key in [key for key in self._ended if key[0] == container_id]:
            self._ended_bytes -= len(self._ended.pop(key)[1])

    # -- files ---------------------------------------------------------------------------------------

    async def read_file(self, ref: SandboxRef, path: str) -> bytes:
        relative = "/".join(split_relative(path))
        container = await self._container(ref)
        result = await self._exec(container, ["read", relative])
        self._raise_for(result)
        return result.stdout

    async def write_file(self, ref: SandboxRef, path: str, data: bytes, mode: int = 0o644) -> None:
        parts = split_relative(path)
        if not parts:
            raise IsADirectoryError(f"is a directory: {path or '.'}")
        container = await self._container(ref)
        args = ["write", "/".join(parts[:-1]), parts[-1], format(mode & 0o777, "o")]
        self._raise_for(await self._exec(container, args, stdin=data))

    async def delete_file(self, ref: SandboxRef, path: str) -> None:
        parts = split_relative(path)
        if not parts:
            raise IsADirectoryError(f"is a directory: {path or '.'}")
        container = await self._container(ref)
        self._raise_for(await self._exec(container, ["delete", "/".join(parts[:-1]), parts[-1]]))

    async def list_dir(self, ref: SandboxRef, path: str = ".") -> list[FileEntry]:
        relative = "/".join(split_relative(path))
        container = await self._container(ref)
        result = await self._exec(container, ["list", relative])
        self._raise_for(result)
        return file_entries(parse_listing(result.stdout), relative)

    async def scan_workspace(self, ref: SandboxRef) -> list[WorkspaceStat]:
        container = await self._container(ref)
        result = await self._exec(container, ["scan"])
        self._raise_for(result)
        return await asyncio.to_thread(lambda: workspace_stats(parse_listing(result.stdout)))

    async def export_paths(self, ref: SandboxRef, paths: list[str]) -> bytes:
        relatives = ["/".join(split_relative(path)) for path in paths]
        container = await self._container(ref)
        result = await self._exec(container, ["export", *relatives])
        if result.code not in (0, None) and b"No such file" in result.stderr:
            raise FileNotFoundError(
                f"a path vanished from the workspace while it was exported: {result.message}"
            )
        self._raise_for(result)
        try:
            return await asyncio.to_thread(normalized_export, result.stdout)
        except Exception as error:  # a truncated or garbled archive from the container's tar
            raise SandboxError(f"the sandbox's tar gave an unreadable archive: {error}") from error

    async def import_paths(self, ref: SandboxRef, archive: bytes) -> None:
        # checked before anything reaches the container: a refused archive writes nothing
        plan = await asyncio.to_thread(checked_import, archive)
        container = await self._container(ref)
        args = ["import", str(len(plan.parents)), *(f"./{path}" for path in plan.parents)]
        for mode, paths in plan.directories.items():
            args += [format(mode, "o"), str(len(paths)), *(f"./{path}" for path in paths)]
        result = await self._exec(container, args, stdin=plan.archive)
        if result.code not in _ANSWERS and b"Is a directory" in result.stderr:
            raise IsADirectoryError(
                f"the archive would replace a directory in the workspace: {result.message}"
            )
        self._raise_for(result)

    # -- helpers -------------------------------------------------------------------------------------

    def _check_ref(self, ref: SandboxRef) -> None:
        if ref.provider != self.name:
            raise SandboxError(
                f"sandbox {ref.sandbox_id!r} belongs to provider {ref.provider!r}, not {self.name!r}"
            )
        _check_id("sandbox", ref.sandbox_id)

    def _container_name(self, ref: SandboxRef) -> str:
        # a user's container is named as the user gave it (its name or id)
        return ref.sandbox_id if ref.owner == "user" else self.name_prefix + ref.sandbox_id

    async def _container(self, ref: SandboxRef) -> _Container:
        """The running container of this sandbox; SandboxGone when there is none."""
        self._check_ref(ref)
        return await self._in_thread(self._container_sync, ref)

    def _container_sync(self, ref: SandboxRef) -> _Container:
        name = self._container_name(ref)
        try:
            info = self._docker().api.inspect_container(name)
        except NotFound:
            raise SandboxGone(f"sandbox {ref.sandbox_id!r}: no container {name!r}") from None
        labels = info["Config"].get("Labels") or {}
        container = _Container(
            id=info["Id"],
            name=name,
            user=info["Config"].get("User") or "",
            harness_owned=ref.owner == "harness" and labels.get(LABEL_OWNER) == "harness",
        )
        state = info["State"]
        if not state.get("Running") or state.get("Paused"):
            self._gone(container, state["Status"])
        return container

    def _gone(self, container: _Container, status: str) -> NoReturn:
        """SandboxGone for a container that stopped; a dead harness-owned one is removed first:
        it is never used again (the run rehydrates a new one), so it is no garbage left behind."""
        if container.harness_owned and status in _DEAD_STATES:
            try:
                self._docker().api.remove_container(container.id, force=True)
                log.info("sandbox.dead_container_removed", container=container.name, status=status)
            except (DockerException, RequestException) as error:
                log.warning("sandbox.dead_container_kept", container=container.name, error=str(error))
        raise SandboxGone(f"the sandbox container {container.name!r} is {status}")

    async def _in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        """A blocking SDK call in a thread, its errors as the protocol's."""
        try:
            return await asyncio.to_thread(function, *args)
        except (SandboxError, NotFound):
            raise
        except (DockerException, RequestException) as error:
            raise SandboxError(f"the Docker engine failed: {error}") from error

    async def _exec(
        self, container: _Container, args: list[str], stdin: bytes | None = None, user: str | None = None
    ) -> _Result:
        for attempt in range(1, EXEC_ATTEMPTS + 1):
            try:
                result = await self._in_thread(self._exec_sync, container.id, args, stdin, user)
            except NotFound:
                raise SandboxGone(f"the sandbox container {container.name!r} is gone") from None
            except _ExecNotStarted as error:
                await self._check_still_there(container)
                reason = str(error)
            except SandboxError:
                await self._check_still_there(container)
                raise
            else:
                if result.code in _ANSWERS:
                    return result
                # a failure, or the container died under the exec
                await self._check_still_there(container)
                if result.code is not None or b"OCI runtime" not in result.stderr:
                    return result
                reason = result.message
            # the engine lost the exec, or its runtime could not start it (runc's init under
            # memory pressure, say): nothing ran, so trying again is safe
            log.warning(
                "sandbox.exec_retried", container=container.name, attempt=attempt, error=reason[-300:]
            )
            await asyncio.sleep(0.2 * attempt)
        raise SandboxError(f"the engine could not run an operation in {container.name!r}: {reason[-1000:]}")

    async def _check_still_there(self, container: _Container) -> None:
        await self._in_thread(self._check_still_there_sync, container)

    def _check_still_there_sync(self, container: _Container) -> None:
        try:
            info = self._docker().api.inspect_container(container.id)
        except NotFound:
            raise SandboxGone(f"the sandbox container {container.name!r} is gone") from None
        except (DockerException, RequestException):
            return  # the engine is unreachable: the caller's own error says so
        if not info["State"].get("Running"):
            self._gone(container, info["State"]["Status"])

    def _exec_sync(
        self, container_id: str, args: list[str], stdin: bytes | None, user: str | None
    ) -> _Result:
        api = self._docker().api
        command = ["sh", "-c", OPERATIONS, "farline", self.workspace_path, STATE_DIR, *args]
        exec_id = api.exec_create(container_id, command, stdin=stdin is not None, user=user or "")["Id"]
        try:
            if stdin is None:
                stdout, stderr = api.exec_start(exec_id, demux=True)
            else:
                stdout, stderr = self._exec_with_input(api, exec_id, stdin)
        except NotFound as error:
            raise _ExecNotStarted(f"the engine lost the exec it had just created: {error}") from error
        result = _Result.of(stdout or b"", stderr or b"")
        if result.code is None:
            # its output was cut short: the engine's record still has the exit code
            with contextlib.suppress(NotFound):
                code = api.exec_inspect(exec_id).get("ExitCode")
                if isinstance(code, int) and code in _ANSWERS:
                    return _Result(code=code, stdout=result.stdout, stderr=result.stderr)
        return result

    @staticmethod
    def _exec_with_input(api: Any, exec_id: str, data: bytes) -> tuple[bytes, bytes]:
        """Start an exec, send `data` to its stdin and close it, collect its output."""
        stream = api.exec_start(exec_id, socket=True)
        raw = getattr(stream, "_sock", stream)
        out: list[bytes] = []
        err: list[bytes] = []
        try:
            raw.sendall(data)
            raw.shutdown(socket.SHUT_WR)
            for kind, chunk in frames_iter(stream, tty=False):
                (err if kind == STDERR else out).append(chunk)
        finally:
            stream.close()
            raw.close()
        return b"".join(out), b"".join(err)

    @staticmethod
    def _raise_for(result: _Result, process_id: str | None = None, sandbox_id: str | None = None) -> None:
        code, message = result.code, result.message
        if code == 0:
            return
        if code == PATH_REFUSED:
            raise SandboxPathError(message)
        if code == NOT_FOUND:
            raise FileNotFoundError(message)
        if code == IS_A_DIRECTORY:
            raise IsADirectoryError(message)
        if code == NOT_A_DIRECTORY:
            raise NotADirectoryError(message)
        if code == NO_SUCH_PROCESS:
            raise ProcessNotFound(f"no process {process_id!r} in sandbox {sandbox_id!r}")
        if code == PROCESS_DELETED:
            raise ProcessNotFound(
                f"process {process_id!r} of sandbox {sandbox_id!r} finished and was deleted to make room "
                f"(a sandbox keeps {MAX_KEPT_PROCESSES}); start new commands under new ids"
            )
        if code == TOO_MANY_PROCESSES:
            raise SandboxLimitError(f"sandbox {sandbox_id!r}: {message}")
        status = "ended without a status" if code is None else f"failed (exit code {code})"
        raise SandboxError(f"the sandbox's shell {status}: {message[-1000:] or 'no message'}")
