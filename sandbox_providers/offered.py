"""The providers a worker offers (FARLINE_PROVIDERS), each built from the worker's settings.

The cloud providers' SDKs are optional extras: a provider's module is imported only when the
worker offers it, and one that cannot be built (its SDK missing, a setting missing) stops the
worker with the reason, before it takes any work.
"""

from __future__ import annotations

import importlib

from harness.config import ConfigError, FarlineConfig
from sandbox_providers.base import SandboxProvider, SandboxUnavailable

# provider name -> (module, class); every class has `from_config(config)`
PROVIDER_CLASSES: dict[str, tuple[str, str]] = {
    "local": ("sandbox_providers.local", "LocalProvider"),
    "docker": ("sandbox_providers.docker", "DockerProvider"),
    "modal": ("sandbox_providers.modal", "ModalProvider"),
    "e2b": ("sandbox_providers.e2b", "E2BProvider"),
    "daytona": ("sandbox_providers.daytona", "DaytonaProvider"),
}
# the pip extra that brings each provider's SDK
EXTRAS = {"docker": "docker", "modal": "modal", "e2b": "e2b", "daytona": "daytona"}


def offered_providers(config: FarlineConfig) -> dict[str, SandboxProvider]:
    providers: dict[str, SandboxProvider] = {}
    for name in config.offered_providers:
        if name not in PROVIDER_CLASSES:
            raise ConfigError(f"FARLINE_PROVIDERS: the {name} provider is not part of this Farline version")
        module_name, class_name = PROVIDER_CLASSES[name]
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            raise ConfigError(
                f"FARLINE_PROVIDERS offers {name}, but its SDK is not installed ({error.name}): "
                f"pip install 'farline[{EXTRAS.get(name, name)}]'"
            ) from None
        try:
            providers[name] = getattr(module, class_name).from_config(config)
        except SandboxUnavailable as error:
            raise ConfigError(f"FARLINE_PROVIDERS offers {name}, but {error}") from None
    return providers
