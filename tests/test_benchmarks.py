"""The benchmarks still run (a few turns each): a broken benchmark is caught here, not later."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("script", "keys"),
    [
        ("bench/loop_overhead.py", {"ms_per_turn", "ratio"}),
        ("bench/tools.py", {"ms", "ratio"}),
        ("bench/snapshot.py", {"seconds", "speedup"}),
        ("bench/long_run.py", {"bytes_per_turn", "ms_per_turn", "history_bytes_total", "ratio"}),
        ("bench/fanout.py", {"seconds", "ratio"}),
        ("bench/providers.py", {"median_ms", "seconds", "ratios"}),
    ],
)
def test_benchmark_prints_json_lines(script: str, keys: set[str]) -> None:
    run = subprocess.run(
        [sys.executable, script, "--turns", "3"], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    benches = ("loop_overhead", "tools", "snapshot", "long_run", "fanout", "providers")
    assert lines and all(line["bench"] in benches for line in lines)
    seen = set().union(*(line.keys() for line in lines))
    assert keys <= seen
