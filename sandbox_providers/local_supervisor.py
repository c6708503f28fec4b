"""The detached supervisor of one sandboxed process of the local provider.

`python -I -S sandbox_providers/local_supervisor.py <procdir>` detaches from its
caller (fork, new session), so it outlives the worker that started it. It reads
`procdir/spec.json` and runs the bubblewrap command in it. Files in `procdir`:

    spec.json       what to run (SupervisorSpec), written by the provider
    lock            flocked (exclusively) for as long as the supervisor lives: that lock,
                    not the pid, is what tells a worker the supervisor is alive
    pid             the supervisor's pid, written before the command starts
    started_at      epoch seconds when the command was started
    stdin           a FIFO: what anyone writes there reaches the command's stdin
    output.head     the first OUTPUT_HEAD_BYTES of the combined stdout and stderr
    output.ring     the newest bytes after the head: a ring of OUTPUT_RING_BYTES
    output.size     8 bytes, little endian: how many output bytes there were so far
    ended_at        epoch seconds when the command ended
    exit_code       written last, once all output is in the files above
    supervisor.log  the supervisor's own log: a line per event, with key=value pairs

The command's output goes to a pipe (or, with `tty`, a pseudo-terminal) that
the supervisor reads, so that a command printing gigabytes costs at most
OUTPUT_HEAD_BYTES + OUTPUT_RING_BYTES on disk. Offsets are absolute (byte n of
everything the command wrote); `read_output_log` says how many bytes of the
middle it could no longer return. Readers run in other processes while the
supervisor writes: the supervisor writes the bytes first and then publishes the
new size with one 8-byte pwrite; a reader reads the size, the bytes, then the
size again, and trusts only ring bytes that no write could have reached. So
while the command runs, readers get the newest 448 KiB (the ring less the chunk
that may be in flight); once it has ended, the newest 512 KiB.

SIGTERM asks the supervisor to SIGKILL the sandbox; the exit code is then 137
(128 + SIGKILL), the same code bubblewrap reports for a command killed by
SIGKILL inside the sandbox.

`python -I -S sandbox_providers/local_supervisor.py --probe` runs a spec read from
stdin in the foreground (output to stdout, same exit code): the provider's
check that bubblewrap works on this machine.

Standard library only, and only modules that import in microseconds: starting
a command must cost milliseconds, and `signal`, `json` (through `re`), `subprocess`,
`pathlib`, `dataclasses` and `contextlib` cost more than everything else together.
Their C cores (`_signal`, `_json`) do the same work here. The provider runs this
module from its cached bytecode (see local.py), which saves compiling it each time.
"""

from __future__ import annotations

import _json
import _signal
import errno
import fcntl
import os
import select
import sys
import termios
import time

SPEC_FILE = "spec.json"
PID_FILE = "pid"
EXIT_CODE_FILE = "exit_code"
STARTED_AT_FILE = "started_at"
ENDED_AT_FILE = "ended_at"
OUTPUT_HEAD_FILE = "output.head"
OUTPUT_RING_FILE = "output.ring"
OUTPUT_SIZE_FILE = "output.size"
STDIN_FIFO = "stdin"
LOCK_FILE = "lock"
LOG_FILE = "supervisor.log"

OUTPUT_HEAD_BYTES = 512 * 1024
OUTPUT_RING_BYTES = 512 * 1024
# the most the supervisor reads, and writes to the ring, before it publishes the new size
OUTPUT_CHUNK_BYTES = 64 * 1024
# stdin read from the FIFO but not yet taken by the terminal; beyond it the FIFO fills up
_STDIN_BACKLOG_BYTES = 64 * 1024
# the classic terminal size; programs that format for the width get 80 columns
TTY_ROWS = 24
TTY_COLUMNS = 80
# termios.IUTF8 on Linux (the termios module only names it from Python 3.12)
_IUTF8 = 0o040000
# once the sandbox has exited its output ends at once; this only bounds a stray writer
_DRAIN_AFTER_EXIT_S = 5.0

KILLED_EXIT_CODE = 128 + _signal.SIGKILL
# the process could not be started at all (the reason is in its output)
START_FAILED_EXIT_CODE = 126

# Where the workspace is bind-mounted, in a private mount namespace, for a
# bubblewrap that runs as the sandbox uid (see _stage_workspace_and_drop_privileges).
STAGED_WORKSPACE = "/tmp/farline-workspace"

_CLONE_NEWNS = 0x00020000
_MS_NOSUID = 0x2
_MS_NODEV = 0x4
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18

_CHILD_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


class SupervisorSpec:
    """What the provider asks the supervisor to run."""

    __slots__ = ("bwrap_argv", "run_as", "tty", "workspace")

    def __init__(
        self,
        bwrap_argv: list[str],
        run_as: int | None = None,
        workspace: str | None = None,
        tty: bool = False,
    ) -> None:
        # the complete bubblewrap command line, command included
        self.bwrap_argv = bwrap_argv
        # host uid (and gid) to run bubblewrap as; None runs it as the supervisor's own user
        self.run_as = run_as
        # host path of the workspace, staged at STAGED_WORKSPACE when run_as is set
        self.workspace = workspace
        # run the command on a pseudo-terminal instead of a pipe
        self.tty = tty

    def to_json(self) -> str:
        """JSON, written by the provider (which may import json)."""
        import json

        return json.dumps({name: getattr(self, name) for name in self.__slots__})

    @classmethod
    def from_json(cls, data: str | bytes) -> SupervisorSpec:
        spec = _parse_json(data)
        if not isinstance(spec, dict):
            raise ValueError(f"a supervisor spec is a JSON object, not {type(spec).__name__}")
        return cls(**spec)


class _JsonContext:
    """What the C scanner of `json` reads from a JSONDecoder: the defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = None


_scan_json = _json.make_scanner(_JsonContext())


def _parse_json(data: str | bytes) -> object:
    """json.loads, without importing json."""
    text = (data.decode() if isinstance(data, bytes) else data).strip()
    try:
        value, end = _scan_json(text, 0)
    except StopIteration:
        raise ValueError(f"not JSON: {text[:80]!r}") from None
    if end != len(text):
        raise ValueError(f"extra data after JSON: {text[end : end + 80]!r}")
    return value


def _log(event: str, **fields: object) -> None:
    """One line on stderr (the process's supervisor.log): the time, the event, key=value pairs."""
    pairs = "".join(f" {key}={value}" for key, value in fields.items())
    print(f"{time.time():.3f} {event}{pairs}", file=sys.stderr, flush=True)


def write_atomic(path: str | os.PathLike[str], text: str) -> None:
    path = os.fspath(path)
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


# -- the output log ---------------------------------------------------------------------------------


class OutputLog:
    """The writer's side of output.head, output.ring and output.size (one writer, the supervisor).

    Byte n of the stream is at n in the head while n < OUTPUT_HEAD_BYTES, else at
    (n - OUTPUT_HEAD_BYTES) % OUTPUT_RING_BYTES in the ring. The size is published
    after the bytes, at most OUTPUT_CHUNK_BYTES at a time.
    """

    def __init__(self, procdir: str) -> None:
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        self.head = os.open(os.path.join(procdir, OUTPUT_HEAD_FILE), flags, 0o600)
        self.ring = os.open(os.path.join(procdir, OUTPUT_RING_FILE), flags, 0o600)
        self.size = os.open(os.path.join(procdir, OUTPUT_SIZE_FILE), flags, 0o600)
        self.total = 0
        os.pwrite(self.size, bytes(8), 0)

    def append(self, data: bytes) -> None:
        for start in range(0, len(data), OUTPUT_CHUNK_BYTES):
            self._append_chunk(memoryview(data)[start : start + OUTPUT_CHUNK_BYTES])

    def _append_chunk(self, chunk: memoryview) -> None:
        position = self.total
        rest = chunk
        if position < OUTPUT_HEAD_BYTES:
            n = min(len(rest), OUTPUT_HEAD_BYTES - position)
            _pwrite_all(self.head, rest[:n], position)
            position, rest = position + n, rest[n:]
        while rest:
            at = (position - OUTPUT_HEAD_BYTES) % OUTPUT_RING_BYTES
            n = min(len(rest), OUTPUT_RING_BYTES - at)
            _pwrite_all(self.ring, rest[:n], at)
            position, rest = position + n, rest[n:]
        self.total = position
        # one aligned 8-byte write: a reader sees the old size or the new one
        os.pwrite(self.size, position.to_bytes(8, "little"), 0)

    def close(self) -> None:
        for fd in (self.head, self.ring, self.size):
            os.close(fd)


def _pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    while data:
        written = os.pwrite(fd, data, offset)
        data, offset = data[written:], offset + written


def read_output_size(procdir: str | os.PathLike[str]) -> int:
    """How many bytes the process has written so far (0 before its supervisor ran)."""
    try:
        fd = os.open(os.path.join(procdir, OUTPUT_SIZE_FILE), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return 0
    try:
        return _read_size(fd)
    finally:
        os.close(fd)


def _read_size(fd: int) -> int:
    data = os.pread(fd, 8, 0)
    return int.from_bytes(data, "little") if len(data) == 8 else 0


def _ring_start(size: int, writer_done: bool) -> int:
    """The first stream byte the ring still holds for sure, given the published size.

    A running writer may already be overwriting the ring for the next chunk it
    has not published yet, so the oldest OUTPUT_CHUNK_BYTES are not trusted then.
    """
    unsafe = 0 if writer_done else OUTPUT_CHUNK_BYTES
    return max(OUTPUT_HEAD_BYTES, size - OUTPUT_RING_BYTES + unsafe)


def read_output_log(procdir: str | os.PathLike[str], offset: int, max_bytes: int) -> tuple[int, bytes]:
    """Up to `max_bytes` of output from `offset`, as `(dropped, data)`.

    `data` starts at `offset + dropped`: `dropped` is non-zero when `offset` points
    into the middle of the stream that is no longer held. Raises FileNotFoundError
    when the process directory is gone.
    """
    # the exit code is written after the last byte: once it is there, nothing moves any more
    writer_done = os.path.exists(os.path.join(procdir, EXIT_CODE_FILE))
    try:
        size_fd = os.open(os.path.join(procdir, OUTPUT_SIZE_FILE), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        if not os.path.isdir(procdir):
            raise
        return 0, b""  # the supervisor has not started yet
    try:
        size = _read_size(size_fd)
        if offset >= size or max_bytes <= 0:
            return 0, b""
        ring_start = _ring_start(size, writer_done)
        dropped = ring_start - offset if OUTPUT_HEAD_BYTES <= offset < ring_start else 0
        start = offset + dropped
        end = min(size, start + max_bytes)
        if start < OUTPUT_HEAD_BYTES < end and ring_start > OUTPUT_HEAD_BYTES:
            end = OUTPUT_HEAD_BYTES  # the head is not followed by what the ring holds
        data = bytearray()
        if start < OUTPUT_HEAD_BYTES:
            data += _pread_file(procdir, OUTPUT_HEAD_FILE, start, min(end, OUTPUT_HEAD_BYTES) - start)
        ring_from = max(start, OUTPUT_HEAD_BYTES)
        if ring_from >= end:
            return dropped, bytes(data)
        data += _read_ring(procdir, ring_from, end)
        # what the writer may have overwritten while we read
        overwritten_below = _ring_start(_read_size(size_fd), writer_done)
    finally:
        os.close(size_fd)
    if ring_from < overwritten_below:
        if start < OUTPUT_HEAD_BYTES:
            # keep only the head: the next read reports the gap
            return dropped, bytes(data[: OUTPUT_HEAD_BYTES - start])
        cut = min(overwritten_below, end) - start
        return dropped + cut, bytes(data[cut:])
    return dropped, bytes(data)


def _pread_file(procdir: str | os.PathLike[str], name: str, offset: int, length: int) -> bytes:
    fd = os.open(os.path.join(procdir, name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.pread(fd, length, offset)
    finally:
        os.close(fd)


def _read_ring(procdir: str | os.PathLike[str], start: int, end: int) -> bytes:
    """Stream bytes [start, end), all past the head, from the ring (wrapping at its end)."""
    fd = os.open(os.path.join(procdir, OUTPUT_RING_FILE), os.O_RDONLY | os.O_CLOEXEC)
    try:
        parts = []
        position = start
        while position < end:
            at = (position - OUTPUT_HEAD_BYTES) % OUTPUT_RING_BYTES
            part = os.pread(fd, min(end - position, OUTPUT_RING_BYTES - at), at)
            if not part:
                break
            parts.append(part)
            position += len(part)
        return b"".join(parts)
    finally:
        os.close(fd)


# -- starting the sandbox -----------------------------------------------------------------------------


def _check(result: int, what: str) -> None:
    import ctypes  # imported by _stage_workspace_and_drop_privileges already

    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def _stage_workspace_and_drop_privileges(workspace: str | None, uid: int) -> None:
    """Runs in the forked child, before bubblewrap is executed.

    bubblewrap resolves bind sources as the user it runs as; the sandbox uid
    usually cannot traverse the worker's data directory (/root is 0700). So,
    still root, the child enters a private mount namespace, mounts a tmpfs on
    /tmp there and binds the workspace under it, then becomes the sandbox uid
    with no supplementary groups. Nothing of this is visible on the host.
    """
    try:
        if workspace is not None:
            import ctypes  # only here: it costs milliseconds, and only a root supervisor needs it

            libc = ctypes.CDLL(None, use_errno=True)
            _check(libc.unshare(_CLONE_NEWNS), "unshare(CLONE_NEWNS)")
            _check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "make / private")
            # opened inside the new namespace: a bind from another namespace is refused
            ws_fd = os.open(workspace, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW)
            _check(
                libc.mount(b"tmpfs", b"/tmp", b"tmpfs", _MS_NOSUID | _MS_NODEV, b"mode=1777"),
                "mount tmpfs on /tmp",
            )
            os.mkdir(STAGED_WORKSPACE, 0o755)
            source = f"/proc/self/fd/{ws_fd}".encode()
            _check(libc.mount(source, STAGED_WORKSPACE.encode(), None, _MS_BIND | _MS_REC, None), "bind")
            os.close(ws_fd)
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot enter the sandbox as uid {uid}: {exc}") from exc


def spawn_sandboxed(
    spec: SupervisorSpec, stdin: int, stdout: int, stderr: int, info_fd: int | None = None
) -> int:
    """Start bubblewrap as the spec says and return its pid; with `info_fd`, bubblewrap
    writes the sandbox's pid there (`--info-fd`). The caller must be single-threaded.

    If bubblewrap cannot be started, the child says why on `stderr` and exits with
    START_FAILED_EXIT_CODE.
    """
    argv = list(spec.bwrap_argv)
    if info_fd is not None:
        argv[1:1] = ["--info-fd", str(info_fd)]
    pid = os.fork()
    if pid:
        return pid
    try:
        # as subprocess does: Python ignores SIGPIPE and SIGXFSZ, a command must not inherit that
        for signum in (_signal.SIGTERM, _signal.SIGPIPE, _signal.SIGXFSZ):
            _signal.signal(signum, _signal.SIG_DFL)
        for target, fd in enumerate((stdin, stdout, stderr)):
            os.dup2(fd, target)
        if info_fd is not None:
            os.set_inheritable(info_fd, True)
        os.chdir("/")
        if spec.run_as is not None:
            _stage_workspace_and_drop_privileges(spec.workspace, spec.run_as)
        os.execvpe(argv[0], argv, _CHILD_ENV)
    except BaseException as exc:
        try:
            os.write(2, f"farline: could not start the process: {exc}\n".encode())
        finally:
            os._exit(START_FAILED_EXIT_CODE)
    raise AssertionError("unreachable")  # execvpe does not return


def _exit_code(wait_status: int) -> int:
    code = os.waitstatus_to_exitcode(wait_status)
    return 128 - code if code < 0 else code


def _read_sandbox_pid(info_fd: int) -> int | None:
    """The host pid of the sandbox's init, from bubblewrap's --info-fd; None if it never got that far."""
    data = b""
    while chunk := os.read(info_fd, 4096):
        data += chunk
    try:
        info = _parse_json(data)
    except ValueError:
        return None
    pid = info.get("child-pid") if isinstance(info, dict) else None
    return pid if isinstance(pid, int) else None


def _parent_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat.rsplit(b")", 1)[1].split()[1])


def _open_terminal() -> tuple[int, int]:
    """A pseudo-terminal (master, slave) with a sane size, UTF-8 aware line editing."""
    master, slave = os.openpty()
    termios.tcsetwinsize(slave, (TTY_ROWS, TTY_COLUMNS))
    attrs = termios.tcgetattr(slave)
    attrs[0] |= _IUTF8
    termios.tcsetattr(slave, termios.TCSANOW, attrs)
    os.set_blocking(master, False)
    return master, slave


def _enlarge_pipe(fd: int) -> None:
    """Fewer wake-ups for a fast writer; the default size works too."""
    try:  # noqa: SIM105 (contextlib would cost milliseconds of start-up)
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1024 * 1024)
    except OSError:
        pass


# -- the supervisor -----------------------------------------------------------------------------------


class _Supervisor:
    def __init__(self, procdir: str) -> None:
        self.procdir = procdir
        self.kill_requested = False
        self.ended_at: float | None = None
        # What a kill SIGKILLs: the sandbox's init once bubblewrap has told us its pid (that
        # takes the whole pid namespace down, and bubblewrap then exits with 137), else
        # bubblewrap itself. Killing only bubblewrap while it still sets the sandbox up could
        # leave the init behind: its --die-with-parent is not armed yet.
        self.kill_targets: list[int] = []

    def path(self, name: str) -> str:
        return os.path.join(self.procdir, name)

    def on_sigterm(self, signum: int, frame: object) -> None:
        self.kill_requested = True
        self._kill_sandbox()

    def _kill_sandbox(self) -> None:
        for pidfd in self.kill_targets:
            # a pidfd never reaches another process, even once its own has been reaped
            try:  # noqa: SIM105 (contextlib would cost milliseconds of start-up)
                _signal.pidfd_send_signal(pidfd, _signal.SIGKILL)
            except ProcessLookupError:
                pass

    def run(self) -> int:
        lock_fd = os.open(self.path(LOCK_FILE), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log("supervisor.already_running", procdir=self.procdir)
            return 0
        if os.path.exists(self.path(PID_FILE)) or os.path.exists(self.path(EXIT_CODE_FILE)):
            # an earlier supervisor ran this process: never run a command twice
            _log("supervisor.already_ran", procdir=self.procdir)
            return 0
        with open(self.path(SPEC_FILE), "rb") as f:
            spec = SupervisorSpec.from_json(f.read())

        fifo = self.path(STDIN_FIFO)
        if not os.path.exists(fifo):
            os.mkfifo(fifo, 0o600)
        # read-write, so the pipe never sees EOF while writers come and go
        stdin_fd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC | (os.O_NONBLOCK if spec.tty else 0))
        output = OutputLog(self.procdir)
        _signal.signal(_signal.SIGTERM, self.on_sigterm)
        # before the pid: a caller that sees the pid sees when the command started
        write_atomic(self.path(STARTED_AT_FILE), f"{time.time()!r}\n")
        write_atomic(self.path(PID_FILE), f"{os.getpid()}\n")

        code = KILLED_EXIT_CODE
        if not self.kill_requested:
            code = self._run_child(spec, stdin_fd, output)
        os.close(stdin_fd)
        output.close()
        write_atomic(self.path(ENDED_AT_FILE), f"{self.ended_at or time.time()!r}\n")
        write_atomic(self.path(EXIT_CODE_FILE), f"{code}\n")
        _log("supervisor.exited", procdir=self.procdir, exit_code=code, output_bytes=output.total)
        return 0

    def _run_child(self, spec: SupervisorSpec, stdin_fd: int, output: OutputLog) -> int:
        if spec.tty:
            out_fd, child_out = _open_terminal()
            child_in = child_out
        else:
            out_fd, child_out = os.pipe()
            _enlarge_pipe(out_fd)
            child_in = stdin_fd
        info_read, info_write = os.pipe()
        try:
            child = spawn_sandboxed(spec, child_in, child_out, child_out, info_fd=info_write)
        except OSError as exc:
            for fd in (info_read, out_fd):
                os.close(fd)
            output.append(f"farline: could not start the process: {exc}\n".encode())
            return START_FAILED_EXIT_CODE
        finally:
            # only the child holds the writing ends now: the output ends when the sandbox does
            os.close(info_write)
            os.close(child_out)
        bwrap_pidfd = os.pidfd_open(child)
        sandbox_pid = _read_sandbox_pid(info_read)
        os.close(info_read)
        target = bwrap_pidfd
        if sandbox_pid is not None:
            try:
                sandbox_pidfd = os.pidfd_open(sandbox_pid)
            except ProcessLookupError:
                pass
            else:
                # still bubblewrap's child, so the pidfd is not some reused pid's
                if _parent_of(sandbox_pid) == child:
                    target = sandbox_pidfd
                else:
                    os.close(sandbox_pidfd)
        self.kill_targets = [target]
        if self.kill_requested:
            self._kill_sandbox()
        _log(
            "supervisor.started", procdir=self.procdir, bwrap_pid=child, sandbox_pid=sandbox_pid, tty=spec.tty
        )
        self.ended_at = _Pump(output, out_fd, bwrap_pidfd, stdin_fd if spec.tty else None).run()
        _, status = os.waitpid(child, 0)
        self.kill_targets = []
        for fd in {bwrap_pidfd, target, out_fd}:
            os.close(fd)
        return KILLED_EXIT_CODE if self.kill_requested else _exit_code(status)


class _Pump:
    """Moves the command's output into the log (and, on a terminal, the FIFO into its input)
    until the command has exited and its output has ended."""

    def __init__(self, output: OutputLog, out_fd: int, exit_fd: int, stdin_fd: int | None) -> None:
        self.output = output
        self.out_fd = out_fd
        self.exit_fd = exit_fd
        # on a terminal, stdin is relayed from the FIFO into the master (out_fd)
        self.stdin_fd = stdin_fd
        self.pending_stdin = bytearray()
        self.poller = select.poll()
        self.poller.register(out_fd, select.POLLIN)
        self.poller.register(exit_fd, select.POLLIN)
        if stdin_fd is not None:
            self.poller.register(stdin_fd, select.POLLIN)
        self.output_open = True
        self.exited_at: float | None = None  # monotonic
        self.exited_wall = 0.0

    def run(self) -> float:
        """Returns when (epoch seconds) the command exited."""
        while self.output_open or self.exited_at is None:
            timeout_ms = None
            if self.exited_at is not None:
                remaining = self.exited_at + _DRAIN_AFTER_EXIT_S - time.monotonic()
                if remaining <= 0:
                    _log("supervisor.output_not_closed", seconds=_DRAIN_AFTER_EXIT_S)
                    break
                timeout_ms = int(remaining * 1000) + 1
            for fd, events in self.poller.poll(timeout_ms):
                if fd == self.exit_fd and self.exited_at is None:
                    self._on_exit()
                elif fd == self.stdin_fd:
                    self._take_stdin()
                elif fd == self.out_fd and self.output_open:
                    if events & select.POLLOUT and self.pending_stdin:
                        self._give_stdin()
                    if events & ~select.POLLOUT:
                        self._read_output()
        return self.exited_wall

    def _read_output(self) -> None:
        try:
            data = os.read(self.out_fd, OUTPUT_CHUNK_BYTES)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: a terminal whose every slave is closed
                raise
            data = b""
        if data:
            self.output.append(data)
            return
        self.output_open = False
        self.poller.unregister(self.out_fd)

    def _on_exit(self) -> None:
        self.exited_at = time.monotonic()
        self.exited_wall = time.time()
        self.poller.unregister(self.exit_fd)
        if self.stdin_fd is not None:
            self.poller.unregister(self.stdin_fd)
            self.stdin_fd = None
            self.pending_stdin.clear()
            self._watch_output(stdin_waiting=False)

    def _take_stdin(self) -> None:
        assert self.stdin_fd is not None
        try:
            self.pending_stdin += os.read(self.stdin_fd, OUTPUT_CHUNK_BYTES)
        except BlockingIOError:
            return
        if len(self.pending_stdin) >= _STDIN_BACKLOG_BYTES:
            self.poller.modify(self.stdin_fd, 0)  # until the terminal takes some
        self._give_stdin()

    def _give_stdin(self) -> None:
        try:
            written = os.write(self.out_fd, self.pending_stdin)
        except BlockingIOError:
            written = 0
        except OSError:  # the terminal is gone: so is anyone who would read this
            self.pending_stdin.clear()
            written = 0
        del self.pending_stdin[:written]
        if self.stdin_fd is not None and len(self.pending_stdin) < _STDIN_BACKLOG_BYTES:
            self.poller.modify(self.stdin_fd, select.POLLIN)
        self._watch_output(stdin_waiting=bool(self.pending_stdin))

    def _watch_output(self, stdin_waiting: bool) -> None:
        if self.output_open:
            self.poller.modify(self.out_fd, select.POLLIN | (select.POLLOUT if stdin_waiting else 0))


def _detach() -> None:
    """Fork once more and start a new session, so the worker reaps our parent at once
    and nothing the worker's process group receives reaches us."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()


def _probe() -> int:
    spec = SupervisorSpec.from_json(sys.stdin.buffer.read())
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    out_read, out_write = os.pipe()
    try:
        child = spawn_sandboxed(spec, devnull, out_write, out_write)
    finally:
        os.close(devnull)
        os.close(out_write)
    while data := os.read(out_read, OUTPUT_CHUNK_BYTES):
        sys.stdout.buffer.write(data)
    _, status = os.waitpid(child, 0)
    return _exit_code(status)


def main(argv: list[str]) -> int:
    if argv == ["--probe"]:
        return _probe()
    if len(argv) != 1:
        print("usage: python -I -S local_supervisor.py <procdir> | --probe", file=sys.stderr)
        return 2
    _detach()
    os.umask(0o022)
    return _Supervisor(argv[0]).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
