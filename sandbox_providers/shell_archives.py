"""What a shell-driven provider does on the worker's side of an exec: archives and listings.

Archives from the container's `tar` (GNU or busybox) are rewritten into the form the local
provider gives (PAX, workspace-relative names, links kept as links, hard links as plain
files, special files left out). Archives to import are checked with the local provider's
rules before anything reaches the container, and rewritten the same way.
"""

from __future__ import annotations

import io
import stat
import tarfile
from dataclasses import dataclass
from datetime import datetime

import structlog

from sandbox_providers.base import FileEntry, SandboxError, WorkspaceStat
from sandbox_providers.workspace_fs import _checked_members, split_relative

log = structlog.get_logger(__name__)


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    return "other"


def _epoch_ns(text: str) -> int:
    """`stat -c %y` ("2024-05-01 12:00:00.123456789 +0000", no fraction on some builds) in ns."""
    day, clock, zone = text.split(" ")
    whole, _, fraction = clock.partition(".")
    moment = datetime.strptime(f"{day} {whole} {zone}", "%Y-%m-%d %H:%M:%S %z")
    return int(moment.timestamp()) * 10**9 + int((fraction or "0")[:9].ljust(9, "0"))


def parse_listing(raw: bytes) -> list[WorkspaceStat]:
    """The `listing` of the container's script: paths relative to where it ran, in its order.

    Names that are not UTF-8 are skipped, as the local provider's scan skips them.
    """
    lines, _, links_part = raw.partition(b"\0")
    fields = links_part.split(b"\0")
    targets = {fields[i]: fields[i + 1] for i in range(0, len(fields) - 1, 2)}
    found: list[WorkspaceStat] = []
    for line in lines.split(b"\n"):
        if not line:
            continue
        try:
            raw_mode, inode, size, mtime, ctime, name = line.split(b"/", 5)
            path = "/".join(split_relative(name.decode()))
            mode = int(raw_mode, 16)
            entry_kind = _kind(mode)
            target = targets.get(name) if entry_kind == "symlink" else None
            found.append(
                WorkspaceStat(
                    path=path,
                    kind=entry_kind,  # type: ignore[arg-type]
                    mode=stat.S_IMODE(mode),
                    size=int(size),
                    mtime_ns=_epoch_ns(mtime.decode()),
                    ctime_ns=_epoch_ns(ctime.decode()),
                    inode=int(inode),
                    link_target=target.decode(errors="surrogateescape") if target is not None else None,
                )
            )
        except UnicodeDecodeError:
            log.warning("sandbox.listing_skipped", line=repr(line[:200]), reason="name is not UTF-8")
        except ValueError as error:
            log.warning("sandbox.listing_skipped", line=repr(line[:200]), reason=str(error))
    return found


def workspace_stats(listing: list[WorkspaceStat]) -> list[WorkspaceStat]:
    """A scan: parents before children (sorted by path components), sizes of files only."""
    ordered = sorted(listing, key=lambda item: item.path.split("/"))
    return [item if item.kind == "file" else _with_size(item, 0) for item in ordered]


def _with_size(item: WorkspaceStat, size: int) -> WorkspaceStat:
    return WorkspaceStat(
        path=item.path,
        kind=item.kind,
        mode=item.mode,
        size=size,
        mtime_ns=item.mtime_ns,
        ctime_ns=item.ctime_ns,
        inode=item.inode,
        link_target=item.link_target,
    )


def file_entries(listing: list[WorkspaceStat], prefix: str) -> list[FileEntry]:
    """A directory's listing as the protocol's entries, named under `prefix`, sorted."""
    return [
        FileEntry(
            path=f"{prefix}/{item.path}" if prefix else item.path,
            kind=item.kind,
            size=item.size,
            mode=item.mode,
            link_target=item.link_target,
        )
        for item in sorted(listing, key=lambda item: item.path)
    ]


def normalized_export(raw: bytes) -> bytes:
    """The container's tar as the local provider would have written it."""
    buffer = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as source,
        tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for member in source:
            name = "/".join(split_relative(member.name))
            if not name:
                continue  # the workspace root itself
            info = tarfile.TarInfo(name)
            info.mode = member.mode
            info.mtime = member.mtime
            if member.isdir():
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif member.issym():
                info.type = tarfile.SYMTYPE
                info.linkname = member.linkname
                tar.addfile(info)
            elif member.isreg() or member.islnk():
                data = _member_data(source, member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                log.info("workspace.export_skipped", path=name, kind="special file")
    return buffer.getvalue()


def _member_data(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    source = tar.extractfile(member)  # a hard link reads as the file it links to
    return source.read() if source is not None else b""


@dataclass(frozen=True)
class ImportPlan:
    """An archive, checked and rewritten for the container's `tar -x`."""

    archive: bytes
    # every directory above a member: the container refuses the whole archive if one is a symlink
    parents: list[str]
    # the archive's directories by mode, set once its content is in
    directories: dict[int, list[str]]


def checked_import(archive: bytes) -> ImportPlan:
    """Every member is checked (SandboxPathError) before anything is returned: a refused archive
    writes nothing. Hard links become plain files, as the local provider writes them."""
    buffer = io.BytesIO()
    directories: dict[int, list[str]] = {}
    parents: set[str] = set()
    try:
        with (
            tarfile.open(fileobj=io.BytesIO(archive), mode="r:*") as source,
            tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for member, path in _checked_members(source):
                parts = path.split("/")
                parents.update("/".join(parts[:depth]) for depth in range(1, len(parts)))
                info = tarfile.TarInfo(path)
                info.mode = member.mode & 0o7777
                info.mtime = member.mtime
                if member.isdir():
                    # writable while its content goes in (busybox's tar sets the mode at once);
                    # the container sets the archive's own mode afterwards
                    directories.setdefault(info.mode, []).append(path)
                    info.type = tarfile.DIRTYPE
                    info.mode |= 0o700
                    tar.addfile(info)
                elif member.issym():
                    info.type = tarfile.SYMTYPE
                    info.linkname = member.linkname
                    tar.addfile(info)
                else:
                    data = _member_data(source, member)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    except tarfile.TarError as exc:
        raise SandboxError(f"not a readable tar archive: {exc}") from exc
    return ImportPlan(archive=buffer.getvalue(), parents=sorted(parents), directories=directories)
