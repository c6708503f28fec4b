"""The application's function tools: Python functions the model may call, run on the trusted side.

`@function_tool` turns a function (sync or async) into a `FunctionTool`: a pydantic
model of its parameters (from the type hints, defaults and a Google-style `Args:`
docstring section), the `ToolSpec` offered to the model, and the policy around it
(timeout, attempts, enabled per run, guardrails, approval).

Everything here except `FunctionTool.invoke` is pure and deterministic, because
the workflow calls it: it decides which tools a run offers, validates the model's
arguments and decides approval without an activity. Only `invoke` (called by the
`run_function_tool` activity) runs the application's code, which may use secrets
and the application's database; the sandbox never sees either.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import UnionType
from typing import Any, ClassVar, Union, get_args, get_origin, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from harness.conversation import ToolSpec
from harness.tools import BUILTIN_TOOLS

_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_SECTION = re.compile(
    r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments|Returns|Return|Yields|Raises|"
    r"Examples?|Notes?|Attributes|Todo|See Also|Warnings?|References):\s*$"
)
_ARG_SECTIONS = {"Args", "Arguments", "Parameters", "Params", "Keyword Args", "Keyword Arguments"}
_ARG_ENTRY = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


class RunContext(BaseModel):
    """What `is_enabled` sees: the run's flags (from its RunRequest) and the agent's name."""

    model_config = ConfigDict(frozen=True)

    flags: dict[str, bool | str] = Field(default_factory=dict)
    agent: str = ""


class ToolContext(BaseModel):
    """Injected into a tool parameter annotated `ToolContext`; not part of the tool's schema."""

    model_config = ConfigDict(frozen=True)

    workflow_id: str
    call_id: str
    flags: dict[str, bool | str] = Field(default_factory=dict)
    agent: str = ""


Guardrail = Callable[[Any], str | None]
"""Takes the validated arguments model; returns a rejection message for the model, or None."""
ApprovalRule = bool | Callable[[Any], bool]
EnabledRule = bool | Callable[[RunContext], bool]


class ToolArguments(BaseModel):
    """Base of every tool's arguments model.

    A parameter with a default that does not accept null is offered as nullable in the
    strict schema (strict mode requires every property); null then means "the default".
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    null_means_default: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls_for_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls.null_means_default:
            return {k: v for k, v in data.items() if not (v is None and k in cls.null_means_default)}
        return data


@dataclass(frozen=True)
class FunctionTool:
    """An application function the model may call, with its schema and policy."""

    name: str
    description: str
    function: Callable[..., Any]
    arguments_model: type[ToolArguments]
    spec: ToolSpec
    timeout_s: float
    max_attempts: int
    is_enabled: EnabledRule
    guardrails: tuple[Guardrail, ...]
    needs_approval: ApprovalRule
    approval_timeout_s: float | None
    # the parameter that receives the ToolContext, if any
    context_parameter: str | None
    positional_only: tuple[str, ...]

    def enabled_for(self, context: RunContext) -> bool:
        """Whether the run offers this tool; an `is_enabled` function that raises disables it."""
        return _rule_holds(self.is_enabled, context, if_it_raises=False)

    def guardrail_rejection(self, args: BaseModel) -> str | None:
        """The first guardrail's rejection of `args`; a guardrail that raises rejects the call."""
        for guardrail in self.guardrails:
            try:
                rejection = guardrail(args)
            except Exception as error:
                return f"{self.name} was refused: guardrail raised {type(error).__name__}: {error}"
            if rejection:
                return f"{self.name} was refused: {rejection}"
        return None

    def requires_approval(self, args: BaseModel) -> bool:
        """Whether a person must approve this call first; a rule that raises requires approval."""
        return _rule_holds(self.needs_approval, args, if_it_raises=True)

    async def invoke(self, args: BaseModel, context: ToolContext) -> Any:
        """Run the function (activity side only): a sync one in a thread, an async one awaited."""
        positional = [getattr(args, name) for name in self.positional_only]
        keywords = {
            name: getattr(args, name) for name in type(args).model_fields if name not in self.positional_only
        }
        if self.context_parameter is not None:
            keywords[self.context_parameter] = context
        if inspect.iscoroutinefunction(self.function):
            return await self.function(*positional, **keywords)
        return await asyncio.to_thread(self.function, *positional, **keywords)


@overload
def function_tool(function: Callable[..., Any], /) -> FunctionTool: ...


@overload
def function_tool(
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float = 60,
    max_attempts: int = 3,
    is_enabled: EnabledRule = True,
    guardrails: Sequence[Guardrail] = (),
    needs_approval: ApprovalRule = False,
    approval_timeout_s: float | None = None,
) -> Callable[[Callable[..., Any]], FunctionTool]: ...


def function_tool(
    function: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    timeout_s: float = 60,
    max_attempts: int = 3,
    is_enabled: EnabledRule = True,
    guardrails: Sequence[Guardrail] = (),
    needs_approval: ApprovalRule = False,
    approval_timeout_s: float | None = None,
) -> FunctionTool | Callable[[Callable[..., Any]], FunctionTool]:
    """Make a function a tool: `@function_tool` or `@function_tool(name=..., needs_approval=...)`.

    Every parameter needs a type hint; one annotated `ToolContext` is injected instead.
    `is_enabled`, guardrails and `needs_approval` run in workflow code: they must be
    pure functions of their input.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, not {timeout_s}")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    if approval_timeout_s is not None and approval_timeout_s <= 0:
        raise ValueError(f"approval_timeout_s must be positive, not {approval_timeout_s}")

    def decorate(func: Callable[..., Any]) -> FunctionTool:
        summary, parameter_docs = parse_docstring(inspect.getdoc(func) or "")
        tool_name = name or func.__name__
        if not _TOOL_NAME.match(tool_name):
            raise ValueError(f"tool name {tool_name!r} must match {_TOOL_NAME.pattern}")
        model, context_parameter, positional_only = _arguments_model(func, tool_name, parameter_docs)
        tool_description = description if description is not None else summary
        return FunctionTool(
            name=tool_name,
            description=tool_description,
            function=func,
            arguments_model=model,
            spec=ToolSpec(
                name=tool_name,
                description=tool_description,
                parameters=(parameters := _schema_of(model)),
                strict_parameters=strict_parameters(parameters),
            ),
            timeout_s=timeout_s,
            max_attempts=max_attempts,
            is_enabled=is_enabled,
            guardrails=tuple(guardrails),
            needs_approval=needs_approval,
            approval_timeout_s=approval_timeout_s,
            context_parameter=context_parameter,
            positional_only=positional_only,
        )

    return decorate if function is None else decorate(function)


def parse_docstring(docstring: str) -> tuple[str, dict[str, str]]:
    """The description (text before the first section) and the `Args:` entries of a Google docstring."""
    description: list[str] = []
    parameters: dict[str, str] = {}
    section: str | None = None
    entry_indent: int | None = None
    current: str | None = None
    for line in docstring.splitlines():
        header = _SECTION.match(line)
        if header:
            section, entry_indent, current = header.group(1), None, None
            continue
        if section is None:
            description.append(line)
            continue
        if section not in _ARG_SECTIONS or not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        if entry_indent is None:
            entry_indent = indent
        entry = _ARG_ENTRY.match(line.strip()) if indent == entry_indent else None
        if entry:
            current = entry.group(1)
            parameters[current] = entry.group(2).strip()
        elif current is not None and indent > entry_indent:
            parameters[current] = f"{parameters[current]} {line.strip()}".strip()
    return "\n".join(description).strip(), parameters


def _arguments_model(
    func: Callable[..., Any], tool_name: str, parameter_docs: dict[str, str]
) -> tuple[type[ToolArguments], str | None, tuple[str, ...]]:
    try:
        signature = inspect.signature(func, eval_str=True)
    except NameError as error:
        raise TypeError(f"tool {tool_name}: cannot resolve a type hint ({error})") from None
    fields: dict[str, Any] = {}
    context_parameter: str | None = None
    positional_only: list[str] = []
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise TypeError(f"tool {tool_name}: *{parameter.name} parameters are not supported")
        if parameter.annotation is parameter.empty:
            raise TypeError(f"tool {tool_name}: parameter {parameter.name!r} needs a type hint")
        if _is_tool_context(parameter.annotation):
            if parameter.kind is parameter.POSITIONAL_ONLY:
                raise TypeError(f"tool {tool_name}: the ToolContext parameter cannot be positional-only")
            context_parameter = parameter.name
            continue
        if parameter.kind is parameter.POSITIONAL_ONLY:
            positional_only.append(parameter.name)
        field_options: dict[str, Any] = {}
        if parameter.name in parameter_docs:
            field_options["description"] = parameter_docs[parameter.name]
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (parameter.annotation, Field(default, **field_options))
    model = create_model(_model_name(tool_name), __base__=ToolArguments, **fields)
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    model.null_means_default = frozenset(
        name
        for name, prop in schema.get("properties", {}).items()
        if name not in required and not _accepts_null(prop)
    )
    return model, context_parameter, tuple(positional_only)


def _is_tool_context(annotation: Any) -> bool:
    """`ToolContext`, or `ToolContext | None`."""
    if annotation is ToolContext:
        return True
    options = set(get_args(annotation)) if get_origin(annotation) in (Union, UnionType) else set()
    return options == {ToolContext, type(None)}


def _model_name(tool_name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[_-]", tool_name) if part) + "Args"


def _schema_of(model: type[BaseModel]) -> dict[str, Any]:
    return _without_titles(model.model_json_schema())


def _without_titles(schema: Any) -> Any:
    """`schema` with every schema node's `title` removed (a property named "title" stays)."""
    if isinstance(schema, list):
        return [_without_titles(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    cleaned: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs") and isinstance(value, dict):
            cleaned[key] = {name: _without_titles(sub) for name, sub in value.items()}
        elif key in ("default", "enum", "const", "examples"):
            cleaned[key] = value
        else:
            cleaned[key] = _without_titles(value)
    return cleaned


def _accepts_null(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    return any(_accepts_null(option) for option in schema.get("anyOf", ()))


class UnknownFunctionTool(LookupError):
    pass


def _rule_holds(rule: bool | Callable[[Any], bool], argument: Any, if_it_raises: bool) -> bool:
    """A tool's policy rule, a constant or a function; one that raises fails closed (`if_it_raises`)."""
    if isinstance(rule, bool):
        return rule
    try:
        return bool(rule(argument))
    except Exception:
        return if_it_raises


class FunctionToolRegistry:
    """The function tools one worker offers, by name; its queries are pure (workflow-safe)."""

    def __init__(self, tools: Iterable[FunctionTool] = ()) -> None:
        self._tools: dict[str, FunctionTool] = {}
        for tool in tools:
            self.register(tool)

    def register(self, tool: FunctionTool) -> FunctionTool:
        if tool.name in BUILTIN_TOOLS:
            raise ValueError(f"{tool.name!r} is the name of a built-in workspace tool")
        if tool.name in self._tools:
            raise ValueError(f"a function tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool
        return tool

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    @property
    def names(self) -> list[str]:
        return sorted(self._tools)

    def get(self, name: str) -> FunctionTool:
        try:
            return self._tools[name]
        except KeyError:
            known = ", ".join(self.names) or "none"
            raise UnknownFunctionTool(f"no function tool named {name!r} (known: {known})") from None

    def enabled(self, names: Iterable[str], context: RunContext) -> list[FunctionTool]:
        """The tools among `names` registered here and enabled for the run, in the order given.

        Names not registered here are skipped: they belong to the built-in tools.
        """
        return [
            self._tools[name]
            for name in names
            if name in self._tools and self._tools[name].enabled_for(context)
        ]

    def specs_for(self, names: Iterable[str], context: RunContext) -> list[ToolSpec]:
        """The specs to offer the model for a run: `enabled(names, context)`'s specs."""
        return [tool.spec for tool in self.enabled(names, context)]

    def validate_call(self, name: str, arguments_json: str) -> BaseModel | str:
        """The validated arguments of a call, or a message for the model saying what to fix.

        Pure: JSON parsing, pydantic validation, then the tool's guardrails.
        """
        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(self.names) or "none"
            return f"unknown function tool {name!r}; the function tools are: {known}"
        try:
            raw: Any = json.loads(arguments_json or "{}")
        except json.JSONDecodeError as error:
            return (
                f"the arguments of {name} are not valid JSON ({error.msg} at position {error.pos}); "
                "send a JSON object matching the tool's schema"
            )
        if not isinstance(raw, dict):
            return f"the arguments of {name} must be a JSON object, not {type(raw).__name__}"
        try:
            args = tool.arguments_model.model_validate(raw)
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}" for e in error.errors()
            )
            return f"invalid arguments for {name}: {problems}"
        return tool.guardrail_rejection(args) or args

    def requires_approval(self, name: str, args: BaseModel) -> bool:
        return self.get(name).requires_approval(args)


# keywords OpenAI's strict mode accepts; other constraints are left to our own validation
_STRICT_KEYWORDS = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "anyOf",
    "enum",
    "const",
    "$ref",
    "$defs",
    "description",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
}
_STRICT_FORMATS = {"date-time", "time", "date", "duration", "email", "hostname", "ipv4", "ipv6", "uuid"}
_MAX_INLINING = 16


class _NotStrict(Exception):
    pass


def strict_schema(tool: FunctionTool) -> dict[str, Any] | None:
    """The tool's parameters as an OpenAI strict-mode schema, or None when they cannot be one.

    Every property is required, those with defaults as `anyOf [T, null]` (null means the
    default), every object has `additionalProperties: false`, and keywords strict mode
    refuses are dropped (pydantic still enforces them). Dicts with free keys, `Any`,
    tuples, and nested models with defaulted fields make it impossible: None.
    """
    return strict_parameters(tool.spec.parameters)


def strict_parameters(schema: dict[str, Any]) -> dict[str, Any] | None:
    """A parameters schema as an OpenAI strict-mode schema (see `strict_schema`), or None."""
    try:
        return _StrictSchema(schema.get("$defs", {})).convert(schema, top_level=True)
    except _NotStrict:
        return None


class _StrictSchema:
    def __init__(self, definitions: dict[str, Any]) -> None:
        self._definitions = definitions

    def convert(self, node: dict[str, Any], top_level: bool = False, depth: int = 0) -> dict[str, Any]:
        if depth > _MAX_INLINING:
            raise _NotStrict
        if "$ref" in node and len(node) > 1:
            # strict mode wants a bare $ref: inline the definition under the node's own keys
            resolved = self._resolve(node["$ref"])
            merged = {**resolved, **{k: v for k, v in node.items() if k != "$ref"}}
            return self.convert(merged, depth=depth + 1)
        if "oneOf" in node:  # pydantic's discriminated unions; the discriminator is not needed
            node = {
                **{k: v for k, v in node.items() if k not in ("oneOf", "discriminator")},
                "anyOf": node["oneOf"],
            }
        if "allOf" in node:
            if len(node["allOf"]) != 1:
                raise _NotStrict
            node = {**{k: v for k, v in node.items() if k != "allOf"}, **node["allOf"][0]}
            return self.convert(node, depth=depth + 1)
        if not ({"type", "anyOf", "$ref", "enum", "const"} & node.keys()):
            raise _NotStrict  # `Any`: strict mode needs a type
        if "prefixItems" in node:
            raise _NotStrict
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key not in _STRICT_KEYWORDS:
                continue
            if key == "format" and value not in _STRICT_FORMATS:
                continue
            if key in ("properties", "$defs"):
                out[key] = {name: self.convert(sub, depth=depth) for name, sub in value.items()}
            elif key == "items":
                out[key] = self.convert(value, depth=depth)
            elif key == "anyOf":
                out[key] = [self.convert(option, depth=depth) for option in value]
            else:
                out[key] = value
        if node.get("type") == "object" or "properties" in node:
            self._close_object(node, out, top_level)
        return out

    def _close_object(self, node: dict[str, Any], out: dict[str, Any], top_level: bool) -> None:
        if node.get("additionalProperties", False) is not False:
            raise _NotStrict  # a dict with free keys
        properties: dict[str, Any] = out.setdefault("properties", {})
        required = set(node.get("required", []))
        for name, prop in properties.items():
            if name in required or _accepts_null(prop):
                continue
            if not top_level:
                raise _NotStrict  # null-means-default is only handled for the tool's own parameters
            description = prop.pop("description", None)
            properties[name] = {"anyOf": [prop, {"type": "null"}]}
            if description is not None:
                properties[name]["description"] = description
        out["required"] = list(properties)
        out["additionalProperties"] = False

    def _resolve(self, ref: str) -> dict[str, Any]:
        prefix = "#/$defs/"
        if not ref.startswith(prefix) or ref[len(prefix) :] not in self._definitions:
            raise _NotStrict
        return self._definitions[ref[len(prefix) :]]


# Each worker installs its registry for its task queue; the workflow, which evaluates the
# tools' pure rules, finds it there (this module is passed through the workflow sandbox,
# so this map is the worker's own, not a per-workflow copy).
_REGISTRIES_BY_TASK_QUEUE: dict[str, FunctionToolRegistry] = {}


_LATEST = "\0latest"


def install_registry(task_queue: str, registry: FunctionToolRegistry) -> None:
    _REGISTRIES_BY_TASK_QUEUE[task_queue] = registry
    # a Replayer runs workflows on a queue of its own: it gets the registry installed last
    _REGISTRIES_BY_TASK_QUEUE[_LATEST] = registry


def registry_for(task_queue: str) -> FunctionToolRegistry:
    found = _REGISTRIES_BY_TASK_QUEUE.get(task_queue) or _REGISTRIES_BY_TASK_QUEUE.get(_LATEST)
    return found or FunctionToolRegistry()
