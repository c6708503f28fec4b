"""The detached supervisor of one sandboxed process of the local provider.

`python -I -S sandbox_providers/local_supervisor.py <procdir>` detaches from its
caller (fork, new session), so it outlives the worker that started it. It
reads `procdir/spec.json`, runs the bubblewrap command with stdin from the FIFO
`procdir/stdin` and stdout and stderr appended to `procdir/output`, writes its
own pid to `procdir/pid` and, when the process ends, its exit code to
`procdir/exit_code`. An exclusive flock on `procdir/lock` is held while it
lives: that lock, not the pid, is what tells a worker the supervisor is alive.

SIGTERM asks the supervisor to SIGKILL the sandbox; the exit code is then 137
(128 + SIGKILL), the same code bubblewrap reports for a command killed by
SIGKILL inside the sandbox.

`python -I -S sandbox_providers/local_supervisor.py --probe` runs a spec read from
stdin in the foreground (output to stdout, same exit code): the provider's
check that bubblewrap works on this machine.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

SPEC_FILE = "spec.json"
PID_FILE = "pid"
EXIT_CODE_FILE = "exit_code"
OUTPUT_FILE = "output"
STDIN_FIFO = "stdin"
LOCK_FILE = "lock"
LOG_FILE = "supervisor.log"

KILLED_EXIT_CODE = 128 + signal.SIGKILL
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


@dataclass(frozen=True)
class SupervisorSpec:
    """What the provider asks the supervisor to run.

    The supervisor imports nothing but the standard library, and runs as
    `python -I -S`, so that starting a command costs milliseconds, not the
    import time of pydantic or structlog.
    """

    # the complete bubblewrap command line, command included
    bwrap_argv: list[str]
    # host uid (and gid) to run bubblewrap as; None runs it as the supervisor's own user
    run_as: int | None = None
    # host path of the workspace, staged at STAGED_WORKSPACE when run_as is set
    workspace: str | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, data: str | bytes) -> SupervisorSpec:
        return cls(**json.loads(data))


def _log(event: str, **fields: object) -> None:
    """One JSON line on stderr (the process's supervisor.log)."""
    print(json.dumps({"event": event, **fields}, default=str), file=sys.stderr, flush=True)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


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
    except BaseException as exc:
        # fd 2 is already the process's output: say why it could not start
        os.write(2, f"farline: cannot enter the sandbox as uid {uid}: {exc}\n".encode())
        raise


def spawn_sandboxed(
    spec: SupervisorSpec, stdin: int, stdout: int, stderr: int, info_fd: int | None = None
) -> subprocess.Popen[bytes]:
    """Start bubblewrap as the spec says; with `info_fd`, bubblewrap writes the sandbox's
    pid there (`--info-fd`). The caller must be single-threaded when run_as is set."""
    argv = list(spec.bwrap_argv)
    if info_fd is not None:
        argv[1:1] = ["--info-fd", str(info_fd)]
    preexec = None
    if spec.run_as is not None:
        run_as, workspace = spec.run_as, spec.workspace

        def preexec() -> None:
            _stage_workspace_and_drop_privileges(workspace, run_as)

    return subprocess.Popen(
        argv,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        cwd="/",
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
        close_fds=True,
        pass_fds=() if info_fd is None else (info_fd,),
        preexec_fn=preexec,
    )


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _read_sandbox_pid(info_fd: int) -> int | None:
    """The host pid of the sandbox's init, from bubblewrap's --info-fd; None if it never got that far."""
    data = b""
    while chunk := os.read(info_fd, 4096):
        data += chunk
    try:
        return int(json.loads(data)["child-pid"])
    except (ValueError, KeyError, TypeError):
        return None


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


class _Supervisor:
    def __init__(self, procdir: Path) -> None:
        self.procdir = procdir
        self.kill_requested = False
        # What a kill SIGKILLs: the sandbox's init once bubblewrap has told us its pid (that
        # takes the whole pid namespace down, and bubblewrap then exits with 137), else
        # bubblewrap itself. Killing only bubblewrap while it still sets the sandbox up could
        # leave the init behind: its --die-with-parent is not armed yet.
        self.kill_targets: list[int] = []

    def on_sigterm(self, signum: int, frame: object) -> None:
        self.kill_requested = True
        self._kill_sandbox()

    def _kill_sandbox(self) -> None:
        for pidfd in self.kill_targets:
            # a pidfd never reaches another process, even once its own has been reaped
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)

    def run(self) -> int:
        procdir = self.procdir
        lock_fd = os.open(procdir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _log("supervisor.already_running", procdir=procdir)
            return 0
        if (procdir / PID_FILE).exists() or (procdir / EXIT_CODE_FILE).exists():
            # an earlier supervisor ran this process: never run a command twice
            _log("supervisor.already_ran", procdir=procdir)
            return 0
        spec = SupervisorSpec.from_json((procdir / SPEC_FILE).read_bytes())

        fifo = procdir / STDIN_FIFO
        if not fifo.exists():
            os.mkfifo(fifo, 0o600)
        # read-write, so the pipe never sees EOF while writers come and go
        stdin_fd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
        out_fd = os.open(procdir / OUTPUT_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        signal.signal(signal.SIGTERM, self.on_sigterm)
        write_atomic(procdir / PID_FILE, f"{os.getpid()}\n")

        code = KILLED_EXIT_CODE
        if not self.kill_requested:
            code = self._run_child(spec, stdin_fd, out_fd)
        os.close(stdin_fd)
        os.close(out_fd)
        write_atomic(procdir / EXIT_CODE_FILE, f"{code}\n")
        _log("supervisor.exited", procdir=procdir, exit_code=code)
        return 0

    def _run_child(self, spec: SupervisorSpec, stdin_fd: int, out_fd: int) -> int:
        info_read, info_write = os.pipe()
        try:
            child = spawn_sandboxed(spec, stdin_fd, out_fd, out_fd, info_fd=info_write)
        except (OSError, subprocess.SubprocessError, ValueError) as exc:
            os.close(info_read)
            os.write(out_fd, f"farline: could not start the process: {exc}\n".encode())
            return START_FAILED_EXIT_CODE
        finally:
            os.close(info_write)
        bwrap_pidfd = os.pidfd_open(child.pid)
        sandbox_pid = _read_sandbox_pid(info_read)
        os.close(info_read)
        target = bwrap_pidfd
        if sandbox_pid is not None:
            with contextlib.suppress(ProcessLookupError):
                sandbox_pidfd = os.pidfd_open(sandbox_pid)
                # still bubblewrap's child, so the pidfd is not some reused pid's
                if _parent_of(sandbox_pid) == child.pid:
                    target = sandbox_pidfd
                else:
                    os.close(sandbox_pidfd)
        self.kill_targets = [target]
        if self.kill_requested:
            self._kill_sandbox()
        _log("supervisor.started", procdir=self.procdir, bwrap_pid=child.pid, sandbox_pid=sandbox_pid)
        returncode = child.wait()
        self.kill_targets = []
        os.close(bwrap_pidfd)
        if target != bwrap_pidfd:
            os.close(target)
        return KILLED_EXIT_CODE if self.kill_requested else _exit_code(returncode)


def _detach() -> None:
    """Fork once more and start a new session, so the worker reaps our parent at once
    and nothing the worker's process group receives reaches us."""
    if os.fork() > 0:
        os._exit(0)
    os.setsid()


def _probe() -> int:
    spec = SupervisorSpec.from_json(sys.stdin.buffer.read())
    try:
        child = spawn_sandboxed(spec, subprocess.DEVNULL, subprocess.PIPE, subprocess.STDOUT)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"could not start bubblewrap: {exc}")
        return START_FAILED_EXIT_CODE
    output, _ = child.communicate()
    sys.stdout.buffer.write(output)
    return _exit_code(child.returncode)


def main(argv: list[str]) -> int:
    if argv == ["--probe"]:
        return _probe()
    if len(argv) != 1:
        print("usage: python -m sandbox_providers.local_supervisor <procdir> | --probe", file=sys.stderr)
        return 2
    _detach()
    os.umask(0o022)
    return _Supervisor(Path(argv[0])).run()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
