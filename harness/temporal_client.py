"""Connecting to Temporal with Farline's data converter (pydantic models as payloads, big
payloads in external storage)."""

from __future__ import annotations

from temporalio.client import Client

from harness.config import FarlineConfig
from harness.payload_storage import farline_data_converter


async def connect(config: FarlineConfig) -> Client:
    try:
        return await Client.connect(
            config.temporal_address,
            namespace=config.temporal_namespace,
            data_converter=farline_data_converter(config),
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
