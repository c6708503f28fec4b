"""`python worker.py`: a Farline worker for the AgentRun workflow and its activities."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import timedelta

import structlog
from temporalio.client import Client
from temporalio.worker import Worker

from activities.agents import AgentActivities
from activities.compaction import CompactionActivities
from activities.exec_session import ExecActivities
from activities.function_tools import FunctionToolActivities
from activities.image import ImageActivities
from activities.memory import MemoryActivities
from activities.model import ModelActivities
from activities.patch import PatchActivities
from activities.sandbox import SandboxActivities
from activities.snapshot import SnapshotActivities
from activities.visibility import search_attributes_ready_activity
from activities.workspace_prepare import WorkspaceActivities
from harness.agent_dispatch import AgentDispatch
from harness.agents import AGENTS_FOR_PEOPLE, AgentRegistry, default_registry
from harness.config import ConfigError, FarlineConfig
from harness.context_chain import ContextStore
from harness.function_tools import FunctionToolRegistry, install_registry
from harness.log_context import LogContextInterceptor
from harness.logging import configure_logging
from harness.memory import MemoryStore
from harness.search_attributes import ensure_search_attributes
from harness.snapshot_store import open_snapshot_store
from harness.snapshot_stores import SnapshotStores
from harness.stores import open_run_store
from harness.task_tracker import TaskTracker, tracker_tools
from harness.telemetry import Telemetry, ToolCallMetrics, start_telemetry
from harness.temporal_client import connect, with_farline_converter
from sandbox_providers.base import SandboxProvider
from sandbox_providers.offered import offered_providers
from workflows.agent_run import AgentRun

logger = structlog.get_logger(__name__)


def default_function_tools(config: FarlineConfig, client: Client | None = None) -> FunctionToolRegistry:
    """The demo application's tools: the task tracker, on SQLite in the data dir; with a client,
    assigning a task to a person who is an agent starts that agent's run."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    dispatch = AgentDispatch(client, config, AGENTS_FOR_PEOPLE) if client is not None else None
    return FunctionToolRegistry(tracker_tools(TaskTracker(config.data_dir / "task_tracker.sqlite"), dispatch))


class FarlineWorker:
    """The Temporal workers of one process: the run's queue (workflows, model, application
    tools, sandbox creation) and, when local sandboxes are pinned, this machine's own queue."""

    def __init__(self, shared: Worker, local: Worker | None) -> None:
        self.shared = shared
        self.local = local

    async def __aenter__(self) -> FarlineWorker:
        if self.local is not None:
            await self.local.__aenter__()
        await self.shared.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shared.__aexit__(*exc_info)  # type: ignore[arg-type]
        if self.local is not None:
            await self.local.__aexit__(*exc_info)  # type: ignore[arg-type]


def build_worker(
    client: Client,
    config: FarlineConfig,
    registry: AgentRegistry | None = None,
    function_tools: FunctionToolRegistry | None = None,
    providers: dict[str, SandboxProvider] | None = None,
) -> FarlineWorker:
    """A worker serving AgentRun on `config.task_queue`, with the given agents, application tools
    (default: the demo agents and the task tracker's tools) and sandbox providers (default: those
    FARLINE_PROVIDERS names)."""
    # payloads above the threshold go to external storage, whatever client the caller has
    client = with_farline_converter(client, config)
    function_tools = function_tools if function_tools is not None else default_function_tools(config, client)
    # the workflow evaluates the tools' pure rules (validation, approval) from this registry
    install_registry(config.task_queue, function_tools)
    providers = providers if providers is not None else offered_providers(config)
    pinned = config.pin_local_sandboxes and "local" in providers
    local_queue = config.local_sandbox_task_queue if pinned else None
    store = open_snapshot_store(config)
    stores = SnapshotStores(config, store)
    sandbox = SandboxActivities(providers, local_task_queue=local_queue, stores=stores, config=config)
    snapshots = SnapshotActivities(providers, stores)
    execs = ExecActivities(providers)
    images = ImageActivities(providers)
    patches = PatchActivities(providers)
    agents = AgentActivities(registry or default_registry())
    contexts = ContextStore(open_run_store(config))
    model = ModelActivities(config, contexts)
    compaction = CompactionActivities(config, contexts)
    workspaces = WorkspaceActivities(config, stores)
    memories = MemoryActivities(config, contexts, MemoryStore(store.objects))
    app = FunctionToolActivities(function_tools)
    # a graceful stop lets running commands finish their current poll; their processes
    # live on in the sandbox and the next worker on this machine attaches to them
    graceful = timedelta(seconds=5)
    on_sandboxes = [
        sandbox.destroy_sandbox,
        execs.exec_command,
        execs.write_stdin,
        patches.apply_patch,
        images.view_image,
        snapshots.snapshot_workspace,
        snapshots.restore_workspace,
        snapshots.deliver_handoff,
        sandbox.mount_storage,
        sandbox.suspend_sandbox,
    ]
    # every activity's logs carry its run, agent and turn; tool calls are counted for the metrics
    # endpoint (the client's runtime has one when a port is set)
    interceptors = [LogContextInterceptor(), ToolCallMetrics()]
    shared = Worker(
        client,
        task_queue=config.task_queue,
        workflows=[AgentRun],
        activities=[
            agents.resolve_agent,
            model.call_model,
            compaction.compact_context,
            workspaces.prepare_workspace,
            memories.extract_memory,
            sandbox.create_sandbox,
            app.run_function_tool,
            search_attributes_ready_activity,
            # the other providers' sandboxes are reached from any worker: on the run's queue
            *([] if local_queue and set(providers) == {"local"} else on_sandboxes),
        ],
        graceful_shutdown_timeout=graceful,
        interceptors=interceptors,
    )
    local = None
    if local_queue is not None:
        local = Worker(
            client,
            task_queue=local_queue,
            activities=on_sandboxes,
            graceful_shutdown_timeout=graceful,
            interceptors=interceptors,
        )
    return FarlineWorker(shared, local)


async def run_worker(
    config: FarlineConfig, registry: AgentRegistry | None = None, telemetry: Telemetry | None = None
) -> None:
    telemetry = telemetry or start_telemetry(config)
    try:
        await _serve(config, registry, telemetry)
    finally:
        telemetry.close()


async def _serve(config: FarlineConfig, registry: AgentRegistry | None, telemetry: Telemetry) -> None:
    client = await connect(config, telemetry)
    await ensure_search_attributes(client, config.temporal_namespace, config.task_queue)
    worker = build_worker(client, config, registry)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    logger.info(
        "worker started",
        temporal=config.temporal_address,
        task_queue=config.task_queue,
        model_server=config.openai_base_url or "api.openai.com",
        metrics=f"{config.metrics_host}:{config.metrics_port}" if config.metrics_port else "off",
        tracing=config.otel_exporter,
    )
    async with worker:
        await stop.wait()
        logger.info("worker stopping")
    logger.info("worker stopped")


def main() -> None:
    try:
        config = FarlineConfig.from_env()
        telemetry = start_telemetry(config)
    except ConfigError as error:
        sys.exit(f"farline worker: {error}")
    configure_logging(config.log_format)
    if telemetry.tracing is not None:
        telemetry.tracing.install_globally()
    asyncio.run(run_worker(config, telemetry=telemetry))
    # skip interpreter teardown, during which the Temporal client's native threads
    # can abort the process (temporalio/sdk-python#300)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
