"""Host-side access to a sandbox workspace that never leaves it.

The sandbox writes whatever it likes into its workspace, symlinks included,
and the worker may be root. So every path is walked one component at a time
through directory file descriptors opened with O_NOFOLLOW. A symlink on the
way is resolved by hand, as the sandbox would see it (an absolute target is
read against the sandbox's `/workspace`), and refused when it points outside
the workspace. Nothing is ever opened through a path string the sandbox could
swap under us.
"""

from __future__ import annotations

import errno
import io
import os
import stat
import tarfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import structlog

from sandbox_providers.base import WORKSPACE_PATH, FileEntry, SandboxError, SandboxPathError, WorkspaceStat

log = structlog.get_logger(__name__)

_MAX_SYMLINK_HOPS = 40
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def split_relative(path: str) -> list[str]:
    """The components of a workspace-relative path; refuses absolute paths and `..`."""
    if "\0" in path:
        raise SandboxPathError(f"path {path!r} contains a NUL byte")
    if path.startswith("/"):
        raise SandboxPathError(f"path {path!r} is absolute; give a path relative to the workspace")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise SandboxPathError(f"path {path!r} contains '..'; it must stay inside the workspace")
    return parts


def _link_target_parts(target: str, where: str) -> tuple[bool, list[str]]:
    """(restart at the workspace root?, components) for a symlink target seen from the sandbox."""
    inside = target[len(WORKSPACE_PATH) :]
    if not target.startswith("/"):
        restart, parts = False, target.split("/")
    elif target.startswith(WORKSPACE_PATH) and (inside == "" or inside.startswith("/")):
        restart, parts = True, inside.split("/")
    else:
        raise SandboxPathError(f"{where} is a symlink to {target!r}, outside the workspace; not following it")
    return restart, [part for part in parts if part not in ("", ".")]


@dataclass
class _Found:
    """The directory (an open fd) that holds the last component, and that component's name.

    `name` is None when the path is the workspace root itself.
    """

    dir_fd: int
    name: str | None


class Workspace:
    """File operations on one workspace directory, chowning what they create to `owner`."""

    def __init__(self, root: Path, owner: int | None) -> None:
        self.root = root
        self.owner = owner

    # -- walking -------------------------------------------------------------------------------------

    @contextmanager
    def _walk(
        self, path: str, *, follow_last: bool, follow_parents: bool = True, create_parents: bool = False
    ) -> Iterator[_Found]:
        """Resolve `path` to its containing directory without ever leaving the workspace."""
        stack = [os.open(self.root, _DIR_FLAGS)]
        try:
            pending = split_relative(path)
            hops = 0
            found: _Found | None = None
            while pending:
                name = pending.pop(0)
                if name in ("", "."):
                    continue
                if name == "..":  # only from a symlink target
                    if len(stack) == 1:
                        raise SandboxPathError(f"{path!r} goes through a symlink that leaves the workspace")
                    os.close(stack.pop())
                    continue
                last = not pending
                try:
                    st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
                except FileNotFoundError:
                    if last:
                        found = _Found(stack[-1], name)
                        break
                    if not create_parents:
                        raise _not_found(path) from None
                    os.mkdir(name, 0o755, dir_fd=stack[-1])
                    self._chown(name, stack[-1])
                    st = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode) and (follow_last if last else follow_parents):
                    hops += 1
                    if hops > _MAX_SYMLINK_HOPS:
                        raise SandboxPathError(f"{path!r}: too many levels of symlinks")
                    target = os.readlink(name, dir_fd=stack[-1])
                    restart, target_parts = _link_target_parts(target, f"{name!r} in {path!r}")
                    if restart:
                        while len(stack) > 1:
                            os.close(stack.pop())
                    pending = target_parts + pending
                    continue
                if stat.S_ISLNK(st.st_mode) and not last:
                    raise SandboxPathError(f"{path!r} goes through the symlink {name!r}; not following it")
                if last:
                    found = _Found(stack[-1], name)
                    break
                if not stat.S_ISDIR(st.st_mode):
                    raise NotADirectoryError(f"not a directory in the workspace: {path}")
                stack.append(_open_nofollow(name, _DIR_FLAGS, stack[-1], path))
            yield found or _Found(stack[-1], None)
        finally:
            for fd in stack:
                os.close(fd)

    @contextmanager
    def _open_dir(self, path: str) -> Iterator[int]:
        with self._walk(path, follow_last=True) as found:
            if found.name is None:
                yield found.dir_fd
                return
            fd = _open_nofollow(found.name, _DIR_FLAGS, found.dir_fd, path)
            try:
                yield fd
            finally:
                os.close(fd)

    def _chown(self, name: str, dir_fd: int) -> None:
        if self.owner is not None:
            os.chown(name, self.owner, self.owner, dir_fd=dir_fd, follow_symlinks=False)

    # -- files ---------------------------------------------------------------------------------------

    def read_file(self, path: str) -> bytes:
        with self._walk(path, follow_last=True) as found:
            if found.name is None:
                raise IsADirectoryError(f"is a directory: {path or '.'}")
            # O_NONBLOCK: a FIFO planted by the sandbox must not hang the worker
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
            fd = _open_nofollow(found.name, flags, found.dir_fd, path)
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(f"is a directory: {path}")
            if not stat.S_ISREG(mode):
                raise SandboxPathError(f"{path!r} is not a regular file")
            with os.fdopen(fd, "rb", closefd=False) as f:
                return f.read()
        finally:
            os.close(fd)

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        with self._walk(path, follow_last=True, create_parents=True) as found:
            if found.name is None:
                raise IsADirectoryError(f"is a directory: {path or '.'}")
            self._replace_with_file(found.dir_fd, found.name, data, mode, path)

    def _replace_with_file(
        self, dir_fd: int, name: str, data: bytes, mode: int, path: str, mtime: float | None = None
    ) -> None:
        _refuse_directory(dir_fd, name, path)
        tmp = f".{name[:100]}.farline-{uuid.uuid4().hex}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o600, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(data)
            os.fchmod(fd, mode & 0o777)
            if self.owner is not None:
                os.fchown(fd, self.owner, self.owner)
            if mtime is not None:
                os.utime(fd, (mtime, mtime))
        except BaseException:
            os.unlink(tmp, dir_fd=dir_fd)
            raise
        finally:
            os.close(fd)
        # rename never follows a symlink at the destination; it replaces it
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)

    def delete_file(self, path: str) -> None:
        """Remove a file or a symlink without following it; directories are refused."""
        with self._walk(path, follow_last=False) as found:
            if found.name is None:
                raise IsADirectoryError(f"is a directory: {path or '.'}")
            try:
                st = os.stat(found.name, dir_fd=found.dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                raise _not_found(path) from None
            if stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(f"{path!r} is a directory in the workspace; not deleting it")
            os.unlink(found.name, dir_fd=found.dir_fd)

    def list_dir(self, path: str = ".") -> list[FileEntry]:
        prefix = "/".join(split_relative(path))
        entries: list[FileEntry] = []
        with self._open_dir(path) as dir_fd:
            for name in sorted(os.listdir(dir_fd)):
                try:
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    continue  # removed by the sandbox meanwhile
                link_target = os.readlink(name, dir_fd=dir_fd) if stat.S_ISLNK(st.st_mode) else None
                entries.append(
                    FileEntry(
                        path=f"{prefix}/{name}" if prefix else name,
                        kind=_kind(st.st_mode),
                        size=st.st_size,
                        mode=stat.S_IMODE(st.st_mode),
                        link_target=link_target,
                    )
                )
        return entries

    def scan(self) -> list[WorkspaceStat]:
        """Every path under the workspace with its stat data, parents first; links not followed.

        Walks directory file descriptors (O_NOFOLLOW), so a directory swapped for a symlink
        while the scan runs is not descended into. Names that are not UTF-8 are skipped.
        """
        found: list[WorkspaceStat] = []
        root_fd = os.open(self.root, _DIR_FLAGS)
        try:
            # mounts (an S3 bucket through rclone) are not part of the workspace's content
            _scan_dir(root_fd, "", found, os.fstat(root_fd).st_dev)
        finally:
            os.close(root_fd)
        return found

    # -- archives ------------------------------------------------------------------------------------

    def export_paths(self, paths: list[str]) -> bytes:
        """A tar of the given paths; symlinks are stored as symlinks, never followed."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for path in paths:
                arcname = "/".join(split_relative(path))
                if not arcname:
                    with self._open_dir(".") as root_fd:
                        for name in sorted(os.listdir(root_fd)):
                            _add_to_tar(tar, root_fd, name, name)
                    continue
                with self._walk(path, follow_last=False) as found:
                    assert found.name is not None
                    try:
                        os.stat(found.name, dir_fd=found.dir_fd, follow_symlinks=False)
                    except FileNotFoundError:
                        raise _not_found(path) from None
                    _add_to_tar(tar, found.dir_fd, found.name, arcname)
        return buffer.getvalue()

    def import_paths(self, archive: bytes) -> None:
        """Unpack a tar into the workspace. Every member is checked before anything is written."""
        try:
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as tar:
                members = _checked_members(tar)
                self._check_against_workspace(members)
                # checked again while extracting: the sandbox may change the workspace meanwhile
                for member, path in members:
                    self._extract(tar, member, path)
        except tarfile.TarError as exc:
            raise SandboxError(f"not a readable tar archive: {exc}") from exc

    def _check_against_workspace(self, members: list[tuple[tarfile.TarInfo, str]]) -> None:
        """Refuse the archive up front when extracting it would fail on what is in the workspace.

        Each member's parents are walked without following anything: an existing symlink on the
        way is refused, as is an existing non-directory, and a file or link member may not replace
        an existing directory. `planned` holds what the earlier members of the archive leave at a
        path ("dir" for a member's parents, too), which is what extraction finds there instead.
        """
        planned: dict[str, str] = {}
        root_fd = os.open(self.root, _DIR_FLAGS)
        try:
            for member, path in members:
                kind = "dir" if member.isdir() else "link" if member.issym() else "file"
                parts = path.split("/")
                _check_member(root_fd, parts, kind, planned, member.name)
                for depth in range(1, len(parts)):
                    planned["/".join(parts[:depth])] = "dir"
                planned[path] = kind
        finally:
            os.close(root_fd)

    def _extract(self, tar: tarfile.TarFile, member: tarfile.TarInfo, path: str) -> None:
        with self._walk(path, follow_last=False, follow_parents=False, create_parents=True) as found:
            assert found.name is not None
            dir_fd, name = found.dir_fd, found.name
            if member.isdir():
                try:
                    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                except FileNotFoundError:
                    st = None
                if st is not None and not stat.S_ISDIR(st.st_mode):
                    os.unlink(name, dir_fd=dir_fd)
                    st = None
                if st is None:
                    os.mkdir(name, 0o700, dir_fd=dir_fd)
                os.chmod(name, member.mode & 0o777, dir_fd=dir_fd, follow_symlinks=False)
                self._chown(name, dir_fd)
            elif member.issym():
                _refuse_directory(dir_fd, name, path)
                tmp = f".{name[:100]}.farline-{uuid.uuid4().hex}"
                os.symlink(member.linkname, tmp, dir_fd=dir_fd)
                self._chown(tmp, dir_fd)
                os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            else:  # a regular file, or a hard link to one stored earlier: both become a plain file
                source = tar.extractfile(member)
                if source is None:
                    raise SandboxPathError(f"archive member {member.name!r} has no data")
                self._replace_with_file(dir_fd, name, source.read(), member.mode, path, mtime=member.mtime)


def _scan_dir(dir_fd: int, prefix: str, found: list[WorkspaceStat], device: int) -> None:
    with os.scandir(dir_fd) as listing:
        names = sorted(entry.name for entry in listing)
    for name in names:
        path = f"{prefix}{name}"
        try:
            path.encode()
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except UnicodeEncodeError:
            log.warning("workspace.scan_skipped", path=repr(path), reason="name is not UTF-8")
            continue
        except FileNotFoundError:
            continue  # removed by the sandbox meanwhile
        kind = _kind(st.st_mode)
        if kind == "dir" and st.st_dev != device:
            continue  # a mount point: another file system, left out like `tar --one-file-system`
        found.append(
            WorkspaceStat(
                path=path,
                kind=kind,  # type: ignore[arg-type]
                mode=stat.S_IMODE(st.st_mode),
                size=st.st_size if kind == "file" else 0,
                mtime_ns=st.st_mtime_ns,
                ctime_ns=st.st_ctime_ns,
                inode=st.st_ino,
                link_target=os.readlink(name, dir_fd=dir_fd) if kind == "symlink" else None,
            )
        )
        if kind == "dir":
            try:
                child = os.open(name, _DIR_FLAGS, dir_fd=dir_fd)
            except OSError:
                continue  # gone or swapped for a link since the stat
            try:
                if os.path.samestat(st, os.fstat(child)):
                    _scan_dir(child, f"{path}/", found, device)
            finally:
                os.close(child)


def _not_found(path: str) -> FileNotFoundError:
    return FileNotFoundError(f"no such file or directory in the workspace: {path}")


def _open_nofollow(name: str, flags: int, dir_fd: int, path: str) -> int:
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # it became a symlink since we looked
            raise SandboxPathError(f"{path!r} became a symlink while being read; not following it") from exc
        raise


def _refuse_directory(dir_fd: int, name: str, path: str) -> None:
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"{path!r} is a directory in the workspace; not replacing it")


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def _tar_info(arcname: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arcname)
    info.mode = stat.S_IMODE(st.st_mode)
    info.mtime = int(st.st_mtime)
    return info


def _add_to_tar(tar: tarfile.TarFile, dir_fd: int, name: str, arcname: str) -> None:
    st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    info = _tar_info(arcname, st)
    if stat.S_ISLNK(st.st_mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(name, dir_fd=dir_fd)
        tar.addfile(info)
    elif stat.S_ISREG(st.st_mode):
        fd = _open_nofollow(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd, arcname)
        with os.fdopen(fd, "rb") as f:
            data = f.read()
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        fd = _open_nofollow(name, _DIR_FLAGS, dir_fd, arcname)
        try:
            for child in sorted(os.listdir(fd)):
                _add_to_tar(tar, fd, child, f"{arcname}/{child}")
        finally:
            os.close(fd)
    else:
        log.info("workspace.export_skipped", path=arcname, kind="special file")


def _checked_members(tar: tarfile.TarFile) -> list[tuple[tarfile.TarInfo, str]]:
    """Every member with its normalised path; refuses the whole archive on the first bad member.

    Symlink targets are kept as they are, absolute or relative (a venv's
    `python -> /usr/bin/python3`): only the sandbox resolves them, against its own root,
    and the host side never follows a link out of the workspace. Nothing may be written
    through a symlink the archive itself creates, and devices, FIFOs and the like are
    refused.
    """
    checked: list[tuple[tarfile.TarInfo, str]] = []
    links: set[tuple[str, ...]] = set()
    regular: set[tuple[str, ...]] = set()
    for member in tar.getmembers():
        parts = tuple(split_relative(member.name))
        if not parts:
            if member.isdir():
                continue
            raise SandboxPathError(f"archive member {member.name!r} has no name")
        for depth in range(1, len(parts)):
            if parts[:depth] in links:
                raise SandboxPathError(f"archive member {member.name!r} is under a symlink of the archive")
        if member.issym():
            _check_link_target(member)
            links.add(parts)
        elif member.islnk():
            target = tuple(split_relative(member.linkname))
            if target not in regular:
                raise SandboxPathError(
                    f"archive member {member.name!r} is a hard link to {member.linkname!r}, "
                    "which is not a file earlier in the archive"
                )
            links.discard(parts)
        elif member.isreg() or member.isdir():
            links.discard(parts)
            if member.isreg():
                regular.add(parts)
        else:
            raise SandboxPathError(f"archive member {member.name!r} is a device, FIFO or other special file")
        checked.append((member, "/".join(parts)))
    return checked


def _check_member(root_fd: int, parts: list[str], kind: str, planned: dict[str, str], name: str) -> None:
    """Raise what extracting one member would raise on the workspace as `planned` leaves it."""
    stack = [root_fd]
    try:
        on_disk = True  # whether the path so far is an existing directory in the workspace
        for depth, component in enumerate(parts, start=1):
            prefix = "/".join(parts[:depth])
            last = depth == len(parts)
            st = None
            if on_disk:
                try:
                    st = os.stat(component, dir_fd=stack[-1], follow_symlinks=False)
                except FileNotFoundError:
                    on_disk = False
            earlier = planned.get(prefix)
            if last:
                if earlier is not None:
                    existing_dir = earlier == "dir"
                else:
                    existing_dir = st is not None and stat.S_ISDIR(st.st_mode)
                if kind != "dir" and existing_dir:
                    raise IsADirectoryError(f"{name!r} is a directory in the workspace; not replacing it")
                return
            if earlier == "dir":
                if st is None or not stat.S_ISDIR(st.st_mode):
                    on_disk = False  # extraction creates it, or replaces what is there with it
                    continue
            elif earlier is not None:
                raise NotADirectoryError(f"not a directory in the workspace: {name}")
            elif st is None:
                return  # missing: extraction creates it and everything under it
            elif stat.S_ISLNK(st.st_mode):
                raise SandboxPathError(f"{name!r} goes through the symlink {prefix!r}; not following it")
            elif not stat.S_ISDIR(st.st_mode):
                raise NotADirectoryError(f"not a directory in the workspace: {name}")
            if on_disk:
                stack.append(_open_nofollow(component, _DIR_FLAGS, stack[-1], name))
    finally:
        for fd in stack[1:]:
            os.close(fd)


def _check_link_target(member: tarfile.TarInfo) -> None:
    target = member.linkname
    if not target or "\0" in target:
        raise SandboxPathError(f"archive member {member.name!r} is a symlink with an invalid target")
