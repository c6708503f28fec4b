"""The apply_patch activity against a real local (bubblewrap) sandbox."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path

import pytest
from temporalio.testing import ActivityEnvironment

from activities.patch import PatchActivities
from activities.patch_io import ApplyPatchRequest, ApplyPatchResult
from sandbox_providers.base import ProcessSpec, SandboxConfig, SandboxRef
from sandbox_providers.local import LocalProvider


@pytest.fixture
def provider(tmp_path: Path) -> LocalProvider:
    return LocalProvider(tmp_path / "sandboxes")


@pytest.fixture
async def sandbox(provider: LocalProvider) -> SandboxRef:
    return await provider.create("sb", SandboxConfig())


async def apply(
    provider: LocalProvider, sandbox: SandboxRef, patch: str, attempt: int = 1
) -> ApplyPatchResult:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, attempt=attempt)
    activities = PatchActivities({"local": provider})
    return await env.run(activities.apply_patch, ApplyPatchRequest(sandbox=sandbox, patch=patch))


async def sh(provider: LocalProvider, sandbox: SandboxRef, script: str) -> None:
    process_id = f"sh-{time.monotonic_ns()}"
    state = await provider.start_process(
        sandbox, ProcessSpec(process_id=process_id, argv=["sh", "-c", script])
    )
    deadline = time.monotonic() + 10
    while state.running:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
        state = await provider.process_state(sandbox, process_id)
    assert state.exit_code == 0


async def files(provider: LocalProvider, sandbox: SandboxRef, directory: str = ".") -> dict[str, bytes]:
    """Every regular file under `directory`, read through the provider."""
    found: dict[str, bytes] = {}
    for entry in await provider.list_dir(sandbox, directory):
        if entry.kind == "dir":
            found |= await files(provider, sandbox, entry.path)
        elif entry.kind == "file":
            found[entry.path] = await provider.read_file(sandbox, entry.path)
    return found


MULTI_FILE_PATCH = """\
*** Begin Patch
*** Update File: run.sh
@@
-echo old
+echo new
*** Add File: docs/new/notes.md
+# Notes
*** Delete File: stale.txt
*** Update File: src/a.py
*** Move to: lib/a.py
@@ def f():
-    return 1
+    return 2
*** End Patch
"""


async def test_multi_file_patch(provider: LocalProvider, sandbox: SandboxRef) -> None:
    await provider.write_file(sandbox, "run.sh", b"#!/bin/sh\necho old\n", mode=0o755)
    await provider.write_file(sandbox, "stale.txt", b"stale\n")
    await provider.write_file(sandbox, "src/a.py", b"def f():\n    return 1\n")

    result = await apply(provider, sandbox, MULTI_FILE_PATCH)

    assert result == ApplyPatchResult(
        ok=True,
        output="Success. Updated the following files:\n"
        "A docs/new/notes.md\nM run.sh\nM lib/a.py\nD stale.txt\n",
    )
    assert await files(provider, sandbox) == {
        "run.sh": b"#!/bin/sh\necho new\n",
        "docs/new/notes.md": b"# Notes\n",
        "lib/a.py": b"def f():\n    return 2\n",
    }
    [run_sh] = [entry for entry in await provider.list_dir(sandbox) if entry.path == "run.sh"]
    assert run_sh.mode == 0o755


async def test_a_refused_patch_changes_nothing(provider: LocalProvider, sandbox: SandboxRef) -> None:
    await provider.write_file(sandbox, "a.txt", b"a\n")
    await provider.write_file(sandbox, "b.txt", b"b\n")
    patch = (
        "*** Begin Patch\n*** Update File: a.txt\n@@\n-a\n+A\n*** Add File: c.txt\n+c\n"
        "*** Update File: b.txt\n@@\n-nope\n+B\n*** End Patch"
    )

    result = await apply(provider, sandbox, patch)

    assert not result.ok
    assert result.output == 'error: line 10: context not found in b.txt: "nope"'
    assert await files(provider, sandbox) == {"a.txt": b"a\n", "b.txt": b"b\n"}


async def test_a_failed_write_is_rolled_back(provider: LocalProvider, sandbox: SandboxRef) -> None:
    await provider.write_file(sandbox, "a.txt", b"a\n")
    await provider.write_file(sandbox, "blocker", b"a file\n")
    patch = (
        "*** Begin Patch\n*** Update File: a.txt\n@@\n-a\n+A\n*** Add File: blocker/x.txt\n+x\n*** End Patch"
    )

    result = await apply(provider, sandbox, patch)

    assert not result.ok
    assert result.output.startswith("error: line 6: could not write blocker/x.txt")
    assert result.output.endswith("; no file was changed")
    assert await files(provider, sandbox) == {"a.txt": b"a\n", "blocker": b"a file\n"}


async def test_symlinks_made_in_the_sandbox(provider: LocalProvider, sandbox: SandboxRef) -> None:
    await provider.write_file(sandbox, "real.txt", b"one\n")
    await sh(provider, sandbox, "ln -s /etc/passwd x && ln -s /etc etc && ln -s real.txt alias")

    through_file = await apply(
        provider, sandbox, "*** Begin Patch\n*** Update File: x\n@@\n-root\n+r\n*** End Patch"
    )
    through_dir = await apply(provider, sandbox, "*** Begin Patch\n*** Add File: etc/evil\n+x\n*** End Patch")

    for result in (through_file, through_dir):
        assert not result.ok
        assert "outside the workspace" in result.output
    assert not Path("/etc/evil").exists()

    inside = "*** Begin Patch\n*** Update File: alias\n@@\n-one\n+two\n*** End Patch"
    assert (await apply(provider, sandbox, inside)).ok
    assert await provider.read_file(sandbox, "real.txt") == b"two\n"
    assert (await apply(provider, sandbox, "*** Begin Patch\n*** Delete File: alias\n*** End Patch")).ok
    entries = {entry.path: entry.kind for entry in await provider.list_dir(sandbox)}
    assert entries == {"real.txt": "file", "x": "symlink", "etc": "symlink"}


async def test_a_retry_after_the_writes_reports_the_same_success(
    provider: LocalProvider, sandbox: SandboxRef
) -> None:
    await provider.write_file(sandbox, "a.txt", b"x\ny\n")
    patch = "*** Begin Patch\n*** Update File: a.txt\n@@\n x\n-y\n+z\n*** Add File: n.txt\n+n\n*** End Patch"

    first = await apply(provider, sandbox, patch)
    retry = await apply(provider, sandbox, patch, attempt=2)
    fresh_call = await apply(provider, sandbox, patch)

    assert first.ok and retry == first
    assert not fresh_call.ok
    assert await files(provider, sandbox) == {"a.txt": b"x\nz\n", "n.txt": b"n\n"}


async def test_delete_file_refuses_directories_and_missing_files(
    provider: LocalProvider, sandbox: SandboxRef
) -> None:
    await provider.write_file(sandbox, "d/f.txt", b"f\n")
    with pytest.raises(IsADirectoryError):
        await provider.delete_file(sandbox, "d")
    with pytest.raises(FileNotFoundError):
        await provider.delete_file(sandbox, "d/missing.txt")
    await provider.delete_file(sandbox, "d/f.txt")
    assert await provider.list_dir(sandbox, "d") == []
