"""Fan-out: one supervisor runs 100 sub-agents on one worker, against the same 100 runs started alone.

A `supervisor` agent spawns `--agents` `helper` sub-agents in one turn (one
`spawn_agent` call each), waits for them all with one `wait_agents`, and ends.
Each helper runs three shell commands (`echo`, `ls`, writing `output/r.txt`)
and ends with a message; the supervisor's wait places each helper's message and
output in its workspace (handoffs/<agent id>/, one activity per helper). Two
supervisor cases: helpers in "empty" workspaces, and in "fork"s of the
supervisor's workspace after it has written a file (one snapshot, restored into
each helper's sandbox). The baseline starts the same helper runs on their own,
all at once, and waits for every result. Scripted model (one server answers
both agents, routed by their instructions), one Temporal dev server for the
whole bench, real bubblewrap processes. Each case runs in a fresh process of
its own (this script with --case) holding its worker and its scripted server,
so that its memory owes nothing to the cases before it; there a warm-up
fan-out of one forked helper runs first, unreported, so that no case pays for
the first imports.

Measured per case: the seconds from the start to the last result (for a
supervisor: its own end, so every helper has completed and been delivered;
from the server's timestamps, when its last helper started and closed; from
its history, how long the handoffs took), the helpers that completed, the model
requests served, and memory: `ru_maxrss` of RUSAGE_SELF, the case process's
peak resident set; and, sampled every 100 ms on a thread of its own, that
resident set at the start of the case and at its peak, and the summed resident
sets of the sandbox processes (the detached process supervisors under the data
dir and everything they run; shared pages count in each). Those are not
children of the case process (each supervisor detaches), so `ru_maxrss` of
RUSAGE_CHILDREN, also printed, covers only the short-lived supervisor
launchers, each forked from the case process and so as large as it was then.
Prints one JSON line per case, then the ratios of their times and peaks.

    python bench/fanout.py [--agents 100]    (--turns N is the same as --agents N)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import resource
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO

from quiet_dev_server import start_quiet_dev_server
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter

from harness.agents import AgentRegistry
from harness.config import FarlineConfig
from harness.logging import configure_logging
from harness.runs import start_run
from harness.scripted_model import Script, ScriptedModelServer
from harness.specs import AgentSpec, RunRequest, RunResult, RunState, SubagentLimits
from harness.subagent_tools import Subagent, SubagentState
from worker import build_worker

SUPERVISOR = "You are the SUPERVISOR of the fan-out bench."
HELPER = "You are a HELPER of the fan-out bench."
REGISTRY = AgentRegistry(
    [
        AgentSpec(name="supervisor", instructions=SUPERVISOR, subagents=["helper"]),
        AgentSpec(name="helper", instructions=HELPER),
    ]
)
Workspace = Literal["empty", "fork"]
# each case, and the workspace a supervisor gives its helpers (None: the baseline, helpers started alone)
CASES: dict[str, Workspace | None] = {"supervisor": "empty", "supervisor_fork": "fork", "independent": None}
SUPERVISOR_SEED = "mkdir -p notes && seq 1 1000 > notes/seed.txt"
HELPER_COMMANDS = ["echo working", "ls -la", "mkdir -p output && echo done > output/r.txt"]
# the supervisor's one wait outlasts any helper
WAIT_TIMEOUT_S = 3600
SAMPLE_INTERVAL_S = 0.1
KIB_PER_MIB = 1024


def json_lines_out() -> TextIO:
    """This process's stdout, for the JSON lines alone: from now on whatever else writes to file
    descriptor 1 (the Temporal core SDK logs its warnings there) goes to stderr."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return out


def helper_task(number: int) -> str:
    return f"bench task {number}: run the commands, leave output/r.txt"


def exec_turn(cmd: str) -> dict[str, Any]:
    return {"tool_calls": [{"name": "exec_command", "arguments": {"cmd": cmd}}]}


def fanout_script(agents: int, workspace: Workspace) -> Script:
    spawns = [
        {
            "name": "spawn_agent",
            "arguments": {"agent": "helper", "task": helper_task(number), "workspace": workspace},
        }
        for number in range(1, agents + 1)
    ]
    helper = [exec_turn(cmd) for cmd in HELPER_COMMANDS]
    # a fork copies the workspace as it is: give it something to copy
    before = [exec_turn(SUPERVISOR_SEED)] if workspace == "fork" else []
    return Script.model_validate(
        {
            "turns": [
                *before,
                {"tool_calls": spawns},
                {"tool_calls": [{"name": "wait_agents", "arguments": {"timeout_s": WAIT_TIMEOUT_S}}]},
                {"message": "all helpers done"},
            ],
            "by_instructions": {"HELPER": [*helper, {"message": "helper done"}]},
        }
    )


# --- memory -------------------------------------------------------------------------------------


def rss_kib(pid: int | str) -> int:
    """VmRSS of a process, 0 once it is gone (or for a kernel thread)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def sandbox_processes(marker: bytes) -> list[str]:
    """The pids of the processes whose command line names `marker` (the supervisors and bubblewrap,
    which name their directories under the data dir) and of all their descendants."""
    parents: dict[str, str] = {}
    roots: list[str] = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                # the parent pid follows the command name, which is in parentheses and may hold spaces
                parents[pid] = stat.read().rsplit(b")", 1)[1].split()[1].decode()
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                if marker in cmdline.read():
                    roots.append(pid)
        except (OSError, IndexError):
            continue
    children: dict[str, list[str]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    found: set[str] = set()
    pending = roots
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.add(pid)
            pending.extend(children.get(pid, []))
    return sorted(found)


class MemorySampler:
    """This process's resident set and the sandbox processes' summed resident sets, sampled on a
    thread of its own while the context is open; `peak_*` are the highest values seen."""

    def __init__(self, data_dir: Path) -> None:
        self._marker = f"{data_dir}/".encode()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fanout-memory-sampler", daemon=True)
        self.start_kib = 0
        self.peak_kib = 0
        self.peak_sandbox_kib = 0
        self.peak_sandbox_processes = 0
        self.samples = 0
        self.cpu_s = 0.0

    def __enter__(self) -> MemorySampler:
        self.start_kib = self.peak_kib = rss_kib("self")
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        started = time.thread_time()
        while True:
            self.peak_kib = max(self.peak_kib, rss_kib("self"))
            pids = sandbox_processes(self._marker)
            self.peak_sandbox_kib = max(self.peak_sandbox_kib, sum(rss_kib(pid) for pid in pids))
            self.peak_sandbox_processes = max(self.peak_sandbox_processes, len(pids))
            self.samples += 1
            if self._stop.wait(SAMPLE_INTERVAL_S):
                break
        self.cpu_s = time.thread_time() - started

    def report(self) -> dict[str, Any]:
        return {
            "rss_start_mib": mib(self.start_kib),
            "peak_rss_mib": mib(self.peak_kib),
            "peak_rss_delta_mib": mib(self.peak_kib - self.start_kib),
            "peak_sandbox_rss_mib": mib(self.peak_sandbox_kib),
            "peak_sandbox_processes": self.peak_sandbox_processes,
            # ru_maxrss is in KiB on Linux, and never goes down
            "ru_maxrss_self_mib": mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss),
            "ru_maxrss_children_mib": mib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss),
            "memory_samples": self.samples,
            "sampler_cpu_s": round(self.cpu_s, 2),
        }


def mib(kib: int) -> float:
    return round(kib / KIB_PER_MIB, 1)


# --- the cases ----------------------------------------------------------------------------------


@dataclass
class Case:
    seconds: float
    completed: int
    model_requests: int
    memory: dict[str, Any]
    details: dict[str, Any]


def model_requests(server: ScriptedModelServer) -> int:
    return sum(1 for request in server.requests if request.turn is not None and request.status == 200)


def make_config(client: Client, data_dir: Path, server: ScriptedModelServer) -> FarlineConfig:
    return FarlineConfig(
        data_dir=data_dir,
        task_queue=f"bench-{uuid.uuid4().hex[:8]}",
        temporal_address=client.service_client.config.target_host,
        openai_base_url=server.base_url,
        model="scripted",
    )


async def handoffs_seconds(handle: WorkflowHandle[Any, RunResult]) -> float | None:
    """From the supervisor's history: its first handoff's scheduling to its last one's completion."""
    scheduled_ms: dict[int, int] = {}  # by event id
    completed_ms: list[int] = []
    async for event in handle.fetch_history_events():
        if (
            event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and event.activity_task_scheduled_event_attributes.activity_type.name == "deliver_handoff"
        ):
            scheduled_ms[event.event_id] = event.event_time.ToMilliseconds()
        elif (
            event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
            and event.activity_task_completed_event_attributes.scheduled_event_id in scheduled_ms
        ):
            completed_ms.append(event.event_time.ToMilliseconds())
    if not completed_ms:
        return None
    return round((max(completed_ms) - min(scheduled_ms.values())) / 1000, 2)


async def supervisor_case(client: Client, data_dir: Path, agents: int, workspace: Workspace) -> Case:
    with ScriptedModelServer(fanout_script(agents, workspace)) as server:
        config = make_config(client, data_dir, server)
        request = RunRequest(
            agent="supervisor",
            task=f"start {agents} helpers and wait for them",
            subagent_limits=SubagentLimits(max_live=agents, max_depth=2),
        )
        async with build_worker(client, config, registry=REGISTRY):
            with MemorySampler(data_dir) as sampler:
                started = time.perf_counter()
                handle = await start_run(client, config, request)
                result: RunResult = await handle.result()
                seconds = time.perf_counter() - started
            children = await handle.query("agents", result_type=list[Subagent])
        served = model_requests(server)
    if result.state is not RunState.COMPLETED:
        raise RuntimeError(f"the supervisor did not finish as scripted: {result}")
    completed = [child for child in children if child.state is SubagentState.COMPLETED and child.delivered_to]
    # from the server's clock: when the supervisor started, its last helper started, and closed
    start = (await handle.describe()).start_time
    described = [await client.get_workflow_handle(child.workflow_id).describe() for child in children]
    starts = [child.start_time for child in described]
    closes = [child.close_time for child in described if child.close_time is not None]
    details: dict[str, Any] = {"workspace": workspace}
    if start is not None and starts and len(closes) == len(described):
        details["helpers_started_seconds"] = round((max(starts) - start).total_seconds(), 2)
        details["helpers_done_seconds"] = round((max(closes) - start).total_seconds(), 2)
    details["handoffs_seconds"] = await handoffs_seconds(handle)
    return Case(seconds, len(completed), served, sampler.report(), details)


async def independent_case(client: Client, data_dir: Path, agents: int) -> Case:
    with ScriptedModelServer(fanout_script(agents, "empty")) as server:
        config = make_config(client, data_dir, server)
        async with build_worker(client, config, registry=REGISTRY):
            with MemorySampler(data_dir) as sampler:
                started = time.perf_counter()
                handles = await asyncio.gather(
                    *(
                        start_run(client, config, RunRequest(agent="helper", task=helper_task(number)))
                        for number in range(1, agents + 1)
                    )
                )
                results: list[RunResult] = await asyncio.gather(*(handle.result() for handle in handles))
                seconds = time.perf_counter() - started
        served = model_requests(server)
    completed = sum(1 for result in results if result.state is RunState.COMPLETED)
    return Case(seconds, completed, served, sampler.report(), {})


def case_line(name: str, agents: int, case: Case) -> dict[str, Any]:
    return {
        "bench": "fanout",
        "case": name,
        "agents": agents,
        "seconds": round(case.seconds, 2),
        **case.details,
        "completed": case.completed,
        "model_requests": case.model_requests,
        "ms_per_agent": round(case.seconds * 1000 / agents, 1),
        **case.memory,
    }


async def one_case(out: TextIO, name: str, agents: int, temporal_address: str) -> None:
    """Run one case in this process (after a warm-up) and print its line."""
    client = await Client.connect(temporal_address, data_converter=pydantic_data_converter)
    with tempfile.TemporaryDirectory() as data_dir:
        await supervisor_case(client, Path(data_dir) / "warm-up", 1, "fork")
        workspace = CASES[name]
        if workspace is None:
            case = await independent_case(client, Path(data_dir) / name, agents)
        else:
            case = await supervisor_case(client, Path(data_dir) / name, agents, workspace)
    print(json.dumps(case_line(name, agents, case)), file=out, flush=True)


async def case_in_own_process(name: str, agents: int, temporal_address: str) -> dict[str, Any]:
    """One case in a fresh process of its own, so that its memory owes nothing to the others'."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--agents",
        str(agents),
        "--case",
        name,
        "--temporal-address",
        temporal_address,
        stdout=asyncio.subprocess.PIPE,
    )
    stdout, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the {name} case failed (exit code {process.returncode}); see its stderr")
    return json.loads(stdout)


def ratio_line(agents: int, metric: str, case: dict[str, Any], baseline: dict[str, Any]) -> dict[str, Any]:
    return {
        "bench": "fanout",
        "case": "ratio",
        "agents": agents,
        "metric": metric,
        "ratio": round(case["seconds"] / baseline["seconds"], 3),
        "peak_rss_ratio": round(case["ru_maxrss_self_mib"] / baseline["ru_maxrss_self_mib"], 3),
    }


async def main() -> int:
    out = json_lines_out()
    configure_logging("console", level=logging.WARNING)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, default=100, help="sub-agents of the supervisor")
    parser.add_argument("--turns", type=int, dest="agents", help="the same as --agents (for the bench test)")
    parser.add_argument("--case", choices=list(CASES), help="run only this case, in this process")
    parser.add_argument("--temporal-address", help="with --case: the server to run it on")
    args = parser.parse_args()
    agents: int = args.agents
    if args.case is not None:
        if args.temporal_address is None:
            parser.error("--case needs --temporal-address")
        await one_case(out, args.case, agents, args.temporal_address)
        return 0
    env = await start_quiet_dev_server()
    try:
        address = env.client.service_client.config.target_host
        lines = [await case_in_own_process(name, agents, address) for name in CASES]
    finally:
        await env.shutdown()
    supervisor, fork, independent = lines
    lines.append(ratio_line(agents, "supervisor_over_independent_seconds", supervisor, independent))
    lines.append(ratio_line(agents, "fork_over_empty_seconds", fork, supervisor))
    for line in lines:
        print(json.dumps(line), file=out, flush=True)
    short = {line["case"]: line["completed"] for line in lines[:3] if line["completed"] != agents}
    if short:
        print(f"not every one of the {agents} helpers completed: {short}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    code = asyncio.run(main())
    # skip interpreter teardown, during which the Temporal client's native threads can abort the
    # process (temporalio/sdk-python#300), as the worker does
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
