"""A FAKE of the part of Modal's SDK (`modal`, 1.x) that the modal provider uses.

Modal's cloud cannot be reached from here, so this stands in for it: `FakeModal` is a namespace
like the `modal` module (`App`, `Sandbox`, `Image`, `exception` with the same-named exception
classes), whose sandboxes are REAL containers of a Docker-API engine (the tests' podman
service), so real processes run in them. Every SDK call is recorded (`calls`: name, args,
kwargs) for tests to assert on and to bind against the real SDK's signatures (`SDK_CLASSES`
says where each fake class's real counterpart lives).

What it reproduces of Modal, as the SDK's source (modal 1.6) shows it:
- the synchronicity spelling: every I/O method is awaited as `<method>.aio(...)` (the blocking
  form raises here); `Image.from_registry` / `Image.from_id` are plain lazy calls;
- `App.lookup(name, create_if_missing=True)`; `Sandbox.create(app=..., name=..., tags=...,
  image=..., env=..., timeout=300, block_network=False, cpu=..., memory=MiB, ...)`, names
  unique among the app's running sandboxes (AlreadyExistsError), at most 64 characters of
  A-Z a-z 0-9 _ . - (InvalidError); `block_network=True` is network mode "none"; `env` is the
  sandbox's whole environment over the image's; `timeout` (default 300 s) is its lifetime: the
  container's main process is `sleep <timeout>`, so it finishes when that passes;
- `Sandbox.from_name` finds running sandboxes only (NotFoundError otherwise), `from_id` finished
  ones too; `poll()` is None while running, then the exit code (137 after `terminate`);
- `exec(*argv, text=True, timeout=None, workdir=None, env=None)`: an argv (at most 64 KiB of
  arguments, InvalidError), stdout/stderr as bytes with `text=False`, else str decoded strictly
  (UnicodeDecodeError on bad UTF-8, as the SDK's incremental decoder); stdin through
  `write` (a buffer of at most 16 MiB, BufferError) / `write_eof` / `drain.aio`; `wait()` is
  the exit code, -1 once the exec `timeout` passed (no exception); an exec on a finished
  sandbox is ConflictError ("Sandbox already finished"), on a vanished one NotFoundError;
- `snapshot_filesystem()` is `podman commit` of the container into an Image with an `im-` object
  id, which `Image.from_id(id)` finds again (from any FakeModal on the same engine); a sandbox
  made from it has the files as they were (podman's commit also keeps the old container's
  environment under the new one's: whether Modal's images do is not known, so no test relies
  on either);
- `detach()`: later calls on that handle raise ClientClosed.

Not reproduced: regions, idle timeouts, GPUs, volumes, tunnels, the entrypoint's own streams,
memory snapshots, `outbound_*_allowlist` rules (recorded only), real registry pulls (a registry
tag maps to a local test image through `images`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import json
import re
import secrets
import socket
import string
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

import docker
from docker.errors import APIError, ImageNotFound, NotFound
from docker.utils.socket import STDERR, frames_iter

LABEL_APP = "modal-fake.app"
LABEL_NAME = "modal-fake.name"
LABEL_ID = "modal-fake.id"
LABEL_TAGS = "modal-fake.tags"
LABEL_SNAPSHOT = "modal-fake.snapshot"
SNAPSHOT_REPOSITORY = "localhost/modal-fake-snapshot"
DEFAULT_SANDBOX_TIMEOUT_S = 300  # Sandbox.create's default `timeout`
STDIN_BUFFER_LIMIT = 16 * 1024 * 1024  # TASK_COMMAND_ROUTER_MAX_BUFFER_SIZE
ARG_MAX_BYTES = 1 << 16  # modal.sandbox._common.ARG_MAX_BYTES
TERMINATED_EXIT_CODE = 137
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# how the fake learns an exec's exit code (see FakeSandbox._start_exec)
EXIT_MARK = b"\0modal-fake-exit "
EXIT_WRAPPER = '"$@"; c=$?; printf "\\000modal-fake-exit %d" "$c" >&2; exit "$c"'
_ALNUM = string.ascii_letters + string.digits
# where the real class of each fake lives, for the signature checks
SDK_CLASSES = {
    "App": "modal.App",
    "Sandbox": "modal.Sandbox",
    "Image": "modal.Image",
    "ContainerProcess": "modal.container_process.ContainerProcess",
    "StreamReader": "modal.io_streams.StreamReader",
    "StreamWriter": "modal.io_streams.StreamWriter",
}


# -- modal.exception ---------------------------------------------------------------------------------


# (engine, workspace labels) -> the lock of that workspace's creates
_CREATE_LOCKS: dict[tuple[str, str], asyncio.Lock] = {}


class Error(Exception):
    pass


class AlreadyExistsError(Error):
    pass


class AuthError(Error):
    pass


class InvalidError(Error):
    pass


class ConflictError(InvalidError):
    pass


class NotFoundError(Error):
    pass


class RemoteError(Error):
    pass


class ImageBuildError(RemoteError):
    pass


class TimeoutError(Error):
    pass


class SandboxTimeoutError(TimeoutError):
    pass


class SandboxTerminatedError(Error):
    pass


class ClientClosed(Error):
    pass


exception = SimpleNamespace(
    Error=Error,
    AlreadyExistsError=AlreadyExistsError,
    AuthError=AuthError,
    InvalidError=InvalidError,
    ConflictError=ConflictError,
    NotFoundError=NotFoundError,
    RemoteError=RemoteError,
    ImageBuildError=ImageBuildError,
    TimeoutError=TimeoutError,
    SandboxTimeoutError=SandboxTimeoutError,
    SandboxTerminatedError=SandboxTerminatedError,
    ClientClosed=ClientClosed,
)


class StreamType(enum.IntEnum):
    PIPE = 1
    DEVNULL = 2
    STDOUT = 3


# -- recording and the `.aio` spelling ---------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    """Bytes given to a call, by size (the calls list would otherwise hold every archive)."""

    size: int


@dataclass(frozen=True)
class Call:
    """One call into the fake SDK, as the caller made it. `name` is "<Class>.<method>" (SDK_CLASSES
    names the real class); `aio`: called as `.aio`; `bound`: on an instance (or a class method)."""

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    aio: bool
    bound: bool


def _summary(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview) and len(value) > 1024:
        return Blob(len(value))
    return value


class _Aio:
    """A method as synchronicity exposes it: `obj.method.aio(...)`; the blocking form is not faked."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, instance: Any, owner: type) -> _AioBound:
        return _AioBound(self, instance if instance is not None else owner, instance is not None)


class _AioBound:
    def __init__(self, method: _Aio, target: Any, on_instance: bool) -> None:
        self.method = method
        self.target = target
        self.on_instance = on_instance

    async def aio(self, *args: Any, **kwargs: Any) -> Any:
        kind = self.target if isinstance(self.target, type) else type(self.target)
        cloud: FakeModal = kind.cloud
        cloud.record(f"{kind.sdk_name}.{self.method.name}", args, kwargs, aio=True, bound=self.on_instance)
        return await self.method.function(self.target, *args, **kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"the fake Modal SDK has only the async form: call {self.method.name}.aio(...)")


def _new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(22))


def _valid_name(name: str) -> bool:
    return (
        0 < len(name) <= 64
        and all(char in _ALNUM + "-_." for char in name)
        and not (name.startswith("ap-") and len(name) == 25)
    )


# -- the cloud ---------------------------------------------------------------------------------------


class FakeModal:
    """The `modal` module, as far as the provider uses it, over containers of one engine. Two
    FakeModal on the same engine and labels are two workers of one Modal workspace."""

    exception = exception
    StreamType = StreamType

    def __init__(
        self, base_url: str, images: dict[str, str], labels: dict[str, str], *, default_image: str
    ) -> None:
        # registry tag -> local image (a tag it does not know: the engine's own image of that name)
        self.images = dict(images)
        self.default_image = default_image
        # on every container and snapshot image: the workspace; lookups see only these
        self.labels = dict(labels)
        self.engine = docker.DockerClient(base_url=base_url, max_pool_size=32)
        self.calls: list[Call] = []
        # set by tests: every App.lookup fails as with missing credentials
        self.refuse_credentials = False
        # set by tests: the next exec raises this (a command router that lost its connection)
        self.fail_next_exec: Error | None = None
        # Modal's control plane creates one named sandbox at a time: one lock per workspace
        # (every fake of these labels on this engine), not per fake (per worker)
        self._create_lock = _CREATE_LOCKS.setdefault(
            (base_url, json.dumps(self.labels, sort_keys=True)), asyncio.Lock()
        )
        self.App: type[FakeApp] = type("App", (FakeApp,), {"cloud": self})
        self.Sandbox: type[FakeSandbox] = type("Sandbox", (FakeSandbox,), {"cloud": self})
        self.Image: type[FakeImage] = type("Image", (FakeImage,), {"cloud": self})
        self.ContainerProcess: type[FakeContainerProcess] = type(
            "ContainerProcess", (FakeContainerProcess,), {"cloud": self}
        )
        self.StreamReader: type[FakeStreamReader] = type("StreamReader", (FakeStreamReader,), {"cloud": self})
        self.StreamWriter: type[FakeStreamWriter] = type("StreamWriter", (FakeStreamWriter,), {"cloud": self})

    def record(
        self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], *, aio: bool, bound: bool
    ) -> None:
        self.calls.append(
            Call(
                name,
                tuple(_summary(arg) for arg in args),
                {key: _summary(value) for key, value in kwargs.items()},
                aio=aio,
                bound=bound,
            )
        )

    def calls_of(self, name: str) -> list[Call]:
        return [call for call in self.calls if call.name == name]

    # -- for tests: the cloud behind the provider's back

    def _filters(self, **labels: str) -> dict[str, list[str]]:
        every = {**self.labels, **labels}
        return {"label": [f"{key}={value}" for key, value in every.items()]}

    def containers(self, app: str | None = None, name: str | None = None, running: bool = False) -> list[Any]:
        wanted = {LABEL_APP: app, LABEL_NAME: name}
        labels = {key: value for key, value in wanted.items() if value is not None}
        found = self.engine.containers.list(all=True, filters=self._filters(**labels))
        found = [container for container in found if LABEL_ID in container.labels]
        return [container for container in found if container.status == "running"] if running else found

    def container_of(self, sandbox_id: str) -> Any | None:
        found = self.engine.containers.list(all=True, filters=self._filters(**{LABEL_ID: sandbox_id}))
        return found[0] if found else None

    def terminate_behind(self, app: str, name: str) -> None:
        """Modal ended the sandbox (its timeout, a crash, someone's `modal sandbox terminate`)."""
        for container in self.containers(app, name, running=True):
            with contextlib.suppress(APIError):
                container.kill()
            container.wait(timeout=30)

    def remove_behind(self, app: str, name: str) -> None:
        """Modal lost every trace of the sandbox."""
        for container in self.containers(app, name):
            container.remove(force=True)

    def remove_all(self) -> None:
        for container in self.containers():
            with contextlib.suppress(APIError):
                container.remove(force=True)
        for image in self.engine.images.list(filters=self._filters(**{LABEL_SNAPSHOT: "1"})):
            with contextlib.suppress(APIError):
                self.engine.images.remove(image.id, force=True)
        self.engine.close()

    # -- the engine, blocking (called in threads)

    def _local_image(self, image: FakeImage | None) -> str:
        if image is None:
            return self.default_image
        if image.snapshot_tag is not None:
            local = f"{SNAPSHOT_REPOSITORY}:{image.snapshot_tag}"
            try:
                self.engine.api.inspect_image(local)
            except ImageNotFound:
                raise NotFoundError(f"Image {image.object_id} not found") from None
            return local
        local = self.images.get(image.tag or "", image.tag or self.default_image)
        try:
            self.engine.api.inspect_image(local)
        except ImageNotFound:
            raise ImageBuildError(f"Image build for {image.tag!r} failed: cannot pull it") from None
        return local

    def _new_container(
        self, app: FakeApp, name: str | None, image: FakeImage | None, settings: dict[str, Any]
    ) -> tuple[str, str]:
        local = self._local_image(image)
        config = self.engine.api.inspect_image(local)["Config"] or {}
        image_env = config.get("Env") or []
        # registry images set PATH: the test images stand for them
        env = {} if any(item.startswith("PATH=") for item in image_env) else {"PATH": DEFAULT_PATH}
        env.update({key: value for key, value in (settings["env"] or {}).items() if value is not None})
        sandbox_id = _new_id("sb-")
        labels = {
            **self.labels,
            LABEL_APP: app.name,
            LABEL_NAME: name or "",
            LABEL_ID: sandbox_id,
            LABEL_TAGS: json.dumps(settings["tags"] or {}),
            LABEL_SNAPSHOT: "",
        }
        limits: dict[str, Any] = {}
        cpu, memory = settings["cpu"], settings["memory"]
        if cpu is not None:
            limits["nano_cpus"] = int((cpu[1] if isinstance(cpu, tuple) else cpu) * 1e9)
        if memory is not None:
            limits["mem_limit"] = f"{memory[1] if isinstance(memory, tuple) else memory}m"
        timeout = settings["timeout"]
        container = self.engine.containers.create(
            local,
            command=["sleep", str(timeout) if timeout else "infinity"],
            # unique per running name: the engine refuses a second one (AlreadyExistsError)
            name=self._container_name(app.name, name) if name else None,
            labels=labels,
            environment=env,
            network_mode="none" if settings["block_network"] else "bridge",
            init=True,
            working_dir=settings["workdir"] or None,
            **limits,
        )
        container.start()
        return sandbox_id, container.id

    @staticmethod
    def _container_name(app: str, name: str) -> str:
        return "modal-fake-" + hashlib.sha256(f"{app}/{name}".encode()).hexdigest()[:24]

    def _free_name(self, app: str, name: str) -> None:
        """The container name of a finished sandbox, for a new one (Modal keeps it as a record)."""
        try:
            info = self.engine.api.inspect_container(self._container_name(app, name))
        except NotFound:
            return
        # one being created (not started yet) by another worker's call exists too
        if info["State"]["Status"] not in ("exited", "stopped", "dead"):
            raise AlreadyExistsError(f"Sandbox with name {name!r} already exists in app {app!r}")
        with contextlib.suppress(NotFound, APIError):
            self.engine.api.rename(info["Id"], f"modal-fake-ended-{secrets.token_hex(8)}")


class FakeApp:
    cloud: ClassVar[FakeModal]
    sdk_name = "App"

    def __init__(self, name: str) -> None:
        self.name = name
        self.app_id = "ap-" + hashlib.sha256(name.encode()).hexdigest()[:22]

    @_Aio
    async def lookup(
        cls,
        name: str,
        *,
        client: Any = None,
        environment_name: str | None = None,
        create_if_missing: bool = False,
    ) -> FakeApp:
        if cls.cloud.refuse_credentials:
            raise AuthError("Token missing. Could not authenticate client.")
        if not create_if_missing and not cls.cloud.containers(app=name):
            raise NotFoundError(f"Lookup failed for App {name!r}")
        return cls(name)


class FakeImage:
    cloud: ClassVar[FakeModal]
    sdk_name = "Image"

    def __init__(self, tag: str | None, object_id: str | None, snapshot_tag: str | None) -> None:
        self.tag = tag
        self.object_id = object_id
        self.snapshot_tag = snapshot_tag

    @classmethod
    def from_registry(
        cls,
        tag: str,
        secret: Any = None,
        *,
        setup_dockerfile_commands: list[str] | None = None,
        force_build: bool = False,
        add_python: str | None = None,
        **kwargs: Any,
    ) -> FakeImage:
        cls.cloud.record(
            "Image.from_registry",
            (tag,),
            {"add_python": add_python} if add_python is not None else {},
            aio=False,
            bound=False,
        )
        return cls(tag, None, None)  # lazy: built by Sandbox.create

    @classmethod
    def from_id(cls, image_id: str, client: Any = None) -> FakeImage:
        cls.cloud.record("Image.from_id", (image_id,), {}, aio=False, bound=True)
        return cls(None, image_id, image_id.lower())


class FakeSandbox:
    cloud: ClassVar[FakeModal]
    sdk_name = "Sandbox"

    def __init__(self, object_id: str, container_id: str) -> None:
        self.object_id = object_id
        self._container_id = container_id
        self._attached = True

    def _ensure_attached(self) -> None:
        if not self._attached:
            raise ClientClosed("Unable to perform operation on a detached sandbox")

    def _state(self) -> dict[str, Any]:
        try:
            return self.cloud.engine.api.inspect_container(self._container_id)["State"]
        except NotFound:
            raise NotFoundError(f"Sandbox {self.object_id} not found") from None

    def _running_state(self) -> None:
        if not self._state()["Running"]:
            raise ConflictError("Sandbox already finished")

    @_Aio
    async def create(
        cls,
        *args: str,
        app: FakeApp | None = None,
        name: str | None = None,
        tags: dict[str, str] | None = None,
        image: FakeImage | None = None,
        env: dict[str, str | None] | None = None,
        timeout: int | None = DEFAULT_SANDBOX_TIMEOUT_S,
        idle_timeout: int | None = None,
        workdir: str | None = None,
        region: str | list[str] | None = None,
        cpu: float | tuple[float, float] | None = None,
        memory: int | tuple[int, int] | None = None,
        block_network: bool = False,
        **kwargs: Any,
    ) -> FakeSandbox:
        if app is None:
            raise InvalidError("Sandboxes require an App when created outside of a Modal container.")
        if name is not None and not _valid_name(name):
            raise InvalidError(f"Invalid Sandbox name: '{name}'.")
        if args:
            raise NotImplementedError("the fake runs no entrypoint command")
        settings = {
            "tags": tags,
            "env": env,
            "timeout": timeout,
            "workdir": workdir,
            "cpu": cpu,
            "memory": memory,
            "block_network": block_network,
        }
        cloud = cls.cloud
        async with cloud._create_lock:  # one workspace's control plane: names checked, then taken
            if name is not None:
                await asyncio.to_thread(cloud._free_name, app.name, name)
            try:
                sandbox_id, container_id = await asyncio.to_thread(
                    cloud._new_container, app, name, image, settings
                )
            except APIError as error:
                # another worker took the name meanwhile
                if error.status_code == 409 or "already in use" in str(error):
                    raise AlreadyExistsError(f"Sandbox with name {name!r} already exists") from error
                raise
        return cls(sandbox_id, container_id)

    @_Aio
    async def from_name(
        cls,
        app_name: str,
        name: str,
        *,
        environment_name: str | None = None,
        include_terminated: bool = False,
        client: Any = None,
    ) -> FakeSandbox:
        found = await asyncio.to_thread(cls.cloud.containers, app_name, name, not include_terminated)
        if not found:
            raise NotFoundError(f"Sandbox with name {name!r} not found in app {app_name!r}")
        container = found[0]
        return cls(container.labels[LABEL_ID], container.id)

    @_Aio
    async def from_id(cls, sandbox_id: str, client: Any = None) -> FakeSandbox:
        container = await asyncio.to_thread(cls.cloud.container_of, sandbox_id)
        if container is None:
            raise NotFoundError(f"Sandbox {sandbox_id} not found")
        return cls(sandbox_id, container.id)

    @_Aio
    async def poll(self) -> int | None:
        self._ensure_attached()
        state = await asyncio.to_thread(self._state)
        return None if state["Running"] else int(state["ExitCode"])

    @_Aio
    async def terminate(self, *, wait: bool = False) -> int | None:
        self._ensure_attached()
        api = self.cloud.engine.api
        state = await asyncio.to_thread(self._state)
        if state["Running"]:
            with contextlib.suppress(APIError):  # it ended meanwhile
                await asyncio.to_thread(api.kill, self._container_id)
        if not wait:
            return None
        result = await asyncio.to_thread(api.wait, self._container_id, 60)
        return int(result["StatusCode"])

    @_Aio
    async def detach(self) -> None:
        self._attached = False

    @_Aio
    async def snapshot_filesystem(self, timeout: int = 55, *, ttl: int | None = 30 * 24 * 3600) -> FakeImage:
        self._ensure_attached()
        await asyncio.to_thread(self._running_state)
        image_id = _new_id("im-")
        await asyncio.to_thread(self._commit, image_id.lower())
        return self.cloud.Image(None, image_id, image_id.lower())

    def _commit(self, tag: str) -> None:
        # podman's commit keeps the container's config (its environment too), whatever `conf` says;
        # a sandbox made from the image gets its own command, labels and environment on top
        self.cloud.engine.api.commit(
            self._container_id,
            repository=SNAPSHOT_REPOSITORY,
            tag=tag,
            changes=[f"LABEL {LABEL_SNAPSHOT}=1"],
        )

    @_Aio
    async def exec(
        self,
        *args: str,
        stdout: StreamType = StreamType.PIPE,
        stderr: StreamType = StreamType.PIPE,
        timeout: int | None = None,
        workdir: str | None = None,
        env: dict[str, str | None] | None = None,
        secrets: Any = None,
        text: bool = True,
        bufsize: int = -1,
        pty: bool = False,
        **kwargs: Any,
    ) -> FakeContainerProcess:
        self._ensure_attached()
        if self.cloud.fail_next_exec is not None:
            error, self.cloud.fail_next_exec = self.cloud.fail_next_exec, None
            raise error
        if not all(isinstance(arg, str) for arg in args):
            raise InvalidError("All entrypoint arguments must be strings")
        total = sum(len(arg) for arg in args)
        if total > ARG_MAX_BYTES:
            raise InvalidError(
                f"Total length of CMD arguments cannot exceed {ARG_MAX_BYTES} bytes (ARG_MAX). "
                f"Got {total} bytes."
            )
        if workdir is not None and not workdir.startswith("/"):
            raise InvalidError(f"workdir must be an absolute path, got: {workdir}")
        if stdout != StreamType.PIPE or stderr != StreamType.PIPE or pty:
            raise NotImplementedError("the fake pipes stdout and stderr, without a pty")
        environment = {key: value for key, value in (env or {}).items() if value is not None}
        stream, exec_id = await asyncio.to_thread(self._start_exec, list(args), workdir, environment)
        return self.cloud.ContainerProcess(exec_id, stream, text, timeout)

    def _start_exec(self, argv: list[str], workdir: str | None, env: dict[str, str]) -> tuple[Any, str]:
        self._running_state()
        api = self.cloud.engine.api
        # the exit code comes back as a mark after stderr: podman drops an ended exec's record
        # within seconds under load, so exec_inspect cannot be relied on for it
        wrapped = ["/bin/sh", "-c", EXIT_WRAPPER, "sh", *argv]
        try:
            exec_id = api.exec_create(
                self._container_id, wrapped, stdin=True, workdir=workdir, environment=env
            )["Id"]
            return api.exec_start(exec_id, socket=True), exec_id
        except NotFound:
            raise NotFoundError(f"Sandbox {self.object_id} not found") from None
        except APIError as error:
            if error.status_code == 409:
                raise ConflictError("Sandbox already finished") from error
            raise


class FakeContainerProcess:
    """An exec: its output is read in a thread from the start; `wait` gives the exit code."""

    cloud: ClassVar[FakeModal]
    sdk_name = "ContainerProcess"

    def __init__(self, exec_id: str, stream: Any, text: bool, timeout: int | None) -> None:
        self.exec_id = exec_id
        self._stream = stream
        self._raw = getattr(stream, "_sock", stream)
        self._text = text
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._output: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        self._done = threading.Event()
        self._timed_out = False
        self._returncode: int | None = None
        self._marked = False
        self._mark_code: int | None = None
        self.stdin = self.cloud.StreamWriter(self)
        self.stdout = self.cloud.StreamReader(self, "stdout")
        self.stderr = self.cloud.StreamReader(self, "stderr")
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for kind, chunk in frames_iter(self._stream, tty=False):
                self._output["stderr" if kind == STDERR else "stdout"].append(chunk)
        except (OSError, ValueError):
            pass  # closed at the exec timeout
        finally:
            self._done.set()

    async def _finished(self) -> None:
        """Until the output ended, or the exec timeout passed (then it is cut off)."""
        remaining = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
        if not self._done.is_set() and not await asyncio.to_thread(self._done.wait, remaining):
            self._timed_out = True
            self._close()
            await asyncio.to_thread(self._done.wait, 10)
        self._take_mark()

    def _take_mark(self) -> None:
        """The wrapper's exit mark, off the end of stderr (once)."""
        if self._marked:
            return
        self._marked = True
        rest, mark, tail = b"".join(self._output["stderr"]).rpartition(EXIT_MARK)
        code = re.match(rb"[0-9]+", tail)
        if mark and code:
            # what may follow is podman's, not the program's (a reset attach of unread stdin)
            self._output["stderr"] = [rest]
            self._mark_code = int(code.group())

    def _close(self) -> None:
        with contextlib.suppress(OSError):
            self._raw.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._stream.close()

    def _send(self, data: bytes, eof: bool) -> None:
        try:
            if data:
                self._raw.sendall(data)
            if eof:
                self._raw.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the process has ended, or does not read its stdin

    @_Aio
    async def wait(self) -> int:
        if self._returncode is not None:
            return self._returncode
        await self._finished()
        if self._timed_out:
            self._returncode = -1
            return -1
        self._close()
        if self._mark_code is not None:
            self._returncode = self._mark_code
            return self._returncode
        # no mark: the wrapper itself was killed; the engine may still know the exit code
        try:
            info = await asyncio.to_thread(self.cloud.engine.api.exec_inspect, self.exec_id)
        except NotFound:
            raise Error(f"the exec {self.exec_id} ended without an exit code") from None
        self._returncode = int(info.get("ExitCode") or 0)
        return self._returncode


class FakeStreamWriter:
    cloud: ClassVar[FakeModal]
    sdk_name = "StreamWriter"

    def __init__(self, process: FakeContainerProcess) -> None:
        self._process = process
        self._buffer = bytearray()
        self._closed = False

    def write(self, data: bytes | bytearray | memoryview | str) -> None:
        self.cloud.record("StreamWriter.write", (data,), {}, aio=False, bound=True)
        if self._closed:
            raise ValueError("Stdin is closed. Cannot write to it.")
        if not isinstance(data, bytes | bytearray | memoryview | str):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__}")
        encoded = data.encode() if isinstance(data, str) else bytes(data)
        if len(self._buffer) + len(encoded) > STDIN_BUFFER_LIMIT:
            raise BufferError("Buffer size exceed limit. Call drain to flush the buffer.")
        self._buffer.extend(encoded)

    def write_eof(self) -> None:
        self.cloud.record("StreamWriter.write_eof", (), {}, aio=False, bound=True)
        self._closed = True

    @_Aio
    async def drain(self) -> None:
        data, eof = bytes(self._buffer), self._closed
        if data or eof:
            await asyncio.to_thread(self._process._send, data, eof)
        self._buffer.clear()


class FakeStreamReader:
    cloud: ClassVar[FakeModal]
    sdk_name = "StreamReader"

    def __init__(self, process: FakeContainerProcess, which: str) -> None:
        self._process = process
        self._which = which

    @_Aio
    async def read(self) -> bytes | str:
        await self._process._finished()
        data = b"".join(self._process._output[self._which])
        return data.decode("utf-8") if self._process._text else data
