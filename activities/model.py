"""The model activity: one call to an OpenAI-compatible model, one HTTP request.

The `openai` client retries nothing (`max_retries=0`); Temporal retries the
activity under `MODEL_RETRY_POLICY`, so every attempt is visible in the
history. Transient failures (429, 5xx, timeouts, connection errors) are raised
as retryable errors; requests the server refuses (400, 401, 403, 404, 422)
fail at once as `ModelRequestRejected`, with a message saying what to fix.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
import weakref
from datetime import timedelta
from typing import Any

import openai
import structlog
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.chat_format import (
    chat_usage,
    from_chat_message,
    to_chat_messages,
    to_chat_tools,
)
from harness.compaction import estimate_tokens
from harness.config import FarlineConfig
from harness.context_chain import ContextMissing, ContextStore
from harness.conversation import (
    CompactionItem,
    ConversationItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    MessageItem,
    ModelRequest,
    ModelTurn,
    ToolSpec,
    since_last_compaction,
)
from harness.specs import ModelApi, Usage
from harness.telemetry import record_model_call

log = structlog.get_logger(__name__)

# the workflow's retry policy for model calls lists this type as non-retryable
REJECTED_ERROR_TYPE = "ModelRequestRejected"

# a local or scripted server needs no key, but the client insists on one
_PLACEHOLDER_API_KEY = "scripted"
_DEFAULT_BASE_URL = "https://api.openai.com/v1"


# Clients are reused, since making one costs ~30 ms and reuse keeps connections warm; an
# httpx connection pool belongs to the event loop it was made on, hence one per loop.
_clients: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop, dict[tuple[str, str, float], openai.AsyncOpenAI]
] = weakref.WeakKeyDictionary()


def _client(base_url: str, api_key: str, timeout_s: float) -> openai.AsyncOpenAI:
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    key = (base_url, api_key, timeout_s)
    if key not in per_loop:
        # one activity attempt is one HTTP request: Temporal does the retrying
        per_loop[key] = openai.AsyncOpenAI(
            base_url=base_url, api_key=api_key, max_retries=0, timeout=timeout_s
        )
    return per_loop[key]


class ModelActivities:
    """The model activity, bound to the worker's model configuration (which holds the key)."""

    def __init__(self, config: FarlineConfig, contexts: ContextStore | None = None) -> None:
        self._config = config
        # where contexts passed by reference are kept (None: requests carry the whole context)
        self._contexts = contexts

    @activity.defn(name="call_model")
    async def call_model(self, request: ModelRequest) -> ModelTurn:
        # Heartbeats while the model thinks, so a worker that dies mid-call is noticed in
        # seconds (the heartbeat timeout), not after the call's whole start-to-close timeout.
        heartbeats = asyncio.create_task(heartbeat_every(HEARTBEAT_INTERVAL_S))
        try:
            if not request.by_reference:
                return await model_turn(self._config, request)
            contexts = self._contexts
            if contexts is None:
                raise ApplicationError(
                    "this worker keeps no model contexts; it cannot serve a request by reference",
                    type="ContextMissing",
                    non_retryable=True,
                )
            try:
                before = await asyncio.to_thread(contexts.items, request.context)
            except ContextMissing as error:
                raise ApplicationError(str(error), type="ContextMissing", non_retryable=True) from None
            turn = await model_turn(
                self._config, request.model_copy(update={"items": before + request.items})
            )
            parent, stored = request.context, [*request.items, *turn.items]
            if any(isinstance(item, CompactionItem) for item in turn.items):
                # the server compacted: the context starts again from its compaction item
                parent, stored = None, since_last_compaction([*before, *stored])
            turn.context = await asyncio.to_thread(contexts.append, parent, stored)
            return turn
        finally:
            heartbeats.cancel()


HEARTBEAT_INTERVAL_S = 2.0


async def heartbeat_every(interval_s: float) -> None:
    """Heartbeat the current activity until cancelled."""
    while True:
        activity.heartbeat()
        await asyncio.sleep(interval_s)


async def model_turn(config: FarlineConfig, request: ModelRequest) -> ModelTurn:
    """One model call (one HTTP request) for a request that carries its whole context."""
    model = request.settings.model or config.model
    api: ModelApi = request.settings.api or config.model_api
    api_key = config.openai_api_key.get_secret_value() if config.openai_api_key else _PLACEHOLDER_API_KEY
    base_url = config.openai_base_url or _DEFAULT_BASE_URL
    info = activity.info()
    bound = log.bind(
        workflow_id=info.workflow_id, attempt=info.attempt, model=model, api=api, items_in=len(request.items)
    )
    if api == "chat" and request.server_compaction_threshold is not None:
        raise ApplicationError(
            "server-side compaction (compaction mode 'server') needs the Responses API; "
            "set FARLINE_MODEL_API=responses or use compaction mode 'farline'",
            type=REJECTED_ERROR_TYPE,
            non_retryable=True,
        )
    client = _client(base_url, api_key, config.model_timeout_s)
    started = time.monotonic()
    try:
        if api == "chat":
            turn = await _call_chat(client, model, request)
        else:
            turn = await _call_responses(client, model, request)
    except openai.APIError as error:
        failure = _application_error(error, model=model, api=api, base_url=base_url)
        record_model_call(model, api, time.monotonic() - started, failure.type or "ModelCallFailed")
        bound.warning(
            "model call failed",
            error=failure.message,
            retryable=not failure.non_retryable,
            duration_ms=round((time.monotonic() - started) * 1000),
        )
        raise failure from error
    # what the context will hold after this turn, from the server's count or, without one, estimated
    reported = turn.usage.input_tokens + turn.usage.output_tokens
    turn.context_tokens = reported or estimate_tokens([*request.items, *turn.items])
    record_model_call(model, api, time.monotonic() - started, "ok", turn.usage)
    bound.info(
        "model call",
        tool_calls_out=len(turn.function_calls),
        input_tokens=turn.usage.input_tokens,
        output_tokens=turn.usage.output_tokens,
        duration_ms=round((time.monotonic() - started) * 1000),
    )
    return turn


# --- Responses API ------------------------------------------------------------------------------


async def _call_responses(client: openai.AsyncOpenAI, model: str, request: ModelRequest) -> ModelTurn:
    # The conversation goes in extra_body: the client's typed-dict transform of `input`
    # costs ~2 ms per item per call (100 ms a call at 60 turns); the wire body is the same.
    strict = bool(request.settings.strict_function_tools)
    body: dict[str, Any] = {
        "input": [_responses_input(item) for item in since_last_compaction(request.items)],
        "tools": [_responses_tool(tool, strict) for tool in request.tools],
    }
    if request.server_compaction_threshold is not None:
        body["context_management"] = [
            {"type": "compaction", "compact_threshold": request.server_compaction_threshold}
        ]
    response = await client.responses.create(
        model=model,
        instructions=request.instructions,
        extra_body=body,
        **request.settings.sampling_params(max_tokens_name="max_output_tokens"),
    )
    items: list[ConversationItem] = []
    for output in response.output:
        if output.type == "message":
            text = "".join(
                part.text if part.type == "output_text" else part.refusal for part in output.content
            )
            items.append(MessageItem(role="assistant", content=text))
        elif output.type == "function_call":
            items.append(
                FunctionCallItem(call_id=output.call_id, name=output.name, arguments=output.arguments)
            )
        elif output.type == "compaction":
            items.append(CompactionItem(encrypted_content=output.encrypted_content, id=output.id))
        elif output.type == "custom_tool_call":
            items.append(
                FunctionCallItem(
                    call_id=output.call_id, name=output.name, arguments=output.input, freeform=True
                )
            )
        # Reasoning items are dropped: the conversation is sent back statelessly without
        # them, which every Responses server accepts (at some cost in reasoning reuse).
    usage = response.usage
    return ModelTurn(
        items=items,
        usage=Usage(
            model_calls=1,
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            total_tokens=usage.total_tokens if usage else 0,
        ),
        response_id=response.id,
        model=response.model,
    )


def _responses_input(item: ConversationItem) -> dict[str, Any]:
    if isinstance(item, CompactionItem):
        return item.model_dump(exclude_none=True)
    if isinstance(item, FunctionCallItem) and item.freeform:
        return {
            "type": "custom_tool_call",
            "call_id": item.call_id,
            "name": item.name,
            "input": item.arguments,
        }
    if isinstance(item, FunctionCallOutputItem) and item.freeform:
        return {"type": "custom_tool_call_output", "call_id": item.call_id, "output": item.output}
    if isinstance(item, FunctionCallItem):
        return {
            "type": "function_call",
            "call_id": item.call_id,
            "name": item.name,
            "arguments": item.arguments,
        }
    if isinstance(item, FunctionCallOutputItem):
        output: str | list[dict[str, Any]] = item.output
        if item.images:
            output = [{"type": "input_text", "text": item.output}] + [
                {"type": "input_image", "image_url": image.data_url} for image in item.images
            ]
        return {"type": "function_call_output", "call_id": item.call_id, "output": output}
    return {"role": item.role, "content": item.content}


def _responses_tool(tool: ToolSpec, strict: bool) -> dict[str, Any]:
    if tool.grammar is not None:
        return {
            "type": "custom",
            "name": tool.name,
            "description": tool.description,
            "format": {"type": "grammar", "syntax": "lark", "definition": tool.grammar},
        }
    if strict and tool.strict_parameters is not None:
        return {
            "type": "function",
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.strict_parameters,
            "strict": True,
        }
    # non-strict: strict mode would refuse the optional parameters plain schemas have
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": tool.parameters,
        "strict": False,
    }


# --- Chat Completions ---------------------------------------------------------------------------


async def _call_chat(client: openai.AsyncOpenAI, model: str, request: ModelRequest) -> ModelTurn:
    tools = to_chat_tools(request.tools, bool(request.settings.strict_function_tools))
    # as for the Responses API, the conversation bypasses the client's slow typed-dict
    # transform: extra_body's `messages` replaces the empty placeholder on the wire
    completion = await client.chat.completions.create(
        model=model,
        messages=[],
        extra_body={
            "messages": to_chat_messages(request.instructions, request.items),
            **({"tools": tools} if tools else {}),
        },
        **request.settings.sampling_params(max_tokens_name="max_completion_tokens"),
    )
    if not completion.choices:
        raise ApplicationError(
            f"The model server's chat completion {completion.id} has no choices; will retry.",
            type="ModelServerError",
        )
    message = completion.choices[0].message.model_dump()
    return ModelTurn(
        items=from_chat_message(message, fallback_call_id_prefix=f"call_{completion.id}"),
        usage=chat_usage(completion.usage.model_dump() if completion.usage else None),
        response_id=completion.id,
        model=completion.model,
    )


# --- errors -------------------------------------------------------------------------------------

_REJECTED = (
    openai.BadRequestError,
    openai.AuthenticationError,
    openai.PermissionDeniedError,
    openai.NotFoundError,
    openai.UnprocessableEntityError,
)


def _application_error(
    error: openai.APIError, *, model: str, api: ModelApi, base_url: str
) -> ApplicationError:
    """The Temporal error for an `openai` error: retryable unless the request itself was refused."""
    if isinstance(error, openai.APITimeoutError):
        return ApplicationError(
            f"The model server at {base_url} did not answer in time (FARLINE_MODEL_TIMEOUT_S); will retry.",
            type="ModelTimeout",
        )
    if isinstance(error, openai.APIConnectionError):
        return ApplicationError(
            f"Could not reach the model server at {base_url} ({error.__cause__ or error}); will retry.",
            type="ModelUnreachable",
        )
    if isinstance(error, _REJECTED):
        hint = _hint(error.status_code, model=model, api=api, base_url=base_url)
        return ApplicationError(
            f"The model server at {base_url} refused the request (HTTP {error.status_code}): "
            f"{_server_said(error)}. {hint}",
            type=REJECTED_ERROR_TYPE,
            non_retryable=True,
        )
    if isinstance(error, openai.RateLimitError):
        return ApplicationError(
            f"The model server at {base_url} is rate limiting (HTTP 429): {_server_said(error)}; will retry.",
            type="ModelRateLimited",
            next_retry_delay=_retry_after(error.response.headers),
        )
    if isinstance(error, openai.APIStatusError):
        return ApplicationError(
            f"The model server at {base_url} failed (HTTP {error.status_code}): {_server_said(error)}; "
            "will retry.",
            type="ModelServerError",
        )
    return ApplicationError(f"The model call failed: {error}; will retry.", type="ModelCallFailed")


def _hint(status: int, *, model: str, api: ModelApi, base_url: str) -> str:
    endpoint = "/responses" if api == "responses" else "/chat/completions"
    if status == 401:
        return "Check OPENAI_API_KEY."
    if status == 403:
        return f"Check that OPENAI_API_KEY may use the model '{model}'."
    if status == 404:
        fallback = (
            " If the server has no /responses endpoint, set FARLINE_MODEL_API=chat."
            if api == "responses"
            else ""
        )
        return (
            f"Check FARLINE_MODEL (now '{model}') and OPENAI_BASE_URL (now '{base_url}'), "
            f"and that the server serves {endpoint}.{fallback}"
        )
    return (
        f"Check the model settings (model '{model}', temperature, top_p, max_output_tokens) "
        "and that the model supports function tools."
    )


def _server_said(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        said = body["message"]
    elif isinstance(body, str) and body:
        said = body
    else:
        said = error.response.reason_phrase or "no details"
    return said.strip().rstrip(".")[:500]


def _retry_after(headers: Any) -> timedelta | None:
    """The server's retry-after (seconds, milliseconds or an HTTP date), if it gave one."""
    if (millis := headers.get("retry-after-ms")) is not None:
        try:
            return timedelta(milliseconds=max(0.0, float(millis)))
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return timedelta(seconds=max(0.0, float(value)))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return timedelta(seconds=max(0.0, email.utils.mktime_tz(parsed) - time.time()))
