"""Building scripted-model scripts and reading what the model was shown, for workflow tests."""

from __future__ import annotations

from harness.scripted_model import Script, ScriptedModelServer


def script(*turns: dict) -> Script:
    return Script.model_validate({"turns": list(turns)})


def call(name: str, **arguments: object) -> dict:
    """A turn of one tool call."""
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def exec_call(cmd: str, **arguments: object) -> dict:
    return call("exec_command", cmd=cmd, **arguments)


def tool_outputs(server: ScriptedModelServer) -> list[str]:
    """Every tool output the model was shown in its last call, in order."""
    return [
        item["output"] if isinstance(item["output"], str) else item["output"][0]["text"]
        for item in server.requests[-1].body["input"]
        if item.get("type") == "function_call_output"
    ]


def user_messages(server: ScriptedModelServer) -> list[str]:
    """The user messages of the model's last call, in order."""
    return [
        item["content"]
        for item in server.requests[-1].body["input"]
        if item.get("type", "message") == "message" and item.get("role") == "user"
    ]
