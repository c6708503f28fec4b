"""`farline config`: the settings in effect, where each comes from, secrets masked."""

from __future__ import annotations

import json
import os

import click
from pydantic import SecretStr

from harness.config import ConfigError, FarlineConfig

# variables whose values are secrets even where their type is plain text
_SECRET_SUFFIXES = ("_API_KEY", "_SECRET_ACCESS_KEY", "_TOKEN", "_PASSWORD")
# settings whose default is worked out from others: shown as what they work out to
_DERIVED = {
    "snapshot_dir": "snapshots_dir",
    "payload_dir": "payloads_dir",
    "payload_store": "effective_payload_store",
}


def _masked(value: object) -> str | None:
    return None if value is None else "*** (set)"


def effective_settings(
    config: FarlineConfig, environ: dict[str, str] | None = None
) -> list[dict[str, object]]:
    """One row per setting: its variable, value (secrets masked) and source (environment or default)."""
    env = os.environ if environ is None else environ
    rows: list[dict[str, object]] = []
    for field, variable in FarlineConfig.ENVIRONMENT.items():
        value = getattr(config, field)
        if value is None and field in _DERIVED:
            value = getattr(config, _DERIVED[field])
        secret = isinstance(value, SecretStr) or variable.endswith(_SECRET_SUFFIXES)
        shown = _masked(value) if secret else (str(value) if value is not None else None)
        source = "environment" if env.get(variable) else "default"
        rows.append({"variable": variable, "value": shown, "source": source})
    for variable in sorted(env):
        if variable.startswith("FARLINE_CREDENTIALS_"):
            shown = _masked(env[variable]) if variable.endswith(_SECRET_SUFFIXES) else env[variable]
            rows.append({"variable": variable, "value": shown, "source": "environment"})
    return rows


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per setting.")
def config_command(as_json: bool) -> None:
    """Print the settings in effect (environment or default), secrets masked."""
    try:
        config = FarlineConfig.from_env()
    except ConfigError as error:
        raise click.ClickException(str(error)) from None
    rows = effective_settings(config)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    width = max(len(str(row["variable"])) for row in rows)
    for row in rows:
        value = "(unset)" if row["value"] in (None, "") else row["value"]
        click.echo(f"{row['variable']:<{width}}  {value}  [{row['source']}]")
