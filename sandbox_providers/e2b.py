"""The e2b sandbox provider: one E2B cloud sandbox per Farline sandbox, through E2B's async SDK.

The SDK (`pip install 'farline[e2b]'`) is imported on first use; it reads its credentials
(E2B_API_KEY, E2B_DOMAIN) from the worker's environment, and they never enter a sandbox.
Tests inject a fake of the SDK (`sdk=`), a namespace with the same classes.

- A sandbox is `AsyncSandbox.create(template, timeout, metadata, envs, ...)`: E2B sandboxes
  have no names, so the metadata `farline.sandbox=<sandbox id>` marks it and any worker finds
  it again with `AsyncSandbox.list(query=SandboxQuery(metadata=...))`. Two create attempts
  that raced each made one: the oldest wins and the other is killed.
- Its environment is SandboxConfig.env and the template's own: nothing of the worker's. Its
  network is off (`allow_internet_access=False`) unless SandboxConfig.network.
- The template (image, CPU and memory: E2B sets them when a template is built, never per
  sandbox) and the life in seconds come from the run's options over the constructor's. Its
  life is renewed by use: the first operation after a quarter of it went by reconnects with
  `connect(timeout=...)`, which pushes the end back.
- Commands are bash strings (`bash -l -c`) run as the template's user ("user"; "root" for the
  setup). The SDK hands output back as text decoded with errors="replace", so stdout is
  piped through `base64` in the sandbox (one round trip, binary-safe); stderr, the script's
  messages and its status line, comes back as text. Stdin is uploaded with `files.write` and
  redirected (it works on every envd version, unlike `close_stdin`).
- The SDK's command timeout (60 s by default) and request timeouts are always set explicitly.
- A sandbox killed or expired is SandboxGone (SandboxNotFoundException from the API,
  SandboxNotRunningException from a command). A paused one is resumed by `connect`; one
  whose guest agent hung at the pause is rebooted from its disk (`on_resume="reboot"`).

Native primitive: `suspend(ref)` pauses the sandbox (E2B's `pause`: its memory and files are
kept, nothing runs, nothing is billed for compute); the next operation resumes it, from any
worker. `pause_on_timeout` makes E2B pause instead of kill a sandbox whose life ran out.

User-owned refs name an E2B sandbox by its E2B id; the harness never kills, pauses or
renews it.
"""

from __future__ import annotations

import base64
import binascii
import importlib
import shlex
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import structlog

from harness.config import FarlineConfig
from harness.sandbox_options import E2BOptions, parse_options
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
    LABEL_CONFIG,
    LABEL_OWNER,
    LABEL_SANDBOX,
    Machine,
    ShellResult,
    ShellSandboxProvider,
    check_env,
    check_id,
    config_label,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")

LABEL_TIMEOUT = "farline.timeout_s"
INSTALL_HINT = "pip install 'farline[e2b]'"
ROOT = "root"
# what precedes the base64 of a command's stdout (a login shell's profile may print before it)
STDOUT_MARK = "farline-stdout-base64"
STDIN_DIR = "/tmp"
# a sandbox's life is renewed by the first operation after this share of it went by
RENEW_AFTER = 0.25


def load_sdk() -> Any:
    """The real `e2b` module; SandboxUnavailable when it is not installed."""
    try:
        return importlib.import_module("e2b")
    except ImportError as error:
        raise SandboxUnavailable(
            f"the e2b provider needs E2B's SDK, which is not installed: {INSTALL_HINT}"
        ) from error


def shell_command(argv: list[str], stdin_path: str | None) -> str:
    """The bash command line that runs `argv` with stdin from `stdin_path` (removed once open)
    and its stdout in base64 after STDOUT_MARK; stderr is the argv's own."""
    source = shlex.quote(stdin_path) if stdin_path else "/dev/null"
    remove = f"rm -f -- {source}; " if stdin_path else ""
    return (
        "set -o pipefail; "
        "command -v base64 > /dev/null 2>&1 || "
        "{ echo 'farline: the E2B template has no base64 program (coreutils or busybox)' >&2; exit 127; }; "
        f"printf '%s\\n' {STDOUT_MARK}; "
        f"{{ {remove}{shlex.join(argv)}; }} < {source} | base64"
    )


def decoded_stdout(text: str) -> bytes:
    """The bytes of a command's stdout, from the text `shell_command` made of it."""
    _, mark, encoded = text.partition(STDOUT_MARK + "\n")
    if not mark:
        return b""
    try:
        return base64.b64decode(encoded)  # the line breaks base64 puts in are skipped
    except (binascii.Error, ValueError) as error:
        raise SandboxError(f"the sandbox's output came back garbled ({error}): {text[-200:]!r}") from error


@dataclass
class _Link:
    """What this worker holds of one E2B sandbox."""

    machine: Machine  # machine.id is the E2B sandbox id
    # its life in seconds, renewed by use; None: a user's sandbox, left as it is
    timeout_s: int | None
    # the SDK's handle; None: connect (resuming a paused sandbox) before the next command
    sandbox: Any | None = None
    renewed_at: float = 0.0


class E2BProvider(ShellSandboxProvider):
    """Sandboxes in E2B's cloud (see the module docstring)."""

    name = "e2b"

    def __init__(
        self,
        *,
        template: str = "base",
        timeout_s: int = 3600,
        user: str = "user",
        pause_on_timeout: bool = False,
        metadata: dict[str, str] | None = None,
        sdk: Any | None = None,
        command_timeout_s: float = 600.0,
        request_timeout_s: float = 60.0,
        workspace_path: str = WORKSPACE_PATH,
        start_wait_s: float = 0.1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(workspace_path=workspace_path, start_wait_s=start_wait_s)
        if not user:
            raise ValueError("the e2b provider needs the template's user (E2B's default: 'user')")
        self.template = template
        self.timeout_s = timeout_s
        self.user = user
        self.pause_on_timeout = pause_on_timeout
        # more metadata on every sandbox, and in every lookup (one deployment's sandboxes only)
        self.metadata = dict(metadata or {})
        self.command_timeout_s = command_timeout_s
        self.request_timeout_s = request_timeout_s
        self._sdk = sdk
        self._clock = clock
        self._links: dict[str, _Link] = {}  # by E2B sandbox id
        self._e2b_ids: dict[tuple[str, str], str] = {}  # (owner, Farline sandbox id) -> E2B id

    @classmethod
    def from_config(cls, config: FarlineConfig) -> E2BProvider:
        return cls(
            template=config.e2b_template,
            timeout_s=config.e2b_timeout_s,
            user=config.e2b_user,
            pause_on_timeout=config.e2b_pause_on_timeout,
        )

    def _e2b(self) -> Any:
        if self._sdk is None:
            self._sdk = load_sdk()
        return self._sdk

    # -- calls into the SDK --------------------------------------------------------------------------

    def _gone_errors(self) -> tuple[type[BaseException], ...]:
        sdk = self._e2b()
        return (sdk.SandboxNotFoundException, sdk.SandboxNotRunningException)

    async def _api(self, what: str, call: Awaitable[T], gone: str | None = None) -> T:
        """An SDK call, its errors as the protocol's: SandboxGone (with the message `gone`) for a
        sandbox that no longer exists, SandboxUnavailable for refused credentials, SandboxError
        for the rest (E2B busy or unreachable: worth retrying)."""
        sdk = self._e2b()
        try:
            return await call
        except self._gone_errors() as error:
            if gone is None:
                raise SandboxError(f"E2B could not {what}: {error}") from error
            raise SandboxGone(f"{gone} ({error})") from error
        except sdk.AuthenticationException as error:
            raise SandboxUnavailable(
                f"E2B refused the credentials: set E2B_API_KEY in the worker's environment ({error})"
            ) from error
        except (sdk.SandboxException, sdk.ServiceBusyException, httpx.HTTPError, OSError) as error:
            raise SandboxError(f"E2B could not {what}: {error}") from error

    async def _listed(self, sandbox_id: str) -> list[Any]:
        """The E2B sandboxes (SandboxInfo) marked as this Farline sandbox, the oldest first."""
        sdk = self._e2b()
        query = sdk.SandboxQuery(metadata={**self.metadata, LABEL_SANDBOX: sandbox_id})
        pages = sdk.AsyncSandbox.list(query=query, request_timeout=self.request_timeout_s)
        found: list[Any] = []
        while pages.has_next:
            found += await self._api(
                "list sandboxes", pages.next_items(request_timeout=self.request_timeout_s)
            )
        return sorted(found, key=lambda info: (info.started_at, info.sandbox_id))

    async def _resume(self, e2b_id: str, timeout_s: int | None) -> Any:
        """A handle on a running sandbox: `connect` resumes a paused one and renews its life."""
        sdk = self._e2b()
        gone = f"the E2B sandbox {e2b_id} no longer exists"
        try:
            return await self._api(
                f"connect to sandbox {e2b_id}",
                sdk.AsyncSandbox.connect(e2b_id, timeout=timeout_s, request_timeout=self.request_timeout_s),
                gone=gone,
            )
        except SandboxError as error:
            if not isinstance(error.__cause__, sdk.GuestUnresponsiveException):
                raise
        # paused while its guest agent hung: its memory would bring the hang back
        log.warning("sandbox.rebooted", e2b_id=e2b_id, reason="guest agent unresponsive at the pause")
        return await self._api(
            f"reboot sandbox {e2b_id}",
            sdk.AsyncSandbox.connect(
                e2b_id, timeout=timeout_s, on_resume="reboot", request_timeout=self.request_timeout_s
            ),
            gone=gone,
        )

    # -- sandboxes -----------------------------------------------------------------------------------

    async def create(self, sandbox_id: str, config: SandboxConfig) -> SandboxRef:
        check_id("sandbox", sandbox_id)
        check_env(config.env)
        options = parse_options(E2BOptions, self.name, config.options)
        timeout_s = options.timeout_s or self.timeout_s
        key = ("harness", sandbox_id)
        listed = await self._listed(sandbox_id)
        if listed:
            if listed[0].metadata.get(LABEL_CONFIG) != config_label(config):
                log.warning("sandbox.config_kept", sandbox_id=sandbox_id, reason="exists with another config")
            link = await self._connect(key, listed[0].sandbox_id, timeout_s, harness_owned=True)
        else:
            template = options.template or self.template
            e2b_id, sandbox = await self._new_sandbox(sandbox_id, config, template, timeout_s)
            if sandbox is None:
                link = await self._connect(key, e2b_id, timeout_s, harness_owned=True)
            else:
                link = self._linked(key, e2b_id, sandbox, timeout_s, harness_owned=True)
        await self._setup(link.machine)
        log.info(
            "sandbox.created",
            sandbox_id=sandbox_id,
            e2b_id=link.machine.id,
            network=config.network,
            env=sorted(config.env),
        )
        return SandboxRef(provider=self.name, sandbox_id=sandbox_id)

    async def _new_sandbox(
        self, sandbox_id: str, config: SandboxConfig, template: str, timeout_s: int
    ) -> tuple[str, Any | None]:
        """A new E2B sandbox: its id, and its handle (None when another attempt's was kept)."""
        sdk = self._e2b()
        lifecycle: dict[str, Any] = (
            {"on_timeout": "pause", "auto_resume": False} if self.pause_on_timeout else {"on_timeout": "kill"}
        )
        created = await self._api(
            f"create a sandbox from template {template!r}",
            sdk.AsyncSandbox.create(
                template=template,
                timeout=timeout_s,
                metadata={
                    **self.metadata,
                    LABEL_SANDBOX: sandbox_id,
                    LABEL_OWNER: "harness",
                    LABEL_TIMEOUT: str(timeout_s),
                    LABEL_CONFIG: config_label(config),
                },
                envs=dict(config.env),
                allow_internet_access=config.network,
                lifecycle=lifecycle,
                request_timeout=self.request_timeout_s,
            ),
        )
        # Two attempts that raced each made one: all keep the oldest (listed before any other
        # attempt's was started, it is the first of every later listing) and kill the others.
        listed = await self._listed(sandbox_id)
        if not listed or listed[0].sandbox_id == created.sandbox_id:
            return created.sandbox_id, created
        kept = listed[0].sandbox_id
        log.info("sandbox.duplicate_killed", sandbox_id=sandbox_id, e2b_id=created.sandbox_id, kept=kept)
        await self._kill(created.sandbox_id)
        return kept, None

    async def _connect(
        self, key: tuple[str, str], e2b_id: str, timeout_s: int | None, harness_owned: bool
    ) -> _Link:
        sandbox = await self._resume(e2b_id, timeout_s)
        return self._linked(key, e2b_id, sandbox, timeout_s, harness_owned)

    def _linked(
        self, key: tuple[str, str], e2b_id: str, sandbox: Any, timeout_s: int | None, harness_owned: bool
    ) -> _Link:
        link = self._links.get(e2b_id)
        if link is None:
            machine = Machine(id=e2b_id, name=e2b_id, user=self.user, harness_owned=harness_owned)
            link = self._links[e2b_id] = _Link(machine=machine, timeout_s=timeout_s)
        link.sandbox, link.renewed_at = sandbox, self._clock()
        self._e2b_ids[key] = e2b_id
        return link

    async def destroy(self, ref: SandboxRef) -> None:
        self._check_ref(ref)
        if ref.owner == "user":
            raise SandboxError(f"sandbox {ref.sandbox_id!r} is user-owned: the harness never removes it")
        e2b_ids = {info.sandbox_id for info in await self._listed(ref.sandbox_id)}
        known = self._e2b_ids.pop(("harness", ref.sandbox_id), None)
        for e2b_id in sorted(e2b_ids | ({known} if known else set())):
            await self._kill(e2b_id)
            self._lost(e2b_id)
            log.info("sandbox.destroyed", sandbox_id=ref.sandbox_id, e2b_id=e2b_id)

    async def _kill(self, e2b_id: str) -> None:
        """Kill an E2B sandbox; one that is gone already is no error (E2B answers False)."""
        sdk = self._e2b()
        await self._api(
            f"kill sandbox {e2b_id}", sdk.AsyncSandbox.kill(e2b_id, request_timeout=self.request_timeout_s)
        )

    async def suspend(self, ref: SandboxRef) -> bool:
        """Pause the sandbox (E2B's `pause`): its files, memory and processes are kept and nothing
        runs until the next operation on it, from any worker, resumes it (`connect`). True when it
        was paused now, False when it already was; SandboxGone when it no longer exists."""
        self._check_ref(ref)
        if ref.owner == "user":
            raise SandboxError(f"sandbox {ref.sandbox_id!r} is user-owned: the harness never pauses it")
        sdk = self._e2b()
        e2b_id = await self._e2b_id(ref)
        paused = await self._api(
            f"pause sandbox {e2b_id}",
            sdk.AsyncSandbox.pause(e2b_id, request_timeout=self.request_timeout_s),
            gone=f"sandbox {ref.sandbox_id!r}: its E2B sandbox {e2b_id} no longer exists",
        )
        if (link := self._links.get(e2b_id)) is not None:
            link.sandbox = None
        log.info("sandbox.suspended", sandbox_id=ref.sandbox_id, e2b_id=e2b_id, was_running=paused)
        return paused

    async def health(self, ref: SandboxRef) -> bool:
        """Whether the sandbox exists, running or paused (a paused one resumes when used); asks E2B
        each time, without resuming it."""
        try:
            self._check_ref(ref)
            if ref.owner == "harness":
                return bool(await self._listed(ref.sandbox_id))
            sdk = self._e2b()
            await self._api(
                f"look up sandbox {ref.sandbox_id}",
                sdk.AsyncSandbox.get_info(ref.sandbox_id, request_timeout=self.request_timeout_s),
                gone="gone",
            )
        except SandboxError:
            return False
        return True

    # -- helpers -------------------------------------------------------------------------------------

    async def _e2b_id(self, ref: SandboxRef) -> str:
        """The E2B id of a sandbox: a user's ref names it; a harness-owned one is looked up."""
        if ref.owner == "user":
            return ref.sandbox_id
        known = self._e2b_ids.get(("harness", ref.sandbox_id))
        if known is not None:
            return known
        listed = await self._listed(ref.sandbox_id)
        if not listed:
            raise SandboxGone(f"sandbox {ref.sandbox_id!r}: E2B has no sandbox marked with its id")
        return listed[0].sandbox_id

    def _lost(self, e2b_id: str) -> None:
        self._links.pop(e2b_id, None)
        for key in [key for key, known in self._e2b_ids.items() if known == e2b_id]:
            del self._e2b_ids[key]
        self._forget(e2b_id)

    def _renewal_due(self, link: _Link) -> bool:
        return link.timeout_s is not None and self._clock() - link.renewed_at > link.timeout_s * RENEW_AFTER

    async def _machine(self, ref: SandboxRef) -> Machine:
        """The sandbox's machine; connects (resuming, renewing) when this worker holds no live handle
        on it or its life is due for renewal. SandboxGone when E2B no longer has it."""
        self._check_ref(ref)
        key = (ref.owner, ref.sandbox_id)
        link = self._links.get(self._e2b_ids.get(key, ""))
        if link is not None and link.sandbox is not None and not self._renewal_due(link):
            return link.machine
        e2b_id = await self._e2b_id(ref)
        if ref.owner == "user":
            timeout_s, harness_owned = None, False
        elif link is not None:
            timeout_s, harness_owned = link.timeout_s, link.machine.harness_owned
        else:
            info = (await self._listed(ref.sandbox_id) or [None])[0]
            if info is None:
                raise SandboxGone(f"sandbox {ref.sandbox_id!r}: E2B has no sandbox marked with its id")
            timeout_s = int(info.metadata.get(LABEL_TIMEOUT) or self.timeout_s)
            harness_owned = info.metadata.get(LABEL_OWNER) == "harness"
        try:
            return (await self._connect(key, e2b_id, timeout_s, harness_owned)).machine
        except SandboxGone:
            self._lost(e2b_id)
            raise

    async def _handle(self, machine: Machine) -> Any:
        link = self._links.get(machine.id)
        if link is None:
            raise SandboxGone(f"the E2B sandbox {machine.id} is gone")
        if link.sandbox is None:
            try:
                link.sandbox, link.renewed_at = await self._resume(machine.id, link.timeout_s), self._clock()
            except SandboxGone:
                self._lost(machine.id)
                raise
        return link.sandbox

    # -- running operations -------------------------------------------------------------------------

    async def _run(
        self, machine: Machine, command: list[str], stdin: bytes | None, user: str | None
    ) -> ShellResult:
        sdk = self._e2b()
        as_user = ROOT if user in ("0", ROOT) else (user or machine.user)
        handle = await self._start(machine, command, stdin, as_user)
        try:
            result = await handle.wait()
        except sdk.CommandExitException as exited:
            result = exited
        except self._gone_errors() as error:
            # it may have been paused or killed under the command: _exec asks E2B which
            self._unlink(machine)
            raise SandboxError(f"the E2B sandbox {machine.id} went away under a command: {error}") from error
        except sdk.TimeoutException as error:
            raise SandboxError(
                f"an operation in the E2B sandbox {machine.id} did not end within "
                f"{self.command_timeout_s:.0f}s: {error}"
            ) from error
        except (sdk.SandboxException, httpx.HTTPError, OSError) as error:
            raise SandboxError(f"E2B lost a command in sandbox {machine.id}: {error}") from error
        shell = ShellResult.of(decoded_stdout(result.stdout or ""), (result.stderr or "").encode())
        if shell.code is None and result.exit_code in ANSWERS:
            return ShellResult(
                code=result.exit_code, stdout=shell.stdout, stderr=shell.stderr, complete=False
            )
        return shell

    async def _start(self, machine: Machine, command: list[str], stdin: bytes | None, user: str) -> Any:
        """The handle of the started command. A sandbox found paused (by another worker, or E2B at
        its timeout) is resumed and the command started again: nothing of it had run."""
        stdin_path = f"{STDIN_DIR}/farline-stdin-{uuid.uuid4().hex}" if stdin is not None else None
        script = shell_command(command, stdin_path)
        try:
            return await self._begin(await self._handle(machine), script, stdin_path, stdin, user)
        except SandboxError as error:
            if not isinstance(error.__cause__, self._gone_errors()):
                raise
            log.info("sandbox.reconnecting", e2b_id=machine.id, reason=str(error.__cause__)[:200])
        self._unlink(machine)
        # a sandbox that is gone for good fails to connect: SandboxGone
        return await self._begin(await self._handle(machine), script, stdin_path, stdin, user)

    async def _begin(
        self, sandbox: Any, script: str, stdin_path: str | None, stdin: bytes | None, user: str
    ) -> Any:
        if stdin_path is not None:
            await self._api(
                "upload a command's input",
                sandbox.files.write(stdin_path, stdin, user=user, request_timeout=self.request_timeout_s),
            )
        return await self._api(
            "start a command",
            sandbox.commands.run(
                script,
                background=True,
                user=user,
                timeout=self.command_timeout_s,
                request_timeout=self.request_timeout_s,
            ),
        )

    def _unlink(self, machine: Machine) -> None:
        """Drop the handle: the next command connects again (resuming a paused sandbox)."""
        if (link := self._links.get(machine.id)) is not None:
            link.sandbox = None

    async def _check_still_there(self, machine: Machine) -> None:
        sdk = self._e2b()
        try:
            info = await sdk.AsyncSandbox.get_info(machine.id, request_timeout=self.request_timeout_s)
        except sdk.SandboxNotFoundException:
            self._lost(machine.id)
            raise SandboxGone(f"the E2B sandbox {machine.id} no longer exists (killed or expired)") from None
        except (sdk.SandboxException, sdk.ServiceBusyException, httpx.HTTPError, OSError):
            return  # E2B is unreachable: the caller's own error says so
        if info.state != sdk.SandboxState.RUNNING:
            self._unlink(machine)  # paused: the next operation resumes it
