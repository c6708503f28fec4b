"""The modal sandbox provider: one Modal Sandbox per sandbox, through Modal's async SDK (`.aio`).

A sandbox is a Modal Sandbox of the App `app_name` (looked up by name, created when missing),
named after the sandbox id (ids longer than Modal's 64 characters get a hashed name) and tagged
`farline.sandbox=<id>`, so any worker process finds it again with `Sandbox.from_name`. It has:

- the configured registry image (or, for `create(..., from_image_id=...)`, an Image of
  `snapshot_image`), the run's cpu, memory (MiB), region and lifetime over the provider's own;
- `block_network=True` unless SandboxConfig.network;
- an environment of HOME=<workspace>, LANG=C.UTF-8, TERM=dumb and SandboxConfig.env: nothing of
  the worker's (the SDK's own credentials, MODAL_TOKEN_ID/SECRET, stay in the worker);
- an explicit lifetime (`timeout`; the SDK's default of 300 s is far too short for a run) and an
  optional idle timeout.

Every operation is one `exec` of the POSIX shell script of shell_scripts.py (shell_sandbox.py
has the protocol on top of that): an argv, `text=False` so stdout is bytes as the program wrote
them, stdin written in chunks of at most 16 MiB (the SDK's buffer limit per drain) then EOF,
and an explicit exec timeout (the SDK returns exit code -1 when it passes: a SandboxError here).

Modal's exec has no user parameter: every command runs as the container's user (root in
Modal's containers), the setup as well as the agent's processes, so the workspace needs no
chown. Modal's argv limit is 64 KiB per exec, the script included: a longer command line is
refused with a message (put long scripts in a file).

A sandbox that Modal no longer runs (terminated, timed out, never there) is SandboxGone:
`from_name` finds only running sandboxes, `poll()` gives a finished one's exit code, and an
exec on it raises ConflictError or NotFoundError. Such an error is taken for "gone" only once
`poll()` agrees (NotFoundError may also come from a command router that lost the task for a
moment): otherwise it is a SandboxError, tried again by the activity. Sandbox handles are kept
per worker (each opens its own connection to the sandbox), dropped once the sandbox is gone.

Native primitive: `snapshot_image(ref)` snapshots the sandbox's whole file system into a Modal
Image (`snapshot_filesystem`) and returns its id; `create(sandbox_id, config,
from_image_id=...)` starts a sandbox from it, with the files (and installed packages) as they
were, minus the process records of the old machine.

User-owned sandboxes: a ref with owner "user" names a running Modal Sandbox by its object id
(`sb-...`) or by its name in the app; `destroy` refuses to terminate it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, NoReturn

import structlog

from harness.sandbox_options import ModalOptions, parse_options
from sandbox_providers.base import (
    WORKSPACE_PATH,
    SandboxConfig,
    SandboxError,
    SandboxGone,
    SandboxRef,
    SandboxUnavailable,
)
from sandbox_providers.shell_sandbox import (
    ANSWERS,
    STATE_DIR,
    Machine,
    ShellResult,
    ShellSandboxProvider,
    check_env,
    check_id,
)

if TYPE_CHECKING:
    from harness.config import FarlineConfig

log = structlog.get_logger(__name__)

TAG_SANDBOX = "farline.sandbox"
TAG_OWNER = "farline.owner"
DEFAULT_IMAGE = "python:3.12-slim"
DEFAULT_APP = "farline"
# the SDK's buffer limit for one drain of an exec's stdin
STDIN_CHUNK = 16 * 1024 * 1024
# Modal refuses an exec whose arguments add up to more
ARG_MAX_BYTES = 1 << 16
MODAL_NAME_MAX = 64
CREATE_ATTEMPTS = 5
_MODAL_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_APP_ID = re.compile(r"^ap-[a-zA-Z0-9]{22}$")
# the users commands may ask for: Modal runs every command as the container's own (root)
_CONTAINER_USERS = (None, "", "0", "root")
# a state dir copied from another machine (a snapshot) holds that machine's process records
_CLAIM_STATE_DIR = (
    'm="$1/machine"; [ "$(cat "$m" 2>/dev/null)" = "$2" ] && exit 0; '
    'rm -rf "$1" && mkdir -p "$1" && printf %s "$2" > "$m"'
)
INSTALL_HINT = "pip install 'farline[modal]'"


def modal_name(sandbox_id: str) -> str:
    """The Modal Sandbox name of a sandbox id: the id itself when Modal takes it, else a prefix
    of it and a hash (Modal names: at most 64 of A-Z a-z 0-9 _ . -, never an App id)."""
    if len(sandbox_id) <= MODAL_NAME_MAX and _MODAL_NAME.match(sandbox_id) and not _APP_ID.match(sandbox_id):
        return sandbox_id
    digest = hashlib.sha256(sandbox_id.encode()).hexdigest()[:16]
    return f"{sandbox_id[: MODAL_NAME_MAX - len(digest) - 1]}-{digest}"


def load_modal_sdk() -> ModuleType:
    """The real Modal SDK (the optional `modal` extra)."""
    try:
        import modal
    except ImportError as error:
        raise SandboxUnavailable(f"the modal provider needs the Modal SDK: {INSTALL_HINT}") from error
    return modal


@dataclass(frozen=True)
class ModalMachine(Machine):
    """A running Modal Sandbox, with the SDK's handle on it."""

    modal_name: str = ""
    sandbox: Any = field(default=None, compare=False, repr=False)


class ModalProvider(ShellSandboxProvider):
    """Sandboxes as Modal Sandboxes (see the module docstring)."""

    name = "modal"

    def __init__(
        self,
        image: str = DEFAULT_IMAGE,
        *,
        app_name: str = DEFAULT_APP,
        environment_name: str | None = None,
        cpu: float | None = None,
        memory_mib: int | None = None,
        region: str | None = None,
        timeout_s: int = 86_400,
        idle_timeout_s: int | None = None,
        exec_timeout_s: int = 600,
        snapshot_timeout_s: int = 300,
        snapshot_ttl_s: int | None = 30 * 24 * 3600,
        add_python: str | None = None,
        tags: dict[str, str] | None = None,
        workspace_path: str = WORKSPACE_PATH,
        start_wait_s: float = 0.1,
        sdk: Any = None,
    ) -> None:
        super().__init__(workspace_path=workspace_path, start_wait_s=start_wait_s)
        self.image = image
        self.app_name = app_name
        self.environment_name = environment_name
        self.cpu = cpu
        self.memory_mib = memory_mib
        self.region = region
        # the sandbox's longest life, and how long it may sit idle (None: as long as it lives)
        self.timeout_s = timeout_s
        self.idle_timeout_s = idle_timeout_s
        # the longest one operation (one exec) may take
        self.exec_timeout_s = exec_timeout_s
        self.snapshot_timeout_s = snapshot_timeout_s
        # how long Modal keeps a snapshot's Image (None: for ever)
        self.snapshot_ttl_s = snapshot_ttl_s
        # a Python for registry images without one (Modal's `Image.from_registry(add_python=...)`)
        self.add_python = add_python
        self.tags = dict(tags or {})
        # the SDK: the real `modal` module (imported on first use) or a stand-in with its surface
        self._sdk = sdk
        self._app: Any = None
        self._app_lock = asyncio.Lock()
        # SDK handles of running sandboxes, by Modal name: each holds a connection to its sandbox
        self._handles: dict[str, Any] = {}

    @classmethod
    def from_config(cls, config: FarlineConfig) -> ModalProvider:
        return cls(
            config.modal_image,
            app_name=config.modal_app,
            environment_name=config.modal_environment,
            cpu=config.modal_cpu,
            memory_mib=config.modal_memory_mib,
            region=config.modal_region,
            timeout_s=config.modal_timeout_s,
            idle_timeout_s=config.modal_idle_timeout_s,
            exec_timeout_s=config.modal_exec_timeout_s,
        )

    # -- the SDK ------------------------------------------------------------------------------------

    @property
    def sdk(self) -> Any:
        if self._sdk is None:
            self._sdk = load_modal_sdk()
        return self._sdk

    def _gone_errors(self) -> tuple[type[BaseException], ...]:
        errors = self.sdk.exception
        return (
            errors.NotFoundError,
            errors.ConflictError,
            errors.SandboxTerminatedError,
            errors.SandboxTimeoutError,
        )

    @contextlib.asynccontextmanager
    async def _calls(
        self, what: str, passthrough: tuple[type[BaseException], ...] | None = None
    ) -> AsyncIterator[None]:
        """SDK calls, their errors as the protocol's: credentials, bad requests, transient failures.
        The `passthrough` errors (default: the "gone" ones) are re-raised as they are, for the
        caller to say what they mean."""
        errors = self.sdk.exception
        kept = (SandboxError, *(self._gone_errors() if passthrough is None else passthrough))
        try:
            yield
        except kept:
            raise
        except errors.AuthError as error:
            raise SandboxUnavailable(
                f"Modal refused the worker's credentials ({what}): set MODAL_TOKEN_ID and "
                f"MODAL_TOKEN_SECRET (or a ~/.modal.toml profile) on the worker: {error}"
            ) from error
        except errors.InvalidError as error:
            raise SandboxError(f"Modal refused {what}: {error}") from error
        except (errors.Error, OSError, TimeoutError) as error:
            raise SandboxError(f"Modal failed ({what}): {type(error).__name__}: {error}") from error

    async def _lookup_app(self) -> Any:
        async with self._app_lock:
            if self._app is None:
                async with self._calls(f"looking up the app {self.app_name!r}"):
                    self._app = await self.sdk.App.lookup.aio(
                        self.app_name, environment_name=self.environment_name, create_if_missing=True
                    )
            return self._app

    async def _from_name(self, name: str) -> Any | None:
        """The running Sandbox of that name in the app, or None."""
        try:
            async with self._calls(f"looking up the sandbox {name!r}"):
                return await self.sdk.Sandbox.from_name.aio(
                    self.app_name, name, environment_name=self.environment_name
                )
        except self._gone_errors():
            return None

    async def _drop(self, name: str) -> None:
        handle = self._handles.pop(name, None)
        if handle is not None:
            with contextlib.suppress(Exception):  # it only closes this worker's connections
                await handle.detach.aio()

    # -- sandboxes -----------------------------------------------------------------------------------

    async def create(
        self, sandbox_id: str, config: SandboxConfig, *, from_image_id: str | None = None
    ) -> SandboxRef:
        """Create the sandbox, or return the running one with that id. `from_image_id`: an
        Image id from `snapshot_image`, the file system to start from (the configured image
        otherwise)."""
        check_id("sandbox", sandbox_id)
        check_env(config.env)
        options = parse_options(ModalOptions, self.name, config.options)
        name = modal_name(sandbox_id)
        handle, created = await self._find_or_create(sandbox_id, name, config, options, from_image_id)
        machine = self._as_machine(handle, name, harness_owned=True)
        if from_image_id is not None:
            await self._claim_state_dir(machine)
        await self._setup(machine)
        log.info(
            "sandbox.created" if created else "sandbox.found",
            sandbox_id=sandbox_id,
            modal_sandbox=machine.id,
            app=self.app_name,
            network=config.network,
            env=sorted(config.env),
            from_image_id=from_image_id,
        )
        return SandboxRef(provider=self.name, sandbox_id=sandbox_id)

    async def _find_or_create(
        self,
        sandbox_id: str,
        name: str,
        config: SandboxConfig,
        options: ModalOptions,
        from_image_id: str | None,
    ) -> tuple[Any, bool]:
        app = await self._lookup_app()
        for _attempt in range(CREATE_ATTEMPTS):
            found = await self._from_name(name)
            if found is not None:
                return self._keep(name, found), False
            errors = self.sdk.exception
            try:
                async with self._calls(
                    f"creating the sandbox {name!r}", (errors.AlreadyExistsError, errors.NotFoundError)
                ):
                    handle = await self.sdk.Sandbox.create.aio(
                        app=app,
                        name=name,
                        **self._create_arguments(sandbox_id, config, options, from_image_id),
                    )
            except errors.AlreadyExistsError:
                continue  # created meanwhile by another attempt: found on the next round
            except errors.NotFoundError as error:
                raise SandboxUnavailable(
                    f"cannot create the sandbox {sandbox_id!r}: {error} (an expired snapshot image?)"
                ) from error
            return self._keep(name, handle), True
        raise SandboxError(f"could not create the Modal sandbox {name!r}: it keeps changing under us")

    def _create_arguments(
        self, sandbox_id: str, config: SandboxConfig, options: ModalOptions, from_image_id: str | None
    ) -> dict[str, Any]:
        cpu = options.cpu if options.cpu is not None else self.cpu
        memory = options.memory_mib if options.memory_mib is not None else self.memory_mib
        region = options.region or self.region
        arguments: dict[str, Any] = {
            "image": self._image(options.image, from_image_id),
            "tags": {**self.tags, TAG_SANDBOX: sandbox_id, TAG_OWNER: "harness"},
            "env": {"HOME": self.workspace_path, "LANG": "C.UTF-8", "TERM": "dumb", **config.env},
            "timeout": options.timeout_s or self.timeout_s,
            "idle_timeout": self.idle_timeout_s,
            "block_network": not config.network,
        }
        if cpu is not None:
            arguments["cpu"] = cpu
        if memory is not None:
            arguments["memory"] = memory
        if region is not None:
            arguments["region"] = region
        return arguments

    def _image(self, image: str | None, from_image_id: str | None) -> Any:
        if from_image_id is not None:
            return self.sdk.Image.from_id(from_image_id)  # lazy: resolved by create
        if self.add_python is not None:
            return self.sdk.Image.from_registry(image or self.image, add_python=self.add_python)
        return self.sdk.Image.from_registry(image or self.image)

    def _keep(self, name: str, handle: Any) -> Any:
        """The handle to use for this sandbox: the one kept already when it is the same sandbox
        (others may be using it), else this one (a replaced sandbox's handle is left to the GC:
        detaching it could break an operation still running on it)."""
        kept = self._handles.get(name)
        if kept is not None and kept.object_id == handle.object_id:
            return kept
        self._handles[name] = handle
        return handle

    async def _claim_state_dir(self, machine: ModalMachine) -> None:
        """The state dir as this machine's own: one copied from a snapshot is emptied, once."""
        result = await self._run(
            machine, ["sh", "-c", _CLAIM_STATE_DIR, "farline", STATE_DIR, machine.id], None, "0"
        )
        if result.code != 0:
            await self._check_still_there(machine)
            raise SandboxUnavailable(
                f"cannot reset {STATE_DIR} in the sandbox {machine.name!r}: {result.message or result.code}"
            )

    async def destroy(self, ref: SandboxRef) -> None:
        self._check_ref(ref)
        if ref.owner == "user":
            raise SandboxError(f"sandbox {ref.sandbox_id!r} is user-owned: the harness never terminates it")
        name = modal_name(ref.sandbox_id)
        await self._drop(name)
        handle = await self._from_name(name)
        if handle is None:
            return
        try:
            async with self._calls(f"terminating the sandbox {name!r}"):
                await handle.terminate.aio(wait=True)
        except self._gone_errors():
            pass  # it ended meanwhile
        self._forget(handle.object_id)
        with contextlib.suppress(Exception):
            await handle.detach.aio()
        log.info("sandbox.destroyed", sandbox_id=ref.sandbox_id, modal_sandbox=handle.object_id)

    async def snapshot_image(self, ref: SandboxRef) -> str:
        """Snapshot the sandbox's whole file system (Modal's `snapshot_filesystem`) into an
        Image, kept for `snapshot_ttl_s`; returns its id, for `create(..., from_image_id=...)`.
        The sandbox keeps running."""
        machine = await self._machine(ref)
        try:
            async with self._calls(f"snapshotting the sandbox {machine.name!r}"):
                image = await machine.sandbox.snapshot_filesystem.aio(
                    timeout=self.snapshot_timeout_s, ttl=self.snapshot_ttl_s
                )
        except self._gone_errors() as error:
            await self._gone_unless_running(machine, error, "snapshotting it")
        image_id = str(image.object_id)
        log.info(
            "sandbox.image_snapshot", sandbox_id=ref.sandbox_id, modal_sandbox=machine.id, image_id=image_id
        )
        return image_id

    # -- machines ------------------------------------------------------------------------------------

    def _as_machine(self, handle: Any, name: str, harness_owned: bool) -> ModalMachine:
        return ModalMachine(
            id=str(handle.object_id),
            name=f"{self.app_name}/{name}",
            user="",  # commands run as the container's user (no chown in the setup)
            harness_owned=harness_owned,
            modal_name=name,
            sandbox=handle,
        )

    async def _machine(self, ref: SandboxRef) -> ModalMachine:
        """The running Sandbox of this ref; SandboxGone when Modal runs none."""
        self._check_ref(ref)
        if ref.owner == "user" and ref.sandbox_id.startswith("sb-"):
            return await self._user_sandbox_by_id(ref.sandbox_id)
        name = modal_name(ref.sandbox_id) if ref.owner == "harness" else ref.sandbox_id
        handle = self._handles.get(name)
        if handle is None:
            handle = await self._from_name(name)
            if handle is None:
                raise SandboxGone(
                    f"sandbox {ref.sandbox_id!r}: Modal runs no sandbox {name!r} in {self.app_name!r}"
                )
            handle = self._keep(name, handle)
        return self._as_machine(handle, name, harness_owned=ref.owner == "harness")

    async def _user_sandbox_by_id(self, sandbox_id: str) -> ModalMachine:
        handle = self._handles.get(sandbox_id)
        if handle is None:
            try:
                async with self._calls(f"looking up the sandbox {sandbox_id!r}"):
                    handle = await self.sdk.Sandbox.from_id.aio(sandbox_id)
            except self._gone_errors():
                raise SandboxGone(f"Modal has no sandbox {sandbox_id!r}") from None
            machine = self._as_machine(handle, sandbox_id, harness_owned=False)
            await self._check_still_there(machine)  # from_id finds finished sandboxes too
            handle = self._keep(sandbox_id, handle)
        return self._as_machine(handle, sandbox_id, harness_owned=False)

    async def health(self, ref: SandboxRef) -> bool:
        try:
            await self._check_still_there(await self._machine(ref))
        except SandboxError:
            return False
        return True

    async def _check_still_there(self, machine: Machine) -> None:
        assert isinstance(machine, ModalMachine)
        try:
            code = await machine.sandbox.poll.aio()
        except self._gone_errors() as error:
            await self._gone(machine, f"is gone ({type(error).__name__})")
        except (TimeoutError, self.sdk.exception.Error, OSError):
            return  # Modal is unreachable: the caller's own error says so
        if code is not None:
            await self._gone(machine, f"has finished (exit code {code}: terminated, or its timeout passed)")

    async def _gone_unless_running(self, machine: ModalMachine, error: BaseException, what: str) -> NoReturn:
        """SandboxGone for an error that says "gone" (NotFoundError, ConflictError, ...) once Modal
        confirms the sandbox no longer runs; SandboxError (transient) while it still does: a new
        sandbox costs the run its processes, so only a sandbox that really ended is gone."""
        await self._check_still_there(machine)
        raise SandboxError(
            f"Modal failed {what} ({type(error).__name__}: {error}); the sandbox {machine.name!r} still runs"
        ) from error

    async def _gone(self, machine: ModalMachine, what: str) -> NoReturn:
        await self._drop(machine.modal_name)
        self._forget(machine.id)
        raise SandboxGone(f"the Modal sandbox {machine.name!r} ({machine.id}) {what}")

    # -- running operations -------------------------------------------------------------------------

    async def _run(
        self, machine: Machine, command: list[str], stdin: bytes | None, user: str | None
    ) -> ShellResult:
        assert isinstance(machine, ModalMachine)
        if user not in _CONTAINER_USERS:
            raise SandboxUnavailable(
                f"the modal provider runs every command as the container's user; it cannot run as {user!r}"
            )
        size = sum(len(arg) for arg in command)  # as Modal counts them
        if size > ARG_MAX_BYTES:
            raise SandboxError(
                f"the command line is {size} characters with farline's script; Modal takes at most "
                f"{ARG_MAX_BYTES} per exec: put a long script in a file and run that"
            )
        try:
            async with self._calls(f"running a command in {machine.name!r}"):
                process = await machine.sandbox.exec.aio(*command, text=False, timeout=self.exec_timeout_s)
                _, stdout, stderr = await asyncio.gather(
                    self._send_stdin(process, stdin), process.stdout.read.aio(), process.stderr.read.aio()
                )
                returncode = await process.wait.aio()
        except self._gone_errors() as error:
            await self._gone_unless_running(machine, error, "running a command in it")
        result = ShellResult.of(bytes(stdout), bytes(stderr))
        if result.code is None:
            if returncode == -1:
                raise SandboxError(
                    f"an operation in the Modal sandbox {machine.name!r} did not finish within "
                    f"{self.exec_timeout_s}s (the exec timeout)"
                )
            if returncode in ANSWERS:  # its output was cut short; its exit code is the status
                return ShellResult(
                    code=returncode, stdout=result.stdout, stderr=result.stderr, complete=False
                )
        return result

    @staticmethod
    async def _send_stdin(process: Any, data: bytes | None) -> None:
        """The bytes in chunks the SDK's buffer takes, then EOF (also with no stdin: nothing waits)."""
        view = memoryview(data or b"")
        for start in range(0, len(view), STDIN_CHUNK):
            process.stdin.write(view[start : start + STDIN_CHUNK])
            await process.stdin.drain.aio()
        process.stdin.write_eof()
        await process.stdin.drain.aio()
