"""A real Docker-compatible engine for the tests: podman's API service, and a test image.

One `podman system service` per session on a unix socket in a temporary directory, with
its own storage (graph root and run root there too), so a session neither sees nor leaves
behind anything of the machine's own podman. `.ci/run` installs `podman` and `runc` from
Debian; deploy/podman/containers.conf selects runc and sets the default ulimits this host's
cgroup setup needs. The docker SDK talks to the socket.

The test image is imported (`podman import`) from a root file system built here from the
host's own files: static busybox (sh and the usual tools), bash, python3 with its standard
library (the system's, else the one running the tests), and util-linux's `script`
(pseudo-terminals) and `setsid`, each with the shared libraries `ldd` names. A second image
adds GNU coreutils, findutils and tar over busybox, for the tests that must pass with either
set of tools.

Without podman, runc or busybox-static the tests that need the engine are skipped, with the
reason; FARLINE_REQUIRE_PODMAN=1 (CI) turns that skip into a failure.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from docker.errors import DockerException
from requests.exceptions import RequestException

from tests.s3_server import die_with_parent, log_tail, stop

STARTUP_TIMEOUT = 30.0
# exit_command_delay (deploy/podman/containers.conf) and some slack
HELPERS_TIMEOUT = 15.0
REMOVE_ATTEMPTS = 3
IMAGE = "localhost/farline-test:latest"
GNU_IMAGE = "localhost/farline-test-gnu:latest"
# in the service's environment: a container must never see it
SERVICE_SECRET = f"podman-service-secret-{secrets.token_hex(8)}"
# runc, the ulimits this host's cgroup setup needs, no proxy variables copied into containers,
# and an exec's conmon gone seconds after it ended (see the file's comments)
CONTAINERS_CONF = Path(__file__).resolve().parent.parent / "deploy" / "podman" / "containers.conf"
BUSYBOX = "/bin/busybox"
# host programs copied into the test images (at the image's path), each with its libraries
PROGRAMS = {"bash": "/bin/bash", "script": "/usr/bin/script", "setsid": "/usr/bin/setsid"}
GNU_PROGRAMS = {
    name: f"/usr/bin/{name}"
    for name in ("tar", "find", "stat", "readlink", "date", "dd", "cat", "mkdir", "mv", "rm", "ls", "timeout")
}
# parts of the standard library no test needs
PYTHON_SKIPPED = {
    "__pycache__",
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "ensurepip",
    "lib2to3",
    "pydoc_data",
    "site-packages",
    "dist-packages",
}
PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "sandbox:x:1000:1000:sandbox:/workspace:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n"
)
GROUP = "root:x:0:\nsandbox:x:1000:\nnogroup:x:65534:\n"
REQUIRE_ENV = "FARLINE_REQUIRE_PODMAN"


@dataclass(frozen=True)
class PodmanService:
    base_url: str
    image: str
    gnu_image: str
    root: Path
    # in the service's environment: no container may see it
    secret: str = SERVICE_SECRET


def unavailable(reason: str) -> None:
    """Skip (or, with FARLINE_REQUIRE_PODMAN=1, fail) the tests that need the engine."""
    if os.environ.get(REQUIRE_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ENV}=1)", pytrace=False)
    pytest.skip(reason)


def shared_libraries(program: str) -> list[str]:
    """The absolute paths of the libraries `program` loads (the dynamic loader included)."""
    result = subprocess.run(["ldd", program], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return []  # static
    found = re.findall(r"(?:=>\s*)?(/\S+)\s+\(0x", result.stdout)
    return sorted(set(found))


def add_file(tar: tarfile.TarFile, host: str, arcname: str, seen: set[str]) -> None:
    """The host file, its symlinks followed, at `arcname` in the image (once)."""
    arcname = arcname.lstrip("/")
    if arcname in seen:
        return
    seen.add(arcname)
    info = tar.gettarinfo(os.path.realpath(host), arcname)
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    with open(os.path.realpath(host), "rb") as f:
        tar.addfile(info, f)


def host_program(name: str) -> str:
    found = shutil.which(name, path="/usr/bin:/bin")
    if found is None:
        unavailable(f"`{name}` is not installed here, and the test images are made of the host's programs")
    assert found is not None
    return found


def add_program(tar: tarfile.TarFile, program: str, seen: set[str], arcname: str | None = None) -> None:
    add_file(tar, program, arcname or program, seen)
    for library in shared_libraries(program):
        add_file(tar, library, library, seen)


def add_text(tar: tarfile.TarFile, arcname: str, text: str, mode: int = 0o644) -> None:
    data = text.encode()
    info = tarfile.TarInfo(arcname)
    info.size, info.mode = len(data), mode
    tar.addfile(info, io.BytesIO(data))


def add_dir(tar: tarfile.TarFile, arcname: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(arcname)
    info.type, info.mode = tarfile.DIRTYPE, mode
    tar.addfile(info)


def add_symlink(tar: tarfile.TarFile, arcname: str, target: str) -> None:
    info = tarfile.TarInfo(arcname)
    info.type, info.linkname = tarfile.SYMTYPE, target
    tar.addfile(info)


def host_python() -> tuple[str, str]:
    """A Python for the image, as (binary, standard library): the system's, else the tests' own."""
    system = shutil.which("python3", path="/usr/bin")
    if system is not None:
        binary = os.path.realpath(system)
        stdlib = f"/usr/lib/{os.path.basename(binary)}"
        if os.path.isdir(stdlib):
            return binary, stdlib
    return os.path.realpath(sys.executable), sysconfig.get_paths()["stdlib"]


def add_python(tar: tarfile.TarFile, seen: set[str]) -> None:
    binary, stdlib = host_python()
    add_program(tar, binary, seen)
    if binary != "/usr/bin/python3":
        add_symlink(tar, "usr/bin/python3", binary)
    for directory, subdirs, files in os.walk(stdlib):
        subdirs[:] = sorted(
            name for name in subdirs if name not in PYTHON_SKIPPED and not name.startswith("config-")
        )
        for name in sorted(files):
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                add_file(tar, path, path, seen)
                if name.endswith(".so"):
                    for library in shared_libraries(path):
                        add_file(tar, library, library, seen)


def build_rootfs(destination: Path, gnu: bool) -> None:
    """A tarball of the test image's root file system (see the module docstring)."""
    seen: set[str] = set()
    with tarfile.open(destination, "w") as tar:
        for name, mode in (("bin", 0o755), ("usr", 0o755), ("usr/bin", 0o755), ("etc", 0o755)):
            add_dir(tar, name, mode)
        for name, mode in (("tmp", 0o1777), ("root", 0o700), ("var", 0o755), ("var/tmp", 0o1777)):
            add_dir(tar, name, mode)
        add_program(tar, BUSYBOX, seen, "/bin/busybox")
        applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True)
        for applet in applets.stdout.split():
            if applet not in ("busybox", "bash", "script", "setsid"):
                add_symlink(tar, f"bin/{applet}", "busybox")
                seen.add(f"bin/{applet}")
        # where scripts' shebangs look for it
        add_symlink(tar, "usr/bin/env", "/bin/env")
        for name, path in {**PROGRAMS, **(GNU_PROGRAMS if gnu else {})}.items():
            add_program(tar, host_program(name), seen, path)
        add_python(tar, seen)
        add_text(tar, "etc/passwd", PASSWD)
        add_text(tar, "etc/group", GROUP)


def podman_binary() -> str:
    podman = shutil.which("podman")
    if podman is None:
        unavailable("podman is not installed: `apt-get install podman runc` (see .ci/run)")
    for needed in ("runc",):
        if shutil.which(needed) is None:
            unavailable(f"{needed} is not installed: `apt-get install podman runc` (see .ci/run)")
    if not os.path.isfile(BUSYBOX):
        unavailable(
            f"{BUSYBOX} is missing (the test image is built from it): `apt-get install busybox-static`"
        )
    assert podman is not None
    return podman


class PodmanProcess:
    """One `podman system service` with its own storage, config and socket under `root`."""

    def __init__(self, podman: str, root: Path) -> None:
        self.podman = podman
        self.root = root
        self.socket = root / "podman.sock"
        self.base_url = f"unix://{self.socket}"
        self.log = root / "service.log"
        self.conf = CONTAINERS_CONF
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
            "HOME": str(root),
            "CONTAINERS_CONF": str(self.conf),
            "TMPDIR": str(root / "tmp"),
            # must never reach a container
            "FARLINE_SERVICE_SECRET": SERVICE_SECRET,
            "HTTP_PROXY": f"http://{SERVICE_SECRET}@proxy.invalid:3128",
        }
        (root / "tmp").mkdir(exist_ok=True)
        self.process: subprocess.Popen[bytes] | None = None

    def command(self, *args: str) -> list[str]:
        state = ["--root", str(self.root / "storage"), "--runroot", str(self.root / "run")]
        state += ["--tmpdir", str(self.root / "libpod")]  # exit files, locks: not the machine's /run/libpod
        return [self.podman, *state, *args]

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command("system", "service", "--time=0", self.base_url),
                # conmon writes a file named `oom` into its working directory when the OOM killer
                # strikes: not into the checkout
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )

    def wait_until_up(self) -> str | None:
        """None once the API answers; otherwise why it did not."""
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return f"podman system service exited with {self.process.returncode}:\n{log_tail(self.log)}"
            if self.socket.exists():
                try:
                    client = docker.DockerClient(base_url=self.base_url, timeout=5)
                    try:
                        client.ping()
                        return None
                    finally:
                        client.close()
                except (DockerException, RequestException) as error:  # not up yet
                    last = str(error)
            time.sleep(0.05)
        return f"podman's API did not answer on {self.socket} within {STARTUP_TIMEOUT:.0f}s ({last})"

    def import_image(self, rootfs: Path, tag: str) -> None:
        """`podman import` into the service's storage (through its socket)."""
        result = subprocess.run(
            [self.podman, "--url", self.base_url, "import", str(rootfs), tag],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"podman import of {rootfs} failed: {result.stderr.strip()}", pytrace=False)

    def remove_everything(self) -> None:
        """Every container of this service's storage, so its processes and mounts go with it
        (podman, busy, sometimes times out stopping one: then again)."""
        for _attempt in range(REMOVE_ATTEMPTS):
            subprocess.run(
                self.command("rm", "--all", "--force", "--time", "0"),
                env=self.env,
                capture_output=True,
                timeout=120,
                check=False,
            )
            left = subprocess.run(
                self.command("ps", "--all", "--quiet"),
                env=self.env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            if left.returncode == 0 and not left.stdout.strip():
                return

    def stop(self) -> None:
        if self.process is None:
            return
        self.remove_everything()
        stop(self.process)
        # each exec's conmon runs a `podman container cleanup` a few seconds after it ended
        # (exit_command_delay), which would mount the storage again once we are done
        wait_for_helpers(self.root)
        # the storage holds overlay mounts until podman unmounts them: a plain rm would fail
        subprocess.run(
            self.command("system", "reset", "--force"),
            env=self.env,
            capture_output=True,
            timeout=120,
            check=False,
        )
        # the overlay driver's own private mount of its directory outlives even the reset
        for mount_point in mounts_under(self.root):
            subprocess.run(["umount", "--lazy", mount_point], capture_output=True, timeout=30, check=False)


def helpers_of(root: Path) -> list[int]:
    """Processes (conmon, podman's cleanup) that name this service's storage on their command line."""
    needle = str(root).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_for_helpers(root: Path) -> None:
    """Until the service's helper processes have ended; SIGKILL (by pid) those that will not."""
    deadline = time.monotonic() + HELPERS_TIMEOUT
    while helpers_of(root) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in helpers_of(root):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first."""
    prefix = str(root)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split(" ")[4].encode().decode("unicode_escape")
        if point == prefix or point.startswith(prefix + "/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


@pytest.fixture(scope="session")
def podman_service() -> Iterator[PodmanService]:
    """podman's API service and the test images, for the session; stopped and wiped after it."""
    podman = podman_binary()
    # short, under /tmp: podman refuses a runroot path over 50 characters (pytest-xdist's
    # per-worker temporary directories are longer)
    root = Path(tempfile.mkdtemp(prefix="farline-podman-", dir="/tmp"))
    service = PodmanProcess(podman, root)
    started = time.monotonic()
    service.start()
    problem = service.wait_until_up()
    if problem is not None:
        service.stop()
        unavailable(f"the podman service cannot start: {problem}")
    try:
        for tag, gnu in ((IMAGE, False), (GNU_IMAGE, True)):
            rootfs = root / f"rootfs-{'gnu' if gnu else 'busybox'}.tar"
            build_rootfs(rootfs, gnu=gnu)
            service.import_image(rootfs, tag)
            rootfs.unlink()
        print(
            f"\npodman service up at {service.base_url}, images built, in {time.monotonic() - started:.2f}s",
            file=sys.stderr,
        )
        yield PodmanService(base_url=service.base_url, image=IMAGE, gnu_image=GNU_IMAGE, root=root)
    finally:
        service.stop()
        shutil.rmtree(root, ignore_errors=True)
