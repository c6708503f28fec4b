"""Capping command output for the model: keep the head and the tail, say what was cut."""

from __future__ import annotations


def middle_truncated(head: bytes, tail: bytes, total_bytes: int) -> str:
    """Join the first and last bytes of an output of `total_bytes` with a marker for the cut middle.

    `head` and `tail` may overlap or meet when the output was small enough; then the
    whole output is returned unmarked.
    """
    if len(head) >= total_bytes:
        return head[:total_bytes].decode("utf-8", errors="replace")
    if len(head) + len(tail) >= total_bytes:
        rest = total_bytes - len(head)
        whole = head + (tail[len(tail) - rest :] if rest else b"")
        return whole.decode("utf-8", errors="replace")
    cut = total_bytes - len(head) - len(tail)
    marker = f"\n…[{cut} bytes of output truncated]…\n"
    return head.decode("utf-8", errors="replace") + marker + tail.decode("utf-8", errors="replace")


def truncate_middle(text: str, max_bytes: int) -> str:
    """`text` cut in the middle to about `max_bytes` bytes of UTF-8."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    half = max_bytes // 2
    return middle_truncated(data[:half], data[len(data) - half :], len(data))
