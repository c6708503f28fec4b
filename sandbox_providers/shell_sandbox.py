"""Providers that drive their sandboxes through a shell: the whole protocol over one primitive.

A subclass knows how to make, find and remove a machine (a container, a cloud sandbox) and
how to run one command in it with bytes on stdin, getting stdout, stderr and the exit code
back (`_run`). Everything else is here: each operation is one exec of the POSIX shell
script in shell_scripts.py, whose processes run under a detached supervisor in the machine,
so they, their output and exit codes outlive the worker; the worker's side of archives and
listings is shell_archives.py.

Ended processes' states and outputs never change again and are cached by machine id: an exec
round trip costs 0.1 s on podman and more in a cloud, so a short command comes back, output
and all, from the exec that started it.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import shlex
from abc import ABC, abstractmethod
from collections import OrderedDict
from dataclasses import dataclass

import structlog

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
from sandbox_providers.shell_archives import (
    checked_import,
    file_entries,
    normalized_export,
    parse_listing,
    workspace_stats,
)
from sandbox_providers.shell_scripts import (
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
    SIZE_MARK,
    STATUS_MARK,
    STDIN_NOT_READ,
    SUPERVISOR,
    TOO_MANY_PROCESSES,
)
from sandbox_providers.workspace_fs import split_relative

log = structlog.get_logger(__name__)

STATE_DIR = "/var/farline"
# the labels (tags, metadata) a provider puts on the machines it makes
LABEL_SANDBOX = "farline.sandbox"
LABEL_OWNER = "farline.owner"
LABEL_CONFIG = "farline.config"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# an ended process's whole output comes back with its state when it is at most this long
INLINE_OUTPUT_BYTES = 1024 * 1024
# ended processes' states and outputs kept in memory, in bytes of output
CACHE_BYTES = 64 * 1024 * 1024
# the most one read_output returns
MAX_READ_BYTES = 16 * 1024 * 1024
# reads whose output came back cut short are tried again this often
READ_ATTEMPTS = 3
# operations that do the same when repeated (`start` attaches by id; not `stdin`, not `delete`),
# and how often one is tried when its status never came back
REPEATABLE_OPERATIONS = frozenset(
    {"setup", "start", "state", "output", "kill", "read", "write", "list", "scan", "export", "import"}
)
OPERATION_ATTEMPTS = 3
STATE_TAG = b"farline-state "
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
# the exit codes the scripts use for answers, not failures
ANSWERS = frozenset(
    {
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
)


def check_id(kind: str, value: str) -> str:
    if not _ID.match(value) or set(value) == {"."}:
        raise SandboxPathError(f"invalid {kind} id {value!r}: use 1 to 128 of A-Z a-z 0-9 _ . -")
    return value


def check_env(env: dict[str, str]) -> None:
    for name, value in env.items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise SandboxError(
                f"invalid environment variable {name!r}: no '=' or NUL in names, no NUL in values"
            )


def config_label(config: SandboxConfig) -> str:
    """A short hash of a sandbox's config: a machine found again with another one is logged."""
    return hashlib.sha256(config.model_dump_json().encode()).hexdigest()[:16]


def _seconds(text: str) -> float | None:
    """A time from the sandbox; a supervisor that could not fork `date` (no pids left) wrote none."""
    try:
        return float(text)
    except ValueError:
        return None


@dataclass(frozen=True)
class ShellResult:
    # the script's exit status, from the last line of its stderr; None when it never got to
    # write one (it did not start, or was killed)
    code: int | None
    stdout: bytes
    stderr: bytes
    # False when the status line never came back (the code, if any, is the engine's): the output
    # may have been cut short
    complete: bool = True

    @classmethod
    def of(cls, stdout: bytes, stderr: bytes) -> ShellResult:
        # the last mark is the script's own (whatever it ran wrote before it); what may follow
        # is the engine's (podman reports a reset attach when a script leaves stdin unread)
        rest, mark, tail = stderr.rpartition(STATUS_MARK.encode())
        status = tail.partition(b"\n")[0]
        if mark and status.isdigit():
            return cls(code=int(status), stdout=stdout, stderr=rest.removesuffix(b"\n"))
        return cls(code=None, stdout=stdout, stderr=stderr, complete=False)

    @property
    def message(self) -> str:
        return self.stderr.decode(errors="replace").strip()


@dataclass(frozen=True)
class Machine:
    """The running machine of a sandbox, as found for one operation."""

    id: str  # stable for the machine's life: the cache of ended processes is keyed by it
    name: str  # for messages
    user: str  # the user operations run as ("" or None: the machine's default)
    # made by this harness for a harness-owned sandbox: removed when found dead
    harness_owned: bool = False


class ShellSandboxProvider(ABC):
    """The protocol over `_run` (see the module docstring); subclasses make and find machines."""

    name: str

    def __init__(self, *, workspace_path: str = WORKSPACE_PATH, start_wait_s: float = 0.1) -> None:
        self.workspace_path = workspace_path.rstrip("/") or "/"
        # how long start_process waits for a command to end, to return its output at once
        self.start_wait_s = start_wait_s
        self._ended: OrderedDict[tuple[str, str], tuple[ProcessState, bytes]] = OrderedDict()
        self._ended_bytes = 0

    # -- what a subclass provides --------------------------------------------------------------------

    @abstractmethod
    async def create(self, sandbox_id: str, config: SandboxConfig) -> SandboxRef: ...

    @abstractmethod
    async def destroy(self, ref: SandboxRef) -> None: ...

    @abstractmethod
    async def _machine(self, ref: SandboxRef) -> Machine:
        """The running machine of this sandbox; SandboxGone when there is none."""

    @abstractmethod
    async def _run(
        self, machine: Machine, command: list[str], stdin: bytes | None, user: str | None
    ) -> ShellResult:
        """Run `command` (an argv) in the machine as `user` (None: the machine's), with `stdin`
        then EOF (None: no stdin); SandboxGone when the machine is gone."""

    @abstractmethod
    async def _check_still_there(self, machine: Machine) -> None:
        """SandboxGone when the machine no longer runs (after an operation failed)."""

    def _check_ref(self, ref: SandboxRef) -> None:
        """A ref of this provider, with a valid id."""
        if ref.provider != self.name:
            raise SandboxError(
                f"sandbox {ref.sandbox_id!r} belongs to provider {ref.provider!r}, not {self.name!r}"
            )
        check_id("sandbox", ref.sandbox_id)

    async def mount_bucket(self, ref: SandboxRef, mount: BucketMount) -> None:
        raise SandboxUnavailable(
            f"the {self.name} provider does not mount buckets (it would need FUSE and extra privileges "
            "in the sandbox); use the local provider for runs with mounts"
        )

    # -- sandboxes -----------------------------------------------------------------------------------

    async def health(self, ref: SandboxRef) -> bool:
        try:
            await self._machine(ref)
        except SandboxError:
            return False
        return True

    async def _setup(self, machine: Machine) -> None:
        """As root: the workspace and the state dir, owned by the sandbox's user."""
        result = await self._exec(machine, ["setup", machine.user], user="0")
        if result.code != 0:
            raise SandboxUnavailable(
                f"cannot prepare {self.workspace_path} and {STATE_DIR} in the sandbox "
                f"{machine.name!r}: {result.message or f'exit code {result.code}'}"
            )

    # -- processes -----------------------------------------------------------------------------------

    async def start_process(self, ref: SandboxRef, spec: ProcessSpec) -> ProcessState:
        machine = await self._machine(ref)
        process_id = check_id("process", spec.process_id)
        workdir = "/".join(split_relative(spec.workdir))
        check_env(spec.env)
        if any("\0" in arg for arg in spec.argv):
            raise SandboxError("argv must not contain NUL bytes")
        env = {**({"TERM": "xterm"} if spec.tty else {}), **spec.env}
        argv = ["env", *(f"{name}={value}" for name, value in env.items()), *spec.argv] if env else spec.argv
        tty_command = f"exec {shlex.join(argv)}" if spec.tty else ""
        steps = str(max(0, round(self.start_wait_s * 100)))
        args = ["start", SUPERVISOR, process_id, workdir, tty_command, steps, str(INLINE_OUTPUT_BYTES), *argv]
        result = await self._exec(machine, args)
        if result.code == NO_STATE_DIR:  # a user's machine, used for the first time
            await self._setup(machine)
            result = await self._exec(machine, args)
        self._raise_for(result, process_id=process_id, sandbox_id=ref.sandbox_id)
        started, _, report = result.stdout.partition(b"\n")
        if not report.startswith(STATE_TAG):
            # the engine cut the output short (podman can, under load): the process is started,
            # its state is asked for again
            report = (await self._state_report(machine, process_id, ref.sandbox_id)).stdout
        state = self._remember(machine, self._parse_state(process_id, report))
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
        machine = await self._machine(ref)
        check_id("process", process_id)
        cached = self._ended.get((machine.id, process_id))
        if cached is not None:
            self._ended.move_to_end((machine.id, process_id))
            return cached[0]
        result = await self._state_report(machine, process_id, ref.sandbox_id)
        return self._remember(machine, self._parse_state(process_id, result.stdout))

    async def _state_report(self, machine: Machine, process_id: str, sandbox_id: str) -> ShellResult:
        """A process's state report, asked again when the engine cut one short."""
        for _attempt in range(READ_ATTEMPTS):
            result = await self._exec(machine, ["state", process_id, str(INLINE_OUTPUT_BYTES)])
            self._raise_for(result, process_id=process_id, sandbox_id=sandbox_id)
            if result.stdout.startswith(STATE_TAG):
                break
            log.warning("sandbox.output_cut_short", sandbox_id=sandbox_id, operation="state")
        return result

    async def read_output(self, ref: SandboxRef, process_id: str, offset: int, max_bytes: int) -> OutputChunk:
        if offset < 0 or max_bytes < 0:
            raise SandboxError("offset and max_bytes must not be negative")
        machine = await self._machine(ref)
        check_id("process", process_id)
        cached = self._ended.get((machine.id, process_id))
        if cached is not None:
            data = cached[1][offset : offset + max_bytes]
            return OutputChunk(data=data, offset=offset, next_offset=offset + len(data))
        wanted = min(max_bytes, MAX_READ_BYTES)
        result = await self._exec(machine, ["output", process_id, str(offset), str(wanted)])
        self._raise_for(result, process_id=process_id, sandbox_id=ref.sandbox_id)
        skip = offset % READ_BLOCK
        data = result.stdout[skip : skip + wanted]
        return OutputChunk(data=data, offset=offset, next_offset=offset + len(data))

    async def write_stdin(self, ref: SandboxRef, process_id: str, data: bytes) -> None:
        machine = await self._machine(ref)
        check_id("process", process_id)
        result = await self._exec(machine, ["stdin", process_id], stdin=data)
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
        machine = await self._machine(ref)
        check_id("process", process_id)
        if (machine.id, process_id) in self._ended:
            return
        result = await self._exec(machine, ["kill", process_id])
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

    def _remember(self, machine: Machine, parsed: tuple[ProcessState, bytes | None]) -> ProcessState:
        """An ended process with its whole output never changes again: keep it."""
        state, output = parsed
        if output is None:
            return state
        key = (machine.id, state.process_id)
        if key not in self._ended:
            self._ended[key] = (state, output)
            self._ended_bytes += len(output)
            while self._ended_bytes > CACHE_BYTES and self._ended:
                _, (_, dropped) = self._ended.popitem(last=False)
                self._ended_bytes -= len(dropped)
        return state

    def _forget(self, machine_id: str) -> None:
        for key in [key for key in self._ended if key[0] == machine_id]:
            self._ended_bytes -= len(self._ended.pop(key)[1])

    # -- files ---------------------------------------------------------------------------------------

    async def read_file(self, ref: SandboxRef, path: str) -> bytes:
        relative = "/".join(split_relative(path))
        machine = await self._machine(ref)
        for _attempt in range(READ_ATTEMPTS):
            result = await self._exec(machine, ["read", relative])
            self._raise_for(result)
            size = result.stderr.rpartition(SIZE_MARK.encode())[2].partition(b"\n")[0]
            if size.isdigit() and int(size) == len(result.stdout):
                return result.stdout
            # cut short by the engine, or the file changed while it was read: read it again
            log.warning(
                "sandbox.output_cut_short", sandbox_id=ref.sandbox_id, operation="read", path=relative
            )
        raise SandboxError(
            f"{path!r} could not be read whole ({READ_ATTEMPTS} tries): it keeps changing, or the engine "
            "cuts its output short"
        )

    async def write_file(self, ref: SandboxRef, path: str, data: bytes, mode: int = 0o644) -> None:
        parts = split_relative(path)
        if not parts:
            raise IsADirectoryError(f"is a directory: {path or '.'}")
        machine = await self._machine(ref)
        args = ["write", "/".join(parts[:-1]), parts[-1], format(mode & 0o777, "o")]
        self._raise_for(await self._exec(machine, args, stdin=data))

    async def delete_file(self, ref: SandboxRef, path: str) -> None:
        parts = split_relative(path)
        if not parts:
            raise IsADirectoryError(f"is a directory: {path or '.'}")
        machine = await self._machine(ref)
        self._raise_for(await self._exec(machine, ["delete", "/".join(parts[:-1]), parts[-1]]))

    async def list_dir(self, ref: SandboxRef, path: str = ".") -> list[FileEntry]:
        relative = "/".join(split_relative(path))
        machine = await self._machine(ref)
        result = await self._exec(machine, ["list", relative])
        self._raise_for(result)
        return file_entries(parse_listing(result.stdout), relative)

    async def scan_workspace(self, ref: SandboxRef) -> list[WorkspaceStat]:
        machine = await self._machine(ref)
        result = await self._exec(machine, ["scan"])
        self._raise_for(result)
        return await asyncio.to_thread(lambda: workspace_stats(parse_listing(result.stdout)))

    async def export_paths(self, ref: SandboxRef, paths: list[str]) -> bytes:
        relatives = ["/".join(split_relative(path)) for path in paths]
        machine = await self._machine(ref)
        result = await self._exec(machine, ["export", *relatives])
        if result.code not in (0, None) and b"No such file" in result.stderr:
            raise FileNotFoundError(
                f"a path vanished from the workspace while it was exported: {result.message}"
            )
        self._raise_for(result)
        try:
            return await asyncio.to_thread(normalized_export, result.stdout)
        except Exception as error:  # a truncated or garbled archive from the machine's tar
            raise SandboxError(f"the sandbox's tar gave an unreadable archive: {error}") from error

    async def import_paths(self, ref: SandboxRef, archive: bytes) -> None:
        # checked before anything reaches the machine: a refused archive writes nothing
        plan = await asyncio.to_thread(checked_import, archive)
        machine = await self._machine(ref)
        args = ["import", str(len(plan.parents)), *(f"./{path}" for path in plan.parents)]
        for mode, paths in plan.directories.items():
            args += [format(mode, "o"), str(len(paths)), *(f"./{path}" for path in paths)]
        result = await self._exec(machine, args, stdin=plan.archive)
        if result.code not in ANSWERS and b"Is a directory" in result.stderr:
            raise IsADirectoryError(
                f"the archive would replace a directory in the workspace: {result.message}"
            )
        self._raise_for(result)

    # -- running operations -------------------------------------------------------------------------

    async def _exec(
        self, machine: Machine, args: list[str], stdin: bytes | None = None, user: str | None = None
    ) -> ShellResult:
        """One operation of the script; a failure that is no answer is checked against a machine
        that died under it (SandboxGone). An operation that is safe to repeat is tried again when
        its status never came back (an engine that cut its output short) or the SDK failed."""
        command = ["sh", "-c", OPERATIONS, "farline", self.workspace_path, STATE_DIR, *args]
        attempts = OPERATION_ATTEMPTS if args[0] in REPEATABLE_OPERATIONS else 1
        attempt = 0
        while True:
            attempt += 1
            try:
                result = await self._run(machine, command, stdin, user)
            except (SandboxGone, SandboxUnavailable):
                raise
            except SandboxError as error:
                await self._check_still_there(machine)
                if attempt == attempts:
                    raise
                log.warning("sandbox.operation_retried", operation=args[0], attempt=attempt, error=str(error))
                continue
            if result.code not in ANSWERS:
                await self._check_still_there(machine)
            if result.complete or attempt == attempts:
                return result
            log.warning("sandbox.operation_retried", operation=args[0], attempt=attempt, error="no status")

    @staticmethod
    def _raise_for(result: ShellResult, process_id: str | None = None, sandbox_id: str | None = None) -> None:
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
