"""The docker sandbox provider: one long-lived container per sandbox, through the Docker API.

Works with any engine that speaks the Docker API (Docker, or podman's `podman system
service`), through the `docker` Python SDK. A sandbox is a container named
`<name_prefix><sandbox id>`, labelled `farline.sandbox=<id>`, that runs `sleep infinity`
under the engine's init (which reaps the orphans of detached processes). It has:

- the configured image, user, and limits (cpus, memory without swap, pids);
- network mode `none` unless SandboxConfig.network (then `networked_mode`, "bridge");
- an environment of HOME=<workspace>, LANG=C.UTF-8, TERM=dumb, PATH (when the image sets
  none), the image's own variables, and SandboxConfig.env: nothing of the worker's;
- the workspace at `workspace_path`, owned by the user, and the processes' state under
  /var/farline, outside the workspace;
- no new privileges (setuid programs do not raise them).

Every operation is one `docker exec` of the POSIX shell script of shell_scripts.py as the
sandbox's user (shell_sandbox.py has the protocol on top of that); processes run under a
detached supervisor inside the container, so they, their output and their exit codes
outlive the worker. An exec round trip costs ~100 ms on podman.

A container that no longer exists, or no longer runs, is SandboxGone: the workflow
rehydrates from that. A harness-owned container found dead is removed then.

User-owned containers: a ref with owner "user" names an existing container (name or id) and
is used as it is; `destroy` refuses to remove it. Its first command makes the workspace and
state directories (as root) if they are missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable
from typing import Any, NoReturn

import docker
import structlog
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.utils.socket import STDERR, frames_iter
from requests.exceptions import RequestException

from harness.config import FarlineConfig
from harness.sandbox_options import DockerOptions, parse_options
from sandbox_providers.base import (
    WORKSPACE_PATH,
    SandboxConfig,
    SandboxError,
    SandboxGone,
    SandboxRef,
    SandboxUnavailable,
)
from sandbox_providers.shell_sandbox import (
    ANSWERS,
    DEFAULT_PATH,
    LABEL_CONFIG,
    LABEL_OWNER,
    LABEL_SANDBOX,
    Machine,
    ShellResult,
    ShellSandboxProvider,
    check_env,
    check_id,
    config_label,
)

log = structlog.get_logger(__name__)

_DEAD_STATES = {"exited", "dead", "stopped"}
EXEC_ATTEMPTS = 3


class _ExecNotStarted(Exception):
    """The engine lost or refused an exec before it ran: trying again is safe."""


class DockerProvider(ShellSandboxProvider):
    """Sandboxes as containers of a Docker-API engine (see the module docstring)."""

    name = "docker"

    def __init__(
        self,
        image: str,
        *,
        base_url: str | None = None,
        client_factory: Callable[[], docker.DockerClient] | None = None,
        cpus: float | None = None,
        memory: int | str | None = None,
        pids_limit: int | None = 1024,
        network_mode: str = "none",
        networked_mode: str = "bridge",
        user: str | None = None,
        workspace_path: str = WORKSPACE_PATH,
        name_prefix: str = "farline-",
        labels: dict[str, str] | None = None,
        start_wait_s: float = 0.1,
        timeout_s: float = 300.0,
    ) -> None:
        super().__init__(workspace_path=workspace_path, start_wait_s=start_wait_s)
        self.image = image
        self.base_url = base_url
        self.cpus = cpus
        self.memory = memory
        self.pids_limit = pids_limit
        # the network mode of a sandbox without network, and of one with
        self.network_mode = network_mode
        self.networked_mode = networked_mode
        self.user = user
        self.name_prefix = name_prefix
        self.labels = dict(labels or {})
        self.timeout_s = timeout_s
        self._client_factory = client_factory or self._default_client
        self._client: docker.DockerClient | None = None
        self._client_lock = threading.Lock()

    @classmethod
    def from_config(cls, config: FarlineConfig) -> DockerProvider:
        if config.docker_image is None:
            raise SandboxUnavailable("the docker provider needs an image: set FARLINE_DOCKER_IMAGE")
        return cls(
            config.docker_image,
            base_url=config.docker_url,
            user=config.docker_user,
            cpus=config.docker_cpus,
            memory=config.docker_memory,
            pids_limit=config.docker_pids_limit,
            networked_mode=config.docker_network,
        )

    def _default_client(self) -> docker.DockerClient:
        if self.base_url is None:
            return docker.from_env(timeout=int(self.timeout_s), max_pool_size=32)
        return docker.DockerClient(base_url=self.base_url, timeout=int(self.timeout_s), max_pool_size=32)

    def _docker(self) -> docker.DockerClient:
        with self._client_lock:
            if self._client is None:
                try:
                    self._client = self._client_factory()
                except DockerException as error:
                    raise SandboxUnavailable(
                        f"cannot reach the Docker engine ({self.base_url or 'DOCKER_HOST'}): {error}"
                    ) from error
            return self._client

    # -- sandboxes -----------------------------------------------------------------------------------

    async def create(self, sandbox_id: str, config: SandboxConfig) -> SandboxRef:
        check_id("sandbox", sandbox_id)
        check_env(config.env)
        container = await self._in_thread(self._create_sync, sandbox_id, config)
        await self._setup(container)
        log.info(
            "sandbox.created",
            sandbox_id=sandbox_id,
            container=container.id[:12],
            network=config.network,
            env=sorted(config.env),
        )
        return SandboxRef(provider=self.name, sandbox_id=sandbox_id)

    def _create_sync(self, sandbox_id: str, config: SandboxConfig) -> Machine:
        api = self._docker().api
        name = self.name_prefix + sandbox_id
        for _attempt in range(5):
            try:
                info = api.inspect_container(name)
            except NotFound:
                try:
                    self._new_container(name, sandbox_id, config)
                except APIError as error:
                    if error.status_code == 409:  # created meanwhile by another attempt
                        continue
                    raise
                continue
            labels = info["Config"].get("Labels") or {}
            if labels.get(LABEL_SANDBOX) != sandbox_id:
                raise SandboxError(f"a container named {name!r} exists and is not the sandbox {sandbox_id!r}")
            status = info["State"]["Status"]
            if status == "running":
                if labels.get(LABEL_CONFIG) != config_label(config):
                    log.warning(
                        "sandbox.config_kept", sandbox_id=sandbox_id, reason="exists with another config"
                    )
                return Machine(id=info["Id"], name=name, user=info["Config"].get("User") or "")
            if status in ("created", "configured"):
                api.start(info["Id"])
                self._check_started(info["Id"], name)
                continue
            # it ran and stopped: a sandbox that died; a new one replaces it
            log.warning("sandbox.dead_container_replaced", sandbox_id=sandbox_id, status=status)
            api.remove_container(info["Id"], force=True)
        raise SandboxError(f"could not create the container {name!r}: it keeps changing under us")

    def _new_container(self, name: str, sandbox_id: str, config: SandboxConfig) -> None:
        client = self._docker()
        options = parse_options(DockerOptions, self.name, config.options)
        image = options.image or self.image
        cpus = options.cpus if options.cpus is not None else self.cpus
        memory = options.memory or self.memory
        pids_limit = options.pids_limit or self.pids_limit
        try:
            image_env = client.api.inspect_image(image)["Config"].get("Env") or []
        except ImageNotFound:
            try:
                client.images.pull(image)
            except (APIError, ImageNotFound) as error:
                raise SandboxUnavailable(f"cannot pull the sandbox image {image!r}: {error}") from error
            image_env = client.api.inspect_image(image)["Config"].get("Env") or []
        environment = {"HOME": self.workspace_path, "LANG": "C.UTF-8", "TERM": "dumb"}
        if not any(entry.startswith("PATH=") for entry in image_env):
            environment["PATH"] = DEFAULT_PATH
        environment.update(config.env)
        limits: dict[str, Any] = {}
        if cpus is not None:
            limits["nano_cpus"] = int(cpus * 1e9)
        if memory is not None:
            limits["mem_limit"] = memory
            limits["memswap_limit"] = memory  # no swap on top
        if pids_limit is not None:
            limits["pids_limit"] = pids_limit
        client.containers.create(
            image,
            command=["sleep", "infinity"],
            name=name,
            labels={
                **self.labels,
                LABEL_SANDBOX: sandbox_id,
                LABEL_OWNER: "harness",
                LABEL_CONFIG: config_label(config),
            },
            environment=environment,
            user=options.user or self.user or "",
            working_dir=self.workspace_path,
            network_mode=self.networked_mode if config.network else self.network_mode,
            init=True,
            security_opt=["no-new-privileges"],
            **limits,
        )

    def _check_started(self, container_id: str, name: str) -> None:
        info = self._docker().api.inspect_container(container_id)
        if not info["State"]["Running"]:
            logs = self._docker().api.logs(container_id, tail=20).decode(errors="replace").strip()
            raise SandboxUnavailable(
                f"the sandbox container {name!r} (image {self.image!r}) stopped at once "
                f"({info['State'].get('Error') or info['State']['Status']}): {logs or 'no output'}; "
                "the image needs a POSIX shell and `sleep infinity`"
            )

    async def destroy(self, ref: SandboxRef) -> None:
        self._check_ref(ref)
        if ref.owner == "user":
            raise SandboxError(f"sandbox {ref.sandbox_id!r} is user-owned: the harness never removes it")
        name = self._container_name(ref)
        try:
            removed = await self._in_thread(self._remove_sync, name)
        except NotFound:
            return
        self._forget(removed)
        log.info("sandbox.destroyed", sandbox_id=ref.sandbox_id, container=removed[:12])

    def _remove_sync(self, name: str) -> str:
        api = self._docker().api
        container_id = api.inspect_container(name)["Id"]
        with contextlib.suppress(NotFound):  # removed meanwhile
            api.remove_container(container_id, force=True)
        return container_id

    # -- helpers -------------------------------------------------------------------------------------

    def _container_name(self, ref: SandboxRef) -> str:
        # a user's container is named as the user gave it (its name or id)
        return ref.sandbox_id if ref.owner == "user" else self.name_prefix + ref.sandbox_id

    async def _machine(self, ref: SandboxRef) -> Machine:
        """The running container of this sandbox; SandboxGone when there is none."""
        self._check_ref(ref)
        return await self._in_thread(self._container_sync, ref)

    def _container_sync(self, ref: SandboxRef) -> Machine:
        name = self._container_name(ref)
        try:
            info = self._docker().api.inspect_container(name)
        except NotFound:
            raise SandboxGone(f"sandbox {ref.sandbox_id!r}: no container {name!r}") from None
        labels = info["Config"].get("Labels") or {}
        container = Machine(
            id=info["Id"],
            name=name,
            user=info["Config"].get("User") or "",
            harness_owned=ref.owner == "harness" and labels.get(LABEL_OWNER) == "harness",
        )
        state = info["State"]
        if not state.get("Running") or state.get("Paused"):
            self._gone(container, state["Status"])
        return container

    def _gone(self, container: Machine, status: str) -> NoReturn:
        """SandboxGone for a container that stopped; a dead harness-owned one is removed first:
        it is never used again (the run rehydrates a new one), so it is no garbage left behind."""
        if container.harness_owned and status in _DEAD_STATES:
            try:
                self._docker().api.remove_container(container.id, force=True)
                log.info("sandbox.dead_container_removed", container=container.name, status=status)
            except (DockerException, RequestException) as error:
                log.warning("sandbox.dead_container_kept", container=container.name, error=str(error))
        raise SandboxGone(f"the sandbox container {container.name!r} is {status}")

    async def _in_thread(self, function: Callable[..., Any], *args: Any) -> Any:
        """A blocking SDK call in a thread, its errors as the protocol's."""
        try:
            return await asyncio.to_thread(function, *args)
        except (SandboxError, NotFound):
            raise
        except (DockerException, RequestException) as error:
            raise SandboxError(f"the Docker engine failed: {error}") from error

    async def _run(
        self, container: Machine, command: list[str], stdin: bytes | None, user: str | None
    ) -> ShellResult:
        for attempt in range(1, EXEC_ATTEMPTS + 1):
            try:
                result = await self._in_thread(self._exec_sync, container.id, command, stdin, user)
            except NotFound:
                raise SandboxGone(f"the sandbox container {container.name!r} is gone") from None
            except _ExecNotStarted as error:
                await self._check_still_there(container)
                reason = str(error)
            except SandboxError:
                await self._check_still_there(container)
                raise
            else:
                if result.code in ANSWERS:
                    return result
                # a failure, or the container died under the exec
                await self._check_still_there(container)
                if result.code is not None or b"OCI runtime" not in result.stderr:
                    return result
                reason = result.message
            # the engine lost the exec, or its runtime could not start it (runc's init under
            # memory pressure, say): nothing ran, so trying again is safe
            log.warning(
                "sandbox.exec_retried", container=container.name, attempt=attempt, error=reason[-300:]
            )
            await asyncio.sleep(0.2 * attempt)
        raise SandboxError(f"the engine could not run an operation in {container.name!r}: {reason[-1000:]}")

    async def _check_still_there(self, container: Machine) -> None:
        await self._in_thread(self._check_still_there_sync, container)

    def _check_still_there_sync(self, container: Machine) -> None:
        try:
            info = self._docker().api.inspect_container(container.id)
        except NotFound:
            raise SandboxGone(f"the sandbox container {container.name!r} is gone") from None
        except (DockerException, RequestException):
            return  # the engine is unreachable: the caller's own error says so
        if not info["State"].get("Running"):
            self._gone(container, info["State"]["Status"])

    def _exec_sync(
        self, container_id: str, command: list[str], stdin: bytes | None, user: str | None
    ) -> ShellResult:
        api = self._docker().api
        exec_id = api.exec_create(container_id, command, stdin=stdin is not None, user=user or "")["Id"]
        try:
            if stdin is None:
                stdout, stderr = api.exec_start(exec_id, demux=True)
            else:
                stdout, stderr = self._exec_with_input(api, exec_id, stdin)
        except NotFound as error:
            raise _ExecNotStarted(f"the engine lost the exec it had just created: {error}") from error
        result = ShellResult.of(stdout or b"", stderr or b"")
        if result.code is None:
            # its output was cut short: the engine's record still has the exit code
            with contextlib.suppress(NotFound):
                code = api.exec_inspect(exec_id).get("ExitCode")
                if isinstance(code, int) and code in ANSWERS:
                    return ShellResult(code=code, stdout=result.stdout, stderr=result.stderr, complete=False)
        return result

    @staticmethod
    def _exec_with_input(api: Any, exec_id: str, data: bytes) -> tuple[bytes, bytes]:
        """Start an exec, send `data` to its stdin and close it, collect its output."""
        stream = api.exec_start(exec_id, socket=True)
        raw = getattr(stream, "_sock", stream)
        out: list[bytes] = []
        err: list[bytes] = []
        try:
            raw.sendall(data)
            raw.shutdown(socket.SHUT_WR)
            for kind, chunk in frames_iter(stream, tty=False):
                (err if kind == STDERR else out).append(chunk)
        finally:
            stream.close()
            raw.close()
        return b"".join(out), b"".join(err)
