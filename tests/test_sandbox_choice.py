"""Choosing a run's sandbox: the provider and its options, checked when the request is made, and
overrides that stay overrides on their way through Temporal."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from temporalio.contrib.pydantic import pydantic_data_converter

from harness.sandbox_options import OPTIONS_MODELS, PROVIDERS
from harness.specs import ModelSettings, RunRequest, SandboxMove, SandboxSettings


def through_temporal(request: RunRequest) -> RunRequest:
    converter = pydantic_data_converter.payload_converter
    [decoded] = converter.from_payloads(converter.to_payloads([request]), [RunRequest])
    return decoded


def test_every_provider_has_an_options_model() -> None:
    assert set(OPTIONS_MODELS) == set(PROVIDERS) == {"local", "docker", "modal", "e2b", "daytona"}


@pytest.mark.parametrize(
    ("provider", "options", "problem"),
    [
        ("docker", {"imag": "x"}, "imag: Extra inputs are not permitted (it takes: image, user, cpus"),
        ("docker", {"cpus": 0}, "cpus: Input should be greater than 0"),
        ("docker", {"memory": "lots"}, "memory: String should match pattern"),
        ("local", {"image": "x"}, "image: Extra inputs are not permitted (it takes: none)"),
        ("e2b", {"cpu": 2}, "cpu: Extra inputs are not permitted (it takes: template, timeout_s)"),
        ("modal", {"timeout_s": 5}, "timeout_s: Input should be greater than or equal to 60"),
        (
            "daytona",
            {"auto_stop_minutes": -1},
            "auto_stop_minutes: Input should be greater than or equal to 0",
        ),
    ],
)
def test_options_a_provider_does_not_take_are_refused_naming_them(
    provider: str, options: dict, problem: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        RunRequest(agent="demo", task="t", sandbox=SandboxSettings(provider=provider, options=options))
    assert problem in str(refused.value)
    with pytest.raises(ValidationError, match="sandbox options for provider"):
        SandboxMove(provider=provider, options=options)


def test_an_unknown_provider_is_refused() -> None:
    with pytest.raises(ValidationError, match="'local', 'docker', 'modal', 'e2b' or 'daytona'"):
        SandboxSettings.model_validate({"provider": "kubernetes"})


def test_a_partial_override_keeps_the_agents_other_settings_after_a_trip_through_temporal() -> None:
    """`farline run --network` on an agent that runs on docker with options stays on docker."""
    agent_sandbox = SandboxSettings(provider="docker", options={"cpus": 2}, env={"A": "1"})
    agent_model = ModelSettings(model="gpt-x", api="chat", temperature=0.3)
    request = through_temporal(
        RunRequest(
            agent="demo", task="t", sandbox=SandboxSettings(network=True), model=ModelSettings(model="m2")
        )
    )
    sandbox = agent_sandbox.merged_with(request.sandbox)
    assert (sandbox.provider, sandbox.options, sandbox.env, sandbox.network) == (
        "docker",
        {"cpus": 2},
        {"A": "1"},
        True,
    )
    model = agent_model.merged_with(request.model)
    assert (model.model, model.api, model.temperature) == ("m2", "chat", 0.3)


def test_another_provider_drops_the_agents_options() -> None:
    """Options of one provider mean nothing to another: choosing a provider starts from none."""
    agent_sandbox = SandboxSettings(provider="docker", options={"cpus": 2})
    request = through_temporal(RunRequest(agent="demo", task="t", sandbox=SandboxSettings(provider="e2b")))
    merged = agent_sandbox.merged_with(request.sandbox)
    assert (merged.provider, merged.options) == ("e2b", {})
    chosen = through_temporal(
        RunRequest(
            agent="demo", task="t", sandbox=SandboxSettings(provider="e2b", options={"template": "py"})
        )
    )
    assert agent_sandbox.merged_with(chosen.sandbox).options == {"template": "py"}


def test_a_worker_offers_the_providers_it_is_told_to(tmp_path) -> None:
    from harness.config import ConfigError, FarlineConfig
    from sandbox_providers.offered import offered_providers

    default = FarlineConfig.from_env({"FARLINE_DATA_DIR": str(tmp_path)})
    assert list(offered_providers(default)) == ["local"]
    with_docker = FarlineConfig.from_env({"FARLINE_DATA_DIR": str(tmp_path), "FARLINE_DOCKER_IMAGE": "img"})
    assert list(offered_providers(with_docker)) == ["local", "docker"]
    only_docker = FarlineConfig.from_env(
        {"FARLINE_DATA_DIR": str(tmp_path), "FARLINE_PROVIDERS": "docker", "FARLINE_DOCKER_IMAGE": "img"}
    )
    assert list(offered_providers(only_docker)) == ["docker"]
    with pytest.raises(ConfigError, match="FARLINE_PROVIDERS offers docker: set FARLINE_DOCKER_IMAGE"):
        FarlineConfig.from_env({"FARLINE_PROVIDERS": "local,docker"})
    with pytest.raises(
        ConfigError, match="FARLINE_PROVIDERS: k8s: list some of local, docker, modal, e2b, daytona"
    ):
        FarlineConfig.from_env({"FARLINE_PROVIDERS": "local,k8s"})


def test_a_provider_whose_sdk_is_missing_stops_the_worker_saying_what_to_install(tmp_path) -> None:
    """The daytona SDK is not installed here (it is an optional extra)."""
    from harness.config import ConfigError, FarlineConfig
    from sandbox_providers.offered import offered_providers

    config = FarlineConfig.from_env({"FARLINE_DATA_DIR": str(tmp_path), "FARLINE_PROVIDERS": "local,daytona"})
    with pytest.raises(ConfigError, match=r"offers daytona, .*pip install 'farline\[daytona\]'"):
        offered_providers(config)
