"""S3 buckets mounted into a local sandbox's workspace with rclone over FUSE.

rclone runs on the worker's machine, outside the sandbox, as a daemon that
outlives a worker restart (like the sandbox's processes). Its keys reach it
through its own environment only: the sandbox's processes run in their own
pid namespace with a cleared environment and cannot read it. Mounts are left
out of snapshots (the scan stays on the workspace's file system) and are
unmounted before a sandbox's files are deleted, so a tear down never deletes
through a writable mount.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import structlog

from sandbox_providers.base import BucketMount, SandboxPathError, SandboxUnavailable

log = structlog.get_logger(__name__)
REMOTE = "farline"
MOUNT_WAIT_S = 60
_NO_RCLONE = "rclone is not installed on the worker: apt-get install rclone fuse3"


def mounts_under(directory: Path) -> list[Path]:
    """The mount points at or below `directory`, deepest first."""
    base = os.path.realpath(directory)
    found = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = _unescape(line.split()[4])
            if point == base or point.startswith(base + "/"):
                found.append(Path(point))
    return sorted(found, key=lambda path: len(path.parts), reverse=True)


def _unescape(field: str) -> str:
    # mountinfo writes space, tab, newline and backslash as octal escapes
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field = field.replace(code, char)
    return field


def unmount_all_under(directory: Path) -> None:
    """Detach every mount below `directory` (lazily: a busy mount goes once it is idle)."""
    for point in mounts_under(directory):
        done = subprocess.run(["umount", "-l", str(point)], capture_output=True, text=True)
        if done.returncode != 0:
            fusermount = shutil.which("fusermount3") or shutil.which("fusermount") or "fusermount3"
            subprocess.run([fusermount, "-u", "-z", str(point)], capture_output=True)
        log.info("mount.detached", mount_point=str(point))


def mount_bucket(workspace: Path, mount: BucketMount, cache_dir: Path, uid: int | None) -> None:
    """Mount the bucket at `workspace/mount.path`, unless it is mounted there already."""
    rclone = shutil.which("rclone")
    if rclone is None:
        raise SandboxUnavailable(_NO_RCLONE)
    if not Path("/dev/fuse").exists():
        raise SandboxUnavailable("this machine has no /dev/fuse: buckets cannot be mounted here")
    (workspace / mount.path).mkdir(parents=True, exist_ok=True)
    point = Path(os.path.realpath(workspace / mount.path))
    # the sandbox could have left a link on the way: the mount must land exactly there
    if point != Path(os.path.realpath(workspace)) / mount.path:
        raise SandboxPathError(f"mount path {mount.path!r} goes through a symlink; refusing to mount there")
    if point in mounts_under(point):
        return
    prefix = REMOTE.upper()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cache_dir),
        f"RCLONE_CONFIG_{prefix}_TYPE": "s3",
        f"RCLONE_CONFIG_{prefix}_PROVIDER": "Other",
        f"RCLONE_CONFIG_{prefix}_ENV_AUTH": "false",
    }
    optional = {
        "ACCESS_KEY_ID": mount.access_key_id,
        "SECRET_ACCESS_KEY": mount.secret_access_key,
        "ENDPOINT": mount.endpoint_url,
        "REGION": mount.region,
    }
    env.update({f"RCLONE_CONFIG_{prefix}_{name}": value for name, value in optional.items() if value})
    remote = f"{REMOTE}:{mount.bucket}/{mount.prefix.strip('/')}".rstrip("/")
    argv = [
        rclone,
        "mount",
        remote,
        str(point),
        "--daemon",
        f"--daemon-wait={MOUNT_WAIT_S}s",
        "--allow-other",
        f"--cache-dir={cache_dir}",
        "--dir-perms=0755",
        "--file-perms=0644",
        "--read-only" if mount.read_only else "--vfs-cache-mode=writes",
    ]
    if uid is not None:
        argv += [f"--uid={uid}", f"--gid={uid}"]
    cache_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=MOUNT_WAIT_S + 30)
    if done.returncode != 0 or point not in mounts_under(point):
        detail = done.stderr.strip()[-600:]
        if mount.secret_access_key:
            detail = detail.replace(mount.secret_access_key, "***")
        raise SandboxUnavailable(f"rclone could not mount {remote} at {mount.path}: {detail}")
    log.info("mount.attached", mount_point=str(point), remote=remote, read_only=mount.read_only)
