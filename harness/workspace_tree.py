"""The workspace as the model first sees it: a tree with the manifest's descriptions, bounded.

Shallow levels are listed in full (up to a number of children per folder);
deeper folders and long listings are summarised with counts, so a checkout of
a big repository costs the instructions a few lines, not thousands.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.snapshot_tree import SnapshotTree, TreeEntry

MAX_LINES = 80
MAX_DEPTH = 3
MAX_CHILDREN = 15


@dataclass
class _Node:
    name: str
    entry: TreeEntry | None = None
    children: dict[str, _Node] = field(default_factory=dict)

    @property
    def is_dir(self) -> bool:
        return self.entry is None or self.entry.kind == "dir"

    def counts(self) -> tuple[int, int]:
        """Files and folders below this node."""
        files = folders = 0
        for child in self.children.values():
            if child.is_dir:
                folders += 1
                below = child.counts()
                files, folders = files + below[0], folders + below[1]
            else:
                files += 1
        return files, folders


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def _tree_of(tree: SnapshotTree, extra_dirs: list[str]) -> _Node:
    root = _Node(name="")
    for entry in tree.entries:
        node = root
        for part in entry.path.split("/"):
            node = node.children.setdefault(part, _Node(name=part))
        node.entry = entry
    for path in extra_dirs:
        node = root
        for part in path.split("/"):
            node = node.children.setdefault(part, _Node(name=part))
    return root


def _summary(node: _Node) -> str:
    files, folders = node.counts()
    parts = [f"{files} file{'s' if files != 1 else ''}"]
    if folders:
        parts.append(f"{folders} folder{'s' if folders != 1 else ''}")
    return ", ".join(parts)


def render_workspace(
    tree: SnapshotTree,
    descriptions: dict[str, str],
    mounts: dict[str, str] | None = None,
    root_path: str = "/workspace",
    max_lines: int = MAX_LINES,
) -> str:
    """The tree under /workspace, one line per path, each with its description when it has one.

    `mounts` maps a mount's path to what it shows (e.g. "s3://bucket/prefix, read-only").
    """
    mounts = mounts or {}
    root = _tree_of(tree, list(mounts))
    lines: list[str] = [f"{root_path}/"]
    truncated = False

    def label(path: str, node: _Node) -> str:
        if path in mounts:
            text = f"{node.name}/  [mounted: {mounts[path]}]"
        elif node.is_dir:
            text = f"{node.name}/"
        elif node.entry is not None and node.entry.kind == "symlink":
            text = f"{node.name} -> {node.entry.target}"
        else:
            text = f"{node.name} ({_size(node.entry.size if node.entry else 0)})"
        description = descriptions.get(path)
        return f"{text}  # {description}" if description else text

    def walk(node: _Node, prefix: str, indent: str, depth: int) -> None:
        nonlocal truncated
        # folders first, then files; described paths before the rest of their kind
        children = sorted(
            node.children.values(),
            key=lambda child: (not child.is_dir, f"{prefix}{child.name}" not in descriptions, child.name),
        )
        shown = children[:MAX_CHILDREN]
        for child in shown:
            if len(lines) >= max_lines:
                truncated = True
                return
            path = f"{prefix}{child.name}"
            lines.append(f"{indent}{label(path, child)}")
            if not child.is_dir or path in mounts or not child.children:
                continue
            if depth + 1 >= MAX_DEPTH and path not in descriptions:
                lines[-1] += f"  ({_summary(child)})"
                continue
            walk(child, f"{path}/", indent + "  ", depth + 1)
        hidden = children[len(shown) :]
        if hidden and len(lines) < max_lines:
            files = sum(1 for child in hidden if not child.is_dir)
            lines.append(f"{indent}... and {len(hidden)} more ({files} files, {len(hidden) - files} folders)")

    walk(root, "", "  ", 0)
    if truncated:
        lines.append(f"  ... (listing cut at {max_lines} lines; `find` shows everything)")
    return "\n".join(lines)
