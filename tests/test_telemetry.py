"""Observability: the metrics endpoint (the SDK's metrics and Farline's), tracing, bad settings."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle

from harness.approvals import ApprovalDecision, PendingApproval
from harness.config import ConfigError, FarlineConfig
from harness.runs import start_run
from harness.search_attributes import ensure_search_attributes
from harness.specs import RunRequest, RunState, RunStatus
from harness.telemetry import start_telemetry
from harness.temporal_client import connect
from sandbox_providers.base import SandboxRef
from sandbox_providers.local import LocalProvider
from tests.script_helpers import call, exec_call, script, tool_outputs
from tests.worker_processes import wait_for
from worker import build_worker

REPO = Path(__file__).resolve().parent.parent
_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def samples(text: str, name: str, **labels: str) -> Iterator[float]:
    """The values of metric `name` in a Prometheus text page whose labels include `labels`."""
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match["name"] != name:
            continue
        found = dict(_LABEL.findall(match["labels"] or ""))
        if all(found.get(key) == value for key, value in labels.items()):
            yield float(match["value"])


def total(text: str, name: str, **labels: str) -> float:
    return sum(samples(text, name, **labels))


async def scrape(port: int) -> str:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    response.raise_for_status()
    return response.text


async def first_pending(handle: WorkflowHandle) -> PendingApproval:
    async def some() -> bool:
        return bool(await handle.query("pending_approvals", result_type=list[PendingApproval]))

    await wait_for(some)
    return (await handle.query("pending_approvals", result_type=list[PendingApproval]))[0]


async def test_the_metrics_endpoint_shows_farlines_metrics_and_the_sdks(
    client: Client, scripted_model, make_config
) -> None:
    server = scripted_model(
        script(
            exec_call("echo drafted > note.txt && cat note.txt"),
            call("update_status", task_id=1, status="DONE"),
            exec_call("cat note.txt"),
            {"message": "done: {last_tool_output}"},
        )
    )
    port = free_port()
    config = make_config(server, metrics_port=port)
    # the worker's client runs on the metrics runtime: the endpoint is the worker's
    metered = await connect(config, start_telemetry(config))
    await ensure_search_attributes(metered, config.temporal_namespace, config.task_queue)
    async with build_worker(metered, config):
        handle = await start_run(client, config, RunRequest(agent="tracker", task="finish task 1"))
        waiting = await first_pending(handle)
        while_waiting = await scrape(port)
        # the sandbox dies while the run waits: the next command rehydrates it from the snapshot
        sandbox = (await handle.query("status", result_type=RunStatus)).sandbox_id
        assert sandbox is not None
        await LocalProvider(config.sandboxes_dir).destroy(SandboxRef(provider="local", sandbox_id=sandbox))
        await handle.signal("approve", ApprovalDecision(call_id=waiting.call_id))
        result = await asyncio.wait_for(handle.result(), timeout=60)
        after = await scrape(port)
    assert result.state is RunState.COMPLETED
    assert "sandbox was lost and replaced" in tool_outputs(server)[-1]

    # the run's queue (workflows, model, application tools); the sandbox's activities go to the
    # machine's own queue
    queue = {"task_queue": config.task_queue}
    local = {"task_queue": config.local_sandbox_task_queue}
    # approvals: one waiting (requested, none decided), then decided
    assert total(while_waiting, "farline_approvals_requested", tool="update_status", **queue) == 1
    assert total(while_waiting, "farline_approvals_decided", **queue) == 0
    assert total(after, "farline_approvals_decided", tool="update_status", outcome="approved", **queue) == 1
    # the model: four calls, their tokens and their durations
    assert total(after, "farline_model_calls", outcome="ok", model="scripted", api="responses", **queue) == 4
    assert total(after, "farline_model_input_tokens", model="scripted", **queue) > 0
    assert total(after, "farline_model_output_tokens", model="scripted", **queue) > 0
    assert total(after, "farline_model_call_seconds_count", activity_type="call_model", **queue) == 4
    # tool calls by tool and outcome (the command on the dead sandbox failed)
    assert total(after, "farline_tool_calls", tool="exec_command", outcome="ok", **local) == 1
    assert total(after, "farline_tool_calls", tool="exec_command", outcome="error", **local) == 1
    assert total(after, "farline_tool_calls", tool="update_status", outcome="ok", **queue) == 1
    # snapshots, the restore into the new sandbox, the rehydration
    assert total(while_waiting, "farline_snapshot_bytes_uploaded", **local) > 0
    assert total(after, "farline_snapshot_seconds_count", **local) >= 2
    assert total(after, "farline_restore_seconds_count", **local) == 1
    assert total(after, "farline_rehydrations", provider="local", **queue) == 1
    # seconds histograms have buckets in seconds, not the SDK's milliseconds
    assert list(samples(after, "farline_snapshot_seconds_bucket", le="0.5"))
    # the Temporal SDK's own metrics are on the same endpoint
    assert total(after, "temporal_workflow_completed", workflow_type="AgentRun", **queue) == 1
    assert total(after, "temporal_activity_execution_latency_count", activity_type="exec_command") == 2


async def test_a_cancelled_run_stops_counting_its_approvals_as_waiting(
    client: Client, scripted_model, make_config
) -> None:
    server = scripted_model(script(call("update_status", task_id=2, status="DONE"), {"message": "ok"}))
    port = free_port()
    config = make_config(server, metrics_port=port)
    metered = await connect(config, start_telemetry(config))
    await ensure_search_attributes(metered, config.temporal_namespace, config.task_queue)
    async with build_worker(metered, config):
        handle = await start_run(client, config, RunRequest(agent="tracker", task="finish task 2"))
        await first_pending(handle)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError):
            await handle.result()
        page = await scrape(port)
    assert total(page, "farline_approvals_requested", tool="update_status") == 1
    assert total(page, "farline_approvals_decided", tool="update_status", outcome="cancelled") == 1


async def test_tracing_makes_spans_of_the_workflow_and_its_activities(
    client: Client, scripted_model, make_config
) -> None:
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    server = scripted_model(script(exec_call("echo traced"), {"message": "{last_tool_output}"}))
    config = make_config(server, otel_exporter="console", otel_service_name="farline-test")
    spans = InMemorySpanExporter()
    telemetry = start_telemetry(config, span_exporter=spans)
    traced = await connect(config, telemetry)
    await ensure_search_attributes(traced, config.temporal_namespace, config.task_queue)
    async with build_worker(traced, config):
        handle = await start_run(traced, config, RunRequest(agent="demo", task="trace me"))
        result = await handle.result()
    telemetry.close()
    assert result.state is RunState.COMPLETED and "traced" in result.final_message

    finished = spans.get_finished_spans()
    names = {span.name for span in finished}
    assert {
        "StartWorkflow:AgentRun",
        "RunWorkflow:AgentRun",
        "StartActivity:call_model",
        "RunActivity:call_model",
        "RunActivity:exec_command",
        "RunActivity:snapshot_workspace",
    } <= names
    # one trace, from the client's start through the workflow to its activities
    start = next(span for span in finished if span.name == "StartWorkflow:AgentRun")
    run_model = next(span for span in finished if span.name == "RunActivity:call_model")
    assert run_model.context.trace_id == start.context.trace_id
    assert start.resource.attributes["service.name"] == "farline-test"


def test_otlp_sends_spans_to_the_configured_collector() -> None:
    pytest.importorskip("opentelemetry.exporter.otlp.proto.grpc")
    from concurrent.futures import ThreadPoolExecutor

    import grpc
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

    received: list[str] = []

    class Collector(trace_service_pb2_grpc.TraceServiceServicer):
        def Export(self, request, context):  # the gRPC method's name
            for resource_spans in request.resource_spans:
                service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    received.extend(f"{service['service.name']}/{span.name}" for span in scope_spans.spans)
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Collector(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        config = FarlineConfig.from_env(
            {"FARLINE_OTEL_EXPORTER": "otlp", "FARLINE_OTEL_ENDPOINT": f"http://127.0.0.1:{port}"}
        )
        telemetry = start_telemetry(config)
        assert telemetry.tracing is not None
        with telemetry.tracing.provider.get_tracer("test").start_as_current_span("a-span"):
            pass
        telemetry.close()
    finally:
        server.stop(grace=None)
    assert received == ["farline-worker/a-span"]


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"FARLINE_METRICS_PORT": "metrics"}, "FARLINE_METRICS_PORT: Input should be a valid integer"),
        ({"FARLINE_METRICS_PORT": "70000"}, "FARLINE_METRICS_PORT: Input should be less than or equal"),
        ({"FARLINE_METRICS_PORT": "9464", "FARLINE_METRICS_HOST": "localhost"}, "FARLINE_METRICS_HOST:"),
        ({"FARLINE_OTEL_EXPORTER": "jaeger"}, "FARLINE_OTEL_EXPORTER: Input should be 'none', 'otlp'"),
        (
            {"FARLINE_OTEL_EXPORTER": "otlp", "FARLINE_OTEL_ENDPOINT": "collector:4317"},
            "FARLINE_OTEL_ENDPOINT: 'collector:4317' is not a URL",
        ),
        ({"FARLINE_OTEL_ENDPOINT": "http://localhost:4317"}, "set FARLINE_OTEL_EXPORTER=otlp"),
    ],
)
def test_bad_observability_settings_are_refused_naming_the_variable(environ, message) -> None:
    with pytest.raises(ConfigError) as refused:
        FarlineConfig.from_env(environ)
    assert message in str(refused.value)


def test_a_metrics_port_in_use_stops_the_worker_naming_the_variable(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env = {
            **os.environ,
            "FARLINE_DATA_DIR": str(tmp_path),
            "FARLINE_METRICS_PORT": str(taken.getsockname()[1]),
        }
        worker = subprocess.run(
            [sys.executable, "-m", "worker"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
        )
    assert worker.returncode == 1
    assert "FARLINE_METRICS_PORT: cannot serve metrics on 127.0.0.1:" in worker.stderr


def test_tracing_without_the_opentelemetry_packages_says_what_to_install(monkeypatch) -> None:
    # a None entry in sys.modules makes the import fail as if the package were not installed
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
    config = FarlineConfig.from_env({"FARLINE_OTEL_EXPORTER": "console"})
    with pytest.raises(ConfigError) as refused:
        start_telemetry(config)
    assert "FARLINE_OTEL_EXPORTER=console needs the OpenTelemetry packages" in str(refused.value)
    assert "farline[otel]" in str(refused.value)
