"""A scripted, OpenAI-compatible model server on loopback.

It replays a `Script` over the real wire formats (Responses API and Chat
Completions, non-streaming), so the real `openai` client, the model activity
and the workflow all run without a model provider. The turn it answers is
derived from the request's content (how many assistant turns the request
already holds, plus the turns a compaction summary in it says it replaced),
never from a counter: a retried identical request gets the identical answer,
and `count_by_turn()` shows how often each turn was asked. A compaction request
(Farline's summary prompt) gets a short scripted summary and counts as turn -1.

Run it on its own with `python -m harness.scripted_model SCRIPT.json [--port N]`;
it prints its base URL on the first line of stdout.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections import Counter
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, model_validator

from harness.compaction import COMPACTION_MARKER, turns_replaced
from harness.memory_lessons import MEMORY_MARKER

log = structlog.get_logger(__name__)

DEMO_SCRIPT_PATH = Path(__file__).with_name("demo_script.json")
LAST_TOOL_OUTPUT = "{last_tool_output}"
SCRIPT_ENDED = "(script ended)"
REQUEST_LOG_PATH = "/_farline/requests"

_RESPONSES_PATH = "/v1/responses"
_CHAT_PATH = "/v1/chat/completions"
_MODELS_PATH = "/v1/models"


# --- the script ---------------------------------------------------------------------------------


class ScriptedToolCall(BaseModel):
    """One function call the scripted model makes."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    arguments: dict[str, Any] | None = Field(default=None, description="Sent as JSON text.")
    arguments_raw: str | None = Field(default=None, description="Sent verbatim, e.g. malformed JSON.")
    custom_input: str | None = Field(
        default=None,
        description="Freeform input: a custom tool call where the request offers the tool as custom "
        '(Responses API), else a function call with arguments {"input": ...}.',
    )

    @model_validator(mode="after")
    def _one_form(self) -> ScriptedToolCall:
        forms = [self.arguments, self.arguments_raw, self.custom_input]
        if sum(form is not None for form in forms) > 1:
            raise ValueError("give one of 'arguments', 'arguments_raw' or 'custom_input'")
        return self

    @property
    def arguments_text(self) -> str:
        if self.arguments_raw is not None:
            return self.arguments_raw
        if self.custom_input is not None:
            return json.dumps({"input": self.custom_input})
        return json.dumps(self.arguments or {})


class ScriptedFailure(BaseModel):
    """An HTTP error answered once, before the turn's real answer."""

    model_config = ConfigDict(extra="forbid")

    status: int = Field(default=500, ge=400, le=599)
    message: str | None = None
    retry_after_s: float | None = Field(default=None, ge=0, description="Sent as the retry-after header.")
    hang_s: float = Field(default=0, ge=0, description="Wait this long before answering.")


class ScriptTurn(BaseModel):
    """One model turn: either tool calls or a final message."""

    model_config = ConfigDict(extra="forbid")

    tool_calls: list[ScriptedToolCall] | None = Field(default=None, min_length=1)
    message: str | None = Field(
        default=None, description=f"Final text; {LAST_TOOL_OUTPUT} is replaced by the last tool output."
    )
    fail_first: list[ScriptedFailure] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_answer(self) -> ScriptTurn:
        if (self.tool_calls is None) == (self.message is None):
            raise ValueError("a turn has exactly one of 'tool_calls' or 'message'")
        return self


class Script(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    model: str = Field(default="farline-scripted", description="The model GET /v1/models lists.")
    turns: list[ScriptTurn]
    compaction_fail_first: list[ScriptedFailure] = Field(
        default_factory=list,
        description="Errors answered to the run's first compaction requests, in order (e.g. a 400 "
        "saying the context is too long).",
    )

    memory_lessons: list[str] = Field(
        default_factory=list, description="The lessons answered when a run asks for them (memory)."
    )
    by_instructions: dict[str, list[ScriptTurn]] = Field(
        default_factory=dict,
        description="Turns for requests whose instructions contain the key (the first key that matches), "
        "so several agents (a supervisor and its sub-agents) can share one server; others get `turns`.",
    )

    def routed(self, instructions: str) -> Script:
        """This script with the turns of the first `by_instructions` key found in `instructions`."""
        for key, turns in self.by_instructions.items():
            if key in instructions:
                return self.model_copy(update={"turns": turns})
        return self

    @classmethod
    def from_file(cls, path: str | Path) -> Script:
        return cls.model_validate_json(Path(path).read_text())


class RecordedRequest(BaseModel):
    method: str
    path: str
    body: Any = None
    turn: int | None = Field(default=None, description="The script turn answered, for model calls.")
    status: int


class RequestLog(BaseModel):
    """What GET /_farline/requests returns."""

    requests: list[RecordedRequest]
    count_by_turn: dict[int, int]


# --- reading a request --------------------------------------------------------------------------


def _is_assistant_responses_item(item: Any) -> bool:
    if not isinstance(item, dict):
        return False
    kind = item.get("type", "message")
    if kind == "message":
        return item.get("role") == "assistant"
    # reasoning items also come from the model, between its messages and calls
    return kind in ("function_call", "custom_tool_call", "reasoning")


def _is_assistant_chat_message(message: Any) -> bool:
    return isinstance(message, dict) and message.get("role") == "assistant"


def _count_runs(entries: list[Any], is_assistant: Any) -> int:
    """Number of maximal runs of consecutive assistant-side entries."""
    runs = 0
    previous = False
    for entry in entries:
        current = bool(is_assistant(entry))
        if current and not previous:
            runs += 1
        previous = current
    return runs


def _content_text(content: Any) -> str:
    """Text of a content field that is either a string or a list of text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) for part in content if isinstance(part, dict) and "text" in part
        )
    return "" if content is None else str(content)


# the turn numbers a compaction request and a memory (lessons) request are counted under
COMPACTION_TURN = -1
MEMORY_TURN = -2


def _compact_threshold(body: dict[str, Any]) -> int | None:
    """The `compact_threshold` of a Responses request's `context_management`, if it asks for one."""
    for entry in body.get("context_management") or []:
        if isinstance(entry, dict) and entry.get("type") == "compaction":
            return int(entry.get("compact_threshold") or 0)
    return None


def _instructions(body: dict[str, Any]) -> str:
    """The request's instructions (Responses) or its system messages (Chat Completions)."""
    if isinstance(body.get("instructions"), str):
        return body["instructions"]
    messages = body.get("messages") if isinstance(body.get("messages"), list) else []
    return "\n".join(
        _content_text(message.get("content"))
        for message in messages
        if isinstance(message, dict) and message.get("role") in ("system", "developer")
    )


def _user_texts(entries: list[Any], key: str) -> list[str]:
    return [
        _content_text(entry.get(key))
        for entry in entries
        if isinstance(entry, dict) and entry.get("role") == "user"
    ]


def _special_turn(texts: list[str]) -> int | None:
    """A compaction or memory request (its last user message is Farline's prompt for it), or None."""
    if texts and texts[-1].startswith(COMPACTION_MARKER):
        return COMPACTION_TURN
    if texts and texts[-1].startswith(MEMORY_MARKER):
        return MEMORY_TURN
    return None


def _responses_turn_and_tool_output(body: dict[str, Any]) -> tuple[int, str | None]:
    entries = body.get("input")
    if not isinstance(entries, list):
        return 0, None
    outputs = [
        item.get("output")
        for item in entries
        if isinstance(item, dict) and item.get("type") in ("function_call_output", "custom_tool_call_output")
    ]
    last = _content_text(outputs[-1]) if outputs else None
    texts = _user_texts(entries, "content")
    special = _special_turn(texts)
    if special is not None:
        return special, last
    # a (scripted) server-side compaction item stands for the turns before it
    for index in range(len(entries) - 1, -1, -1):
        entry = entries[index]
        if isinstance(entry, dict) and entry.get("type") == "compaction":
            replaced = int(str(entry.get("encrypted_content", "")).rpartition(":")[2] or 0)
            return replaced + _count_runs(entries[index + 1 :], _is_assistant_responses_item), last
    # after a compaction the context says how many model turns its summary replaced
    return turns_replaced(texts) + _count_runs(entries, _is_assistant_responses_item), last


def _chat_turn_and_tool_output(body: dict[str, Any]) -> tuple[int, str | None]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 0, None
    outputs = [m.get("content") for m in messages if isinstance(m, dict) and m.get("role") == "tool"]
    last = _content_text(outputs[-1]) if outputs else None
    texts = _user_texts(messages, "content")
    special = _special_turn(texts)
    if special is not None:
        return special, last
    return turns_replaced(texts) + _count_runs(messages, _is_assistant_chat_message), last


# --- writing an answer --------------------------------------------------------------------------


class _Answer(BaseModel):
    """What a turn says, independent of the wire format."""

    message: str | None
    tool_calls: list[tuple[str, str, str]]  # (call_id, name, arguments text)
    # call ids answered as freeform custom tool calls (Responses API), with their input
    custom_inputs: dict[str, str] = Field(default_factory=dict)


def _answer_for(
    script: Script, turn: int, last_tool_output: str | None, custom_tools: frozenset[str] = frozenset()
) -> _Answer:
    if turn == COMPACTION_TURN:
        seen = "(no tool output yet)" if last_tool_output is None else last_tool_output.strip()[:300]
        return _Answer(
            message=f"Goal: the task. Progress: scripted work. Next steps: go on. Last output seen: {seen}",
            tool_calls=[],
        )
    if turn == MEMORY_TURN:
        return _Answer(message=json.dumps({"lessons": script.memory_lessons}), tool_calls=[])
    if turn >= len(script.turns):
        return _Answer(message=SCRIPT_ENDED, tool_calls=[])
    scripted = script.turns[turn]
    if scripted.tool_calls is not None:
        calls = [
            (f"call_{turn}_{j}", call.name, call.arguments_text) for j, call in enumerate(scripted.tool_calls)
        ]
        custom = {
            f"call_{turn}_{j}": call.custom_input
            for j, call in enumerate(scripted.tool_calls)
            if call.custom_input is not None and call.name in custom_tools
        }
        return _Answer(message=None, tool_calls=calls, custom_inputs=custom)
    text = scripted.message or ""
    tool_output = "(no tool output)" if last_tool_output is None else last_tool_output.strip()
    return _Answer(message=text.replace(LAST_TOOL_OUTPUT, tool_output), tool_calls=[])


def _estimate_tokens(size_in_bytes: int) -> int:
    return max(1, size_in_bytes // 4)


def _responses_payload(response_id: str, model: str, answer: _Answer, input_bytes: int) -> dict[str, Any]:
    output: list[dict[str, Any]] = [
        {
            "type": "custom_tool_call",
            "id": f"ctc_{response_id}_{j}",
            "call_id": call_id,
            "name": name,
            "input": answer.custom_inputs[call_id],
            "status": "completed",
        }
        if call_id in answer.custom_inputs
        else {
            "type": "function_call",
            "id": f"fc_{response_id}_{j}",
            "call_id": call_id,
            "name": name,
            "arguments": arguments,
            "status": "completed",
        }
        for j, (call_id, name, arguments) in enumerate(answer.tool_calls)
    ]
    if answer.message is not None:
        output.append(
            {
                "type": "message",
                "id": f"msg_{response_id}",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": answer.message, "annotations": []}],
            }
        )
    input_tokens = _estimate_tokens(input_bytes)
    output_tokens = _estimate_tokens(len(json.dumps(output)))
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
    }


def _chat_payload(response_id: str, model: str, answer: _Answer, input_bytes: int) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": answer.message}
    if answer.tool_calls:
        message["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            for call_id, name, arguments in answer.tool_calls
        ]
    prompt_tokens = _estimate_tokens(input_bytes)
    completion_tokens = _estimate_tokens(len(json.dumps(message)))
    return {
        "id": response_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if answer.tool_calls else "stop",
            }
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


def _error_payload(status: int, message: str) -> dict[str, Any]:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "error"
    return {
        "error": {"message": message, "type": phrase.lower().replace(" ", "_"), "param": None, "code": None}
    }


# --- the server ---------------------------------------------------------------------------------


class _Reply(BaseModel):
    status: int
    payload: dict[str, Any]
    headers: dict[str, str] = Field(default_factory=dict)
    hang_s: float = 0


class ScriptedModelServer:
    """Serves a `Script` on loopback; a context manager that starts and stops it."""

    def __init__(self, script: Script, host: str = "127.0.0.1", port: int = 0) -> None:
        self.script = script
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._failures_used: Counter[int] = Counter()
        self._responses_sent = 0
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # lifecycle

    def start(self) -> ScriptedModelServer:
        if self._httpd is not None:
            raise RuntimeError("the scripted model server is already running")
        self._stopping.clear()
        self._httpd = ThreadingHTTPServer((self._host, self._port), _handler_for(self))
        # a short poll interval keeps stop() fast; shutdown waits for the next poll
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="scripted-model-server",
            daemon=True,
        )
        self._thread.start()
        log.info("scripted model server started", base_url=self.base_url, turns=len(self.script.turns))
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wakes requests that are hanging on purpose
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = None
        self._thread = None
        log.info("scripted model server stopped", requests=len(self._requests))

    def __enter__(self) -> ScriptedModelServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the scripted model server is not running")
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}/v1"

    # what was asked

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_for(self, instructions: str) -> list[RecordedRequest]:
        """The model requests whose instructions contain `instructions` (one agent's calls)."""
        return [
            request
            for request in self.requests
            if request.turn is not None
            and isinstance(request.body, dict)
            and instructions in _instructions(request.body)
        ]

    def count_by_turn(self) -> dict[int, int]:
        """Turn index -> number of requests answered successfully for that turn."""
        with self._lock:
            counts = Counter(r.turn for r in self._requests if r.turn is not None and r.status == 200)
        return dict(sorted(counts.items()))

    def request_log(self) -> RequestLog:
        return RequestLog(requests=self.requests, count_by_turn=self.count_by_turn())

    # answering

    def answer(self, method: str, path: str, body: Any) -> _Reply:
        if method == "GET" and path == _MODELS_PATH:
            model = {"id": self.script.model, "object": "model", "created": 0, "owned_by": "farline"}
            return self._record(
                method, path, None, None, _Reply(status=200, payload={"object": "list", "data": [model]})
            )
        if method == "POST" and path in (_RESPONSES_PATH, _CHAT_PATH):
            if not isinstance(body, dict):
                reply = _Reply(
                    status=400, payload=_error_payload(400, "the request body must be a JSON object")
                )
                return self._record(method, path, body, None, reply)
            return self._model_reply(path, body)
        reply = _Reply(status=404, payload=_error_payload(404, f"no route for {method} {path}"))
        return self._record(method, path, body, None, reply)

    def _model_reply(self, path: str, body: dict[str, Any]) -> _Reply:
        api: Literal["responses", "chat"] = "responses" if path == _RESPONSES_PATH else "chat"
        if api == "responses":
            turn, last_output = _responses_turn_and_tool_output(body)
        else:
            turn, last_output = _chat_turn_and_tool_output(body)
        script = self.script.routed(_instructions(body))
        with self._lock:
            failure = self._take_failure(script, turn)
            if failure is None:
                self._responses_sent += 1
                response_id = f"resp_{self._responses_sent}"
        if failure is not None:
            message = failure.message or f"scripted failure {failure.status} for turn {turn}"
            headers = {} if failure.retry_after_s is None else {"retry-after": f"{failure.retry_after_s:g}"}
            reply = _Reply(
                status=failure.status,
                payload=_error_payload(failure.status, message),
                headers=headers,
                hang_s=failure.hang_s,
            )
            return self._record("POST", path, body, turn, reply)
        custom_tools = frozenset(
            tool.get("name")
            for tool in body.get("tools") or []
            if api == "responses" and isinstance(tool, dict) and tool.get("type") == "custom"
        )
        answer = _answer_for(script, turn, last_output, custom_tools)
        model = str(body.get("model") or self.script.model)
        input_bytes = len(json.dumps(body))
        build = _responses_payload if api == "responses" else _chat_payload
        payload = build(response_id, model, answer, input_bytes)
        threshold = _compact_threshold(body) if api == "responses" else None
        if threshold is not None and _estimate_tokens(input_bytes) >= threshold:
            # server-side compaction, as the Responses API does it: an opaque item first
            compaction = {
                "type": "compaction",
                "id": f"cmp_{response_id}",
                "encrypted_content": f"scripted:{turn}",
            }
            payload["output"].insert(0, compaction)
        reply = _Reply(status=200, payload=payload)
        return self._record("POST", path, body, turn, reply)

    def _take_failure(self, script: Script, turn: int) -> ScriptedFailure | None:
        """The next unused failure of this turn, consumed; call with the lock held."""
        if turn == COMPACTION_TURN:
            failures = script.compaction_fail_first
        elif 0 <= turn < len(script.turns):
            failures = script.turns[turn].fail_first
        else:
            return None
        used = self._failures_used[turn]
        if used >= len(failures):
            return None
        self._failures_used[turn] = used + 1
        return failures[used]

    def _record(self, method: str, path: str, body: Any, turn: int | None, reply: _Reply) -> _Reply:
        with self._lock:
            self._requests.append(
                RecordedRequest(method=method, path=path, body=body, turn=turn, status=reply.status)
            )
        return reply

    def pause(self, seconds: float) -> None:
        """Sleep for a scripted hang, cut short when the server stops."""
        self._stopping.wait(seconds)


def _handler_for(server: ScriptedModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == REQUEST_LOG_PATH:
                self._send(200, json.loads(server.request_log().model_dump_json()), {})
                return
            self._answer("GET", path, None)

        def do_POST(self) -> None:
            path = self.path.split("?", 1)[0]
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                body = json.loads(raw) if raw else None
            except json.JSONDecodeError:
                self._send(400, _error_payload(400, "the request body is not valid JSON"), {})
                return
            self._answer("POST", path, body)

        def _answer(self, method: str, path: str, body: Any) -> None:
            reply = server.answer(method, path, body)
            if reply.hang_s:
                server.pause(reply.hang_s)
            try:
                self._send(reply.status, reply.payload, reply.headers)
            except (BrokenPipeError, ConnectionResetError):
                log.debug("client left before the answer", path=path, status=reply.status)

        def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("scripted model http", line=format % args)

    return Handler


# --- command line -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m harness.scripted_model",
        description="Serve a scripted OpenAI-compatible model; prints the base URL on the first line.",
    )
    parser.add_argument("script", type=Path, help="a script JSON file (see harness/demo_script.json)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    args = parser.parse_args(argv)
    # stdout carries only the base URL, so whoever started us can read it; logs go to stderr
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with ScriptedModelServer(Script.from_file(args.script), host=args.host, port=args.port) as server:
        print(server.base_url, flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
