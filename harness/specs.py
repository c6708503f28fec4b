"""Pydantic models at the boundaries: what a user asks for and what a run reports.

These travel through Temporal (workflow input, queries, results), so they hold
names and settings only: never secrets, never large blobs.
"""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, Field, SerializationInfo, field_serializer, field_validator, model_validator

from harness.manifest import Manifest
from harness.sandbox_options import ProviderName, check_options
from harness.skills import SkillSource

ModelApi = Literal["responses", "chat"]
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ModelSettings(BaseModel):
    """Which model to call and how; unset fields fall back to the worker's config."""

    model: str | None = Field(default=None, description="Model name; default FARLINE_MODEL.")
    api: ModelApi | None = Field(
        default=None, description="'responses' or 'chat' (Chat Completions); default FARLINE_MODEL_API."
    )
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_output_tokens: int | None = Field(default=None, gt=0)
    strict_function_tools: bool | None = Field(
        default=None,
        description="Send the application's function tools with strict JSON schemas (OpenAI structured "
        "outputs); default false, for servers that do not support strict mode.",
    )
    freeform_apply_patch: bool | None = Field(
        default=None,
        description="Offer apply_patch as a freeform grammar tool (Responses API custom tools, GPT-5 "
        "family); default false: a JSON function tool.",
    )

    def sampling_params(self, max_tokens_name: str) -> dict[str, float | int]:
        """The sampling settings that are set, with the token cap under the API's own name."""
        named = (
            ("temperature", self.temperature),
            ("top_p", self.top_p),
            (max_tokens_name, self.max_output_tokens),
        )
        return {name: value for name, value in named if value is not None}

    def merged_with(self, override: ModelSettings | None) -> ModelSettings:
        """These settings with every field that `override` sets replaced."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_unset=True, exclude_none=True))


class SandboxSettings(BaseModel):
    """Where the agent's commands run and what they may reach."""

    provider: ProviderName = Field(
        default="local",
        description="Where commands run: 'local' (bubblewrap on the worker's machine), 'docker' (a container "
        "of the workers' Docker-API engine), 'modal', 'e2b' or 'daytona' (their clouds); the workers must "
        "offer it (see the README's provider sections).",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="The provider's own options (image, cpu, memory, template, ...: "
        "harness/sandbox_options.py), over the workers' defaults.",
    )
    network: bool = Field(default=False, description="Give the sandbox network access.")
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment variables for commands in the sandbox (plain values, not secrets).",
    )
    snapshots: bool = Field(
        default=True,
        description="Snapshot the workspace after every turn that ran sandbox tools, on pause and at the "
        "end; a lost sandbox is rehydrated from the newest one. Off: a lost sandbox fails the run.",
    )
    idle_timeout_s: float | None = Field(
        default=900.0,
        gt=0,
        description="Tear a harness-owned sandbox down (after a snapshot) when no tool used it for this "
        "long, e.g. while the run waits for an approval; the next command rehydrates it. None: never.",
    )
    worker_lost_after_s: float = Field(
        default=120.0,
        gt=0,
        description="How long a command waits for the machine that holds its local sandbox to pick it up; "
        "after that the machine counts as gone and the run rehydrates on another worker.",
    )

    @field_validator("env")
    @classmethod
    def _valid_env(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            if not _ENV_NAME.match(name):
                raise ValueError(f"environment variable name {name!r} must match {_ENV_NAME.pattern}")
            if "\0" in value:
                raise ValueError(f"the value of environment variable {name!r} contains a NUL byte")
        return env

    @model_validator(mode="after")
    def _options_fit_the_provider(self) -> SandboxSettings:
        check_options(self.provider, self.options)
        return self

    def merged_with(self, override: SandboxSettings | None) -> SandboxSettings:
        if override is None:
            return self
        update = override.model_dump(exclude_unset=True)
        if update.get("provider", self.provider) != self.provider and "options" not in update:
            update["options"] = {}  # one provider's options mean nothing to another
        return SandboxSettings.model_validate({**self.model_dump(), **update})


class SandboxMove(BaseModel):
    """Resume a paused run on another provider (`farline resume ID --provider docker`): the new
    sandbox is restored from the snapshot taken at the pause; network, env and the rest stay."""

    provider: ProviderName
    options: dict[str, Any] = Field(default_factory=dict, description="The new provider's options.")

    @model_validator(mode="after")
    def _options_fit_the_provider(self) -> SandboxMove:
        check_options(self.provider, self.options)
        return self


class SnapshotStoreChoice(BaseModel):
    """Where a run's workspace snapshots go, whatever its sandbox provider (default: the workers'
    FARLINE_SNAPSHOT_STORE). The keys are named, never given: FARLINE_CREDENTIALS_<NAME>_* on
    the workers."""

    kind: Literal["local", "s3"] = Field(
        description="'local': the workers' FARLINE_SNAPSHOT_DIR (one machine); 's3': a bucket of any "
        "S3-compatible store (what runs that move between machines or providers need)."
    )
    bucket: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    prefix: str = Field(default="farline/", max_length=512, description="Where under the bucket.")
    endpoint_url: str | None = Field(
        default=None, description="The store's URL (default FARLINE_S3_ENDPOINT)."
    )
    region: str | None = Field(default=None, description="Its region (default FARLINE_S3_REGION).")
    credentials: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_]{1,64}$",
        description="Named keys (FARLINE_CREDENTIALS_<NAME>_ACCESS_KEY_ID / _SECRET_ACCESS_KEY on the "
        "workers); default: the workers' FARLINE_S3_* keys.",
    )

    @model_validator(mode="after")
    def _complete(self) -> SnapshotStoreChoice:
        if self.kind == "s3" and self.bucket is None:
            raise ValueError("an 's3' snapshot store needs its bucket")
        given = [name for name in ("bucket", "endpoint_url", "region", "credentials") if getattr(self, name)]
        if self.kind == "local" and given:
            raise ValueError(
                f"a 'local' snapshot store takes no {', '.join(given)}: it is the workers' directory"
            )
        if any(part == ".." for part in self.prefix.split("/")) or self.prefix.startswith("/"):
            raise ValueError(f"snapshot store prefix {self.prefix!r}: a relative key prefix without '..'")
        if self.endpoint_url is not None and not self.endpoint_url.startswith(("http://", "https://")):
            raise ValueError(f"snapshot store endpoint_url {self.endpoint_url!r} is not an http(s) URL")
        return self


class UserSandbox(BaseModel):
    """A sandbox the user created and owns: the run uses it and never tears it down."""

    provider: str = "local"
    sandbox_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")
    task_queue: str | None = Field(
        default=None, description="The queue of the workers that reach it (a local sandbox's machine)."
    )


class CompactionSettings(BaseModel):
    """When to compact: a share of the model's context window."""

    context_window: int = Field(
        default=200_000, ge=1_000, description="The model's context window, in tokens."
    )
    compact_at: float = Field(
        default=0.9,
        gt=0,
        le=0.9,
        description="Compact when the context reaches this share of the window (at most 0.9).",
    )
    mode: Literal["farline", "server"] = Field(
        default="farline",
        description="'farline': a compaction activity writes a handoff summary; 'server': the Responses "
        "API compacts on the server (context_management) into an opaque item kept in the context.",
    )
    recent_user_tokens: int = Field(
        default=20_000, ge=0, description="Budget of the most recent user messages kept verbatim."
    )

    @property
    def threshold(self) -> int:
        return int(self.context_window * self.compact_at)


_MEMORY_KEY = r"^[A-Za-z0-9_.-]{1,128}$"


class MemorySettings(BaseModel):
    """Long-term memory: lessons kept from one run of the agent to the next (MEMORY.md)."""

    enabled: bool = Field(
        default=False,
        description="At the end of each run ask the model for durable lessons and keep them; put them "
        "in the next run's workspace (memory/MEMORY.md) and instructions.",
    )
    key: str | None = Field(
        default=None,
        pattern=_MEMORY_KEY,
        description="Keep a separate memory per user or project under this key; default: one per agent.",
    )


class SubagentLimits(BaseModel):
    """How many sub-agents a run may have at once, and how deep they may nest."""

    max_live: int = Field(default=8, ge=1, le=1_000, description="Sub-agents running at once, per run.")
    max_depth: int = Field(
        default=2, ge=1, le=10, description="Levels of sub-agents below the run the user started."
    )


class ParentLink(BaseModel):
    """Set by the harness on a sub-agent's request: who started it, and how deep it is."""

    workflow_id: str
    agent_id: str
    depth: int = Field(ge=1)
    limits: SubagentLimits = Field(default_factory=SubagentLimits)
    # the child works in its parent's live sandbox (its `user_sandbox`), which it must never refill
    shared_workspace: bool = False


class AgentSpec(BaseModel):
    """An agent: its instructions, model, sandbox defaults and the tools it may use."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    instructions: str = "You are a helpful agent working in a sandboxed workspace."
    model: ModelSettings = Field(default_factory=ModelSettings)
    sandbox: SandboxSettings = Field(default_factory=SandboxSettings)
    tools: list[str] = Field(
        default_factory=lambda: ["exec_command", "write_stdin", "apply_patch", "view_image"]
    )
    compaction: CompactionSettings = Field(default_factory=CompactionSettings)
    manifest: Manifest | None = Field(default=None, description="The workspace each run starts with.")
    skills: list[SkillSource] = Field(
        default_factory=list, description="Skill bundles placed under skills/ and listed in the instructions."
    )
    memory: MemorySettings = Field(default_factory=MemorySettings)
    subagents: list[str] = Field(
        default_factory=list,
        description="Registered agents this agent may start as sub-agents (spawn_agent and its tools).",
    )
    handoffs: list[str] = Field(
        default_factory=list,
        description="Registered agents this agent may hand the conversation to (the handoff tool).",
    )


class RunRequest(BaseModel):
    """Input of the AgentRun workflow: which agent, which task, and per-run overrides."""

    agent: str | None = Field(default=None, description="Name of an agent registered on the worker.")
    agent_spec: AgentSpec | None = Field(default=None, description="An inline agent instead of a named one.")
    task: str = Field(min_length=1, description="What the agent is asked to do.")
    model: ModelSettings | None = None
    sandbox: SandboxSettings | None = None
    user_sandbox: UserSandbox | None = Field(
        default=None,
        description="Run in this existing sandbox instead of one the harness creates; it is never torn down.",
    )
    max_turns: int = Field(default=50, ge=1, le=1_000_000)
    compaction: CompactionSettings | None = Field(
        default=None, description="When to compact the model's context; default: the agent's settings."
    )
    continue_as_new_after_events: int | None = Field(
        default=None,
        ge=200,
        description="Continue as new once the history holds this many events; the run always does when "
        "Temporal suggests it (near its history limits).",
    )
    flags: dict[str, bool | str] = Field(
        default_factory=dict,
        description="Feature flags the application's tools see (is_enabled, ToolContext).",
    )
    manifest: Manifest | None = Field(
        default=None, description="Entries added to the agent's manifest for this run (after its own)."
    )
    skills: list[SkillSource] = Field(
        default_factory=list, description="Skills added to the agent's for this run."
    )
    memory_key: str | None = Field(
        default=None,
        pattern=_MEMORY_KEY,
        description="Use the agent's memory under this user or project key (memory must be enabled).",
    )
    start_from: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="Start the workspace from this snapshot (a fork of another run's workspace); "
        "manifest entries are added to it.",
    )
    snapshot_store: SnapshotStoreChoice | None = Field(
        default=None,
        description="Where this run's workspace snapshots go (default: the workers' store); sub-agents "
        "use their parent's.",
    )
    subagent_limits: SubagentLimits = Field(default_factory=SubagentLimits)
    parent: ParentLink | None = Field(default=None, description="Set by the harness on sub-agents.")

    @field_serializer("model", "sandbox")
    def _only_what_was_given(self, value: BaseModel | None, info: SerializationInfo) -> Any:
        """Overrides keep only the fields their caller set, so that after a trip through Temporal
        they still override only those (the agent's own settings stay for the rest)."""
        if value is None:
            return None
        return value.model_dump(mode=info.mode, exclude_unset=True)

    @model_validator(mode="after")
    def _one_agent(self) -> RunRequest:
        if (self.agent is None) == (self.agent_spec is None):
            raise ValueError("give exactly one of 'agent' (a registered agent's name) or 'agent_spec'")
        return self


class Usage(BaseModel):
    """Token use summed over a run's model calls."""

    model_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0

    def plus(self, other: Usage) -> Usage:
        return Usage(
            model_calls=self.model_calls + other.model_calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class RunState(StrEnum):
    STARTING = "starting"
    CALLING_MODEL = "calling_model"
    RUNNING_TOOLS = "running_tools"
    WAITING_FOR_APPROVAL = "waiting_for_approval"
    PAUSED = "paused"
    COMPLETED = "completed"
    MAX_TURNS_REACHED = "max_turns_reached"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RunStatus(BaseModel):
    """Answer of the `status` query."""

    agent: str
    state: RunState
    turn: int
    waiting_on: str | None = None
    usage: Usage = Field(default_factory=Usage)
    sandbox_id: str | None = None
    # the provider of the run's sandboxes (it changes when a paused run is resumed on another)
    sandbox_provider: str | None = None
    # where its snapshots go (None: the workers' store)
    snapshot_store: SnapshotStoreChoice | None = None
    # the newest snapshot of the workspace, how many the run has taken, how often it rehydrated
    snapshot_id: str | None = None
    snapshots: int = 0
    rehydrations: int = 0
    # `farline pause` was asked; the run pauses after its current turn
    pause_requested: bool = False
    # context compactions so far, and the last one's token counts ("41,200 -> 3,100 tokens")
    compactions: int = 0
    last_compaction: str | None = None
    # how many times the run continued as new (a fresh history) so far
    continued_as_new: int = 0
    # the starting workspace (a snapshot built from the manifest, skills and memory), the commits
    # its git sources resolved to, and its skills
    workspace_seed: str | None = None
    pinned: list[str] = Field(default_factory=list)
    skills: list[str] = Field(default_factory=list)


class RunResult(BaseModel):
    """What an AgentRun returns when it ends."""

    agent: str
    state: RunState
    final_message: str | None
    turns: int
    usage: Usage
    # the newest snapshot of the workspace when the run ended (what a parent collects from a sub-agent)
    snapshot_id: str | None = None
