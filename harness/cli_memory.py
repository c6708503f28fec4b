"""CLI commands on agents' long-term memory: `farline memory show|history|clear|revert`.

Every change the CLI makes is a new version, so each prints the command that undoes it.
"""

from __future__ import annotations

import datetime

import click
from pydantic import ValidationError

from harness.config import ConfigError, FarlineConfig
from harness.memory import MemoryInvalid, MemoryScope, MemoryStore, MemoryVersion, MemoryVersionMissing
from harness.object_store import ObjectStoreError
from harness.stores import open_run_store

_KEY_OPTION = click.option("--key", default=None, help="The user or project key the memory is kept under.")
# what a name may be, by MemoryScope field
_NAME_RULES = {"agent": "1-64", "key": "1-128"}


def _store() -> MemoryStore:
    try:
        return MemoryStore(open_run_store(FarlineConfig.from_env()))
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def _scope(agent: str, key: str | None) -> MemoryScope:
    try:
        return MemoryScope(agent=agent, key=key)
    except ValidationError as error:
        field = str(error.errors()[0]["loc"][0])
        value = agent if field == "agent" else key
        raise click.ClickException(
            f"bad {field} {value!r}: use {_NAME_RULES[field]} letters, digits, '_', '.' or '-' "
            "(and not '.' or '..')"
        ) from None


def _undo(scope: MemoryScope, version: int) -> str:
    key = f" --key {scope.key}" if scope.key is not None else ""
    return f"farline memory revert {scope.agent} {version}{key}"


def _history(store: MemoryStore, scope: MemoryScope) -> list[MemoryVersion]:
    try:
        return store.history(scope)
    except (MemoryInvalid, ObjectStoreError) as error:
        raise click.ClickException(str(error)) from None


def _none(scope: MemoryScope) -> str:
    return f"No memory for agent {scope.agent}" + (f" (key {scope.key})." if scope.key is not None else ".")


@click.group()
def memory() -> None:
    """An agent's long-term memory (MEMORY.md): every change is a version that can be reverted."""


@memory.command()
@click.argument("agent")
@_KEY_OPTION
@click.option("--version", "version", type=click.IntRange(min=1), default=None, help="An older version.")
def show(agent: str, key: str | None, version: int | None) -> None:
    """Print AGENT's memory (the current version, or --version N)."""
    scope = _scope(agent, key)
    store = _store()
    try:
        text = store.read(scope) if version is None else store.read_version(scope, version)
    except (MemoryVersionMissing, MemoryInvalid, ObjectStoreError) as error:
        raise click.ClickException(str(error)) from None
    if version is None and not text:
        click.echo(_none(scope))
        return
    click.echo(text, nl=not text.endswith("\n"))


@memory.command()
@click.argument("agent")
@_KEY_OPTION
def history(agent: str, key: str | None) -> None:
    """List AGENT's memory versions, oldest first (the last is the current one)."""
    scope = _scope(agent, key)
    versions = _history(_store(), scope)
    if not versions:
        click.echo(_none(scope))
        return
    for record in versions:
        when = datetime.datetime.fromtimestamp(record.created_at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S")
        added = f" (+{record.lessons_added})" if record.lessons_added else ""
        click.echo(f"{record.version:>4}  {when} UTC  {record.size:>6} B  {record.reason}{added}")


@memory.command()
@click.argument("agent")
@_KEY_OPTION
def clear(agent: str, key: str | None) -> None:
    """Empty AGENT's memory (as a new version: the old ones stay)."""
    scope = _scope(agent, key)
    store = _store()
    versions = _history(store, scope)
    if not versions:
        click.echo(_none(scope) + " Nothing to clear.")
        return
    try:
        cleared = store.clear(scope)
    except ObjectStoreError as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"Cleared the memory of {scope.describe()}: version {cleared.version} is empty.\n"
        f"Undo with: {_undo(scope, versions[-1].version)}"
    )


@memory.command()
@click.argument("agent")
@click.argument("version", type=click.IntRange(min=1))
@_KEY_OPTION
def revert(agent: str, version: int, key: str | None) -> None:
    """Make AGENT's memory what VERSION held (as a new version)."""
    scope = _scope(agent, key)
    store = _store()
    versions = _history(store, scope)
    try:
        reverted = store.revert(scope, version)
    except (MemoryVersionMissing, MemoryInvalid, ObjectStoreError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(
        f"The memory of {scope.describe()} is now version {reverted.version}, a copy of version {version} "
        f"({reverted.size} bytes).\nUndo with: {_undo(scope, versions[-1].version)}"
    )
