"""What a run may choose about its sandbox, per provider: `RunRequest.sandbox.options`.

Each provider has its own options model; a run's options are checked against its provider's
model when the request is made (an unknown or malformed option is refused, naming it), and
the provider reads them again when it creates the sandbox. Unset options fall back to the
worker's settings (FARLINE_DOCKER_*, FARLINE_MODAL_*, ...). What the worker alone decides
(credentials, the Docker network of networked sandboxes, API endpoints) is never an option.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ProviderName = Literal["local", "docker", "modal", "e2b", "daytona"]
PROVIDERS: tuple[str, ...] = ("local", "docker", "modal", "e2b", "daytona")
# providers with a native pause that keeps the sandbox, files and all, for its next use (E2B's
# pause, Daytona's stop): a paused or idle run suspends its sandbox instead of tearing it down, and
# goes on in it without a restore
SUSPENDABLE: frozenset[str] = frozenset({"e2b", "daytona"})


class ProviderOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalOptions(ProviderOptions):
    """The local (bubblewrap) provider has no options."""


class DockerOptions(ProviderOptions):
    image: str | None = Field(
        default=None, min_length=1, description="The image (default FARLINE_DOCKER_IMAGE)."
    )
    user: str | None = Field(
        default=None, min_length=1, description="The user commands run as (default the image's)."
    )
    cpus: float | None = Field(default=None, gt=0, description="CPUs the container may use.")
    memory: str | None = Field(
        default=None, pattern=r"^[0-9]+[bkmgBKMG]?$", description="Memory of the container ('2g'), no swap."
    )
    pids_limit: int | None = Field(default=None, ge=16, description="Processes and threads it may hold.")


class ModalOptions(ProviderOptions):
    image: str | None = Field(
        default=None,
        min_length=1,
        description="A registry image ('python:3.12-slim'); default FARLINE_MODAL_IMAGE.",
    )
    cpu: float | None = Field(default=None, gt=0, description="Cores reserved for the sandbox.")
    memory_mib: int | None = Field(default=None, ge=128, description="Memory of the sandbox, in MiB.")
    region: str | None = Field(default=None, min_length=1, description="Where it runs ('us-east').")
    timeout_s: int | None = Field(
        default=None,
        ge=60,
        le=86_400,
        description="Its longest life, in seconds (default FARLINE_MODAL_TIMEOUT_S).",
    )


class E2BOptions(ProviderOptions):
    template: str | None = Field(
        default=None,
        min_length=1,
        description="The E2B template (image, CPU, memory); default FARLINE_E2B_TEMPLATE.",
    )
    timeout_s: int | None = Field(
        default=None,
        ge=60,
        le=86_400,
        description="Its life, in seconds, renewed by use (default FARLINE_E2B_TIMEOUT_S).",
    )


class DaytonaOptions(ProviderOptions):
    image: str | None = Field(default=None, min_length=1, description="An image to build the sandbox from.")
    snapshot: str | None = Field(
        default=None,
        min_length=1,
        description="A Daytona snapshot to start from (default FARLINE_DAYTONA_SNAPSHOT).",
    )
    cpu: int | None = Field(default=None, ge=1, description="Cores (with `image` only).")
    memory_gib: int | None = Field(default=None, ge=1, description="Memory in GiB (with `image` only).")
    disk_gib: int | None = Field(default=None, ge=1, description="Disk in GiB (with `image` only).")
    auto_stop_minutes: int | None = Field(
        default=None,
        ge=0,
        description="Stop it after this many idle minutes (0: never); it is started again when used.",
    )
    target: str | None = Field(default=None, min_length=1, description="The region ('us', 'eu').")


OptionsT = TypeVar("OptionsT", bound="ProviderOptions")

OPTIONS_MODELS: dict[str, type[ProviderOptions]] = {
    "local": LocalOptions,
    "docker": DockerOptions,
    "modal": ModalOptions,
    "e2b": E2BOptions,
    "daytona": DaytonaOptions,
}


class OptionsError(ValueError):
    """Options a provider does not take, or malformed ones; the message names each."""


def parse_options(model: type[OptionsT], provider: str, options: dict[str, Any]) -> OptionsT:
    """The options as `model`, or OptionsError naming what is wrong and what the provider takes."""
    try:
        return model.model_validate(options)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in item['loc']) or 'options'}: {item['msg']}"
            for item in error.errors()
        )
        known = ", ".join(model.model_fields) or "none"
        raise OptionsError(
            f"sandbox options for provider {provider!r}: {problems} (it takes: {known})"
        ) from None


def check_options(provider: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options as given, once they fit the provider's model (OptionsError otherwise)."""
    model = OPTIONS_MODELS.get(provider)
    if model is None:
        raise OptionsError(f"unknown sandbox provider {provider!r}: use one of {', '.join(PROVIDERS)}")
    parse_options(model, provider, options)
    return options
