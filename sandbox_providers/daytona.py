"""The Daytona sandbox provider: one Daytona sandbox per Farline sandbox, through the async SDK.

The SDK (`pip install 'farline[daytona]'`, the `daytona` package) is imported on first use, or
given as `sdk` (a module-like namespace: the tests pass a fake of it). Its credentials
(DAYTONA_API_KEY, or DAYTONA_JWT_TOKEN with DAYTONA_ORGANIZATION_ID; DAYTONA_API_URL) stay in
the worker's environment, where the SDK reads them; nothing of the worker's environment enters
a sandbox.

A sandbox is the Daytona sandbox named `<name_prefix><sandbox id>`, labelled
`farline.sandbox=<id>`, so any worker finds it again with `AsyncDaytona.get(name)`. It has:

- the run's image (with its cpu/memory/disk) or snapshot, else the worker's, else Daytona's
  default snapshot; the run's region (`target`) over the worker's;
- `network_block_all=True` unless SandboxConfig.network;
- `env_vars` = SandboxConfig.env, and nothing else;
- an auto-stop interval (Daytona stops an idle sandbox; see below).

Every operation is one `process.exec` of the shell scripts of shell_scripts.py (shell_sandbox.py
has the protocol on top). `exec` takes a shell string (which the daemon feeds to the sandbox's
shell on its stdin), has no stdin of its own, and returns stdout and stderr as one text: so the
input is uploaded to a file under `io_dir` first (`fs.upload_file`), the command's stdout goes
to a file that comes back as bytes (`fs.download_file`, only when it is not empty; the
machine's next operation removes it), and only its stderr, then its exit status, comes back
as text. A server side timeout is always given (Daytona's default is 10 s).

Quirks honoured:
- A sandbox that Daytona stopped (auto-stop), archived or paused is started again before its
  next operation; one that is starting is waited for. After a stop or an archive the processes
  that ran in it are lost (their files stay; the scripts report them as lost); a pause keeps them.
- Gone: `DaytonaNotFoundError` from `get`, or the states destroyed/destroying, or an error
  that is not recoverable (a recoverable one is recovered). A harness-owned sandbox found in
  an unrecoverable error is deleted.
- Commands run as the sandbox's OS user (Daytona's default `daytona`, which has passwordless
  sudo); the one step that needs root (making /workspace and the state dir) runs through
  `sudo -n` unless that user is root.

Native primitive: `suspend(ref)` stops the sandbox (Daytona keeps its files, it stops billing
for CPU and memory); the next operation on it starts it again.

User-owned sandboxes: a ref with owner "user" names an existing Daytona sandbox (id or name),
used as it is; `destroy` and `suspend` refuse it.
"""

from __future__ import annotations

import asyncio
import shlex
import time
import uuid
from typing import Any, NoReturn

import structlog

from harness.config import FarlineConfig
from harness.sandbox_options import DaytonaOptions, OptionsError, parse_options
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

INSTALL_HINT = "pip install 'farline[daytona]'"

STARTED = "started"
GONE_STATES = frozenset({"destroyed", "destroying"})
# started again before use
RESTARTABLE_STATES = frozenset({"stopped", "archived", "paused"})
# on their way to `started`: waited for
STARTING_STATES = frozenset(
    {
        "creating",
        "starting",
        "resuming",
        "restoring",
        "pending_build",
        "building_snapshot",
        "pulling_snapshot",
    }
)
# on their way to a restartable state
STOPPING_STATES = frozenset({"stopping", "archiving", "pausing"})
# a sandbox that will never start
FAILED_STATES = frozenset({"build_failed"})
# any other state (stopping, archiving, pausing, resizing, snapshotting, forking, unknown) is
# polled until it settles
POLL_S = 1.0
# the SDK's errors for requests that fail the same way when tried again
REFUSALS = (
    "DaytonaBadRequestError",
    "DaytonaValidationError",
    "DaytonaAuthenticationError",
    "DaytonaForbiddenError",
    "DaytonaUnprocessableEntityError",
)
CREATE_ATTEMPTS = 5

# The command around every operation, run by the sandbox's shell: $1 the uploaded input ("" for
# none), $2 the file for stdout, $3 how many files of earlier operations to remove, then those,
# then the command. The command's stderr comes back in exec's text, its stdout in the file;
# the last line says whether the file holds anything and the command's exit status.
IO_MARK = "farline-io "
WRAPPER = r"""in=$1 out=$2 n=$3
shift 3
while [ "$n" -gt 0 ]; do rm -f "$1"; shift; n=$((n - 1)); done
"$@" < "${in:-/dev/null}" 2>&1 > "$out"
s=$?
[ -z "$in" ] || rm -f "$in"
o=0
[ -s "$out" ] && o=$(stat -c %s "$out") || rm -f "$out"
printf '\n@MARK@%s %s\n' "$o" "$s"
""".replace("@MARK@", IO_MARK)


def _state(sandbox: Any) -> str:
    """The sandbox's state as its wire value ('started'), whatever enum the SDK wraps it in."""
    state = getattr(sandbox, "state", None)
    return str(getattr(state, "value", state) or "unknown")


def _is_root(user: str | None) -> bool:
    return user in ("root", "0")


def import_sdk() -> Any:
    """The Daytona SDK module; SandboxUnavailable when it is not installed."""
    try:
        import daytona
    except ImportError as error:
        raise SandboxUnavailable(
            f"the daytona provider needs the Daytona SDK, which is not installed: {INSTALL_HINT}"
        ) from error
    return daytona


class DaytonaProvider(ShellSandboxProvider):
    """Sandboxes as Daytona sandboxes (see the module docstring)."""

    name = "daytona"

    def __init__(
        self,
        *,
        sdk: Any | None = None,
        snapshot: str | None = None,
        image: str | None = None,
        cpu: int | None = None,
        memory_gib: int | None = None,
        disk_gib: int | None = None,
        target: str | None = None,
        auto_stop_minutes: int = 15,
        os_user: str | None = None,
        name_prefix: str = "farline-",
        labels: dict[str, str] | None = None,
        workspace_path: str = WORKSPACE_PATH,
        io_dir: str = "/tmp",
        start_wait_s: float = 0.1,
        command_timeout_s: int = 600,
        transfer_timeout_s: int = 600,
        create_timeout_s: float = 600.0,
        start_timeout_s: float = 300.0,
    ) -> None:
        super().__init__(workspace_path=workspace_path, start_wait_s=start_wait_s)
        if image is not None and snapshot is not None:
            raise SandboxUnavailable("the daytona provider takes an image or a snapshot, not both")
        self._sdk = sdk
        self.snapshot = snapshot
        self.image = image
        self.cpu = cpu
        self.memory_gib = memory_gib
        self.disk_gib = disk_gib
        self.target = target
        self.auto_stop_minutes = auto_stop_minutes
        # None: Daytona's default user ("daytona")
        self.os_user = os_user
        self.name_prefix = name_prefix
        self.labels = dict(labels or {})
        self.io_dir = io_dir.rstrip("/") or "/"
        self.command_timeout_s = command_timeout_s
        self.transfer_timeout_s = transfer_timeout_s
        self.create_timeout_s = create_timeout_s
        self.start_timeout_s = start_timeout_s
        self._client: Any | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        # the SDK's object of each machine we found, by machine id
        self._sandboxes: dict[str, Any] = {}
        # output files already read, removed by the machine's next operation
        self._leftovers: dict[str, list[str]] = {}

    @classmethod
    def from_config(cls, config: FarlineConfig) -> DaytonaProvider:
        """The worker's settings (FARLINE_DAYTONA_*); Daytona's credentials stay the SDK's own.
        SandboxUnavailable (the worker does not start) without the SDK."""
        return cls(
            sdk=import_sdk(),
            snapshot=config.daytona_snapshot,
            image=config.daytona_image,
            cpu=config.daytona_cpu,
            memory_gib=config.daytona_memory_gib,
            disk_gib=config.daytona_disk_gib,
            target=config.daytona_target,
            auto_stop_minutes=config.daytona_auto_stop_minutes,
            os_user=config.daytona_os_user,
        )

    # -- the SDK --------------------------------------------------------------------------------------

    @property
    def sdk(self) -> Any:
        if self._sdk is None:
            self._sdk = import_sdk()
        return self._sdk

    def _daytona(self) -> Any:
        """The SDK's client, made on first use in the running event loop (its HTTP sessions
        belong to one loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            try:
                self._client = self.sdk.AsyncDaytona()
            except self.sdk.DaytonaError as error:
                raise SandboxUnavailable(
                    f"cannot use Daytona: {error} (set DAYTONA_API_KEY, or DAYTONA_JWT_TOKEN and "
                    "DAYTONA_ORGANIZATION_ID, in the worker's environment)"
                ) from error
            self._client_loop = loop
        return self._client

    async def close(self) -> None:
        """Close the SDK's HTTP sessions."""
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    def _not_found(self, error: BaseException) -> bool:
        return isinstance(error, self.sdk.DaytonaNotFoundError)

    def _refusals(self) -> tuple[type[BaseException], ...]:
        """The SDK's errors for a request that will never succeed as it is (bad parameters, no
        credentials, no permission)."""
        return tuple(getattr(self.sdk, name) for name in REFUSALS if hasattr(self.sdk, name))

    def _sdk_errors(self) -> tuple[type[BaseException], ...]:
        """What an SDK call raises for a failure of the service or of the connection to it."""
        return (self.sdk.DaytonaError, OSError, asyncio.TimeoutError)

    # -- sandboxes -----------------------------------------------------------------------------------

    async def create(self, sandbox_id: str, config: SandboxConfig) -> SandboxRef:
        check_id("sandbox", sandbox_id)
        check_env(config.env)
        options = parse_options(DaytonaOptions, self.name, config.options)
        params = self._create_params(sandbox_id, config, options)
        name = self.name_prefix + sandbox_id
        ref = SandboxRef(provider=self.name, sandbox_id=sandbox_id)
        for attempt in range(1, CREATE_ATTEMPTS + 1):
            sandbox = await self._find(name)
            replaced = False
            if sandbox is not None:
                self._check_ours(sandbox, sandbox_id, config)
                if _state(sandbox) in FAILED_STATES:
                    await self._delete(sandbox)
                    reason = sandbox.error_reason or "no reason given"
                    raise SandboxUnavailable(f"the Daytona sandbox {name!r} failed to build: {reason}")
                if self._dead(sandbox):
                    await self._replace(sandbox, sandbox_id)
                    sandbox, replaced = None, True
            if sandbox is None:
                sandbox = await self._create_new(params)
                if sandbox is None:  # created meanwhile by another attempt, or the dead one's name
                    if replaced:  # is not free yet
                        await asyncio.sleep(POLL_S * attempt)
                    continue
            machine = await self._ready(sandbox, ref)
            await self._setup(machine)
            log.info(
                "sandbox.created",
                sandbox_id=sandbox_id,
                daytona_id=machine.id,
                network=config.network,
                env=sorted(config.env),
            )
            return ref
        raise SandboxError(f"could not create the Daytona sandbox {name!r}: it keeps changing under us")

    def _create_params(self, sandbox_id: str, config: SandboxConfig, options: DaytonaOptions) -> Any:
        """The SDK's create parameters: the run's options over the worker's settings."""
        if options.image is not None and options.snapshot is not None:
            raise OptionsError("sandbox options for provider 'daytona': give `image` or `snapshot`, not both")
        resources_asked = [
            name for name in ("cpu", "memory_gib", "disk_gib") if getattr(options, name) is not None
        ]
        image = options.image or (None if options.snapshot else self.image)
        if resources_asked and image is None:
            raise OptionsError(
                f"sandbox options for provider 'daytona': {', '.join(resources_asked)} apply only to a "
                "sandbox built from an `image` (a snapshot has its own resources)"
            )
        common: dict[str, Any] = {
            "name": self.name_prefix + sandbox_id,
            "labels": {
                **self.labels,
                LABEL_SANDBOX: sandbox_id,
                LABEL_OWNER: "harness",
                LABEL_CONFIG: config_label(config),
            },
            "env_vars": dict(config.env),
            "network_block_all": not config.network,
            "auto_stop_interval": (
                options.auto_stop_minutes if options.auto_stop_minutes is not None else self.auto_stop_minutes
            ),
        }
        target = options.target or self.target
        if target is not None:
            common["target"] = target
        if self.os_user is not None:
            common["os_user"] = self.os_user
        if image is None:
            return self.sdk.CreateSandboxFromSnapshotParams(
                snapshot=options.snapshot or self.snapshot, **common
            )
        cpu = options.cpu or self.cpu
        memory = options.memory_gib or self.memory_gib
        disk = options.disk_gib or self.disk_gib
        resources = None
        if (cpu, memory, disk) != (None, None, None):
            resources = self.sdk.Resources(cpu=cpu, memory=memory, disk=disk)
        return self.sdk.CreateSandboxFromImageParams(image=image, resources=resources, **common)

    async def _find(self, name: str) -> Any | None:
        """The Daytona sandbox with this id or name, None when there is none."""
        try:
            return await self._daytona().get(name)
        except self._sdk_errors() as error:
            if self._not_found(error):
                return None
            raise SandboxError(f"Daytona failed to look up the sandbox {name!r}: {error}") from error

    async def _create_new(self, params: Any) -> Any | None:
        """A new sandbox, started; None when one of that name appeared meanwhile."""
        try:
            return await self._daytona().create(params, timeout=self.create_timeout_s)
        except self.sdk.DaytonaConflictError:
            return None
        except self._refusals() as error:
            raise SandboxUnavailable(
                f"Daytona refused to create the sandbox {params.name!r}: {error}"
            ) from error
        except self._sdk_errors() as error:
            # the service or the connection failed: a retry finds the sandbox if it was made
            raise SandboxError(f"Daytona failed to create the sandbox {params.name!r}: {error}") from error

    @staticmethod
    def _check_ours(sandbox: Any, sandbox_id: str, config: SandboxConfig) -> None:
        labels = getattr(sandbox, "labels", None) or {}
        if labels.get(LABEL_SANDBOX) != sandbox_id:
            raise SandboxError(
                f"a Daytona sandbox named {sandbox.name!r} exists and is not the sandbox {sandbox_id!r}"
            )
        if labels.get(LABEL_CONFIG) != config_label(config):
            log.warning("sandbox.config_kept", sandbox_id=sandbox_id, reason="exists with another config")

    @staticmethod
    def _dead(sandbox: Any) -> bool:
        """Deleted, or failed for good (a recoverable error is not dead)."""
        state = _state(sandbox)
        return (
            state in GONE_STATES
            or state in FAILED_STATES
            or (state == "error" and not getattr(sandbox, "recoverable", False))
        )

    async def _replace(self, sandbox: Any, sandbox_id: str) -> None:
        """A dead sandbox under our name: deleted, so that a new one takes its place."""
        state = _state(sandbox)
        log.warning("sandbox.dead_sandbox_replaced", sandbox_id=sandbox_id, state=state)
        if state not in GONE_STATES:  # a deleted one's name is free soon
            await self._delete(sandbox)

    async def _delete(self, sandbox: Any) -> None:
        try:
            await sandbox.delete(timeout=self.start_timeout_s, wait=True)
        except self._sdk_errors() as error:
            if not self._not_found(error):
                raise SandboxError(
                    f"Daytona could not delete the sandbox {sandbox.name!r}: {error}"
                ) from error

    async def destroy(self, ref: SandboxRef) -> None:
        self._check_ref(ref)
        if ref.owner == "user":
            raise SandboxError(f"sandbox {ref.sandbox_id!r} is user-owned: the harness never removes it")
        sandbox = await self._find(self._sandbox_name(ref))
        if sandbox is None or _state(sandbox) in GONE_STATES:
            return
        await self._delete(sandbox)
        self._forget(sandbox.id)
        self._sandboxes.pop(sandbox.id, None)
        self._leftovers.pop(sandbox.id, None)
        log.info("sandbox.destroyed", sandbox_id=ref.sandbox_id, daytona_id=sandbox.id)

    async def suspend(self, ref: SandboxRef) -> bool:
        """Stop the sandbox, keeping its files (Daytona's stop): it costs no CPU or memory until
        its next operation, which starts it again. Its running processes end (they show as lost).
        True when it was stopped now, False when it was already stopped, archived or paused;
        SandboxGone when it no longer exists."""
        self._check_ref(ref)
        if ref.owner == "user":
            raise SandboxError(f"sandbox {ref.sandbox_id!r} is user-owned: the harness never stops it")
        name = self._sandbox_name(ref)
        sandbox = await self._find(name)
        if sandbox is None:
            raise SandboxGone(f"sandbox {ref.sandbox_id!r}: no Daytona sandbox {name!r}")
        machine = self._machine_of(sandbox, ref)
        if self._dead(sandbox):
            await self._gone(sandbox, machine)
        if _state(sandbox) in RESTARTABLE_STATES or _state(sandbox) in STOPPING_STATES:
            return False
        if _state(sandbox) != STARTED:  # on its way up: stopped once there
            await self._ready(sandbox, ref)
        try:
            await sandbox.stop(timeout=self.start_timeout_s)
        except self._sdk_errors() as error:
            await self._check_still_there(machine)
            raise SandboxError(f"Daytona could not stop the sandbox {name!r}: {error}") from error
        log.info("sandbox.suspended", sandbox_id=ref.sandbox_id, daytona_id=sandbox.id)
        return True

    # -- finding the machine ------------------------------------------------------------------------

    def _sandbox_name(self, ref: SandboxRef) -> str:
        # a user's sandbox is named as the user gave it (its name or id)
        return ref.sandbox_id if ref.owner == "user" else self.name_prefix + ref.sandbox_id

    async def _machine(self, ref: SandboxRef) -> Machine:
        """The started sandbox of this ref (started again first if Daytona stopped it)."""
        self._check_ref(ref)
        name = self._sandbox_name(ref)
        sandbox = await self._find(name)
        if sandbox is None:
            raise SandboxGone(f"sandbox {ref.sandbox_id!r}: no Daytona sandbox {name!r}")
        return await self._ready(sandbox, ref)

    def _machine_of(self, sandbox: Any, ref: SandboxRef) -> Machine:
        labels = getattr(sandbox, "labels", None) or {}
        self._sandboxes[sandbox.id] = sandbox
        return Machine(
            id=sandbox.id,
            name=sandbox.name,
            user=sandbox.user or "",
            harness_owned=ref.owner == "harness" and labels.get(LABEL_OWNER) == "harness",
        )

    async def _ready(self, sandbox: Any, ref: SandboxRef) -> Machine:
        """The machine once the sandbox is started: a stopped, archived or paused one is started,
        a starting one waited for, a recoverable error recovered; SandboxGone for a dead one."""
        machine = self._machine_of(sandbox, ref)
        deadline = time.monotonic() + self.start_timeout_s
        while (state := _state(sandbox)) != STARTED:
            if self._dead(sandbox):
                await self._gone(sandbox, machine)
            if time.monotonic() > deadline:
                raise SandboxError(
                    f"the Daytona sandbox {machine.name!r} is still {state} after {self.start_timeout_s:.0f}s"
                )
            await self._advance(sandbox, state, machine)
        return machine

    async def _advance(self, sandbox: Any, state: str, machine: Machine) -> None:
        """One step towards `started` from `state`."""
        try:
            if state in RESTARTABLE_STATES:
                log.info("sandbox.restarting", daytona_id=machine.id, state=state)
                await sandbox.start(timeout=self.start_timeout_s)
            elif state in STARTING_STATES:
                await sandbox.wait_for_sandbox_start(timeout=self.start_timeout_s)
            elif state == "error":
                log.warning("sandbox.recovering", daytona_id=machine.id, reason=sandbox.error_reason)
                await sandbox.recover(timeout=self.start_timeout_s)
            else:
                await asyncio.sleep(POLL_S)
                await sandbox.refresh_data()
        except self._sdk_errors() as error:
            if self._not_found(error):
                raise SandboxGone(f"the Daytona sandbox {machine.name!r} is gone") from None
            # a start that failed: the state says whether it died
            try:
                await sandbox.refresh_data()
            except self._sdk_errors() as refresh_error:
                if self._not_found(refresh_error):
                    raise SandboxGone(f"the Daytona sandbox {machine.name!r} is gone") from None
            if self._dead(sandbox):
                await self._gone(sandbox, machine)
            raise SandboxError(
                f"Daytona could not start the sandbox {machine.name!r} (it was {state}): {error}"
            ) from error

    async def _gone(self, sandbox: Any, machine: Machine) -> NoReturn:
        """SandboxGone for a dead sandbox; a harness-owned one in an unrecoverable error is deleted
        first: it is never used again (the run rehydrates a new one), so nothing is left to bill."""
        state = _state(sandbox)
        if machine.harness_owned and state not in GONE_STATES:
            try:
                await self._delete(sandbox)
                log.info("sandbox.dead_sandbox_deleted", daytona_id=machine.id, state=state)
            except SandboxError as error:
                log.warning("sandbox.dead_sandbox_kept", daytona_id=machine.id, error=str(error))
        reason = getattr(sandbox, "error_reason", None)
        raise SandboxGone(f"the Daytona sandbox {machine.name!r} is {state}{f': {reason}' if reason else ''}")

    async def _check_still_there(self, machine: Machine) -> None:
        sandbox = self._sandboxes.get(machine.id)
        if sandbox is None:
            return
        try:
            await sandbox.refresh_data()
        except self._sdk_errors() as error:
            if self._not_found(error):
                raise SandboxGone(f"the Daytona sandbox {machine.name!r} is gone") from None
            return  # Daytona is unreachable: the caller's own error says so
        if self._dead(sandbox):
            await self._gone(sandbox, machine)

    # -- running commands ----------------------------------------------------------------------------

    @staticmethod
    def _command_line(
        machine: Machine,
        command: list[str],
        user: str | None,
        stdin_path: str,
        out: str,
        leftovers: list[str],
    ) -> str:
        """The shell line exec runs: WRAPPER around `command`, as `user` through sudo when that is
        not the sandbox's own user."""
        if user is not None and user != machine.user and not (_is_root(user) and _is_root(machine.user)):
            # Daytona runs commands as the sandbox's user; its images give that user sudo
            command = (
                ["sudo", "-n", "--", *command]
                if _is_root(user)
                else ["sudo", "-n", "-u", user, "--", *command]
            )
        return shlex.join(
            ["sh", "-c", WRAPPER, "farline-io", stdin_path, out, str(len(leftovers)), *leftovers, *command]
        )

    async def _run(
        self, machine: Machine, command: list[str], stdin: bytes | None, user: str | None
    ) -> ShellResult:
        sandbox = self._sandboxes[machine.id]
        base = f"{self.io_dir}/farline-io-{uuid.uuid4().hex}"
        stdin_path = "" if stdin is None else base + ".in"
        out = base + ".out"
        earlier = self._leftovers.pop(machine.id, [])  # files of earlier operations, to remove
        mine = [stdin_path] if stdin_path else []
        left = [*earlier, *mine]  # what stays in the sandbox if this operation fails here
        stdout = b""
        try:
            if stdin is not None:
                await sandbox.fs.upload_file(stdin, stdin_path, timeout=self.transfer_timeout_s)
            line = self._command_line(machine, command, user, stdin_path, out, earlier)
            response = await sandbox.process.exec(line, timeout=self.command_timeout_s)
            left = [*mine, out]
            stderr, size, code = self._parse(response)
            # the output file is removed by the machine's next operation (one round trip fewer)
            left = [out] if size else []
            if size:
                stdout = await sandbox.fs.download_file(out, self.transfer_timeout_s)
                if len(stdout) != size:  # a transfer cut short: repeated if the operation allows
                    raise SandboxError(
                        f"the download of an operation's output from {machine.name!r} was cut short "
                        f"({len(stdout)} of {size} bytes)"
                    )
        except self._sdk_errors() as error:
            await self._check_still_there(machine)
            raise SandboxError(f"Daytona failed to run an operation in {machine.name!r}: {error}") from error
        finally:
            if left:
                self._leftovers.setdefault(machine.id, []).extend(left)
        result = ShellResult.of(stdout, stderr)
        if result.code is None and code in ANSWERS:
            # the script's status line was lost from its stderr: the exit status came back anyway
            return ShellResult(code=code, stdout=result.stdout, stderr=result.stderr, complete=False)
        return result

    @staticmethod
    def _parse(response: Any) -> tuple[bytes, int, int]:
        """exec's text as (the command's stderr, the size of its stdout file, its exit status);
        SandboxError when the wrapper never got to its last line."""
        output = "\n" + (response.result or "")
        stderr, mark, status = output.rpartition("\n" + IO_MARK)
        size, _, code = status.strip().partition(" ")
        if not mark or not size.isdigit() or not code.isdigit():
            raise SandboxError(
                f"the sandbox's shell ended without a status (exit code {response.exit_code}): "
                f"{output.strip()[-1000:] or 'no output'}"
            )
        return stderr.removeprefix("\n").encode(), int(size), int(code)
