"""A worker's metrics and traces: one Prometheus endpoint, OpenTelemetry spans.

Metrics: with FARLINE_METRICS_PORT set, the worker's Temporal runtime serves Prometheus
metrics; that endpoint carries the Temporal SDK's own metrics (`temporal_*`) and Farline's
(`farline_*`), which are recorded through the SDK's metric meters: `activity.metric_meter()`
in activities, `workflow.metric_meter()` in workflows (which records nothing while a workflow
replays, so a worker restart counts nothing twice). Without a port the runtime has no metrics
and every recording below does nothing.

Tracing: with FARLINE_OTEL_EXPORTER set, the Temporal SDK's `TracingInterceptor` makes spans of
workflows and activities, exported to an OTLP collector or the console. The OpenTelemetry
packages (the `otel` extra) are imported only then.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from temporalio import activity, workflow
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

from harness.config import ConfigError, FarlineConfig
from harness.specs import Usage

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

# Farline's metrics (their names on /metrics; the SDK adds namespace, task_queue and
# activity_type or workflow_type labels to each)
MODEL_CALLS = "farline_model_calls"
MODEL_INPUT_TOKENS = "farline_model_input_tokens"
MODEL_OUTPUT_TOKENS = "farline_model_output_tokens"
MODEL_CALL_SECONDS = "farline_model_call_seconds"
TOOL_CALLS = "farline_tool_calls"
SNAPSHOT_BYTES_UPLOADED = "farline_snapshot_bytes_uploaded"
SNAPSHOT_SECONDS = "farline_snapshot_seconds"
RESTORE_SECONDS = "farline_restore_seconds"
REHYDRATIONS = "farline_rehydrations"
APPROVALS_REQUESTED = "farline_approvals_requested"
APPROVALS_DECIDED = "farline_approvals_decided"

# the SDK's default buckets (50 to 10,000) are for milliseconds; these histograms are in seconds
SECONDS_BUCKETS: Sequence[float] = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
SECONDS_HISTOGRAMS = (MODEL_CALL_SECONDS, SNAPSHOT_SECONDS, RESTORE_SECONDS)

# the activities that run a model's tool call: activity type -> the tool (None: the request names it)
TOOL_ACTIVITIES: dict[str, str | None] = {
    "exec_command": "exec_command",
    "write_stdin": "write_stdin",
    "apply_patch": "apply_patch",
    "view_image": "view_image",
    "run_function_tool": None,
}


# -- recording, in activities ---------------------------------------------------------------------


def record_model_call(model: str, api: str, seconds: float, outcome: str, usage: Usage | None = None) -> None:
    """One model HTTP call; `outcome` is "ok" or the type of the error the activity raises."""
    meter = activity.metric_meter().with_additional_attributes({"model": model, "api": api})
    meter.create_counter(MODEL_CALLS, "Model HTTP calls, by outcome").add(1, {"outcome": outcome})
    meter.create_histogram_float(MODEL_CALL_SECONDS, "Duration of model HTTP calls", "s").record(seconds)
    if usage is not None:
        meter.create_counter(MODEL_INPUT_TOKENS, "Input tokens the model server reported").add(
            usage.input_tokens
        )
        meter.create_counter(MODEL_OUTPUT_TOKENS, "Output tokens the model server reported").add(
            usage.output_tokens
        )


def record_snapshot(uploaded_bytes: int, seconds: float) -> None:
    """One snapshot of a workspace taken (new or unchanged)."""
    meter = activity.metric_meter()
    meter.create_counter(SNAPSHOT_BYTES_UPLOADED, "Bytes snapshots uploaded to the store", "By").add(
        uploaded_bytes
    )
    meter.create_histogram_float(SNAPSHOT_SECONDS, "Duration of workspace snapshots", "s").record(seconds)


def record_restore(seconds: float) -> None:
    """One snapshot restored into a sandbox."""
    activity.metric_meter().create_histogram_float(
        RESTORE_SECONDS, "Duration of snapshot restores into a sandbox", "s"
    ).record(seconds)


class ToolCallMetrics(Interceptor):
    """Counts the executions of the activities that run the model's tool calls, by tool and outcome.

    An outcome is "error" when the activity raised or reported `ok=False` (a patch that did not
    apply, a function tool that failed or was refused); a command that exits non-zero is "ok".
    """

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ToolCallCounter(next)


class _ToolCallCounter(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        activity_type = activity.info().activity_type
        if activity_type not in TOOL_ACTIVITIES:
            return await self.next.execute_activity(input)
        tool = TOOL_ACTIVITIES[activity_type] or getattr(input.args[0], "tool", activity_type)
        outcome = "error"
        try:
            result = await self.next.execute_activity(input)
            outcome = "ok" if getattr(result, "ok", True) else "error"
            return result
        finally:
            activity.metric_meter().create_counter(
                TOOL_CALLS, "Executions of tool-call activities, by tool and outcome"
            ).add(1, {"tool": tool, "outcome": outcome})


# -- recording, in workflows (nothing is recorded during replay) -----------------------------------


def count_rehydration(provider: str) -> None:
    """A run's sandbox was lost and the next one starts from the newest snapshot."""
    workflow.metric_meter().create_counter(
        REHYDRATIONS, "Sandboxes lost and replaced from the newest snapshot"
    ).add(1, {"provider": provider})


def count_approval_requested(tool: str) -> None:
    workflow.metric_meter().create_counter(
        APPROVALS_REQUESTED, "Tool calls that began waiting for a person's approval"
    ).add(1, {"tool": tool})


def count_approval_decided(tool: str, outcome: str) -> None:
    """An approval wait ended: "approved", "declined" (also on timeout) or "cancelled" (the run was)."""
    workflow.metric_meter().create_counter(
        APPROVALS_DECIDED, "Approval waits that ended, by outcome (a timed-out wait is a decline)"
    ).add(1, {"tool": tool, "outcome": outcome})


# -- the worker's telemetry -----------------------------------------------------------------------


def metrics_runtime(config: FarlineConfig) -> Runtime | None:
    """A Temporal runtime serving Prometheus metrics on the configured address, or None (off)."""
    if config.metrics_port is None:
        return None
    host = f"[{config.metrics_host}]" if ":" in config.metrics_host else config.metrics_host
    address = f"{host}:{config.metrics_port}"
    prometheus = PrometheusConfig(
        bind_address=address, histogram_bucket_overrides=dict.fromkeys(SECONDS_HISTOGRAMS, SECONDS_BUCKETS)
    )
    try:
        return Runtime(telemetry=TelemetryConfig(metrics=prometheus))
    except ValueError as error:
        raise ConfigError(
            f"FARLINE_METRICS_PORT: cannot serve metrics on {address} ({error}); choose a free port "
            "(or check FARLINE_METRICS_HOST)"
        ) from None


@dataclass
class Tracing:
    """The tracer provider and the Temporal interceptor that makes spans with it."""

    provider: TracerProvider
    interceptor: Any  # temporalio.contrib.opentelemetry.TracingInterceptor

    def install_globally(self) -> None:
        """Make the provider OpenTelemetry's global one, so that spans the application's tools
        make themselves join the activity's trace."""
        from opentelemetry import trace

        trace.set_tracer_provider(self.provider)


def start_tracing(config: FarlineConfig, exporter: SpanExporter | None = None) -> Tracing | None:
    """Tracing as configured (None: off); `exporter` replaces the configured exporter (tests)."""
    if config.otel_exporter == "none":
        return None
    missing = f"FARLINE_OTEL_EXPORTER={config.otel_exporter} needs the OpenTelemetry packages"
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
        from temporalio.contrib.opentelemetry import TracingInterceptor
    except ImportError as error:
        raise ConfigError(f"{missing} ({error.name} is missing): pip install 'farline[otel]'") from None
    provider = TracerProvider(resource=Resource.create({"service.name": config.otel_service_name}))
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif config.otel_exporter == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    else:
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
        except ImportError as error:
            raise ConfigError(f"{missing} ({error.name} is missing): pip install 'farline[otel]'") from None
        # without an endpoint the exporter's own default and the OTEL_EXPORTER_OTLP_* variables apply
        otlp = OTLPSpanExporter(endpoint=config.otel_endpoint) if config.otel_endpoint else OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(otlp))
    # runs started without a traced client (the farline CLI, the Temporal CLI, schedules) get spans too
    interceptor = TracingInterceptor(provider.get_tracer("farline"), always_create_workflow_spans=True)
    return Tracing(provider=provider, interceptor=interceptor)


@dataclass
class Telemetry:
    """What a worker's client is connected with: the metrics runtime and the tracing interceptor."""

    runtime: Runtime | None = None
    tracing: Tracing | None = None

    @property
    def interceptors(self) -> list[Any]:
        """Client interceptors (a worker built on the client uses them too)."""
        return [self.tracing.interceptor] if self.tracing is not None else []

    def close(self) -> None:
        """Send the spans still buffered."""
        if self.tracing is not None:
            self.tracing.provider.shutdown()


def start_telemetry(config: FarlineConfig, span_exporter: SpanExporter | None = None) -> Telemetry:
    """The worker's telemetry as configured; a ConfigError names the setting that cannot work."""
    return Telemetry(runtime=metrics_runtime(config), tracing=start_tracing(config, span_exporter))
