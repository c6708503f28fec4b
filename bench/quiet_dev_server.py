"""A Temporal dev server for the benchmarks, whose startup banner does not mix into their JSON lines."""

from __future__ import annotations

import os
import sys

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from harness.devserver import temporal_binary


async def start_quiet_dev_server() -> WorkflowEnvironment:
    """The dev server prints a banner on stdout; keep stdout for the JSON lines."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        return await WorkflowEnvironment.start_local(
            dev_server_existing_path=temporal_binary(),
            data_converter=pydantic_data_converter,
            dev_server_log_level="error",
        )
    finally:
        os.dup2(saved, 1)
        os.close(saved)
