"""The local sandbox provider: a directory per sandbox, every process under bubblewrap.

Layout under `root`:

    <sandbox_id>/sandbox.json          the SandboxConfig, fixed at creation
    <sandbox_id>/workspace/            the writable workspace, /workspace inside
    <sandbox_id>/procs/<process_id>/   one process (see local_supervisor): spec.json, lock, pid,
                                       started_at, stdin (a FIFO), output.head, output.ring,
                                       output.size, ended_at, exit_code, supervisor.log
    <sandbox_id>/procs.deleted/<id>    an empty file for each process deleted to make room

Inside a sandbox: a read-only /usr and /etc (and /bin, /lib... as the host has
them), a private /tmp, its own pid, ipc and uts namespaces, a network namespace
with only loopback unless SandboxConfig.network, no capabilities, and an
environment of PATH, HOME=/workspace, LANG=C.UTF-8, TERM=dumb (TERM=xterm with
a tty) and PWD, set by bubblewrap, plus SandboxConfig.env and ProcessSpec.env,
the last one winning. Nothing comes from the worker's environment.

Every process runs in a session of its own (bubblewrap's --new-session, so
nothing in the sandbox can push input into a terminal outside it). A tty process
gets a pseudo-terminal of its own as stdin, stdout and stderr, and `setsid --ctty`
makes that terminal the controlling terminal of its new session: Ctrl-C written
to its stdin interrupts it, and /dev/tty works.

When the worker runs as root, bubblewrap runs as host uid and gid
`sandbox_uid` (nobody by default) with no supplementary groups; otherwise it
runs as the worker's user. Either way the uid is the same inside and outside.

Each process runs under a detached supervisor, so it survives the worker; a
killed process gets exit code 137 (128 + SIGKILL). Its output is kept bounded:
the first and the newest 512 KiB. At most MAX_LIVE_PROCESSES run at once in a
sandbox, and at most MAX_KEPT_PROCESSES process directories are kept: starting
one more deletes the finished ones that ended first.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import structlog

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
from sandbox_providers.local_supervisor import (
    ENDED_AT_FILE,
    EXIT_CODE_FILE,
    KILLED_EXIT_CODE,
    LOCK_FILE,
    LOG_FILE,
    PID_FILE,
    SPEC_FILE,
    STAGED_WORKSPACE,
    STARTED_AT_FILE,
    STDIN_FIFO,
    SupervisorSpec,
    read_output_log,
    read_output_size,
    write_atomic,
)
from sandbox_providers.rclone_mount import mount_bucket, unmount_all_under
from sandbox_providers.workspace_fs import Workspace, split_relative

log = structlog.get_logger(__name__)

# written first by destroy(): the sandbox counts as gone while it is being torn down
_DESTROYING = "destroying"
_REMOVE_ATTEMPTS = 5
_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
# Isolated mode without site-packages: the supervisor needs only the standard library. It
# is imported rather than run as a script, so that its cached bytecode is used.
_SUPERVISOR_COMMAND = [
    sys.executable,
    "-I",
    "-S",
    "-c",
    f"import sys; sys.path.append({str(Path(__file__).resolve().parent)!r}); "
    "import local_supervisor; sys.exit(local_supervisor.main(sys.argv[1:]))",
]
_BASE_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": WORKSPACE_PATH,
    "LANG": "C.UTF-8",
    "TERM": "dumb",
}
_TTY_ENV = {"TERM": "xterm"}
# host directories next to /usr that the sandbox gets, read-only, as the host has them
_SYSTEM_DIRS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
# util-linux's setsid, from the host's /usr that the sandbox shares; without it, a tty
# process still runs on its terminal, only without a controlling terminal
_SETSID = shutil.which("setsid", path="/usr/bin:/bin")

MAX_LIVE_PROCESSES = 64
MAX_KEPT_PROCESSES = 64
DELETED_DIR = "procs.deleted"

# a process directory with no supervisor pid after this long is a crashed start
STARTUP_GRACE_S = 5.0
SUPERVISOR_START_TIMEOUT_S = 15.0
KILL_TIMEOUT_S = 5.0
STDIN_WRITE_TIMEOUT_S = 10.0
_POLL_S = 0.02
# a supervisor is up within milliseconds: look often while starting one
_START_POLL_S = 0.002

# (bwrap, uid) pairs that were seen to work: what this machine allows does not change under us
_VERIFIED: set[tuple[str, int | None]] = set()

_NO_BWRAP = "bubblewrap (bwrap) is not installed: run `apt-get install bubblewrap`"


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


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _read_float(path: Path) -> float | None:
    try:
        return float(path.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None


def _supervisor_alive(procdir: Path) -> bool:
    """The supervisor holds an exclusive flock on its lock file for as long as it lives."""
    try:
        fd = os.open(procdir / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _supervisor_env() -> dict[str, str]:
    """The supervisor's environment: enough to run Python, none of the worker's secrets."""
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
    }


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """An exclusive flock on a directory, across threads and processes (workers)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _running_without_exit_code(procdir: Path) -> bool:
    """For a process with no exit code: its supervisor lives, or it is still starting."""
    if (procdir / PID_FILE).exists():
        return _supervisor_alive(procdir)
    return _age_s(procdir) < STARTUP_GRACE_S


def _end_time(procdir: Path) -> float:
    """When a finished process ended; for a lost one, when its directory last changed."""
    ended = _read_float(procdir / ENDED_AT_FILE)
    if ended is not None:
        return ended
    try:
        return procdir.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _age_s(procdir: Path) -> float:
    """How long ago this process directory (or its spec) was written."""
    for path in (procdir / SPEC_FILE, procdir):
        try:
            return time.time() - path.stat().st_mtime
        except FileNotFoundError:
            continue
    return 0.0


def _bwrap_argv(
    bwrap: str,
    config: SandboxConfig,
    workspace_source: str,
    workdir: str,
    env: dict[str, str],
    argv: list[str],
    tty: bool = False,
) -> list[str]:
    """The bubblewrap command line of one sandboxed process."""
    args = [bwrap, "--tmpfs", "/", "--ro-bind", "/usr", "/usr"]
    for name in _SYSTEM_DIRS:
        host = Path("/", name)
        if host.is_symlink():
            args += ["--symlink", os.readlink(host), f"/{name}"]
        elif host.is_dir():
            args += ["--ro-bind", str(host), f"/{name}"]
    args += ["--ro-bind", "/etc", "/etc"]
    if config.network:
        # /etc/resolv.conf often points there
        args += ["--ro-bind-try", "/run/systemd/resolve", "/run/systemd/resolve"]
    args += ["--bind", workspace_source, WORKSPACE_PATH]
    args += ["--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--remount-ro", "/"]
    args += ["--unshare-all", *(["--share-net"] if config.network else [])]
    args += ["--die-with-parent", "--new-session"]
    args += ["--chdir", f"{WORKSPACE_PATH}/{workdir}" if workdir else WORKSPACE_PATH, "--clearenv"]
    for key, value in {**_BASE_ENV, **(_TTY_ENV if tty else {}), **config.env, **env}.items():
        args += ["--setenv", key, value]
    if tty and _SETSID is not None:
        # bubblewrap's init leads the session it made, so setsid does not fork: it execs
        argv = [_SETSID, "--ctty", "--", *argv]
    return [*args, "--", *argv]


class LocalProvider:
    """Sandboxes under bubblewrap on this machine (see the module docstring)."""

    name = "local"

    def __init__(self, root: Path, bwrap_path: str = "bwrap", sandbox_uid: int = 65534) -> None:
        self.root = Path(root)
        self.bwrap_path = bwrap_path
        self.sandbox_uid = sandbox_uid
        # as root, drop to the sandbox uid; otherwise the worker's own user is all we have
        self._run_as = sandbox_uid if os.geteuid() == 0 else None

    @classmethod
    def from_config(cls, config: FarlineConfig) -> LocalProvider:
        return cls(config.sandboxes_dir, bwrap_path=config.bwrap_path, sandbox_uid=config.sandbox_uid)

    # -- sandboxes -----------------------------------------------------------------------------------

    async def create(self, sandbox_id: str, config: SandboxConfig) -> SandboxRef:
        _check_id("sandbox", sandbox_id)
        _check_env(config.env)
        self.root.mkdir(parents=True, exist_ok=True)
        await self._ensure_usable()
        await asyncio.to_thread(self._create_dirs, self.root / sandbox_id, config)
        log.info("sandbox.created", sandbox_id=sandbox_id, network=config.network, env=sorted(config.env))
        return SandboxRef(provider=self.name, sandbox_id=sandbox_id)

    def _create_dirs(self, sandbox: Path, config: SandboxConfig) -> None:
        if (sandbox / _DESTROYING).exists():
            self._remove_tree(sandbox)  # a destroy that did not finish
        sandbox.mkdir(mode=0o700, exist_ok=True)
        (sandbox / "procs").mkdir(mode=0o700, exist_ok=True)
        workspace = sandbox / "workspace"
        config_file = sandbox / "sandbox.json"
        if not config_file.exists():
            write_atomic(config_file, config.model_dump_json())
        elif SandboxConfig.model_validate_json(config_file.read_bytes()) != config:
            log.warning("sandbox.config_kept", sandbox_id=sandbox.name, reason="exists with another config")
        # the workspace last: a sandbox "exists" once its workspace does
        workspace.mkdir(mode=0o755, exist_ok=True)
        if self._run_as is not None:
            os.chown(workspace, self._run_as, self._run_as)

    async def health(self, ref: SandboxRef) -> bool:
        try:
            self._sandbox_dir(ref)
            await self._ensure_usable()
        except SandboxError:
            return False
        return True

    async def destroy(self, ref: SandboxRef) -> None:
        self._check_ref(ref)
        sandbox = self.root / ref.sandbox_id
        if not sandbox.exists():
            return
        # from here on the sandbox is gone for every caller, even while its processes stop
        (sandbox / _DESTROYING).touch()
        procs = sandbox / "procs"
        live = (
            [procdir for procdir in procs.iterdir() if _supervisor_alive(procdir)] if procs.is_dir() else []
        )
        await self._stop(live)
        # never delete through a mount (a writable bucket)
        await asyncio.to_thread(unmount_all_under, sandbox)
        await asyncio.to_thread(self._remove_tree, sandbox)
        log.info("sandbox.destroyed", sandbox_id=ref.sandbox_id, killed=len(live))

    def _remove_tree(self, sandbox: Path) -> None:
        def make_writable_and_retry(function: Callable[[str], object], path: str, _exc: object) -> None:
            # a sandbox running as the worker's own user may leave read-only directories
            try:
                os.chmod(os.path.dirname(path), 0o700)
                function(path)
            except FileNotFoundError:
                pass  # removed meanwhile

        # a supervisor that is just ending may still write its last files while the tree goes
        for attempt in range(_REMOVE_ATTEMPTS):
            try:
                shutil.rmtree(sandbox, onerror=make_writable_and_retry)
                return
            except OSError as error:
                if error.errno != errno.ENOTEMPTY or attempt == _REMOVE_ATTEMPTS - 1:
                    raise
                time.sleep(0.1)

    # -- processes -----------------------------------------------------------------------------------

    async def start_process(self, ref: SandboxRef, spec: ProcessSpec) -> ProcessState:
        sandbox = self._sandbox_dir(ref)
        process_id = _check_id("process", spec.process_id)
        workdir = "/".join(split_relative(spec.workdir))
        _check_env(spec.env)
        if any("\0" in arg for arg in spec.argv):
            raise SandboxError("argv must not contain NUL bytes")
        bwrap = self._bwrap()
        await self._ensure_usable()
        config = SandboxConfig.model_validate_json((sandbox / "sandbox.json").read_bytes())
        supervisor_spec = self._supervisor_spec(
            bwrap, config, sandbox / "workspace", workdir=workdir, env=spec.env, argv=spec.argv, tty=spec.tty
        )
        procdir = sandbox / "procs" / process_id
        started = await asyncio.to_thread(self._claim_and_launch, procdir, supervisor_spec)
        await self._wait_for_supervisor(procdir, supervisor_spec)
        state = self._state(procdir, process_id)
        log.info(
            "sandbox.process_started" if started else "sandbox.process_attached",
            sandbox_id=ref.sandbox_id,
            process_id=process_id,
            argv0=spec.argv[0],
            tty=spec.tty,
            running=state.running,
        )
        return state

    def _claim_and_launch(self, procdir: Path, spec: SupervisorSpec) -> bool:
        """Start the process unless this id exists already; True when this call started it."""
        procs = procdir.parent
        with _locked(procs):  # counting and claiming are one step for every worker
            claimed = not procdir.exists()
            if claimed:
                self._check_not_deleted(procdir)
                self._make_room(procs)
                procdir.mkdir(mode=0o700)
                write_atomic(procdir / SPEC_FILE, spec.to_json())
        if not claimed:
            return self._relaunch_if_stalled(procdir, spec)
        self._launch(procdir)
        return True

    @staticmethod
    def _check_not_deleted(procdir: Path) -> None:
        """A process deleted to make room ran already: never start it again under its id."""
        if (procdir.parent.parent / DELETED_DIR / procdir.name).exists():
            raise ProcessNotFound(_deleted_message(procdir))

    def _make_room(self, procs: Path) -> None:
        """Refuse a process beyond MAX_LIVE_PROCESSES; delete the finished processes that ended
        first while a new one would make more than MAX_KEPT_PROCESSES."""
        kept = [procdir for procdir in procs.iterdir() if procdir.is_dir()]
        finished = [
            procdir
            for procdir in kept
            if (procdir / EXIT_CODE_FILE).exists() or not _running_without_exit_code(procdir)
        ]
        running = len(kept) - len(finished)
        if running >= MAX_LIVE_PROCESSES:
            raise SandboxLimitError(
                f"sandbox {procs.parent.name!r} already runs {running} processes, the most it allows "
                f"({MAX_LIVE_PROCESSES}): wait for one to end or kill one, then start this one again"
            )
        excess = len(kept) + 1 - MAX_KEPT_PROCESSES
        if excess <= 0:
            return
        deleted_dir = procs.parent / DELETED_DIR
        deleted_dir.mkdir(mode=0o700, exist_ok=True)
        for procdir in sorted(finished, key=_end_time)[:excess]:
            (deleted_dir / procdir.name).touch()
            self._remove_tree(procdir)
            log.info("sandbox.process_deleted", sandbox_id=procs.parent.name, process_id=procdir.name)

    def _relaunch_if_stalled(self, procdir: Path, spec: SupervisorSpec) -> bool:
        """A process directory whose supervisor never wrote its pid: a start that crashed."""
        if (procdir / PID_FILE).exists() or (procdir / EXIT_CODE_FILE).exists():
            return False
        if _age_s(procdir) < STARTUP_GRACE_S:
            return False  # another start may be under way
        if not (procdir / SPEC_FILE).exists():
            write_atomic(procdir / SPEC_FILE, spec.to_json())
        log.warning("sandbox.process_relaunched", procdir=str(procdir), reason="no supervisor pid")
        # the supervisor's lock makes a second concurrent relaunch exit at once
        self._launch(procdir)
        return True

    def _launch(self, procdir: Path) -> None:
        with open(procdir / LOG_FILE, "ab") as log_file:
            launcher = subprocess.Popen(
                [*_SUPERVISOR_COMMAND, str(procdir)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
                cwd="/",
                env=_supervisor_env(),
                close_fds=True,
                start_new_session=True,
            )
        # the launcher forks the supervisor and exits at once: reap it, leave no zombie
        if launcher.wait(timeout=SUPERVISOR_START_TIMEOUT_S) != 0:
            raise SandboxError(f"the process supervisor failed to start: {self._log_tail(procdir)}")

    async def _wait_for_supervisor(self, procdir: Path, spec: SupervisorSpec) -> None:
        deadline = time.monotonic() + STARTUP_GRACE_S + SUPERVISOR_START_TIMEOUT_S
        relaunched = False
        while not ((procdir / PID_FILE).exists() or (procdir / EXIT_CODE_FILE).exists()):
            if time.monotonic() > deadline:
                tail = self._log_tail(procdir)
                raise SandboxError(f"the supervisor of {procdir.name!r} did not start: {tail}")
            if not relaunched:
                relaunched = await asyncio.to_thread(self._relaunch_if_stalled, procdir, spec)
            await asyncio.sleep(_START_POLL_S)

    @staticmethod
    def _log_tail(procdir: Path) -> str:
        try:
            text = (procdir / LOG_FILE).read_text(errors="replace").strip()
        except FileNotFoundError:
            text = ""
        return text[-1000:] or f"nothing in {procdir / LOG_FILE}"

    async def process_state(self, ref: SandboxRef, process_id: str) -> ProcessState:
        procdir = self._procdir(ref, process_id)
        state = self._state(procdir, process_id)
        if not procdir.is_dir():  # deleted to make room while we looked
            raise ProcessNotFound(_deleted_message(procdir))
        return state

    def _state(self, procdir: Path, process_id: str) -> ProcessState:
        exit_code = _read_int(procdir / EXIT_CODE_FILE)
        running = exit_code is None and _running_without_exit_code(procdir)
        if exit_code is None and not running:
            exit_code = _read_int(procdir / EXIT_CODE_FILE)  # it may have just finished
        # after the exit code: once that is there, the size is final
        output_size = read_output_size(procdir)
        return ProcessState(
            process_id=process_id,
            running=running,
            exit_code=exit_code,
            lost=not running and exit_code is None,
            output_size=output_size,
            started_at=_read_float(procdir / STARTED_AT_FILE),
            ended_at=None if running else _read_float(procdir / ENDED_AT_FILE),
        )

    async def read_output(self, ref: SandboxRef, process_id: str, offset: int, max_bytes: int) -> OutputChunk:
        procdir = self._procdir(ref, process_id)
        if offset < 0 or max_bytes < 0:
            raise SandboxError("offset and max_bytes must not be negative")
        try:
            dropped, data = await asyncio.to_thread(read_output_log, procdir, offset, max_bytes)
        except FileNotFoundError:
            raise ProcessNotFound(_deleted_message(procdir)) from None
        return OutputChunk(
            data=data, offset=offset, next_offset=offset + dropped + len(data), dropped=dropped
        )

    async def write_stdin(self, ref: SandboxRef, process_id: str, data: bytes) -> None:
        procdir = self._procdir(ref, process_id)
        state = self._state(procdir, process_id)
        if not state.running:
            raise SandboxError(f"process {process_id!r} has ended ({_ended(state)}); its stdin is closed")
        await asyncio.to_thread(self._write_fifo, procdir, process_id, data)

    @staticmethod
    def _write_fifo(procdir: Path, process_id: str, data: bytes) -> None:
        try:
            fd = os.open(procdir / STDIN_FIFO, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.ENOENT):
                raise SandboxError(f"process {process_id!r} has no open stdin (it has ended)") from exc
            raise
        try:
            view = memoryview(data)
            deadline = time.monotonic() + STDIN_WRITE_TIMEOUT_S
            while view:
                try:
                    view = view[os.write(fd, view) :]
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise SandboxError(
                            f"process {process_id!r} is not reading its stdin; "
                            f"{len(view)} of {len(data)} bytes not written"
                        ) from None
                    time.sleep(_POLL_S)
                except BrokenPipeError as exc:
                    raise SandboxError(f"process {process_id!r} closed its stdin") from exc
        finally:
            os.close(fd)

    async def kill_process(self, ref: SandboxRef, process_id: str) -> None:
        procdir = self._procdir(ref, process_id)
        deadline = time.monotonic() + KILL_TIMEOUT_S
        # a process still starting: wait for its supervisor to be there to kill
        while not (procdir / PID_FILE).exists() and self._state(procdir, process_id).running:
            if time.monotonic() > deadline:
                raise SandboxError(f"process {process_id!r} is still starting; try again")
            await asyncio.sleep(_POLL_S)
        if self._state(procdir, process_id).running:
            await self._stop([procdir])
            log.info("sandbox.process_killed", sandbox_id=ref.sandbox_id, process_id=process_id)

    async def _stop(self, procdirs: list[Path]) -> None:
        """Kill these processes and wait until their supervisors have recorded exit code 137."""
        for procdir in procdirs:
            pid = _read_int(procdir / PID_FILE)
            if pid is not None and _supervisor_alive(procdir):
                # the supervisor SIGKILLs bubblewrap and the sandbox's init, then records the exit
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_TIMEOUT_S
        while any(_supervisor_alive(p) for p in procdirs) and time.monotonic() < deadline:
            await asyncio.sleep(_POLL_S)
        for procdir in procdirs:
            pid = _read_int(procdir / PID_FILE)
            if pid is None or not _supervisor_alive(procdir):
                continue
            # the supervisor did not answer: kill its whole group (itself and bubblewrap,
            # whose sandbox dies with it) and record the exit ourselves
            log.warning("sandbox.supervisor_unresponsive", procdir=str(procdir))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)  # the supervisor leads its own session and group
            while _supervisor_alive(procdir) and time.monotonic() < deadline + KILL_TIMEOUT_S:
                await asyncio.sleep(_POLL_S)
            if not (procdir / EXIT_CODE_FILE).exists():
                write_atomic(procdir / ENDED_AT_FILE, f"{time.time()!r}\n")
                write_atomic(procdir / EXIT_CODE_FILE, f"{KILLED_EXIT_CODE}\n")

    # -- files ---------------------------------------------------------------------------------------

    async def read_file(self, ref: SandboxRef, path: str) -> bytes:
        return await asyncio.to_thread(self._workspace(ref).read_file, path)

    async def write_file(self, ref: SandboxRef, path: str, data: bytes, mode: int = 0o644) -> None:
        await asyncio.to_thread(self._workspace(ref).write_file, path, data, mode)

    async def delete_file(self, ref: SandboxRef, path: str) -> None:
        await asyncio.to_thread(self._workspace(ref).delete_file, path)

    async def list_dir(self, ref: SandboxRef, path: str = ".") -> list[FileEntry]:
        return await asyncio.to_thread(self._workspace(ref).list_dir, path)

    async def scan_workspace(self, ref: SandboxRef) -> list[WorkspaceStat]:
        return await asyncio.to_thread(self._workspace(ref).scan)

    async def export_paths(self, ref: SandboxRef, paths: list[str]) -> bytes:
        return await asyncio.to_thread(self._workspace(ref).export_paths, paths)

    async def import_paths(self, ref: SandboxRef, archive: bytes) -> None:
        await asyncio.to_thread(self._workspace(ref).import_paths, archive)

    async def mount_bucket(self, ref: SandboxRef, mount: BucketMount) -> None:
        sandbox = self._sandbox_dir(ref)
        await asyncio.to_thread(
            mount_bucket, sandbox / "workspace", mount, sandbox / "rclone-cache", self._run_as
        )

    # -- helpers -------------------------------------------------------------------------------------

    def _check_ref(self, ref: SandboxRef) -> None:
        if ref.provider != self.name:
            raise SandboxError(
                f"sandbox {ref.sandbox_id!r} belongs to provider {ref.provider!r}, not {self.name!r}"
            )
        _check_id("sandbox", ref.sandbox_id)

    def _sandbox_dir(self, ref: SandboxRef) -> Path:
        self._check_ref(ref)
        sandbox = self.root / ref.sandbox_id
        if not (sandbox / "workspace").is_dir() or (sandbox / _DESTROYING).exists():
            raise SandboxGone(f"sandbox {ref.sandbox_id!r} does not exist (under {self.root})")
        return sandbox

    def _procdir(self, ref: SandboxRef, process_id: str) -> Path:
        sandbox = self._sandbox_dir(ref)
        procdir = sandbox / "procs" / _check_id("process", process_id)
        if not procdir.is_dir():
            if (sandbox / DELETED_DIR / process_id).exists():
                raise ProcessNotFound(_deleted_message(procdir))
            raise ProcessNotFound(f"no process {process_id!r} in sandbox {ref.sandbox_id!r}")
        return procdir

    def _workspace(self, ref: SandboxRef) -> Workspace:
        return Workspace(self._sandbox_dir(ref) / "workspace", owner=self._run_as)

    def _bwrap(self) -> str:
        found = shutil.which(self.bwrap_path)
        if found is None:
            raise SandboxUnavailable(f"{_NO_BWRAP} (looked for {self.bwrap_path!r})")
        return found

    def _supervisor_spec(
        self,
        bwrap: str,
        config: SandboxConfig,
        workspace: Path,
        *,
        workdir: str,
        env: dict[str, str],
        argv: list[str],
        tty: bool = False,
    ) -> SupervisorSpec:
        if self._run_as is None:
            return SupervisorSpec(
                bwrap_argv=_bwrap_argv(bwrap, config, str(workspace), workdir, env, argv, tty), tty=tty
            )
        # as root, the supervisor stages the workspace where the sandbox uid can bind it from
        return SupervisorSpec(
            bwrap_argv=_bwrap_argv(bwrap, config, STAGED_WORKSPACE, workdir, env, argv, tty),
            run_as=self._run_as,
            workspace=str(workspace),
            tty=tty,
        )

    async def _ensure_usable(self) -> None:
        """Check, once per process, that bubblewrap can build a sandbox here the way processes run."""
        bwrap = self._bwrap()
        if (bwrap, self._run_as) in _VERIFIED:
            return
        self.root.mkdir(parents=True, exist_ok=True)
        code, output = await asyncio.to_thread(self._probe, bwrap)
        if code != 0:
            raise SandboxUnavailable(
                f"bubblewrap ({bwrap}) cannot create a sandbox on this machine: {output.strip()[-600:]}\n"
                "It needs unprivileged user namespaces (`sysctl kernel.unprivileged_userns_clone=1`; "
                "on Ubuntu 24.04 also `sysctl kernel.apparmor_restrict_unprivileged_userns=0`) and, "
                "when the worker runs as root, CAP_SYS_ADMIN for a private mount namespace "
                "(in a container: --privileged, or a seccomp profile that allows unshare and mount)."
            )
        _VERIFIED.add((bwrap, self._run_as))

    def _probe(self, bwrap: str) -> tuple[int, str]:
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".bwrap-probe-") as workspace:
            if self._run_as is not None:
                os.chown(workspace, self._run_as, self._run_as)
            spec = self._supervisor_spec(
                bwrap, SandboxConfig(), Path(workspace), workdir="", env={}, argv=["true"]
            )
            result = subprocess.run(
                [*_SUPERVISOR_COMMAND, "--probe"],
                input=spec.to_json().encode(),
                capture_output=True,
                cwd="/",
                env=_supervisor_env(),
                timeout=60,
            )
        return result.returncode, (result.stdout + result.stderr).decode(errors="replace")


def _ended(state: ProcessState) -> str:
    return "lost" if state.lost else f"exit code {state.exit_code}"


def _deleted_message(procdir: Path) -> str:
    return (
        f"process {procdir.name!r} of sandbox {procdir.parent.parent.name!r} finished and was deleted "
        f"to make room (a sandbox keeps {MAX_KEPT_PROCESSES}); start new commands under new ids"
    )
