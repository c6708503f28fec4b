"""The Codex-style workspace tools through the real workflow: exec sessions, stdin, images."""

from __future__ import annotations

import base64
import io

from PIL import Image
from temporalio.client import Client

from harness.runs import start_run
from harness.scripted_model import Script
from harness.specs import ModelSettings, RunRequest, RunState, RunStatus
from tests.worker_processes import run_across_a_worker_kill


def script(*turns: dict) -> Script:
    return Script.model_validate({"turns": list(turns)})


def call(name: str, **arguments: object) -> dict:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def tool_outputs(server) -> list[str]:
    """Every tool output the model was shown, in order (each once)."""
    last = server.requests[-1].body
    return [
        item["output"] if isinstance(item["output"], str) else item["output"][0]["text"]
        for item in last["input"]
        if item.get("type") == "function_call_output"
    ]


async def run_to_end(client: Client, config, running_worker, task: str = "work") -> tuple:
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="demo", task=task, max_turns=20))
        result = await handle.result()
    return handle, result


async def test_a_long_command_is_polled_to_completion(
    client, scripted_model, make_config, running_worker
) -> None:
    server = scripted_model(
        script(
            call("exec_command", cmd="for i in 1 2 3 4; do echo tick $i; sleep 0.5; done", yield_time_ms=300),
            call("write_stdin", session_id=1, chars=""),
            call("write_stdin", session_id=1, chars=""),
            {"message": "done"},
        )
    )
    _, result = await run_to_end(client, make_config(server), running_worker)
    assert result.state is RunState.COMPLETED
    first, poll, after = tool_outputs(server)
    assert "Process running with session ID 1" in first and "tick 1" in first and "tick 4" not in first
    # an empty poll waits for the process to end (it waits up to 5 s), and shows only what is new
    assert "Process exited with code 0" in poll and "tick 4" in poll and "tick 1" not in poll
    assert after.startswith("error: there is no running session 1")


async def test_an_interactive_program_on_a_tty(client, scripted_model, make_config, running_worker) -> None:
    server = scripted_model(
        script(
            call("exec_command", cmd="python3 -q", tty=True, yield_time_ms=1500),
            call("write_stdin", session_id=1, chars="print(6 * 7)\n", yield_time_ms=1500),
            call("write_stdin", session_id=1, chars="exit()\n", yield_time_ms=3000),
            {"message": "done"},
        )
    )
    _, result = await run_to_end(client, make_config(server), running_worker)
    assert result.state is RunState.COMPLETED
    started, answered, ended = tool_outputs(server)
    assert "Process running with session ID 1" in started and ">>>" in started
    assert "42" in answered and "Process running" in answered
    assert "Process exited with code 0" in ended


async def test_fifty_megabytes_of_output_stay_bounded(
    client, scripted_model, make_config, running_worker
) -> None:
    server = scripted_model(
        script(
            call("exec_command", cmd="head -c 50000000 /dev/zero | tr '\\0' x; echo; echo THE-END"),
            call("exec_command", cmd="echo still going"),
            {"message": "done"},
        )
    )
    _, result = await run_to_end(client, make_config(server), running_worker)
    assert result.state is RunState.COMPLETED
    big, small = tool_outputs(server)
    assert "Process exited with code 0" in big and "THE-END" in big
    assert "bytes of output truncated" in big
    assert "Original token count: 12500003" in big
    assert len(big) < 45_000
    assert "still going" in small


async def test_view_image_attaches_the_image_and_refuses_what_is_not_one(
    client, scripted_model, make_config, running_worker
) -> None:
    png = io.BytesIO()
    Image.new("RGB", (8, 8), (255, 0, 0)).save(png, format="PNG")
    make_png = f"echo {base64.b64encode(png.getvalue()).decode()} | base64 -d > red.png"
    server = scripted_model(
        script(
            call("exec_command", cmd=make_png + " && echo not an image > notes.txt && ls"),
            call("view_image", path="red.png"),
            call("view_image", path="notes.txt"),
            call("view_image", path="../../etc/passwd"),
            {"message": "done"},
        )
    )
    _, result = await run_to_end(client, make_config(server), running_worker)
    assert result.state is RunState.COMPLETED
    made, viewed, text_file, escaping = tool_outputs(server)
    assert "red.png" in made
    assert viewed.startswith("Image red.png (8x8 image/png) attached")
    image_items = [
        item
        for item in server.requests[-1].body["input"]
        if item.get("type") == "function_call_output" and isinstance(item["output"], list)
    ]
    url = image_items[0]["output"][1]["image_url"]
    assert url.startswith("data:image/png;base64,")
    pixels = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert pixels.size == (8, 8) and pixels.getpixel((0, 0))[:3] == (255, 0, 0)
    assert text_file.startswith("error:") and "not a PNG, JPEG, GIF or WebP image" in text_file
    assert escaping.startswith("error: cannot read")


async def test_worker_killed_between_exec_and_write_stdin(
    client, scripted_model, make_config, tmp_path
) -> None:
    server = scripted_model(
        script(
            call(
                "exec_command",
                cmd="echo first; read line; echo got $line; sleep 0.5; echo done",
                yield_time_ms=500,
            ),
            # the model takes its time here: the worker is killed while it thinks
            {
                **call("write_stdin", session_id=1, chars="hello\n", yield_time_ms=3000),
                "fail_first": [{"hang_s": 3}],
            },
            {"message": "{last_tool_output}"},
        )
    )
    config = make_config(server)

    async def thinking_about_turn_2(handle) -> bool:
        status = await handle.query("status", result_type=RunStatus)
        return status.turn == 2 and status.state is RunState.CALLING_MODEL

    _, result = await run_across_a_worker_kill(
        client, config, tmp_path, RunRequest(agent="demo", task="converse"), thinking_about_turn_2
    )
    assert result.state is RunState.COMPLETED
    # the same session went on: the process read the input and ended; no output lost or repeated
    assert "got hello" in result.final_message and "done" in result.final_message
    assert "first" not in result.final_message
    assert "Process exited with code 0" in result.final_message
    assert server.count_by_turn() == {0: 1, 1: 1, 2: 1}


async def test_apply_patch_through_the_workflow(client, scripted_model, make_config, running_worker) -> None:
    add = "*** Begin Patch\n*** Add File: app/greet.py\n+def greet():\n+    return 'hello'\n*** End Patch\n"
    update = (
        "*** Begin Patch\n*** Update File: app/greet.py\n@@ def greet():\n-    return 'hello'\n"
        "+    return 'hello, world'\n*** End Patch\n"
    )
    server = scripted_model(
        script(
            call("apply_patch", input=add),
            call("apply_patch", input=update),
            call("apply_patch", input=update),
            call("exec_command", cmd="python3 -c 'from app.greet import greet; print(greet())'"),
            {"message": "{last_tool_output}"},
        )
    )
    _, result = await run_to_end(client, make_config(server), running_worker)
    assert result.state is RunState.COMPLETED
    added, updated, stale, ran = tool_outputs(server)
    assert "A app/greet.py" in added
    assert "M app/greet.py" in updated
    # the same hunk again no longer matches: a tool error naming the problem, the run goes on
    assert stale.startswith("error:") and "app/greet.py" in stale
    assert "hello, world" in ran


async def test_freeform_apply_patch_on_both_apis(client, scripted_model, make_config, running_worker) -> None:
    patch = "*** Begin Patch\n*** Add File: notes.md\n+# Notes\n*** End Patch\n"
    for api in ("responses", "chat"):
        server = scripted_model(
            script(
                {"tool_calls": [{"name": "apply_patch", "custom_input": patch}]},
                call("exec_command", cmd="cat notes.md"),
                {"message": "{last_tool_output}"},
            )
        )
        config = make_config(server)
        settings = ModelSettings(api=api, freeform_apply_patch=True)
        async with running_worker(config):
            handle = await start_run(client, config, RunRequest(agent="demo", task="notes", model=settings))
            result = await handle.result()
        assert result.state is RunState.COMPLETED and "# Notes" in result.final_message
        first = server.requests[0].body
        if api == "responses":
            offered = next(tool for tool in first["tools"] if tool["name"] == "apply_patch")
            assert offered["type"] == "custom" and offered["format"]["syntax"] == "lark"
            second = server.requests[1].body["input"]
            assert [item["type"] for item in second if "call" in item.get("type", "")] == [
                "custom_tool_call",
                "custom_tool_call_output",
            ]
            assert "A notes.md" in second[-1]["output"]
        else:
            offered = next(tool for tool in first["tools"] if tool["function"]["name"] == "apply_patch")
            assert offered["function"]["parameters"]["required"] == ["input"]
            tool_message = next(m for m in server.requests[1].body["messages"] if m["role"] == "tool")
            assert "A notes.md" in tool_message["content"]
