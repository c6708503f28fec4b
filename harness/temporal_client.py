"""Connecting to Temporal with Farline's data converter (pydantic models as payloads)."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from harness.config import FarlineConfig


async def connect(config: FarlineConfig) -> Client:
    try:
        return await Client.connect(
            config.temporal_address,
            namespace=config.temporal_namespace,
            data_converter=pydantic_data_converter,
        )
    except RuntimeError as error:
        raise RuntimeError(
            f"cannot reach Temporal at {config.temporal_address}: {error}. Start one with `farline dev`, "
            "or set FARLINE_TEMPORAL_ADDRESS to a running server."
        ) from None
