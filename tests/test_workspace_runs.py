"""Runs with a declared workspace: manifest, skills and memory, end to end through AgentRun."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import subprocess
import uuid
import zipfile
from pathlib import Path

import pytest
from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from harness.memory import MemoryScope, MemoryStore
from harness.runs import start_run
from harness.scripted_model import Script, ScriptTurn
from harness.snapshot_store import open_snapshot_store
from harness.specs import AgentSpec, RunRequest, RunState, RunStatus
from sandbox_providers.base import SandboxRef
from sandbox_providers.local import LocalProvider
from tests.script_helpers import exec_call, script
from workflows.agent_run import AgentRun

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def make_repository(root: Path) -> tuple[str, str, str]:
    """A bare repository (file:// URL) with tag v1 and a later commit on main: (url, v1, head)."""
    work = root / "work"
    work.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=work)
    (work / "README.md").write_text("version one\n")
    (work / "tools").mkdir()
    (work / "tools" / "run.sh").write_text("#!/bin/sh\necho tool one\n")
    (work / "tools" / "run.sh").chmod(0o755)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    git("tag", "v1", cwd=work)
    v1 = git("rev-parse", "HEAD", cwd=work)
    (work / "README.md").write_text("version two\n")
    git("commit", "-q", "-am", "two", cwd=work)
    head = git("rev-parse", "HEAD", cwd=work)
    bare = root / "repo.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=root)
    return f"file://{bare}", v1, head


def skill_zip(name: str, description: str) -> str:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{name}/SKILL.md", f"---\nname: {name}\ndescription: {description}\n---\nUse it.\n")
        archive.writestr(f"{name}/scripts/go.sh", "echo go\n")
    return base64.b64encode(buffer.getvalue()).decode()


def instructions_of(server) -> str:
    return server.requests[0].body["instructions"]


async def test_a_manifest_with_every_local_source_is_applied_rendered_and_pinned(
    client: Client, scripted_model, make_config, running_worker, tmp_path: Path
) -> None:
    sources = tmp_path / "sources"
    url, v1, head = make_repository(sources / "git")
    (sources / "docs").mkdir()
    (sources / "docs" / "style.md").write_text("Write plainly.\n")
    (sources / "docs" / "link").symlink_to("style.md")
    secret = tmp_path / "secret.txt"
    secret.write_text("worker secret")
    server = scripted_model(
        script(
            exec_call(
                "cat original/brief.md repo_v1/README.md repo_head/README.md; ./repo_v1/tools/run.sh; "
                "git -C repo_v1 rev-parse HEAD; od -An -tx1 -N4 original/pixel.png; ls guides; "
                "cat guides/link; stat -c %a repo_v1/tools/run.sh; ls tools_only"
            ),
            {"message": "{last_tool_output}"},
        )
    )
    config = make_config(server, local_sources=str(sources))
    manifest = {
        "description": "A documentation task.",
        "entries": [
            {"kind": "dir", "path": "original", "description": "Inputs: never change them"},
            {"kind": "file", "path": "original/brief.md", "content": "Write the guide.\n"},
            {
                "kind": "file",
                "path": "original/pixel.png",
                "content": base64.b64encode(PNG).decode(),
                "encoding": "base64",
            },
            {"kind": "dir", "path": "working"},
            {"kind": "dir", "path": "output", "description": "Deliverables go here"},
            {"kind": "local", "path": "guides", "source": str(sources / "docs")},
            {"kind": "git", "path": "repo_v1", "url": url, "ref": "v1", "description": "The tool at v1"},
            {"kind": "git", "path": "repo_head", "url": url, "ref": head},
            {"kind": "git", "path": "tools_only", "url": url, "ref": "main", "subpath": "tools"},
        ],
    }
    async with running_worker(config):
        handle = await start_run(
            client,
            config,
            RunRequest.model_validate({"agent": "demo", "task": "document", "manifest": manifest}),
        )
        result = await handle.result()
        status = await handle.query("status", result_type=RunStatus)
    assert result.state is RunState.COMPLETED
    output = result.final_message or ""
    assert "Write the guide." in output and "version one" in output and "version two" in output
    assert "tool one" in output and v1 in output
    assert "89 50 4e 47" in output  # the PNG's magic bytes survived, byte for byte
    assert "link\nstyle.md" in output and "Write plainly." in output and "755" in output
    assert "run.sh" in output.split("755")[-1]
    # the refs were resolved when the run started, and recorded
    assert any(f"v1 -> {v1}" in pin for pin in status.pinned)
    assert any(f"main -> {head}" in pin for pin in status.pinned)
    assert status.workspace_seed is not None
    # the model was shown its workspace, with the descriptions
    instructions = instructions_of(server)
    assert "A documentation task." in instructions
    assert "original/  # Inputs: never change them" in instructions
    assert "output/  # Deliverables go here" in instructions
    assert "repo_v1/  # The tool at v1" in instructions
    assert "worker secret" not in output


async def test_a_rehydrated_sandbox_gets_the_manifest_from_the_seed_not_the_sources(
    client: Client, scripted_model, make_config, running_worker, tmp_path: Path
) -> None:
    sources = tmp_path / "sources"
    url, _v1, head = make_repository(sources / "git")
    server = scripted_model(
        script(
            exec_call("sleep 60", yield_time_ms=30000),
            exec_call("cat repo/README.md; git -C repo rev-parse HEAD"),
            {"message": "{last_tool_output}"},
        )
    )
    # the sandbox dies in the first command, before any snapshot: only the seed can refill it
    config = make_config(server, local_sources=str(sources))
    request = RunRequest.model_validate(
        {
            "agent": "demo",
            "task": "t",
            "manifest": {"entries": [{"kind": "git", "path": "repo", "url": url, "ref": "main"}]},
        }
    )
    async with running_worker(config):
        handle = await start_run(client, config, request)
        while len(server.requests) < 1:
            await asyncio.sleep(0.2)
        await asyncio.sleep(1)
        status = await handle.query("status", result_type=RunStatus)
        # the branch moves on, and the sandbox dies
        work = sources / "git" / "work"
        (work / "README.md").write_text("version three\n")
        git("commit", "-q", "-am", "three", cwd=work)
        git("push", "-q", str(sources / "git" / "repo.git"), "main", cwd=work)
        assert status.sandbox_id is not None
        await LocalProvider(config.sandboxes_dir).destroy(
            SandboxRef(provider="local", sandbox_id=status.sandbox_id)
        )
        result = await handle.result()
        final = await handle.query("status", result_type=RunStatus)
    assert result.state is RunState.COMPLETED
    assert "version two" in (result.final_message or "") and head in (result.final_message or "")
    assert "version three" not in (result.final_message or "")
    assert final.rehydrations == 1


async def test_a_manifest_source_the_worker_does_not_allow_fails_the_start_naming_the_entry(
    client: Client, scripted_model, make_config, running_worker, tmp_path: Path
) -> None:
    server = scripted_model(script({"message": "never"}))
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    config = make_config(server, local_sources=str(allowed))
    request = RunRequest.model_validate(
        {
            "agent": "demo",
            "task": "t",
            "manifest": {
                "entries": [{"kind": "dir", "path": "a"}, {"kind": "local", "path": "etc", "source": "/etc"}]
            },
        }
    )
    async with running_worker(config):
        handle = await start_run(client, config, request)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    message = str(failure.value.cause.cause)
    assert "manifest entry 2 (local 'etc')" in message and "FARLINE_LOCAL_SOURCES" in message
    assert not server.requests  # the model was never called


async def test_skills_from_each_source_are_placed_and_listed(
    client: Client, scripted_model, make_config, running_worker, tmp_path: Path
) -> None:
    sources = tmp_path / "sources"
    folder = sources / "skills" / "style-guide"
    folder.mkdir(parents=True)
    (folder / "SKILL.md").write_text(
        "---\nname: style-guide\ndescription: House style for docs.\n---\nBe brief.\n"
    )
    repo = sources / "git" / "work"
    repo.mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=repo)
    (repo / "skills" / "pdf-tools").mkdir(parents=True)
    (repo / "skills" / "pdf-tools" / "SKILL.md").write_text(
        "---\nname: pdf-tools\ndescription: Fill PDF forms.\nlicense: MIT\n---\nRun fill.py.\n"
    )
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "skill", cwd=repo)
    commit = git("rev-parse", "HEAD", cwd=repo)
    server = scripted_model(
        script(
            exec_call("ls skills; cat skills/pdf-tools/SKILL.md; cat skills/zipped/scripts/go.sh"),
            {"message": "{last_tool_output}"},
        )
    )
    config = make_config(server, local_sources=str(sources))
    request = RunRequest.model_validate(
        {
            "agent": "demo",
            "task": "t",
            "skills": [
                {"kind": "folder", "path": str(folder)},
                {"kind": "git", "url": f"file://{repo}", "ref": "main", "subpath": "skills"},
                {"kind": "zip", "data": skill_zip("zipped", "A zipped skill.")},
            ],
        }
    )
    async with running_worker(config):
        handle = await start_run(client, config, request)
        result = await handle.result()
        status = await handle.query("status", result_type=RunStatus)
    output = result.final_message or ""
    assert "pdf-tools\nstyle-guide\nzipped" in output and "Run fill.py." in output and "echo go" in output
    assert sorted(status.skills) == ["pdf-tools", "style-guide", "zipped"]
    assert any(commit in pin for pin in status.pinned)
    instructions = instructions_of(server)
    assert "- pdf-tools (skills/pdf-tools/SKILL.md): Fill PDF forms." in instructions
    assert "- style-guide (skills/style-guide/SKILL.md): House style for docs." in instructions


async def test_a_bad_skill_fails_the_start_naming_the_file_and_the_rule(
    client: Client, scripted_model, make_config, running_worker, tmp_path: Path
) -> None:
    server = scripted_model(script({"message": "never"}))
    config = make_config(server)
    request = RunRequest.model_validate(
        {"agent": "demo", "task": "t", "skills": [{"kind": "zip", "data": skill_zip("Bad--Name", "x")}]}
    )
    async with running_worker(config):
        handle = await start_run(client, config, request)
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    message = str(failure.value.cause.cause)
    assert "Bad--Name/SKILL.md" in message and "lowercase" in message


async def test_memory_is_carried_from_one_run_to_the_next(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    agent = AgentSpec(name="keeper", memory={"enabled": True})
    first = scripted_model(
        Script(
            turns=[ScriptTurn(message="done")],
            memory_lessons=["The build needs `make deps` first.", "The user wants British spelling."],
        )
    )
    config = make_config(first)
    async with running_worker(config):
        result = await (await start_run(client, config, RunRequest(agent_spec=agent, task="one"))).result()
    assert result.state is RunState.COMPLETED
    store = MemoryStore(open_snapshot_store(config).objects)
    text = store.read(MemoryScope(agent="keeper"))
    assert "- The build needs `make deps` first." in text

    second = scripted_model(
        script(exec_call("cat memory/MEMORY.md"), {"message": "{last_tool_output}"}).model_copy(
            update={
                "memory_lessons": ["the build needs `make deps` FIRST.", "Tests run with -p no:randomly."]
            }
        )
    )
    config_two = config.model_copy(update={"openai_base_url": second.base_url})
    request = RunRequest.model_validate(
        {
            "agent_spec": agent.model_dump(),
            "task": "two",
            "manifest": {"entries": [{"kind": "file", "path": "notes.md", "content": "hi"}]},
        }
    )
    async with running_worker(config_two):
        handle = await start_run(client, config_two, request)
        result = await handle.result()
    # the starting workspace and the memory update replay (FARLINE_RECORD_HISTORIES=1 keeps the history)
    history = await handle.fetch_history()
    await Replayer(workflows=[AgentRun], data_converter=pydantic_data_converter).replay_workflow(history)
    if os.environ.get("FARLINE_RECORD_HISTORIES"):
        (Path(__file__).parent / "histories" / "agent_run_v7_workspace_and_memory.json").write_text(
            history.to_json()
        )
    assert "The user wants British spelling." in (result.final_message or "")
    assert "The user wants British spelling." in instructions_of(second)
    text = store.read(MemoryScope(agent="keeper"))
    # deduplicated, and the new lesson appended
    assert text.lower().count("make deps") == 1 and "Tests run with -p no:randomly." in text
    assert [version.lessons_added for version in store.history(MemoryScope(agent="keeper"))] == [2, 1]
    # a key keeps a separate memory
    assert store.read(MemoryScope(agent="keeper", key="alice")) == ""
    # the lessons request showed the model what memory already held
    assert "The user wants British spelling." in str(second.requests[-1].body["input"][-1])


async def test_a_raw_request_with_a_bad_manifest_fails_the_run_naming_the_entry(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    """As `temporal workflow start --input '{...}'` sends it: no client-side validation."""
    server = scripted_model(script({"message": "never"}))
    config = make_config(server)
    raw = {"agent": "demo", "task": "t", "manifest": {"entries": [{"kind": "dir", "path": "../x"}]}}
    async with running_worker(config):
        handle = await client.start_workflow(
            "AgentRun", raw, id=f"raw-{uuid.uuid4().hex[:8]}", task_queue=config.task_queue
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(handle.result(), timeout=30)
    assert "manifest entry 1 (dir '../x'): the path leaves the workspace" in str(failure.value.cause)
    assert not server.requests


async def test_a_run_starts_from_another_runs_snapshot_with_its_manifest_added(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    first = scripted_model(
        script(exec_call("mkdir -p work && echo from-run-one > work/a.txt"), {"message": "ok"})
    )
    config = make_config(first)
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="demo", task="one"))
        await handle.result()
    snapshot = open_snapshot_store(config).snapshots(handle.id)[-1].snapshot_id
    second = scripted_model(script(exec_call("cat work/a.txt brief.md"), {"message": "{last_tool_output}"}))
    config_two = config.model_copy(update={"openai_base_url": second.base_url})
    request = RunRequest.model_validate(
        {
            "agent": "demo",
            "task": "two",
            "start_from": snapshot,
            "manifest": {"entries": [{"kind": "file", "path": "brief.md", "content": "added\n"}]},
        }
    )
    async with running_worker(config_two):
        result = await (await start_run(client, config_two, request)).result()
    assert "from-run-one\nadded" in (result.final_message or "")
