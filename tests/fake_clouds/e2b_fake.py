"""A FAKE of the part of E2B's async SDK (`e2b`, 2.x) that the e2b provider uses.

E2B's cloud cannot be reached from here, so this stands in for it: `FakeE2B` is a namespace
like the `e2b` module (`AsyncSandbox`, `SandboxQuery`, `SandboxState` and the exception
classes, same names), whose sandboxes are REAL containers of a Docker-API engine (the tests'
podman service), so real processes run in them. Every SDK call is recorded (`calls`: name,
args, kwargs) for tests to assert on and to bind against the real SDK's signatures.

What it reproduces of E2B, as the SDK's source and docs describe it:
- sandboxes have no names: metadata marks them and `AsyncSandbox.list(query=SandboxQuery(
  metadata=...))` finds them (a paginator: `has_next`, `await next_items()`); the state of
  the cloud is the engine's, so two FakeE2B on the same engine and labels are two workers
  of one account;
- `allow_internet_access=False` blocks the network (network mode "none"); `envs` are the
  sandbox's environment (nothing else of the caller's);
- commands are bash strings run as `/bin/bash -l -c <cmd>`, as "user" (home /home/user, the
  working directory) unless `user="root"`; stdout and stderr come back as str decoded from
  UTF-8 with errors="replace" (not binary-safe); a non-zero exit raises CommandExitException
  from `wait()`; the command `timeout` defaults to 60 s and ends the wait with
  TimeoutException (the command itself is not stopped);
- a killed sandbox is SandboxNotFoundException for the API calls (`connect`, `get_info`,
  `pause`), SandboxNotRunningException for commands and files; `kill` answers False then;
- `pause` freezes the container (`podman pause`: memory, processes and files kept) and
  answers False when it already was; commands and files then fail with
  SandboxNotRunningException until `connect` resumes it; a sandbox marked with
  `guest_unresponsive` refuses `connect` with GuestUnresponsiveException unless
  `on_resume="reboot"`, which restarts the container (files kept, processes lost).

Not reproduced: lifetimes (`timeout` is recorded, never enforced), templates' CPU and memory,
`network=` rules, stdin streaming (`stdin=True`), file reads, the sync SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import itertools
import json
import secrets
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, ClassVar, Generic, TypeVar

import docker
from docker.errors import APIError, NotFound

from sandbox_providers.docker import DockerProvider

OutputT = TypeVar("OutputT")

LABEL = "fake-e2b.sandbox"
LABEL_METADATA = "fake-e2b.metadata"
LABEL_TEMPLATE = "fake-e2b.template"
LABEL_STARTED = "fake-e2b.started-ns"
DEFAULT_TEMPLATE = "base"
DEFAULT_SANDBOX_TIMEOUT_S = 300  # the server's default life when `timeout` is not given
DEFAULT_COMMAND_TIMEOUT_S = 60.0  # Commands.run's default
USER_ID = 1001  # the template's "user"
HOMES = {"user": "/home/user", "root": "/root"}
# the keys of the SDK's ApiParams (every call's **opts)
API_PARAMS = frozenset(
    {
        "request_timeout",
        "retries",
        "headers",
        "api_headers",
        "api_key",
        "validate_api_key",
        "domain",
        "api_url",
        "debug",
        "proxy",
        "sandbox_url",
        "http_version",
    }
)
_ADD_USER = (
    f"grep -q '^user:' /etc/passwd ||"
    f" echo 'user:x:{USER_ID}:{USER_ID}:user:/home/user:/bin/bash' >> /etc/passwd;"
    f" grep -q '^user:' /etc/group || echo 'user:x:{USER_ID}:' >> /etc/group;"
    f" mkdir -p /home/user && chown {USER_ID}:{USER_ID} /home/user"
)
_WRITE = 'mkdir -p -- "$(dirname -- "$1")" && cat > "$1"'


# -- the SDK's exceptions (e2b/exceptions.py), same names and hierarchy ---------------------------------


class SandboxException(Exception):
    status_code: int | None = None


class TimeoutException(SandboxException):
    pass


class NotFoundException(SandboxException):
    pass


class SandboxNotFoundException(NotFoundException):
    pass


class SandboxNotRunningException(TimeoutException):
    pass


class SandboxUnreachableException(TimeoutException):
    pass


class GuestUnresponsiveException(SandboxException):
    pass


class AuthenticationException(Exception):
    pass


class ServiceBusyException(Exception):
    pass


# -- the SDK's data classes ----------------------------------------------------------------------------


@dataclass
class CommandResult(Generic[OutputT]):
    stderr: OutputT
    stdout: OutputT
    exit_code: int
    error: str | None


@dataclass
class CommandExitException(SandboxException, CommandResult[OutputT]):
    def __str__(self) -> str:
        return f"Command exited with code {self.exit_code} and error:\n{self.stderr}"


class SandboxState(StrEnum):  # the SDK's is (str, Enum): same values
    PAUSED = "paused"
    RUNNING = "running"


@dataclass
class SandboxQuery:
    metadata: dict[str, str] | None = None
    state: list[SandboxState] | None = None
    started_after: datetime | None = None
    template: str | None = None


@dataclass
class SandboxInfo:
    sandbox_id: str
    sandbox_domain: str | None
    template_id: str
    name: str | None
    metadata: dict[str, str]
    started_at: datetime
    end_at: datetime
    state: SandboxState
    cpu_count: int
    memory_mb: int
    envd_version: str
    allow_internet_access: bool | None = None


@dataclass
class WriteInfo:
    name: str
    type: str | None
    path: str


@dataclass(frozen=True)
class Call:
    """One call into the fake SDK, as the caller made it."""

    name: str
    args: tuple[Any, ...]
    kwargs: dict[str, Any]


# -- the cloud -----------------------------------------------------------------------------------------


class FakeE2B:
    """The `e2b` module, as far as the provider uses it, over containers of one engine."""

    SandboxException = SandboxException
    TimeoutException = TimeoutException
    NotFoundException = NotFoundException
    SandboxNotFoundException = SandboxNotFoundException
    SandboxNotRunningException = SandboxNotRunningException
    SandboxUnreachableException = SandboxUnreachableException
    GuestUnresponsiveException = GuestUnresponsiveException
    AuthenticationException = AuthenticationException
    ServiceBusyException = ServiceBusyException
    CommandExitException = CommandExitException
    CommandResult = CommandResult
    SandboxQuery = SandboxQuery
    SandboxState = SandboxState
    SandboxInfo = SandboxInfo

    def __init__(self, base_url: str, templates: dict[str, str], labels: dict[str, str]) -> None:
        # template name -> image
        self.templates = dict(templates)
        # on every container; the account: list and lookups see only these
        self.labels = dict(labels)
        self.engine = docker.DockerClient(base_url=base_url, max_pool_size=32)
        self.calls: list[Call] = []
        # E2B ids whose guest agent hung at their pause (see the module docstring)
        self.guest_unresponsive: set[str] = set()
        self._pids = itertools.count(1000)
        self.AsyncSandbox: type[FakeAsyncSandbox] = type("AsyncSandbox", (FakeAsyncSandbox,), {"cloud": self})

    def record(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any], opts: dict[str, Any]) -> None:
        """Record a call: its positional arguments, the keyword arguments given (not None) and its
        **opts, which must be the SDK's ApiParams."""
        unknown = set(opts) - API_PARAMS
        if unknown:
            raise TypeError(f"{name}() got unexpected keyword arguments {sorted(unknown)}")
        given = {key: value for key, value in kwargs.items() if value is not None}
        self.calls.append(Call(name, args, given | opts))

    def calls_of(self, name: str) -> list[Call]:
        return [call for call in self.calls if call.name == name]

    # -- for tests: what happens in the cloud behind the provider's back

    def containers(self, **metadata: str) -> list[Any]:
        """The containers of this account's sandboxes (with this metadata, when given)."""
        filters = {"label": [f"{key}={value}" for key, value in self.labels.items()] + [LABEL]}
        found = self.engine.containers.list(all=True, filters=filters)
        return [
            container
            for container in found
            if metadata.items() <= json.loads(container.labels.get(LABEL_METADATA, "{}")).items()
        ]

    def sandbox_ids(self, **metadata: str) -> list[str]:
        return [container.labels[LABEL] for container in self.containers(**metadata)]

    def lose(self, sandbox_id: str) -> None:
        """The cloud lost the sandbox (expired, killed elsewhere)."""
        container = self._container(sandbox_id)
        if container is not None:
            container.remove(force=True)

    def is_paused(self, sandbox_id: str) -> bool:
        container = self._container(sandbox_id)
        return container is not None and container.status == "paused"

    def remove_all(self) -> None:
        for container in self.containers():
            with contextlib.suppress(NotFound):
                container.remove(force=True)
        self.engine.close()

    # -- the engine side

    def _container(self, sandbox_id: str) -> Any | None:
        found = self.engine.containers.list(
            all=True, filters={"label": [f"{key}={value}" for key, value in self.labels.items()]}
        )
        for container in found:
            if container.labels.get(LABEL) == sandbox_id and container.status in ("running", "paused"):
                return container
        return None

    def _info(self, container: Any) -> SandboxInfo:
        labels = container.labels
        started = datetime.fromtimestamp(int(labels[LABEL_STARTED]) / 1e9, tz=UTC)
        return SandboxInfo(
            sandbox_id=labels[LABEL],
            sandbox_domain=None,
            template_id=labels[LABEL_TEMPLATE],
            name=labels[LABEL_TEMPLATE],
            metadata=json.loads(labels[LABEL_METADATA]),
            started_at=started,
            end_at=started + timedelta(seconds=DEFAULT_SANDBOX_TIMEOUT_S),
            state=SandboxState.PAUSED if container.status == "paused" else SandboxState.RUNNING,
            cpu_count=2,
            memory_mb=512,
            envd_version="0.5.2",
        )

    def _new_container(
        self, template: str, metadata: dict[str, str], envs: dict[str, str], network: bool
    ) -> str:
        image = self.templates.get(template)
        if image is None:
            raise NotFoundException(f"404: template '{template}' not found")
        sandbox_id = secrets.token_hex(10)
        container = self.engine.containers.run(
            image,
            ["sleep", "infinity"],
            detach=True,
            init=True,
            environment=envs,
            network_mode=None if network else "none",
            labels={
                **self.labels,
                LABEL: sandbox_id,
                LABEL_METADATA: json.dumps(metadata),
                LABEL_TEMPLATE: template,
                LABEL_STARTED: str(time.time_ns()),
            },
        )
        code, output = container.exec_run(["sh", "-c", _ADD_USER], user="root")
        if code != 0:
            raise SandboxException(f"the fake could not add the template's user: {output!r}")
        return sandbox_id

    def _exec_create(
        self, sandbox_id: str, argv: list[str], user: str, env: dict[str, str], stdin: bool
    ) -> str:
        container = self._container(sandbox_id)
        if container is None or container.status != "running":
            raise _not_running(sandbox_id)
        try:
            created = self.engine.api.exec_create(
                container.id, argv, user=user, workdir=HOMES.get(user, "/"), environment=env, stdin=stdin
            )
        except NotFound:
            raise _not_running(sandbox_id) from None
        except APIError as error:
            if error.status_code == 409:  # paused
                raise _not_running(sandbox_id) from None
            raise SandboxException(str(error)) from error
        return created["Id"]

    def _exec_finish(self, sandbox_id: str, exec_id: str, data: bytes | None) -> tuple[int, bytes, bytes]:
        api = self.engine.api
        try:
            if data is None:
                stdout, stderr = api.exec_start(exec_id, demux=True)
            else:
                stdout, stderr = DockerProvider._exec_with_input(api, exec_id, data)
            code = api.exec_inspect(exec_id)["ExitCode"]
        except NotFound:
            raise _not_running(sandbox_id) from None
        if self._container(sandbox_id) is None:
            raise _not_running(sandbox_id)
        return code, stdout or b"", stderr or b""

    def _next_pid(self) -> int:
        return next(self._pids)


def _not_running(sandbox_id: str) -> SandboxNotRunningException:
    return SandboxNotRunningException(
        f"The sandbox {sandbox_id} was not found: The sandbox was killed or reached its timeout."
    )


async def _in_thread(function: Callable[..., Any], *args: Any) -> Any:
    return await asyncio.to_thread(function, *args)


# -- AsyncSandbox and its parts ------------------------------------------------------------------------


class FakeAsyncSandbox:
    """`e2b.AsyncSandbox`: its class methods (the static forms the provider calls) and a handle."""

    cloud: ClassVar[FakeE2B]

    def __init__(self, sandbox_id: str) -> None:
        self.sandbox_id = sandbox_id
        self.commands = FakeCommands(self.cloud, sandbox_id)
        self.files = FakeFilesystem(self.cloud, sandbox_id)

    @classmethod
    async def create(
        cls,
        template: str | None = None,
        timeout: int | None = None,
        metadata: dict[str, str] | None = None,
        envs: dict[str, str] | None = None,
        secure: bool | None = None,
        allow_internet_access: bool | None = None,
        mcp: Any = None,
        network: Any = None,
        iam: Any = None,
        lifecycle: Any = None,
        volume_mounts: Any = None,
        logger: Any = None,
        idempotency_key: str | None = None,
        **opts: Any,
    ) -> FakeAsyncSandbox:
        given = {
            "template": template,
            "timeout": timeout,
            "metadata": metadata,
            "envs": envs,
            "secure": secure,
        }
        given |= {"allow_internet_access": allow_internet_access, "mcp": mcp, "network": network, "iam": iam}
        given |= {"lifecycle": lifecycle, "volume_mounts": volume_mounts, "logger": logger}
        cls.cloud.record("AsyncSandbox.create", (), given | {"idempotency_key": idempotency_key}, opts)
        if mcp is not None or network is not None or iam is not None or volume_mounts:
            raise NotImplementedError("the fake has no MCP, network rules, IAM or volumes")
        sandbox_id = await _in_thread(
            cls.cloud._new_container,
            template or DEFAULT_TEMPLATE,
            dict(metadata or {}),
            dict(envs or {}),
            allow_internet_access is not False,
        )
        return cls(sandbox_id)

    @classmethod
    def list(
        cls,
        query: SandboxQuery | None = None,
        limit: int | None = None,
        next_token: str | None = None,
        order: str | None = None,
        **opts: Any,
    ) -> FakePaginator:
        given = {"query": query, "limit": limit, "next_token": next_token, "order": order}
        cls.cloud.record("AsyncSandbox.list", (), given, opts)
        return FakePaginator(cls.cloud, query)

    @classmethod
    async def connect(
        cls,
        sandbox_id: str,
        timeout: int | None = None,
        logger: Any = None,
        *,
        on_resume: str = "restore",
        **opts: Any,
    ) -> FakeAsyncSandbox:
        given = {"timeout": timeout, "logger": logger, "on_resume": on_resume}
        cls.cloud.record("AsyncSandbox.connect", (sandbox_id,), given, opts)
        container = await _in_thread(cls.cloud._container, sandbox_id)
        if container is None:
            raise SandboxNotFoundException(f"Paused sandbox {sandbox_id} not found")
        if container.status == "paused":
            if sandbox_id in cls.cloud.guest_unresponsive and on_resume != "reboot":
                raise GuestUnresponsiveException(
                    "the sandbox was paused while its guest agent did not respond."
                    ' Resume the sandbox with on_resume="reboot".'
                )
            await _in_thread(container.unpause)
            if on_resume == "reboot":
                cls.cloud.guest_unresponsive.discard(sandbox_id)
                await _in_thread(lambda: container.restart(timeout=0))
        return cls(sandbox_id)

    @classmethod
    async def kill(cls, sandbox_id: str, **opts: Any) -> bool:
        cls.cloud.record("AsyncSandbox.kill", (sandbox_id,), {}, opts)
        container = await _in_thread(cls.cloud._container, sandbox_id)
        if container is None:
            return False
        await _in_thread(lambda: container.remove(force=True))
        return True

    @classmethod
    async def pause(
        cls,
        sandbox_id: str,
        keep_memory: bool | None = None,
        *,
        mode: str | None = None,
        strict: bool = False,
        **opts: Any,
    ) -> bool:
        given = {"keep_memory": keep_memory, "mode": mode, "strict": strict}
        cls.cloud.record("AsyncSandbox.pause", (sandbox_id,), given, opts)
        if keep_memory is False or mode == "filesystem":
            raise NotImplementedError("the fake pauses with memory only")
        container = await _in_thread(cls.cloud._container, sandbox_id)
        if container is None:
            raise SandboxNotFoundException(f"Sandbox {sandbox_id} not found")
        if container.status == "paused":
            return False
        await _in_thread(container.pause)
        return True

    @classmethod
    async def get_info(cls, sandbox_id: str, **opts: Any) -> SandboxInfo:
        cls.cloud.record("AsyncSandbox.get_info", (sandbox_id,), {}, opts)
        container = await _in_thread(cls.cloud._container, sandbox_id)
        if container is None:
            raise SandboxNotFoundException(f"Sandbox {sandbox_id} not found")
        return cls.cloud._info(container)


class FakePaginator:
    """`e2b.AsyncSandboxPaginator`: one page here."""

    def __init__(self, cloud: FakeE2B, query: SandboxQuery | None) -> None:
        self._cloud = cloud
        self._query = query or SandboxQuery()
        self.has_next = True

    async def next_items(self, **opts: Any) -> list[SandboxInfo]:
        self._cloud.record("AsyncSandboxPaginator.next_items", (), {}, opts)
        if not self.has_next:
            raise Exception("No more items to fetch")
        self.has_next = False
        states = set(self._query.state or (SandboxState.RUNNING, SandboxState.PAUSED))
        containers = await _in_thread(lambda: self._cloud.containers(**(self._query.metadata or {})))
        infos = [self._cloud._info(c) for c in containers if c.status in ("running", "paused")]
        return [info for info in infos if info.state in states]


class FakeCommands:
    """`AsyncSandbox.commands` (e2b/sandbox_async/commands/command.py::Commands)."""

    def __init__(self, cloud: FakeE2B, sandbox_id: str) -> None:
        self._cloud = cloud
        self._sandbox_id = sandbox_id

    async def run(
        self,
        cmd: str,
        background: bool | None = None,
        envs: dict[str, str] | None = None,
        user: str | None = None,
        cwd: str | None = None,
        on_stdout: Any = None,
        on_stderr: Any = None,
        stdin: bool | None = None,
        timeout: float | None = DEFAULT_COMMAND_TIMEOUT_S,
        request_timeout: float | None = None,
        *,
        retain_output: bool = True,
    ) -> Any:
        given = {"background": background, "envs": envs, "user": user, "cwd": cwd, "stdin": stdin}
        given |= {"timeout": timeout, "request_timeout": request_timeout}
        self._cloud.record("Commands.run", (cmd,), given, {})
        if on_stdout or on_stderr or stdin or cwd or not retain_output:
            raise NotImplementedError("the fake runs commands without callbacks, stdin or cwd")
        user = user or "user"
        argv = ["/bin/bash", "-l", "-c", cmd]
        exec_id = await _in_thread(
            self._cloud._exec_create, self._sandbox_id, argv, user, dict(envs or {}), False
        )
        task = asyncio.ensure_future(_in_thread(self._cloud._exec_finish, self._sandbox_id, exec_id, None))
        handle = FakeCommandHandle(self._cloud, self._cloud._next_pid(), task, timeout)
        return handle if background else await handle.wait()


class FakeCommandHandle:
    """`e2b.AsyncCommandHandle` of a background command."""

    def __init__(self, cloud: FakeE2B, pid: int, task: asyncio.Future[Any], timeout: float | None) -> None:
        self._cloud = cloud
        self.pid = pid
        self._task = task
        self._deadline = time.monotonic() + timeout if timeout else None

    async def wait(self) -> CommandResult[str]:
        self._cloud.record("AsyncCommandHandle.wait", (), {}, {})
        left = None if self._deadline is None else max(0.0, self._deadline - time.monotonic())
        try:
            code, stdout, stderr = await asyncio.wait_for(asyncio.shield(self._task), left)
        except TimeoutError:
            raise TimeoutException("context deadline exceeded: the command timed out") from None
        out = stdout.decode("utf-8", errors="replace")
        err = stderr.decode("utf-8", errors="replace")
        if code != 0:
            raise CommandExitException(stderr=err, stdout=out, exit_code=code, error=None)
        return CommandResult(stderr=err, stdout=out, exit_code=0, error=None)


class FakeFilesystem:
    """`AsyncSandbox.files` (e2b/sandbox_async/filesystem/filesystem.py::Filesystem): writes."""

    def __init__(self, cloud: FakeE2B, sandbox_id: str) -> None:
        self._cloud = cloud
        self._sandbox_id = sandbox_id

    async def write(
        self,
        path: str,
        data: str | bytes,
        user: str | None = None,
        request_timeout: float | None = None,
        gzip: bool = False,
        use_octet_stream: bool | None = None,
        metadata: dict[str, str] | None = None,
    ) -> WriteInfo:
        given = {"user": user, "request_timeout": request_timeout, "metadata": metadata}
        self._cloud.record("Filesystem.write", (path, data), given, {})
        user = user or "user"
        content = data.encode() if isinstance(data, str) else bytes(data)
        argv = ["sh", "-c", _WRITE, "sh", path]
        exec_id = await _in_thread(self._cloud._exec_create, self._sandbox_id, argv, user, {}, True)
        code, _, stderr = await _in_thread(self._cloud._exec_finish, self._sandbox_id, exec_id, content)
        if code != 0:
            raise SandboxException(f"failed to write {path}: {stderr.decode(errors='replace')}")
        return WriteInfo(name=path.rsplit("/", 1)[-1], type="file", path=path)


# -- checks against the real SDK (given as `real`, the `e2b` module, where it is installed) -----------

_EXCEPTIONS = (
    SandboxException,
    TimeoutException,
    NotFoundException,
    SandboxNotFoundException,
    SandboxNotRunningException,
    SandboxUnreachableException,
    GuestUnresponsiveException,
    AuthenticationException,
    ServiceBusyException,
    CommandExitException,
)
_DATA_CLASSES = (CommandResult, SandboxQuery, SandboxInfo, WriteInfo)


def _real_callable(real: Any, name: str) -> tuple[Any, bool]:
    """The real SDK's function behind a recorded call, and whether it takes `self` first."""
    owner_name, method = name.split(".")
    if owner_name == "AsyncSandbox":
        # the static forms: `AsyncSandbox.kill(id)` dispatches to `_cls_kill` (class_method_variant)
        variant = inspect.getattr_static(real.AsyncSandbox, method)
        return getattr(real.AsyncSandbox, getattr(variant, "class_method_name", method)), False
    owners = {
        "AsyncSandboxPaginator": real.AsyncSandboxPaginator,
        "AsyncCommandHandle": real.AsyncCommandHandle,
        "Commands": typing.get_type_hints(real.AsyncSandbox.commands.fget)["return"],
        "Filesystem": typing.get_type_hints(real.AsyncSandbox.files.fget)["return"],
    }
    return getattr(owners[owner_name], method), True


def unbound_calls(real: Any, calls: list[Call]) -> list[str]:
    """Each recorded call that would not bind to the real SDK's signature, with why."""
    api_params = real.ApiParams.__required_keys__ | real.ApiParams.__optional_keys__
    problems = []
    for call in calls:
        function, takes_self = _real_callable(real, call.name)
        signature = inspect.signature(function)
        try:
            bound = signature.bind(*((object(),) if takes_self else ()), *call.args, **call.kwargs)
        except TypeError as error:
            problems.append(f"{call.name}{call.args}{call.kwargs}: {error}")
            continue
        for parameter in signature.parameters.values():
            if parameter.kind is inspect.Parameter.VAR_KEYWORD:
                extra = set(bound.arguments.get(parameter.name, {})) - api_params
                if extra:
                    problems.append(f"{call.name}: {sorted(extra)} are no ApiParams")
    return problems


def unlike_the_sdk(real: Any) -> list[str]:
    """Where the fake's exceptions and data classes differ from the real SDK's."""
    problems = []
    for fake in _EXCEPTIONS:
        twin = getattr(real, fake.__name__, None)
        if twin is None:
            problems.append(f"e2b has no {fake.__name__}")
            continue
        for base in fake.__mro__[1:]:
            if base in _EXCEPTIONS and not issubclass(twin, getattr(real, base.__name__)):
                problems.append(f"e2b's {fake.__name__} is no {base.__name__}")
    for fake in _DATA_CLASSES:
        twin = getattr(real, fake.__name__)
        missing = {f.name for f in dataclasses.fields(fake)} - {f.name for f in dataclasses.fields(twin)}
        if missing:
            problems.append(f"e2b's {fake.__name__} has no fields {sorted(missing)}")
    if {state.value for state in SandboxState} != {state.value for state in real.SandboxState}:
        problems.append("e2b's SandboxState has other states")
    return problems
