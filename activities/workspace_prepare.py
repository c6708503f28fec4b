"""The prepare_workspace activity: a run's starting workspace, gathered once on the trusted side.

It applies the manifest, fetches and validates the skills and reads the
agent's memory, into one seed tree in the snapshot store (see
harness/workspace_seed.py). Its result is small: the seed's id, the commits
the git refs resolved to, the skills, and the text the model gets about its
workspace. A bad manifest or skill fails the run's start with a message
naming the entry, the file and the rule.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import structlog
from pydantic import BaseModel, Field
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.model import HEARTBEAT_INTERVAL_S, heartbeat_every
from activities.workspace_sources import GitRepositories, SourceRefused, local_source, s3_objects
from harness.config import FarlineConfig
from harness.manifest import (
    DirectoryEntry,
    GitEntry,
    InlineFileEntry,
    LocalCopyEntry,
    Manifest,
    S3CopyEntry,
    S3MountEntry,
    normal_path,
)
from harness.memory import WORKSPACE_PATH as MEMORY_PATH
from harness.memory import MemoryScope, MemoryStore, memory_summary
from harness.skills import (
    SkillFolderSource,
    SkillGitSource,
    SkillInvalid,
    SkillMetadata,
    SkillSource,
    extract_zip_safely,
    find_skill_folders,
    parse_skill_md,
    skills_listing,
)
from harness.snapshot_store import SnapshotMissing, SnapshotStore
from harness.snapshot_stores import SnapshotStores, StoreRefused
from harness.specs import SnapshotStoreChoice
from harness.workspace_seed import SeedConflict, SeedTooBig, WorkspaceSeed
from harness.workspace_tree import render_workspace

log = structlog.get_logger(__name__)


class PrepareWorkspaceRequest(BaseModel):
    run_id: str
    manifest: Manifest | None = None
    skills: list[SkillSource] = Field(default_factory=list)
    memory: MemoryScope | None = None
    # the run's start (workflow time, epoch seconds): the mtime of every seeded path
    started_at: int
    # a snapshot the workspace starts from (a fork), the entries added to it
    base_snapshot: str | None = None
    # the run's snapshot store, where the seed goes (None: the worker's)
    store: SnapshotStoreChoice | None = None


class PinnedSource(BaseModel):
    """A git source and the commit its ref named when the run started."""

    source: str
    url: str
    ref: str
    commit: str


class PreparedSkill(BaseModel):
    name: str
    description: str
    path: str
    source: str


class PreparedWorkspace(BaseModel):
    seed_snapshot_id: str
    files: int
    total_bytes: int
    uploaded_bytes: int
    pinned: list[PinnedSource] = Field(default_factory=list)
    skills: list[PreparedSkill] = Field(default_factory=list)
    mounts: list[S3MountEntry] = Field(default_factory=list)
    memory_bytes: int = 0
    # what the model is told about its workspace, its skills and its memory
    instructions: str
    skipped: list[str] = Field(default_factory=list)
    seconds: float


class WorkspacePreparer:
    """One preparation: fills a seed from the request's sources."""

    def __init__(
        self,
        config: FarlineConfig,
        store: SnapshotStore,
        request: PrepareWorkspaceRequest,
        memories: MemoryStore,
    ) -> None:
        self.config = config
        self.request = request
        self.seed = WorkspaceSeed(store, config.manifest_max_bytes, request.started_at)
        if request.base_snapshot is not None:
            self.seed.start_from(store.get_tree(request.base_snapshot))
        # memory stays in the worker's own store, whichever store the run's snapshots use
        self.memory_store = memories
        self.git = GitRepositories(config.git_cache_dir, config.local_source_roots)
        self.pinned: list[PinnedSource] = []
        self.skills: list[PreparedSkill] = []

    def prepare(self, scratch: Path) -> PreparedWorkspace:
        started = time.monotonic()
        manifest = self.request.manifest or Manifest()
        for number, entry in enumerate(manifest.entries, start=1):
            name = f"manifest entry {number} ({entry.kind} {entry.path!r})"
            try:
                self._apply(entry, name, scratch / f"entry-{number}")
            except (SourceRefused, SeedConflict, OSError) as error:
                raise SourceRefused(f"{name}: {error}") from None
            self.seed.describe(normal_path(entry.path), entry.description)
        skill_texts = [
            self._add_skills(source, scratch / f"skill-{n}") for n, source in enumerate(self.request.skills)
        ]
        memory = self.memory_store.read(self.request.memory) if self.request.memory is not None else ""
        if memory.strip():
            self.seed.add_file(MEMORY_PATH, memory.encode())
        tree = self.seed.finish()
        mounts = {
            normal_path(mount.path): f"s3://{mount.bucket}/{mount.prefix}"
            + (", read-only" if mount.read_only else ", writable")
            for mount in manifest.mounts
        }
        sections = [
            "## Your workspace",
            *([manifest.description] if manifest.description else []),
            "Your working directory is /workspace. When the run started it held:",
            render_workspace(tree, self.seed.descriptions, mounts),
        ]
        if skill_texts:
            sections.append(
                skills_listing([(metadata, path) for batch in skill_texts for metadata, path in batch])
            )
        if memory.strip():
            sections += [
                "## Memory",
                f"Lessons from this agent's earlier runs ({MEMORY_PATH} holds all of them):",
                memory_summary(memory),
            ]
        prepared = PreparedWorkspace(
            seed_snapshot_id=tree.snapshot_id,
            files=tree.count("file"),
            total_bytes=tree.total_bytes,
            uploaded_bytes=self.seed.uploaded_bytes,
            pinned=self.pinned,
            skills=self.skills,
            mounts=manifest.mounts,
            memory_bytes=len(memory.encode()),
            instructions="\n\n".join(sections),
            skipped=self.seed.skipped[:20],
            seconds=round(time.monotonic() - started, 3),
        )
        log.info(
            "workspace.prepared",
            run_id=self.request.run_id,
            **prepared.model_dump(include={"seed_snapshot_id", "files", "total_bytes", "uploaded_bytes"}),
            skills=[skill.name for skill in self.skills],
        )
        return prepared

    def _apply(self, entry: object, name: str, scratch: Path) -> None:
        if isinstance(entry, DirectoryEntry):
            self.seed.add_dir(normal_path(entry.path))
        elif isinstance(entry, InlineFileEntry):
            self.seed.add_file(normal_path(entry.path), entry.data(), 0o755 if entry.executable else 0o644)
        elif isinstance(entry, LocalCopyEntry):
            self.seed.add_from_disk(
                normal_path(entry.path), local_source(entry.source, self.config.local_source_roots)
            )
        elif isinstance(entry, GitEntry):
            commit = entry.commit or self.git.resolve(entry.url, entry.ref)
            self.pinned.append(PinnedSource(source=name, url=entry.url, ref=entry.ref, commit=commit))
            scratch.mkdir()
            folder = self.git.checkout(entry.url, commit, scratch / "checkout", entry.subpath)
            self.seed.add_from_disk(normal_path(entry.path), folder)
        elif isinstance(entry, S3CopyEntry):
            root = normal_path(entry.path)
            self.seed.add_dir(root)
            for relative, data in s3_objects(entry, self.config):
                self.seed.add_file(f"{root}/{relative}", data)
        elif isinstance(entry, S3MountEntry):
            # mounted into each sandbox by the keeper; nothing of it is seeded
            return
        else:  # pragma: no cover - the manifest's union is closed
            raise SourceRefused(f"{name}: unknown kind")

    def _add_skills(self, source: SkillSource, scratch: Path) -> list[tuple[SkillMetadata, str]]:
        scratch.mkdir()
        if isinstance(source, SkillFolderSource):
            root, origin = local_source(source.path, self.config.local_source_roots), source.path
        elif isinstance(source, SkillGitSource):
            commit = self.git.resolve(source.url, source.ref)
            origin = f"{source.url} at {commit[:12]}"
            self.pinned.append(PinnedSource(source="skills", url=source.url, ref=source.ref, commit=commit))
            root = self.git.checkout(source.url, commit, scratch / "checkout", source.subpath)
        else:
            root, origin = scratch / "unzipped", "an inline zip"
            root.mkdir()
            extract_zip_safely(source.archive(), root)
        # a skill's name must equal its folder's; a zip's root or a repository's root has no name of its own
        root_unnamed = not isinstance(source, SkillFolderSource) and not (
            isinstance(source, SkillGitSource) and source.subpath is not None
        )
        found = []
        for folder in find_skill_folders(root, origin):
            unnamed = folder == root and root_unnamed
            label = f"{origin}: {'' if unnamed else folder.name + '/'}SKILL.md"
            metadata = parse_skill_md(
                (folder / "SKILL.md").read_text(errors="replace"), None if unnamed else folder.name, label
            )
            path = f"skills/{metadata.name}"
            if any(skill.name == metadata.name for skill in self.skills):
                raise SkillInvalid(
                    f"{origin}: a second skill named {metadata.name!r}; skill names must be unique"
                )
            self.seed.add_from_disk(path, folder, skip=frozenset({".git"}))
            self.skills.append(
                PreparedSkill(name=metadata.name, description=metadata.description, path=path, source=origin)
            )
            found.append((metadata, path))
        return found


class WorkspaceActivities:
    def __init__(self, config: FarlineConfig, stores: SnapshotStores) -> None:
        self._config = config
        self._stores = stores
        self._memories = MemoryStore(stores.default.objects)

    @activity.defn(name="prepare_workspace")
    async def prepare_workspace(self, request: PrepareWorkspaceRequest) -> PreparedWorkspace:
        heartbeats = asyncio.create_task(heartbeat_every(HEARTBEAT_INTERVAL_S))
        try:
            with tempfile.TemporaryDirectory(prefix="farline-prepare-") as scratch:
                store = self._stores.get(request.store)
                preparer = WorkspacePreparer(self._config, store, request, self._memories)
                return await asyncio.to_thread(preparer.prepare, Path(scratch))
        except (
            SourceRefused,
            SkillInvalid,
            SeedConflict,
            SeedTooBig,
            SnapshotMissing,
            StoreRefused,
        ) as error:
            raise ApplicationError(str(error), type="WorkspaceRefused", non_retryable=True) from None
        finally:
            heartbeats.cancel()
