"""Connecting to Temporal with Farline's data converter (pydantic models as payloads, big
payloads in external storage) and, for a worker, its telemetry."""

from __future__ import annotations

from temporalio.client import Client

from harness.config import FarlineConfig
from harness.payload_storage import farline_data_converter
from harness.telemetry import Telemetry


async def connect(config: FarlineConfig, telemetry: Telemetry | None = None) -> Client:
    """A client; with a worker's telemetry, on its metrics runtime and with its tracing interceptor
    (which the workers built on the client use as well)."""
    telemetry = telemetry or Telemetry()
    try:
        return await Client.connect(
            config.temporal_address,
            namespace=config.temporal_namespace,
            data_converter=farline_data_converter(config),
            interceptors=telemetry.interceptors,
            runtime=telemetry.runtime,
        )
    except RuntimeError as error:
        raise RuntimeError(
            f"cannot reach Temporal at {config.temporal_address}: {error}. Start one with `farline dev`, "
            "or set FARLINE_TEMPORAL_ADDRESS to a running server."
        ) from None


def with_farline_converter(client: Client, config: FarlineConfig) -> Client:
    """The same connection, reading and writing payloads with Farline's data converter."""
    settings = client.config()
    settings["data_converter"] = farline_data_converter(config)
    return Client(**settings)
