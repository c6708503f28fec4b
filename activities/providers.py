"""What every sandbox-facing activity class shares: the providers this worker drives."""

from __future__ import annotations

from temporalio.exceptions import ApplicationError

from sandbox_providers.base import SandboxGone, SandboxProvider


class ProviderActivities:
    """Base of activity classes bound to this worker's sandbox providers, by name."""

    def __init__(self, providers: dict[str, SandboxProvider]) -> None:
        self._providers = providers

    def _provider(self, name: str) -> SandboxProvider:
        try:
            return self._providers[name]
        except KeyError:
            known = ", ".join(sorted(self._providers)) or "none"
            raise ApplicationError(
                f"sandbox provider {name!r} is not available on this worker (available: {known})",
                type="SandboxProviderUnknown",
                non_retryable=True,
            ) from None


def sandbox_gone(error: SandboxGone) -> ApplicationError:
    """The failure the workflow sees when a sandbox vanished (it does not retry it)."""
    return ApplicationError(f"the sandbox is gone: {error}", type="SandboxGone", non_retryable=True)
