"""Each model call carries only what is new: the context goes by reference, history grows linearly."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from harness.context_chain import ContextMissing, ContextStore
from harness.conversation import FunctionCallOutputItem, MessageItem, ModelRequest
from harness.object_store import LocalDirectoryStore
from harness.runs import start_run
from harness.specs import RunRequest, RunState
from tests.script_helpers import exec_call, script, tool_outputs

TURNS = 12


async def test_model_requests_in_history_carry_only_new_items(
    client: Client, scripted_model, make_config, running_worker
) -> None:
    turns = [exec_call(f"printf 'output of turn {n} %.0s' $(seq 200)") for n in range(1, TURNS + 1)]
    server = scripted_model(script(*turns, {"message": "done"}))
    config = make_config(server)
    async with running_worker(config):
        handle = await start_run(client, config, RunRequest(agent="demo", task="many turns"))
        result = await handle.result()
    assert result.state is RunState.COMPLETED and result.turns == TURNS + 1

    # the model saw the whole conversation at its last call
    outputs = tool_outputs(server)
    assert len(outputs) == TURNS and all(
        f"output of turn {n} " in outputs[n - 1] for n in range(1, TURNS + 1)
    )

    history = await handle.fetch_history()
    requests = [
        pydantic_data_converter.payload_converter.from_payload(
            event.activity_task_scheduled_event_attributes.input.payloads[0], ModelRequest
        )
        for event in history.events
        if event.activity_task_scheduled_event_attributes.activity_type.name == "call_model"
    ]
    assert len(requests) == TURNS + 1
    assert requests[0].context is None and len(requests[0].items) == 1
    for request in requests[1:]:
        # a stored context plus the last tool output: never the conversation again
        assert request.by_reference and request.context is not None
        assert [type(item) for item in request.items] == [FunctionCallOutputItem]
    sizes = [
        event.activity_task_scheduled_event_attributes.input.ByteSize()
        for event in history.events
        if event.activity_task_scheduled_event_attributes.activity_type.name == "call_model"
    ]
    assert max(sizes[1:]) < 2 * min(sizes[1:])


def test_a_context_is_rebuilt_from_the_store_by_another_worker(tmp_path: Path) -> None:
    objects = LocalDirectoryStore(tmp_path / "store")
    first = ContextStore(objects)
    one = first.append(None, [MessageItem(role="user", content="task")])
    two = first.append(one, [MessageItem(role="assistant", content="answer")])
    three = first.append(two, [MessageItem(role="user", content="more")])

    other = ContextStore(objects)  # a fresh worker: nothing cached
    assert [item.content for item in other.items(three)] == ["task", "answer", "more"]
    assert [item.content for item in other.items(one)] == ["task"]
    assert other.items(None) == []
    # the same items after the same context are the same segment
    assert first.append(two, [MessageItem(role="user", content="more")]) == three

    with pytest.raises(ContextMissing, match="missing"):
        ContextStore(objects).items("0" * 64)
    stored = next(path for path in (tmp_path / "store" / "context").rglob(f"{two}"))
    stored.write_bytes(b"garbage")
    with pytest.raises(ContextMissing, match="corrupt"):
        ContextStore(objects).items(three)
