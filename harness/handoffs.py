"""What a sub-agent hands back: its final message and its output/ files, as a tree for its parent.

The files are not copied: the tree refers to the child's blobs, already in the
store, under new paths (`handoffs/<agent id>/...`).
"""

from __future__ import annotations

from harness.snapshot_store import SnapshotStore, blob_hash
from harness.snapshot_tree import SnapshotTree, TreeEntry, split_chunks
from harness.subagent_tools import HANDOFFS_DIR, OUTPUT_DIR, RESULT_FILE


def handoff_tree(
    store: SnapshotStore, agent_id: str, final_message: str, child_snapshot: str | None, mtime: int
) -> SnapshotTree:
    """`handoffs/<agent_id>/RESULT.md` with the final message, and the child's `output/` under
    `handoffs/<agent_id>/output/` (nothing when the child took no snapshot)."""
    root = f"{HANDOFFS_DIR}/{agent_id}"
    entries = [
        TreeEntry(path=HANDOFFS_DIR, kind="dir", mode=0o755),
        TreeEntry(path=root, kind="dir", mode=0o755),
    ]
    data = final_message.encode()
    chunks = []
    for chunk in split_chunks(data):
        digest = blob_hash(chunk)
        store.put_blob(digest, chunk)
        chunks.append(digest)
    entries.append(
        TreeEntry(
            path=f"{root}/{RESULT_FILE}", kind="file", mode=0o644, size=len(data), mtime=mtime, chunks=chunks
        )
    )
    if child_snapshot is not None:
        prefix = OUTPUT_DIR + "/"
        for entry in store.get_tree(child_snapshot).entries:
            if entry.path == OUTPUT_DIR or entry.path.startswith(prefix):
                entries.append(entry.model_copy(update={"path": f"{root}/{entry.path}"}))
    return SnapshotTree(entries=entries)
