"""Shared test fixtures: one real Temporal dev server per session, scripted model servers, workers."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import pytest
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from harness.config import FarlineConfig
from harness.devserver import temporal_binary
from harness.scripted_model import Script, ScriptedModelServer
from harness.search_attributes import dev_server_args, ensure_search_attributes
from worker import build_worker

# the fixtures of the tests that drive a local sandbox provider directly: root, provider, sandbox
pytest_plugins = ["tests.sandbox_support", "tests.s3_server", "tests.podman_service"]


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_binary(),
        data_converter=pydantic_data_converter,
        dev_server_log_level="error",
        dev_server_extra_args=dev_server_args(),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def client(temporal_env: WorkflowEnvironment) -> Client:
    return temporal_env.client


@pytest.fixture
def scripted_model() -> Iterator[Callable[[Script], ScriptedModelServer]]:
    """Start a scripted model server for a script; stopped at the end of the test."""
    servers: list[ScriptedModelServer] = []

    def start(script: Script) -> ScriptedModelServer:
        server = ScriptedModelServer(script)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def make_config(client: Client, tmp_path: Path) -> Callable[..., FarlineConfig]:
    """A worker config on its own task queue and data dir, pointed at a model server."""

    def make(model_server: ScriptedModelServer, **overrides: object) -> FarlineConfig:
        values: dict[str, object] = {
            "temporal_address": client.service_client.config.target_host,
            "task_queue": f"test-{uuid.uuid4().hex[:10]}",
            "data_dir": tmp_path / "farline",
            "openai_base_url": model_server.base_url,
            "model": "scripted",
        }
        values.update(overrides)
        return FarlineConfig.model_validate(values)

    return make


@pytest.fixture
def running_worker(client: Client) -> Callable[..., AbstractAsyncContextManager[None]]:
    """An in-process worker for a config, as an async context manager."""

    @asynccontextmanager
    async def run(config: FarlineConfig, **options: object) -> AsyncIterator[None]:
        await ensure_search_attributes(client, config.temporal_namespace, config.task_queue)
        async with build_worker(client, config, **options):
            yield

    return run
