"""The `farline` command: a dev stack, starting and following runs, the end-to-end demo."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import yaml
from pydantic import ValidationError
from temporalio.client import WorkflowHandle, WorkflowQueryFailedError, WorkflowUpdateFailedError
from temporalio.service import RPCError

from harness.approval_tree import owner_of_call, pending_in_tree
from harness.approvals import ApprovalDecision, PendingApproval, UserMessage
from harness.cli_config import config_command
from harness.cli_follow import follow
from harness.cli_memory import memory
from harness.cli_snapshots import COMMANDS as SNAPSHOT_COMMANDS
from harness.config import ConfigError, FarlineConfig
from harness.devserver import DevServerError, port_open, start_dev_server, stop_process
from harness.logging import configure_logging
from harness.rollout import rollout as run_rollout
from harness.runs import describe, follow_run, start_run, web_ui_link
from harness.sandbox_options import PROVIDERS
from harness.scripted_model import DEMO_SCRIPT_PATH, Script, ScriptedModelServer
from harness.specs import ModelSettings, RunRequest, RunResult, RunStatus, SandboxMove
from harness.task_tracker import TaskTracker
from harness.temporal_client import connect

DEMO_TASK = "Tell me what machine you run on, then compute the sum of the numbers 1 to 100 with Python."
TRACKER_DEMO_TASK = (
    "Find someone to book the AV crew for the main stage (task 3), assign them, and close the task."
)
TRACKER_DEMO_SCRIPT_PATH = Path(__file__).with_name("tracker_demo_script.json")
COORDINATION_DEMO_TASK = (
    "Refine the keynote abstract in working/abstract.md, then hand task 2 to its producer."
)
COORDINATION_DEMO_SCRIPT_PATH = Path(__file__).with_name("coordination_demo_script.json")


def _config() -> FarlineConfig:
    try:
        return FarlineConfig.from_env()
    except ConfigError as error:
        raise click.ClickException(str(error)) from None


def _print_status(status: RunStatus) -> None:
    click.echo(f"  {describe(status)}")


def _print_result(result: RunResult) -> None:
    click.echo(f"state: {result.state.value} after {result.turns} turns, {result.usage.total_tokens} tokens")
    if result.final_message is not None:
        click.echo("answer:")
        click.echo(result.final_message)


def _start_worker(
    config: FarlineConfig, extra_env: dict[str, str], log_file: Path | None = None
) -> subprocess.Popen[bytes]:
    """`python -m worker` in a child process; its logs go to `log_file` when given."""
    env = {**os.environ, **extra_env, "FARLINE_TEMPORAL_ADDRESS": config.temporal_address}
    env.setdefault("FARLINE_TASK_QUEUE", config.task_queue)
    output = None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        output = log_file.open("ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "worker"],
            env=env,
            cwd=Path(__file__).resolve().parent.parent,
            stdout=output,
            stderr=output,
        )
    finally:
        if output is not None:
            output.close()


@click.group()
def main() -> None:
    """Farline: durable agent runs on Temporal."""
    configure_logging(_config().log_format, level=logging.WARNING)


def _scripted_model_for_worker(
    config: FarlineConfig, script: Path | None, worker_env: dict[str, str]
) -> ScriptedModelServer | None:
    """Start the scripted model when asked to, or when no model is configured; say which model runs."""
    if script is None and (config.openai_api_key is not None or config.openai_base_url is not None):
        click.echo(f"Model: {config.model} at {config.openai_base_url or 'the OpenAI API'} (a real model).")
        return None
    server = ScriptedModelServer(Script.from_file(script or DEMO_SCRIPT_PATH)).start()
    worker_env["OPENAI_BASE_URL"] = server.base_url
    why = "as asked" if script is not None else "because neither OPENAI_API_KEY nor OPENAI_BASE_URL is set"
    click.echo(
        f"Model: the SCRIPTED model ({why}): a local OpenAI-compatible server at {server.base_url} "
        f"replaying {script or DEMO_SCRIPT_PATH.name}, not a real model. Commands run for real in "
        "a bubblewrap sandbox."
    )
    return server


@main.command()
@click.option("--port", default=7233, show_default=True, help="Temporal frontend port.")
@click.option("--ui-port", default=8233, show_default=True, help="Temporal web UI port.")
@click.option("--no-worker", is_flag=True, help="Start only the Temporal dev server.")
@click.option(
    "--scripted",
    "script",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Serve the worker this scripted model (a JSON script) instead of a real one.",
)
def dev(port: int, ui_port: int, no_worker: bool, script: Path | None) -> None:
    """Start the embedded Temporal dev server (sqlite in the data dir) and a worker, until Ctrl-C.

    Without OPENAI_API_KEY or OPENAI_BASE_URL the worker uses the scripted demo model.
    """
    config = _config().model_copy(update={"temporal_address": f"127.0.0.1:{port}"})
    db_file = config.data_dir / "temporal.sqlite"
    try:
        server = start_dev_server(db_file, port=port, ui_port=ui_port)
    except DevServerError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Temporal dev server on 127.0.0.1:{port}, web UI http://127.0.0.1:{ui_port}, data {db_file}")
    worker_env: dict[str, str] = {}
    scripted = None if no_worker else _scripted_model_for_worker(config, script, worker_env)
    worker = None if no_worker else _start_worker(config, worker_env)
    # SIGTERM stops the stack like Ctrl-C does
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while server.poll() is None and (worker is None or worker.poll() is None):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        if worker is not None:
            stop_process(worker)
        stop_process(server)
        if scripted is not None:
            scripted.stop()
    click.echo("stopped")


@main.command()
@click.argument("agent")
@click.argument("task")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the run to end and print its answer.")
@click.option("--follow", is_flag=True, help="Print each change of the run's status until it ends.")
@click.option("--max-turns", type=int, default=None, help="Stop after this many model calls (default 50).")
@click.option("--model", default=None, help="Model name for this run (default FARLINE_MODEL).")
@click.option("--network", is_flag=True, help="Give the sandbox network access.")
@click.option(
    "--provider",
    type=click.Choice(PROVIDERS),
    default=None,
    help="Where commands run (default: the agent's).",
)
@click.option(
    "--sandbox-option",
    "sandbox_options",
    multiple=True,
    metavar="NAME=VALUE",
    help="An option of the provider (repeatable; JSON values where they parse: cpus=2, image=python:3.12).",
)
@click.option("--id", "workflow_id", default=None, help="Workflow id (default AGENT-<random>).")
@click.option(
    "--workspace",
    "workspace_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="A YAML or JSON file with the run's `manifest`, `skills` and `memory_key` (see the README).",
)
def run(
    agent: str,
    task: str,
    wait_: bool,
    follow: bool,
    max_turns: int | None,
    model: str | None,
    network: bool,
    provider: str | None,
    sandbox_options: tuple[str, ...],
    workflow_id: str | None,
    workspace_file: Path | None,
) -> None:
    """Start a run of a registered AGENT on TASK and print its workflow id and web UI link."""
    fields: dict[str, object] = {"agent": agent, "task": task}
    if workspace_file is not None:
        fields.update(_workspace_fields(workspace_file))
    if max_turns is not None:
        fields["max_turns"] = max_turns
    if model is not None:
        fields["model"] = ModelSettings(model=model)
    sandbox: dict[str, object] = {"network": True} if network else {}
    if provider is not None:
        sandbox["provider"] = provider
    if sandbox_options:
        if provider is None:
            raise click.UsageError("--sandbox-option needs --provider")
        sandbox["options"] = dict(_option(text) for text in sandbox_options)
    if sandbox:
        fields["sandbox"] = sandbox
    try:
        request = RunRequest.model_validate(fields)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    asyncio.run(_run(_config(), request, workflow_id, wait_ or follow, follow))


def _workspace_fields(path: Path) -> dict[str, object]:
    """The `manifest`, `skills` and `memory_key` of a run, from a YAML (or JSON) file."""
    try:
        document = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise click.BadParameter(
            f"{path} is not valid YAML or JSON: {error}", param_hint="--workspace"
        ) from None
    allowed = {"manifest", "skills", "memory_key"}
    if not isinstance(document, dict) or not set(document) <= allowed:
        raise click.BadParameter(
            f"{path} must be a mapping with some of: {', '.join(sorted(allowed))}", param_hint="--workspace"
        )
    return document


async def _run(
    config: FarlineConfig, request: RunRequest, workflow_id: str | None, wait: bool, follow: bool
) -> RunResult | None:
    client = await connect(config)
    handle = await start_run(client, config, request, workflow_id)
    click.echo(f"workflow id: {handle.id}")
    click.echo(f"web UI: {web_ui_link(config, handle.id)}")
    if not wait:
        return None
    result = await follow_run(handle, _print_status if follow else (lambda _status: None))
    _print_result(result)
    return result


@main.command()
@click.argument("workflow_id")
def status(workflow_id: str) -> None:
    """Show a run's status (turn, state, what it waits on, tokens)."""
    asyncio.run(_status(_config(), workflow_id))


async def _status(config: FarlineConfig, workflow_id: str) -> None:
    client = await connect(config)
    handle = client.get_workflow_handle(workflow_id)
    description = await handle.describe()
    state = await handle.query("status", result_type=RunStatus)
    click.echo(
        json.dumps(
            {
                "workflow": description.status.name if description.status else None,
                **state.model_dump(mode="json"),
            },
            indent=2,
        )
    )


@main.command()
@click.argument("workflow_id")
def approvals(workflow_id: str) -> None:
    """List the calls of a run that wait for a person's approval."""
    asyncio.run(_approvals(_config(), workflow_id))


async def _approvals(config: FarlineConfig, workflow_id: str) -> None:
    client = await connect(config)
    pending = await pending_in_tree(client, workflow_id)
    if not pending:
        click.echo("no call is waiting for approval")
    for owner, approval in pending:
        deadline = f", declined at {approval.timeout_at:%Y-%m-%d %H:%M:%S} UTC" if approval.timeout_at else ""
        where = "" if owner == workflow_id else f"  [sub-agent {owner}]"
        click.echo(
            f"{approval.call_id}  {approval.tool}({approval.arguments})  waiting since "
            f"{approval.since:%Y-%m-%d %H:%M:%S} UTC{deadline}{where}"
        )
        click.echo(
            f"  farline approve {owner} {approval.call_id}   |   farline decline {owner} "
            f"{approval.call_id} --reason '...'"
        )


@main.command()
@click.argument("workflow_id")
@click.argument("call_id")
@click.option("--reason", default=None, help="Why (the agent sees it).")
def approve(workflow_id: str, call_id: str, reason: str | None) -> None:
    """Approve a waiting call."""
    asyncio.run(
        _decide(_config(), workflow_id, ApprovalDecision(call_id=call_id, approved=True, reason=reason))
    )


@main.command()
@click.argument("workflow_id")
@click.argument("call_id")
@click.option("--reason", default=None, help="Why (the agent sees it).")
def decline(workflow_id: str, call_id: str, reason: str | None) -> None:
    """Decline a waiting call; the agent is told it was declined, with the reason."""
    asyncio.run(
        _decide(_config(), workflow_id, ApprovalDecision(call_id=call_id, approved=False, reason=reason))
    )


async def _decide(config: FarlineConfig, workflow_id: str, decision: ApprovalDecision) -> None:
    client = await connect(config)
    # a call of a sub-agent can be decided through its parent (or any run above it)
    owner = await owner_of_call(client, workflow_id, decision.call_id)
    if owner is not None and owner != workflow_id:
        click.echo(f"call {decision.call_id} waits in sub-agent {owner}")
        workflow_id = owner
    try:
        answer = await client.get_workflow_handle(workflow_id).execute_update(
            "decide", decision, result_type=str
        )
    except WorkflowUpdateFailedError as error:
        raise click.ClickException(str(error.cause.message if error.cause else error)) from None
    click.echo(answer)


@main.command()
@click.argument("workflow_id")
@click.argument("text")
def say(workflow_id: str, text: str) -> None:
    """Send a message to a running agent; it reads it before its next model call."""
    asyncio.run(_say(_config(), workflow_id, text))


async def _say(config: FarlineConfig, workflow_id: str, text: str) -> None:
    client = await connect(config)
    await client.get_workflow_handle(workflow_id).signal("user_message", UserMessage(text=text))
    click.echo("sent")


@main.command()
@click.argument("workflow_id")
def pause(workflow_id: str) -> None:
    """Pause a run after its current turn: the workspace is snapshotted and the sandbox torn down."""
    asyncio.run(_signal(_config(), workflow_id, "pause"))
    click.echo(f"pausing; `farline resume {workflow_id}` goes on in a new sandbox with the same workspace")


@main.command()
@click.argument("workflow_id")
@click.option(
    "--provider",
    type=click.Choice(PROVIDERS),
    default=None,
    help="Resume on this provider instead: the workspace comes along from the pause's snapshot.",
)
@click.option(
    "--option",
    "options",
    multiple=True,
    metavar="NAME=VALUE",
    help="An option of the new provider (repeatable; the value is read as JSON when it can be: cpus=2).",
)
def resume(workflow_id: str, provider: str | None, options: tuple[str, ...]) -> None:
    """Resume a paused run, where it was or (--provider) on another provider."""
    if provider is None:
        if options:
            raise click.UsageError("--option needs --provider")
        asyncio.run(_signal(_config(), workflow_id, "resume"))
        click.echo("resumed")
        return
    try:
        move = SandboxMove(provider=provider, options=dict(_option(text) for text in options))
    except ValidationError as error:
        raise click.UsageError(str(error.errors()[0]["msg"]).removeprefix("Value error, ")) from None
    click.echo(asyncio.run(_resume_on(_config(), workflow_id, move)))


def _option(text: str) -> tuple[str, object]:
    name, equals, value = text.partition("=")
    if not equals or not name:
        raise click.UsageError(f"--option {text!r}: write NAME=VALUE")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


async def _resume_on(config: FarlineConfig, workflow_id: str, move: SandboxMove) -> str:
    client = await connect(config)
    try:
        return await client.get_workflow_handle(workflow_id).execute_update(
            "resume_on", move, result_type=str
        )
    except WorkflowUpdateFailedError as error:
        raise click.ClickException(str(error.cause.message if error.cause else error)) from None
    except RPCError as error:
        raise click.ClickException(f"cannot resume run {workflow_id!r}: {error.message}") from None


async def _signal(config: FarlineConfig, workflow_id: str, name: str) -> None:
    client = await connect(config)
    try:
        await client.get_workflow_handle(workflow_id).signal(name)
    except RPCError as error:
        raise click.ClickException(f"cannot signal run {workflow_id!r}: {error.message}") from None


@main.command()
@click.argument("workflow_id")
def rollout(workflow_id: str) -> None:
    """Print a run's whole rollout as JSON lines: every model input and output item, compactions,
    continue-as-new (across all of the run's histories)."""
    asyncio.run(_rollout(_config(), workflow_id))


async def _rollout(config: FarlineConfig, workflow_id: str) -> None:
    client = await connect(config)
    try:
        async for line in run_rollout(client, workflow_id):
            click.echo(json.dumps(line))
    except LookupError as error:
        raise click.ClickException(str(error)) from None


for _command in SNAPSHOT_COMMANDS:
    main.add_command(_command)
main.add_command(memory)
main.add_command(config_command)
main.add_command(follow)


@main.command()
@click.option(
    "--tracker",
    is_flag=True,
    help="Run the task tracker demo instead: the agent staffs a task, then asking to mark it DONE "
    "waits for your approval.",
)
@click.option(
    "--coordination",
    is_flag=True,
    help="Run the coordination demo instead: the Program Editor refines a document and assigns the task "
    "to the Asset Producer in the tracker, which starts the producer's run on the editor's workspace.",
)
def demo(tracker: bool, coordination: bool) -> None:
    """Run the demo agent end to end on the embedded defaults, then stop what was started."""
    if tracker and coordination:
        raise click.UsageError("choose one of --tracker and --coordination")
    asyncio.run(_demo(_config(), tracker, coordination))


async def _answer_approvals(handle: WorkflowHandle[Any, RunResult]) -> None:
    """While the run goes on, show each approval it waits for; at a terminal, ask for the answer."""
    shown: set[str] = set()
    while True:
        try:
            pending = await handle.query("pending_approvals", result_type=list[PendingApproval])
        except (RPCError, WorkflowQueryFailedError):
            pending = []
        for approval in pending:
            if approval.call_id in shown:
                continue
            shown.add(approval.call_id)
            click.echo(
                f"  WAITING FOR APPROVAL: {approval.tool}({approval.arguments}), call {approval.call_id}"
            )
            click.echo(f"    farline approve {handle.id} {approval.call_id}")
            click.echo(f"    farline decline {handle.id} {approval.call_id} --reason '...'")
            if sys.stdin.isatty():
                answer = await asyncio.to_thread(click.confirm, "  Approve it now?", default=True)
                decision = ApprovalDecision(
                    call_id=approval.call_id, approved=answer, reason="answered in the demo"
                )
                await handle.execute_update("decide", decision, result_type=str)
        await asyncio.sleep(0.5)


async def _demo(config: FarlineConfig, tracker: bool = False, coordination: bool = False) -> None:
    started: list[subprocess.Popen[bytes]] = []
    scripted: ScriptedModelServer | None = None
    worker_env: dict[str, str] = {"FARLINE_TASK_QUEUE": f"farline-demo-{os.getpid()}"}
    config = config.model_copy(update={"task_queue": worker_env["FARLINE_TASK_QUEUE"]})
    try:
        script = (
            TRACKER_DEMO_SCRIPT_PATH if tracker else COORDINATION_DEMO_SCRIPT_PATH if coordination else None
        )
        if script is not None and (config.openai_api_key is not None or config.openai_base_url is not None):
            script = None  # a configured model runs these demos for real
        scripted = _scripted_model_for_worker(config, script, worker_env)
        host, _, port = config.temporal_address.rpartition(":")
        if port_open(host, int(port)):
            click.echo(f"Temporal: using the server already running at {config.temporal_address}")
        else:
            db_file = config.data_dir / "temporal.sqlite"
            started.append(start_dev_server(db_file, port=int(port)))
            click.echo(f"Temporal: started the embedded dev server ({db_file})")
        worker_log = config.data_dir / "logs" / "demo-worker.log"
        started.append(_start_worker(config, worker_env, worker_log))
        click.echo(f"Worker: started, logging to {worker_log}")
        if tracker:
            request = RunRequest(agent="tracker", task=TRACKER_DEMO_TASK)
            result = await _run_answering_approvals(config, request)
        elif coordination:
            result = await _coordination_demo(config)
        else:
            result = await _run(
                config, RunRequest(agent="demo", task=DEMO_TASK), None, wait=True, follow=True
            )
        if result is None or result.final_message is None:
            raise click.ClickException("the demo run ended without an answer")
        click.echo("The run's history stays in the dev server's database: `farline dev` serves it again.")
    except DevServerError as error:
        raise click.ClickException(str(error)) from None
    finally:
        for process in reversed(started):
            stop_process(process)
        if scripted is not None:
            scripted.stop()


async def _coordination_demo(config: FarlineConfig) -> RunResult | None:
    """The editor's run, then the producer's run the tracker started for it."""
    click.echo("Program Editor:")
    editor = await _run(
        config, RunRequest(agent="program-editor", task=COORDINATION_DEMO_TASK), None, wait=True, follow=True
    )
    task = TaskTracker(config.data_dir / "task_tracker.sqlite").task(2)
    if editor is None or task.run is None:
        raise click.ClickException("the editor did not hand task 2 to an agent")
    click.echo(f"\nThe tracker started {task.assignee}'s run {task.run} on the editor's workspace:")
    client = await connect(config)
    click.echo(f"web UI: {web_ui_link(config, task.run)}")
    result = await follow_run(client.get_workflow_handle(task.run, result_type=RunResult), _print_status)
    _print_result(result)
    return result


async def _run_answering_approvals(config: FarlineConfig, request: RunRequest) -> RunResult:
    client = await connect(config)
    handle = await start_run(client, config, request)
    click.echo(f"workflow id: {handle.id}")
    click.echo(f"web UI: {web_ui_link(config, handle.id)}")
    approvals = asyncio.ensure_future(_answer_approvals(handle))
    try:
        result = await follow_run(handle, _print_status)
    finally:
        approvals.cancel()
    _print_result(result)
    return result


def entry_point() -> None:
    """The console script. It ends the process without interpreter teardown, during which the
    Temporal client's native threads can abort it (temporalio/sdk-python#300)."""
    code = 0
    try:
        main()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry_point()
