"""Where a starting workspace's content comes from: the worker's disk, git, S3.

Trusted side only. A run names its sources; this module fetches them with the
worker's own access (its git credentials, its S3 keys), so no secret enters
the run's history or its sandbox. Bad requests raise SourceRefused with what to
fix; a source that is down raises something else, and the activity retries.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from harness.config import ConfigError, FarlineConfig
from harness.manifest import S3CopyEntry, relative_path_problem
from harness.object_store_s3 import S3ObjectStore

GIT_TIMEOUT_S = 600
# what git may speak: never `ext::` (it runs commands) or other helpers
GIT_PROTOCOLS = "https:http:ssh:git:file"
_SCP_LIKE = re.compile(r"^[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+:[^/]")


class SourceRefused(Exception):
    """A source the run may not use or that does not exist; the message says what to fix."""


def local_source(source: str, roots: list[Path]) -> Path:
    """`source` on the worker's disk, if it lies under one of the allowed roots (links resolved)."""
    if not roots:
        raise SourceRefused(
            f"{source!r} is on the worker's disk, and this worker allows no local sources: its "
            "operator sets FARLINE_LOCAL_SOURCES to the folders runs may copy from"
        )
    real = Path(os.path.realpath(source))
    for root in roots:
        if real.is_relative_to(os.path.realpath(root)):
            if not real.exists():
                raise SourceRefused(f"{source!r} does not exist on the worker")
            return real
    allowed = ", ".join(str(root) for root in roots)
    raise SourceRefused(
        f"{source!r} is outside the folders this worker allows (FARLINE_LOCAL_SOURCES: {allowed})"
    )


class GitRepositories:
    """Bare mirrors of the repositories runs use, in the worker's data dir, fetched on demand."""

    def __init__(self, cache_dir: Path, local_roots: list[Path]) -> None:
        self.cache_dir = cache_dir
        self.local_roots = local_roots

    def resolve(self, url: str, ref: str) -> str:
        """Fetch `url` and give the commit `ref` (branch, tag, commit) names now."""
        self._check_url(url)
        with self._mirror(url) as mirror:
            found = _git(["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=mirror, check=False)
            if found.returncode != 0:
                raise SourceRefused(f"git: {url} has no branch, tag or commit {ref!r}")
            return found.stdout.strip()

    def checkout(self, url: str, commit: str, destination: Path, subpath: str | None) -> Path:
        """The files at `commit` under `destination`: the whole repository with its .git (detached
        at the commit, origin set to `url`), or only `subpath`'s files. Returns the folder to copy."""
        self._check_url(url)
        with self._mirror(url, commit) as mirror:
            if subpath is None:
                _git(["clone", "--quiet", "--no-checkout", "--", str(mirror), str(destination)])
                _git(["checkout", "--quiet", "--detach", commit], cwd=destination)
                _git(["remote", "set-url", "origin", url], cwd=destination)
                return destination
            archive = destination.parent / "subpath.tar"
            listed = _git(["ls-tree", "-d", "--name-only", commit, "--", subpath], cwd=mirror)
            if listed.stdout.strip() != subpath:
                raise SourceRefused(f"git: {url} at {commit[:12]} has no folder {subpath!r}")
            with archive.open("wb") as out:
                _git(["archive", "--format=tar", commit, "--", subpath], cwd=mirror, stdout=out)
            destination.mkdir()
            with tarfile.open(archive) as tar:
                tar.extractall(destination, filter="data")
            return destination / subpath

    def _check_url(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.password:
            raise SourceRefused(
                "git: the URL holds a password or token, which would land in the run's history and "
                "the workspace's .git/config; give the worker a git credential helper or an ssh key instead"
            )
        if parts.scheme in ("http", "https", "ssh", "git") or _SCP_LIKE.match(url):
            return
        if parts.scheme == "file" or (not parts.scheme and url.startswith("/")):
            local_source(parts.path if parts.scheme else url, self.local_roots)
            return
        raise SourceRefused(f"git: {url!r} is not an https, ssh, git or file URL")

    @contextmanager
    def _mirror(self, url: str, needed: str | None = None) -> Iterator[Path]:
        """The URL's bare mirror, locked; fetched unless it already has the `needed` commit."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        mirror = self.cache_dir / f"{hashlib.sha256(url.encode()).hexdigest()[:24]}.git"
        with (self.cache_dir / f"{mirror.name}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not (mirror / "HEAD").exists():
                with tempfile.TemporaryDirectory(dir=self.cache_dir, prefix=".clone-") as scratch:
                    staged = Path(scratch) / "mirror.git"
                    _git(["clone", "--quiet", "--bare", "--", url, str(staged)], what=url)
                    staged.rename(mirror)
            elif needed is None or _git(["cat-file", "-e", needed], cwd=mirror, check=False).returncode:
                _git(
                    ["fetch", "--quiet", "--prune", "--tags", "--", url, "+refs/heads/*:refs/heads/*"],
                    cwd=mirror,
                    what=url,
                )
            yield mirror


def _git(
    args: list[str],
    cwd: Path | None = None,
    check: bool = True,
    what: str | None = None,
    stdout: object = subprocess.PIPE,
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ALLOW_PROTOCOL": GIT_PROTOCOLS,
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "advice.detachedHead",
        "GIT_CONFIG_VALUE_0": "false",
    }
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            stdout=stdout,  # type: ignore[arg-type]
            stderr=subprocess.PIPE,
            text=True,
            timeout=GIT_TIMEOUT_S,
        )
    except FileNotFoundError:
        raise SourceRefused("git is not installed on the worker (apt-get install git)") from None
    if check and done.returncode != 0:
        message = f"git {args[0]} {what or ''} failed: {done.stderr.strip()[-800:]}"
        if "not found" in done.stderr or "does not appear to be a git repository" in done.stderr:
            raise SourceRefused(message)
        # a network or server problem: the activity retries
        raise RuntimeError(message)
    return done


def s3_objects(entry: S3CopyEntry, config: FarlineConfig) -> Iterator[tuple[str, bytes]]:
    """(path under the entry, content) for every object under the entry's prefix."""
    try:
        key_id, secret = config.s3_credentials(entry.credentials)
    except ConfigError as error:
        raise SourceRefused(str(error)) from None
    store = S3ObjectStore(
        bucket=entry.bucket,
        endpoint_url=entry.endpoint_url or config.s3_endpoint_url,
        region=entry.region or config.s3_region,
        access_key_id=key_id,
        secret_access_key=secret,
    )
    # a prefix names a folder: "data" copies data/..., not database/...
    prefix = entry.prefix if not entry.prefix or entry.prefix.endswith("/") else entry.prefix + "/"
    found = False
    for stored in store.list(prefix):
        found = True
        relative = stored.key[len(prefix) :]
        if not relative or relative.endswith("/"):
            continue  # the prefix itself, or a folder marker
        problem = relative_path_problem(relative)
        if problem is not None:
            raise SourceRefused(f"s3://{entry.bucket}/{stored.key}: {problem}")
        yield relative, store.get(stored.key)
    if not found:
        raise SourceRefused(f"s3://{entry.bucket}/{prefix} holds no objects (is the prefix right?)")
