"""`farline follow ID`: a run's story so far, then the run live until it ends.

The story comes from the run's history (a long poll, which needs no worker); the status
footer and the approvals that wait come from queries, which need one: while no worker is
up they fail, and following says so once and keeps going.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import click
from rich.console import Console
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from harness.approval_tree import pending_in_tree
from harness.config import ConfigError, FarlineConfig
from harness.follow_view import LineKind, RunStory, StoryLine, tell
from harness.runs import describe, web_ui_link
from harness.specs import RunStatus
from harness.temporal_client import connect

STYLES: dict[LineKind, str] = {
    "start": "bold",
    "turn": "bold cyan",
    "call": "",
    "result": "dim",
    "say": "italic",
    "sandbox": "magenta",
    "snapshot": "green",
    "approval": "bold yellow",
    "agent": "blue",
    "note": "dim italic",
    "end": "bold green",
    "failure": "bold red",
}
# how often the status and the approvals are asked for, and how long one answer may take
POLL_INTERVAL_S = 1.0
QUERY_TIMEOUT = timedelta(seconds=5)
WORKER_DOWN = "  worker unavailable, retrying (the run itself is safe; it goes on when a worker is back)"


class Screen:
    """Where the story goes: plain lines, or styled lines above a live status footer."""

    def __init__(self, live: bool) -> None:
        self.console = Console(highlight=False)
        self.live = (
            Live(console=self.console, transient=True, refresh_per_second=8)
            if live and self.console.is_terminal
            else None
        )

    def __enter__(self) -> Screen:
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.live is not None:
            self.live.stop()

    def line(self, line: StoryLine) -> None:
        if self.live is None:
            click.echo(line.text)
        else:
            self.console.print(Text(line.text, style=STYLES[line.kind]))

    def footer(self, text: str, style: str = "dim") -> None:
        if self.live is not None:
            self.live.update(Spinner("dots", text=Text(text, style=style, no_wrap=True, overflow="ellipsis")))


def _config() -> FarlineConfig:
    try:
        return FarlineConfig.from_env()
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


async def _watch(client: Client, story: RunStory, screen: Screen) -> None:
    """Keep the footer on the run's status and tell each approval it waits for (in its whole
    tree of sub-agents); say once per outage that no worker answers."""
    handle = client.get_workflow_handle(story.workflow_id)
    down = False
    while True:
        try:
            status = await handle.query("status", result_type=RunStatus, rpc_timeout=QUERY_TIMEOUT)
            pending = await asyncio.wait_for(
                pending_in_tree(client, story.workflow_id), QUERY_TIMEOUT.total_seconds()
            )
        except (RPCError, WorkflowQueryFailedError, TimeoutError):
            if not down:
                down = True
                screen.line(StoryLine(WORKER_DOWN, "failure"))
            screen.footer("worker unavailable, retrying", "yellow")
        else:
            if down:
                down = False
                screen.line(StoryLine("  a worker answers again", "note"))
            screen.footer(describe(status))
            for owner, approval in pending:
                for line in story.waiting(owner, approval):
                    screen.line(line)
        await asyncio.sleep(POLL_INTERVAL_S)


async def _follow(config: FarlineConfig, workflow_id: str, live: bool) -> int:
    try:
        client = await connect(config)
    except RuntimeError as error:
        raise click.ClickException(str(error)) from None
    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise click.ClickException(f"no run with workflow id {workflow_id!r}") from None
        raise click.ClickException(f"cannot describe run {workflow_id!r}: {error.message}") from None
    story = RunStory(client.data_converter, workflow_id)
    click.echo(f"web UI: {web_ui_link(config, workflow_id)}")
    with Screen(live) as screen:
        # a closed run has nothing to wait for, and needs no worker to be told
        running = description.status == WorkflowExecutionStatus.RUNNING
        watcher = asyncio.ensure_future(_watch(client, story, screen)) if running else None
        try:
            async for line in tell(client, story):
                screen.line(line)
        finally:
            if watcher is not None:
                watcher.cancel()
    return 0 if story.ending is not None and story.ending.ok else 1


@click.command()
@click.argument("workflow_id")
@click.option(
    "--no-live",
    is_flag=True,
    help="Plain lines only, without the status footer (also the case when stdout is not a terminal).",
)
@click.pass_context
def follow(ctx: click.Context, workflow_id: str, no_live: bool) -> None:
    """Tell the story of run WORKFLOW_ID so far, then follow it live until it ends.

    Each model turn with its token use, each tool call with a summary of its result, snapshots,
    lost sandboxes and their rehydration, compactions, handoffs, sub-agents, continue-as-new, and
    each call that waits for approval with the command that approves it. In a terminal a footer
    shows the run's state, turn, what it waits on and its tokens. Following survives worker
    restarts (it says so while no worker answers) and goes on into the new history after a
    continue-as-new. Exits 0 when the run completed (the story ends with its final message; also
    when it stopped at its turn limit), 1 when it failed, was cancelled, terminated or timed out.
    """
    ctx.exit(asyncio.run(_follow(_config(), workflow_id, live=not no_live)))
