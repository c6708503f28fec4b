"""Worker-side configuration, read from the environment.

Secrets (the model API key) live here, on the worker, and never enter a
workflow's input, its history or a sandbox.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import socket
from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator

from harness.sandbox_options import PROVIDERS
from harness.specs import ModelApi


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "farline"


class ConfigError(ValueError):
    """A setting in the environment is invalid; the message names the variable."""


class FarlineConfig(BaseModel):
    """Every setting a user can give through the environment (see the README's table)."""

    temporal_address: str = Field(default="127.0.0.1:7233")
    temporal_namespace: str = Field(default="default")
    task_queue: str = Field(default="farline")
    data_dir: Path = Field(default_factory=_default_data_dir)
    ui_url: str = Field(default="http://127.0.0.1:8233")

    openai_base_url: str | None = Field(default=None)
    openai_api_key: SecretStr | None = Field(default=None)
    model: str = Field(default="gpt-5.1")
    model_api: ModelApi = Field(default="responses")
    model_timeout_s: float = Field(default=600.0, gt=0)

    # send each local sandbox's activities to its machine's own queue (needed with workers on
    # several machines); off, they share the run's queue and gain eager activity dispatch
    pin_local_sandboxes: bool = Field(default=True)
    bwrap_path: str = Field(default="bwrap")
    sandbox_uid: int = Field(default=65534, ge=1)

    # the sandbox providers this worker offers, comma-separated (local, docker, modal, e2b, daytona);
    # default: local, and docker when FARLINE_DOCKER_IMAGE is set
    providers: str | None = Field(default=None)

    # the docker provider (sandbox_providers/docker.py, the `docker` extra): containers of an engine
    # that speaks the Docker API (Docker, or `podman system service`); offered when an image is set
    docker_image: str | None = Field(default=None)
    docker_url: str | None = Field(default=None)  # default: DOCKER_HOST, else the engine's usual socket
    docker_user: str | None = Field(default=None)  # default: the image's
    docker_cpus: float | None = Field(default=None, gt=0)
    docker_memory: str | None = Field(default=None)  # "2g", "512m"; no swap on top
    docker_pids_limit: int | None = Field(default=1024, ge=1)
    docker_network: str = Field(default="bridge")  # the network of sandboxes that may have one

    # the modal provider (sandbox_providers/modal.py, the `modal` extra; MODAL_TOKEN_ID and _SECRET)
    modal_image: str = Field(default="python:3.12-slim", min_length=1)  # a registry image
    modal_app: str = Field(default="farline", min_length=1)  # the Modal App of the sandboxes
    modal_environment: str | None = Field(default=None)  # default the SDK's (MODAL_ENVIRONMENT)
    modal_cpu: float | None = Field(default=None, gt=0)
    modal_memory_mib: int | None = Field(default=None, ge=128)
    modal_region: str | None = Field(default=None)
    modal_timeout_s: int = Field(default=86_400, ge=60, le=86_400)  # a sandbox's longest life
    modal_idle_timeout_s: int | None = Field(default=None, ge=60)
    modal_exec_timeout_s: int = Field(default=600, ge=1)  # the longest one operation may take

    # the e2b provider (sandbox_providers/e2b.py, the `e2b` extra; E2B_API_KEY in the environment)
    e2b_template: str = Field(default="base", min_length=1)  # the template: image, CPU and memory
    e2b_timeout_s: int = Field(default=3600, ge=60, le=86_400)  # a sandbox's life, renewed by use
    e2b_user: str = Field(default="user", min_length=1)  # the template's user commands run as
    e2b_pause_on_timeout: bool = Field(default=False)  # pause (not kill) a sandbox whose life ran out

    # the daytona provider (sandbox_providers/daytona.py, the `daytona` extra; DAYTONA_API_KEY)
    daytona_snapshot: str | None = Field(default=None)  # a Daytona snapshot to start from
    daytona_image: str | None = Field(default=None)  # or an image (not both)
    daytona_cpu: int | None = Field(default=None, ge=1)  # with an image only
    daytona_memory_gib: int | None = Field(default=None, ge=1)
    daytona_disk_gib: int | None = Field(default=None, ge=1)
    daytona_target: str | None = Field(default=None)  # the region
    daytona_auto_stop_minutes: int = Field(default=15, ge=0)  # 0: never
    daytona_os_user: str | None = Field(default=None)  # default Daytona's ("daytona")

    log_format: str = Field(default="auto")  # auto, json or console

    # where snapshots of workspaces go: "local" (a directory) or "s3" (any S3-compatible store)
    snapshot_store: Literal["local", "s3"] = Field(default="local")
    snapshot_dir: Path | None = Field(default=None)  # default: <data dir>/snapshots
    s3_bucket: str | None = Field(default=None)
    s3_prefix: str = Field(default="farline/")
    s3_endpoint_url: str | None = Field(default=None)
    s3_region: str | None = Field(default=None)
    s3_access_key_id: str | None = Field(default=None)
    s3_secret_access_key: SecretStr | None = Field(default=None)

    # Temporal external payload storage: payloads above the threshold leave the history
    payload_store: Literal["local", "s3"] | None = Field(default=None)  # default: the snapshot store's kind
    payload_dir: Path | None = Field(default=None)  # default: <data dir>/payloads
    payload_threshold_bytes: int = Field(default=256 * 1024, ge=0, le=2_000_000)

    # the starting workspace (manifests, skills): folders of the worker's disk a run may copy from
    # (os.pathsep-separated; empty: none), and the most it may hold
    local_sources: str = Field(default="")
    manifest_max_bytes: int = Field(default=2 * 1024**3, gt=0)

    # observability (harness/telemetry.py): a Prometheus endpoint with the Temporal SDK's metrics and
    # Farline's (off without a port), and OpenTelemetry spans of workflows and activities (off: none)
    metrics_port: int | None = Field(default=None, ge=1, le=65535)
    metrics_host: str = Field(default="127.0.0.1")
    otel_exporter: Literal["none", "otlp", "console"] = Field(default="none")
    otel_endpoint: str | None = Field(default=None)  # default: the OTLP exporter's (localhost:4317)
    otel_service_name: str = Field(default="farline-worker", min_length=1)

    # field name -> environment variable that sets it
    ENVIRONMENT: ClassVar[dict[str, str]] = {
        "temporal_address": "FARLINE_TEMPORAL_ADDRESS",
        "temporal_namespace": "FARLINE_TEMPORAL_NAMESPACE",
        "task_queue": "FARLINE_TASK_QUEUE",
        "data_dir": "FARLINE_DATA_DIR",
        "ui_url": "FARLINE_UI_URL",
        "openai_base_url": "OPENAI_BASE_URL",
        "openai_api_key": "OPENAI_API_KEY",
        "model": "FARLINE_MODEL",
        "model_api": "FARLINE_MODEL_API",
        "model_timeout_s": "FARLINE_MODEL_TIMEOUT_S",
        "pin_local_sandboxes": "FARLINE_PIN_LOCAL_SANDBOXES",
        "bwrap_path": "FARLINE_BWRAP",
        "sandbox_uid": "FARLINE_SANDBOX_UID",
        "providers": "FARLINE_PROVIDERS",
        "docker_image": "FARLINE_DOCKER_IMAGE",
        "docker_url": "FARLINE_DOCKER_URL",
        "docker_user": "FARLINE_DOCKER_USER",
        "docker_cpus": "FARLINE_DOCKER_CPUS",
        "docker_memory": "FARLINE_DOCKER_MEMORY",
        "docker_pids_limit": "FARLINE_DOCKER_PIDS_LIMIT",
        "docker_network": "FARLINE_DOCKER_NETWORK",
        "modal_image": "FARLINE_MODAL_IMAGE",
        "modal_app": "FARLINE_MODAL_APP",
        "modal_environment": "FARLINE_MODAL_ENVIRONMENT",
        "modal_cpu": "FARLINE_MODAL_CPU",
        "modal_memory_mib": "FARLINE_MODAL_MEMORY_MIB",
        "modal_region": "FARLINE_MODAL_REGION",
        "modal_timeout_s": "FARLINE_MODAL_TIMEOUT_S",
        "modal_idle_timeout_s": "FARLINE_MODAL_IDLE_TIMEOUT_S",
        "modal_exec_timeout_s": "FARLINE_MODAL_EXEC_TIMEOUT_S",
        "e2b_template": "FARLINE_E2B_TEMPLATE",
        "e2b_timeout_s": "FARLINE_E2B_TIMEOUT_S",
        "e2b_user": "FARLINE_E2B_USER",
        "e2b_pause_on_timeout": "FARLINE_E2B_PAUSE_ON_TIMEOUT",
        "daytona_snapshot": "FARLINE_DAYTONA_SNAPSHOT",
        "daytona_image": "FARLINE_DAYTONA_IMAGE",
        "daytona_cpu": "FARLINE_DAYTONA_CPU",
        "daytona_memory_gib": "FARLINE_DAYTONA_MEMORY_GIB",
        "daytona_disk_gib": "FARLINE_DAYTONA_DISK_GIB",
        "daytona_target": "FARLINE_DAYTONA_TARGET",
        "daytona_auto_stop_minutes": "FARLINE_DAYTONA_AUTO_STOP_MINUTES",
        "daytona_os_user": "FARLINE_DAYTONA_OS_USER",
        "log_format": "FARLINE_LOG_FORMAT",
        "snapshot_store": "FARLINE_SNAPSHOT_STORE",
        "snapshot_dir": "FARLINE_SNAPSHOT_DIR",
        "s3_bucket": "FARLINE_S3_BUCKET",
        "s3_prefix": "FARLINE_S3_PREFIX",
        "s3_endpoint_url": "FARLINE_S3_ENDPOINT",
        "s3_region": "FARLINE_S3_REGION",
        "s3_access_key_id": "FARLINE_S3_ACCESS_KEY_ID",
        "s3_secret_access_key": "FARLINE_S3_SECRET_ACCESS_KEY",
        "payload_store": "FARLINE_PAYLOAD_STORE",
        "payload_dir": "FARLINE_PAYLOAD_DIR",
        "payload_threshold_bytes": "FARLINE_PAYLOAD_THRESHOLD_BYTES",
        "local_sources": "FARLINE_LOCAL_SOURCES",
        "manifest_max_bytes": "FARLINE_MANIFEST_MAX_BYTES",
        "metrics_port": "FARLINE_METRICS_PORT",
        "metrics_host": "FARLINE_METRICS_HOST",
        "otel_exporter": "FARLINE_OTEL_EXPORTER",
        "otel_endpoint": "FARLINE_OTEL_ENDPOINT",
        "otel_service_name": "FARLINE_OTEL_SERVICE_NAME",
    }

    @field_validator("metrics_host")
    @classmethod
    def _metrics_host_is_an_address(cls, host: str) -> str:
        # the SDK's metrics server binds an address, not a name
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(
                f"{host!r} is not an IP address: use 127.0.0.1 (this machine only) or 0.0.0.0 (every "
                "interface)"
            ) from None
        return host

    @field_validator("otel_endpoint")
    @classmethod
    def _otel_endpoint_is_a_url(cls, endpoint: str | None) -> str | None:
        if endpoint is not None and not endpoint.startswith(("http://", "https://")):
            raise ValueError(f"{endpoint!r} is not a URL: give the collector's, e.g. http://localhost:4317")
        return endpoint

    @model_validator(mode="after")
    def _s3_needs_a_bucket(self) -> FarlineConfig:
        for variable, kind in (
            ("FARLINE_SNAPSHOT_STORE", self.snapshot_store),
            ("FARLINE_PAYLOAD_STORE", self.effective_payload_store),
        ):
            if kind == "s3" and not self.s3_bucket:
                raise ValueError(f"{variable}=s3 needs FARLINE_S3_BUCKET (and usually FARLINE_S3_ENDPOINT)")
        return self

    @model_validator(mode="after")
    def _otel_endpoint_needs_otlp(self) -> FarlineConfig:
        if self.otel_endpoint is not None and self.otel_exporter != "otlp":
            raise ValueError(
                f"FARLINE_OTEL_ENDPOINT is set but FARLINE_OTEL_EXPORTER is {self.otel_exporter!r}: "
                "set FARLINE_OTEL_EXPORTER=otlp to send spans there"
            )
        return self

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, value: str | None) -> str | None:
        if value is None:
            return None
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in PROVIDERS]
        if unknown or not names:
            raise ValueError(f"{', '.join(unknown) or 'nothing'}: list some of {', '.join(PROVIDERS)}")
        return ",".join(dict.fromkeys(names))

    @model_validator(mode="after")
    def _docker_needs_an_image(self) -> FarlineConfig:
        if "docker" in self.offered_providers and self.docker_image is None:
            raise ValueError(
                "FARLINE_PROVIDERS offers docker: set FARLINE_DOCKER_IMAGE (its sandboxes' image)"
            )
        return self

    @property
    def offered_providers(self) -> list[str]:
        """The providers this worker drives, in order."""
        if self.providers is not None:
            return self.providers.split(",")
        return ["local", *(["docker"] if self.docker_image is not None else [])]

    @property
    def sandboxes_dir(self) -> Path:
        return self.data_dir / "sandboxes"

    @property
    def snapshots_dir(self) -> Path:
        return self.snapshot_dir or self.data_dir / "snapshots"

    def s3_credentials(
        self, name: str | None, environ: dict[str, str] | None = None
    ) -> tuple[str | None, str | None]:
        """The keys of a named credential set (FARLINE_CREDENTIALS_<NAME>_*), or the store's own.

        Manifests and skills name credentials; the keys stay in the worker's environment.
        """
        if name is None:
            secret = self.s3_secret_access_key
            return self.s3_access_key_id, secret.get_secret_value() if secret is not None else None
        env = os.environ if environ is None else environ
        prefix = f"FARLINE_CREDENTIALS_{name.upper()}_"
        key_id, secret_key = env.get(prefix + "ACCESS_KEY_ID"), env.get(prefix + "SECRET_ACCESS_KEY")
        if not key_id or not secret_key:
            raise ConfigError(
                f"credentials {name!r} are not set on this worker: set {prefix}ACCESS_KEY_ID and "
                f"{prefix}SECRET_ACCESS_KEY in its environment"
            )
        return key_id, secret_key

    @property
    def local_source_roots(self) -> list[Path]:
        return [Path(part) for part in self.local_sources.split(os.pathsep) if part.strip()]

    @property
    def git_cache_dir(self) -> Path:
        return self.data_dir / "git"

    @property
    def effective_payload_store(self) -> Literal["local", "s3"]:
        """Payloads follow the snapshots unless told otherwise: workers on several machines
        need both shared."""
        return self.payload_store or self.snapshot_store

    @property
    def payloads_dir(self) -> Path:
        return self.payload_dir or self.data_dir / "payloads"

    @property
    def local_sandbox_task_queue(self) -> str:
        """The task queue of this machine's local sandboxes (stable across worker restarts).

        Local sandboxes live on one machine, in one data dir; every activity on them goes to
        this queue, which only workers on that machine with that data dir poll.
        """
        where = f"{socket.gethostname()}:{self.data_dir.resolve()}"
        return f"{self.task_queue}.local.{hashlib.sha256(where.encode()).hexdigest()[:12]}"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> FarlineConfig:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for name, variable in cls.ENVIRONMENT.items():
            if env.get(variable):
                values[name] = env[variable]
        try:
            return cls(**values)
        except ValidationError as error:
            problems = []
            for problem in error.errors():
                field = str(problem["loc"][0]) if problem["loc"] else ""
                message = problem["msg"].removeprefix("Value error, ")
                variable = cls.ENVIRONMENT.get(field)
                problems.append(f"{variable}: {message}" if variable else message)
            raise ConfigError("bad setting: " + "; ".join(problems)) from None
