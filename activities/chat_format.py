"""Conversion between the harness's conversation items and Chat Completions messages.

The conversation is kept in Responses API item shapes; servers that only speak
Chat Completions get it folded into chat messages here. Pure functions on
plain dicts (the JSON the wire carries), so they are testable on their own.
"""

from __future__ import annotations

import json
from typing import Any

from harness.conversation import (
    CompactionItem,
    ConversationItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    ImageInput,
    MessageItem,
    ToolSpec,
)
from harness.specs import Usage


def to_chat_messages(instructions: str, items: list[ConversationItem]) -> list[dict[str, Any]]:
    """Instructions as the system message, then the items as chat messages.

    An assistant message and the function calls right after it become one
    assistant message with `tool_calls`, as a chat model would have sent them.
    """
    messages: list[dict[str, Any]] = []
    if instructions:
        messages.append({"role": "system", "content": instructions})
    # a chat tool message holds text only: a tool's images follow the run of tool messages
    pending_images: list[ImageInput] = []
    for item in items:
        if isinstance(item, CompactionItem):
            continue  # a Responses API item; model_turn refuses server compaction on chat
        if pending_images and not isinstance(item, FunctionCallOutputItem):
            messages.append(_image_message(pending_images))
            pending_images = []
        if isinstance(item, FunctionCallItem):
            call = {
                "id": item.call_id,
                "type": "function",
                # chat has no freeform tools: a freeform call is replayed as a function call
                "function": {
                    "name": item.name,
                    "arguments": json.dumps({"input": item.arguments}) if item.freeform else item.arguments,
                },
            }
            previous = messages[-1] if messages else None
            if previous is not None and previous["role"] == "assistant":
                previous.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif isinstance(item, FunctionCallOutputItem):
            messages.append({"role": "tool", "tool_call_id": item.call_id, "content": item.output})
            pending_images.extend(item.images)
        else:
            messages.append({"role": _chat_role(item), "content": item.content})
    if pending_images:
        messages.append(_image_message(pending_images))
    return messages


def _image_message(images: list[ImageInput]) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "The images the tools returned:"}]
    parts += [{"type": "image_url", "image_url": {"url": image.data_url}} for image in images]
    return {"role": "user", "content": parts}


def _chat_role(item: MessageItem) -> str:
    # "developer" is an OpenAI-only role; other chat servers know "system"
    return "system" if item.role == "developer" else item.role


def to_chat_tools(tools: list[ToolSpec], strict: bool = False) -> list[dict[str, Any]]:
    """Function tools; a freeform tool becomes a function taking its text as the `input` argument.

    With `strict`, tools that have a strict-mode schema are sent with it and `strict: true`.
    """
    return [{"type": "function", "function": _chat_function(tool, strict)} for tool in tools]


def _chat_function(tool: ToolSpec, strict: bool) -> dict[str, Any]:
    description = tool.description
    if tool.grammar is not None:
        description = f"{description} Send the text as the string argument `input`."
    if strict and tool.strict_parameters is not None:
        return {
            "name": tool.name,
            "description": description,
            "parameters": tool.strict_parameters,
            "strict": True,
        }
    return {"name": tool.name, "description": description, "parameters": tool.parameters}


def from_chat_message(message: dict[str, Any], fallback_call_id_prefix: str) -> list[ConversationItem]:
    """The items of one assistant chat message: its text, then its function calls in order.

    Some servers omit tool call ids; those get `<prefix>_<index>` so outputs can refer to them.
    """
    calls = [call for call in message.get("tool_calls") or [] if call.get("type", "function") == "function"]
    items: list[ConversationItem] = []
    content = message.get("content")
    text = content if isinstance(content, str) else ""
    # a turn without calls is the model's answer, even when empty
    if text or not calls:
        items.append(MessageItem(role="assistant", content=text))
    for index, call in enumerate(calls):
        function = call.get("function") or {}
        items.append(
            FunctionCallItem(
                call_id=call.get("id") or f"{fallback_call_id_prefix}_{index}",
                name=function.get("name", ""),
                arguments=function.get("arguments") or "",
            )
        )
    return items


def chat_usage(usage: dict[str, Any] | None) -> Usage:
    usage = usage or {}
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    return Usage(
        model_calls=1,
        input_tokens=prompt,
        output_tokens=completion,
        total_tokens=int(usage.get("total_tokens") or prompt + completion),
    )
