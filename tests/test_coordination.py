"""Agents coordinating through the application: the Program Editor refines a document and assigns
the task to the Asset Producer in the tracker, which starts the producer's run on the same workspace."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from temporalio.client import Client

from harness.runs import start_run
from harness.scripted_model import Script
from harness.specs import RunRequest, RunResult, RunState
from harness.task_tracker import TaskTracker
from tests.script_helpers import call, exec_call
from tests.test_cli import REPO

REFINE = (
    "*** Begin Patch\n*** Update File: working/abstract.md\n@@\n-Keynote: a draft\n"
    "+Keynote: Launching Farline, refined\n*** End Patch\n"
)


async def test_the_editor_assigns_the_task_and_the_producer_runs_on_its_workspace(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    server = scripted_model(
        Script.model_validate(
            {
                "turns": [],
                "by_instructions": {
                    "You are the Program Editor": [
                        exec_call("mkdir -p working && printf 'Keynote: a draft\\n' > working/abstract.md"),
                        call("apply_patch", input=REFINE),
                        call("update_assignee", task_id=2, assignee="Asset Producer"),
                        {"message": "handed to the producer: {last_tool_output}"},
                    ],
                    "You are the Asset Producer": [
                        exec_call(
                            "mkdir -p output && sed 's/^Keynote: /TITLE CARD: /' working/abstract.md "
                            "> output/title-card.txt && cat output/title-card.txt"
                        ),
                        call("list_tasks"),
                        {"message": "{last_tool_output}"},
                    ],
                },
            }
        )
    )
    config = make_config(server)
    async with running_worker(config):
        editor = await start_run(
            client, config, RunRequest(agent="program-editor", task="Refine the abstract")
        )
        editor_result = await editor.result()
        assigned = json.loads((editor_result.final_message or "").split(": ", 1)[1])
        producer_id = assigned["run"]
        producer = client.get_workflow_handle(producer_id, result_type=RunResult)
        producer_result = await producer.result()
    assert editor_result.state is RunState.COMPLETED and producer_result.state is RunState.COMPLETED
    assert assigned["assignee"] == "Asset Producer" and producer_id.startswith("asset-producer-task2-")
    # the producer read the editor's refined document: it started on the editor's workspace
    producer_calls = server.requests_for("You are the Asset Producer")
    assert "TITLE CARD: Launching Farline, refined" in str(producer_calls[1].body["input"])
    assert f"by run {editor.id}" in str(producer_calls[0].body["input"])
    # coordination through the application's database: the task records who works on it
    tasks = {task["id"]: task for task in json.loads(producer_result.final_message or "[]")}
    assert tasks[2]["assignee"] == "Asset Producer" and tasks[2]["run"] == producer_id
    stored = TaskTracker(config.data_dir / "task_tracker.sqlite").task(2)
    assert stored.run == producer_id


async def test_the_coordination_demo_runs_both_agents_from_the_outside(client: Client, tmp_path) -> None:
    """`farline demo --coordination` on the scripted model: editor, tracker, producer, end to end."""
    env = {
        **os.environ,
        "FARLINE_TEMPORAL_ADDRESS": client.service_client.config.target_host,
        "FARLINE_DATA_DIR": str(tmp_path / "data"),
    }
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        env.pop(name, None)
    demo = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "harness.cli",
        "demo",
        "--coordination",
        cwd=REPO,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(demo.communicate(), timeout=180)
    transcript = output.decode()
    assert demo.returncode == 0, transcript
    assert "SCRIPTED model" in transcript
    assert "The tracker started Asset Producer's run asset-producer-task2-" in transcript
    assert "AGENTS THAT RUN FOR DAYS, ON TEMPORAL" in transcript
    assert transcript.count("state: completed") == 2
