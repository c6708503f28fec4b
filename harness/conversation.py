"""The conversation as the model sees it, in Responses API item shapes.

The workflow keeps a list of these items; the model activity turns them into
the wire format of the configured API (Responses or Chat Completions).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from harness.specs import ModelSettings, Usage


class MessageItem(BaseModel):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str


class FunctionCallItem(BaseModel):
    """A tool call the model made; `arguments` is the raw JSON text the model sent."""

    type: Literal["function_call"] = "function_call"
    call_id: str
    name: str
    arguments: str
    # a freeform (custom, grammar) tool call: `arguments` is the tool's raw input text
    freeform: bool = False


class ImageInput(BaseModel):
    """An image for the model, inline (view_image); kept small by the tool's size cap."""

    mime_type: Literal["image/png", "image/jpeg", "image/gif", "image/webp"]
    data_base64: str

    @property
    def data_url(self) -> str:
        return f"data:{self.mime_type};base64,{self.data_base64}"


class FunctionCallOutputItem(BaseModel):
    type: Literal["function_call_output"] = "function_call_output"
    call_id: str
    output: str
    # images the tool returns with its text (view_image)
    images: list[ImageInput] = Field(default_factory=list)
    # the output of a freeform tool call
    freeform: bool = False


class CompactionItem(BaseModel):
    """The Responses API's server-side compaction: an opaque, encrypted summary of what came
    before it; sent back as it is, it replaces every earlier item."""

    type: Literal["compaction"] = "compaction"
    encrypted_content: str
    id: str | None = None


ConversationItem = Annotated[
    MessageItem | FunctionCallItem | FunctionCallOutputItem | CompactionItem, Field(discriminator="type")
]


def since_last_compaction(items: list[ConversationItem]) -> list[ConversationItem]:
    """The items from the newest server-side compaction item on (it stands for the rest)."""
    for index in range(len(items) - 1, -1, -1):
        if isinstance(items[index], CompactionItem):
            return items[index:]
    return items


class ToolSpec(BaseModel):
    """A tool as offered to the model: a function tool, or a freeform one when it has a grammar.

    A freeform tool (a Responses API custom tool) takes raw text matching its Lark
    grammar; for APIs without custom tools it is offered as a function tool with one
    string argument, `input`.
    """

    name: str
    description: str
    parameters: dict[str, Any]
    grammar: str | None = None
    # the parameters as an OpenAI strict-mode schema, when they can be one
    strict_parameters: dict[str, Any] | None = None


class ModelRequest(BaseModel):
    """Input of the model activity.

    By reference (`by_reference`), `items` are only what is new since the stored context
    `context` (None: the start); the activity stores the context it leaves and answers its id.
    """

    settings: ModelSettings
    instructions: str
    items: list[ConversationItem]
    tools: list[ToolSpec] = Field(default_factory=list)
    context: str | None = None
    by_reference: bool = False
    # the Responses API compacts the context on the server from this many tokens (None: it does not)
    server_compaction_threshold: int | None = None


class ModelTurn(BaseModel):
    """What one model call produced: assistant messages and function calls, in order."""

    items: list[ConversationItem]
    usage: Usage
    response_id: str | None = None
    model: str | None = None
    # the stored context after this turn (request context + new items + these items)
    context: str | None = None
    # tokens of the whole context after this turn (the server's count, or an estimate)
    context_tokens: int = 0

    @property
    def function_calls(self) -> list[FunctionCallItem]:
        return [item for item in self.items if isinstance(item, FunctionCallItem)]

    @property
    def text(self) -> str:
        return "\n".join(
            item.content for item in self.items if isinstance(item, MessageItem) and item.role == "assistant"
        )

    def summary(self) -> str:
        """One line for the Temporal UI, e.g. "model: 2 tool calls"."""
        calls = len(self.function_calls)
        if calls:
            return f"model: {calls} tool call{'s' if calls != 1 else ''}"
        return "model: answered"
