"""The modal provider at the SDK boundary, on the fake Modal SDK (tests/fake_clouds/modal_fake.py)
whose sandboxes are containers of the tests' podman service: what the provider asks of Modal (the
recorded calls), and what it makes of Modal's answers (gone sandboxes, timeouts, snapshots).

The contract suite (tests/providers) runs the whole protocol on the same fake."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import pytest

from harness.sandbox_options import OptionsError
from sandbox_providers.base import (
    ProcessNotFound,
    ProcessSpec,
    SandboxConfig,
    SandboxError,
    SandboxGone,
    SandboxRef,
    SandboxUnavailable,
)
from sandbox_providers.modal import INSTALL_HINT, STDIN_CHUNK, ModalMachine, ModalProvider, modal_name
from tests.fake_clouds.modal_fake import LABEL_ID, SDK_CLASSES, Blob, Call, FakeModal, NotFoundError

if TYPE_CHECKING:
    from tests.podman_service import PodmanService

REGISTRY_IMAGE = "python:3.12-slim"
GNU_REGISTRY_IMAGE = "debian:12"
WORKER_SECRET = "sk-modal-worker-secret"


@pytest.fixture
async def fakes(podman_service: PodmanService) -> AsyncIterator[Callable[[], FakeModal]]:
    """FakeModal instances on one engine and one label: each is another worker of one Modal
    workspace. Every container and snapshot image they made is removed after the test."""
    label = uuid.uuid4().hex[:12]
    made: list[FakeModal] = []

    def make() -> FakeModal:
        fake = FakeModal(
            podman_service.base_url,
            images={REGISTRY_IMAGE: podman_service.image, GNU_REGISTRY_IMAGE: podman_service.gnu_image},
            labels={"farline.test": label},
            default_image=podman_service.image,
        )
        made.append(fake)
        return fake

    yield make
    await asyncio.to_thread(made[0].remove_all)
    for fake in made[1:]:
        fake.engine.close()


@pytest.fixture
def fake(fakes: Callable[[], FakeModal]) -> FakeModal:
    return fakes()


@pytest.fixture
def app_name() -> str:
    return f"farline-test-{uuid.uuid4().hex[:8]}"


def provider_on(fake: FakeModal, app_name: str, **settings: Any) -> ModalProvider:
    return ModalProvider(REGISTRY_IMAGE, app_name=app_name, sdk=fake, **settings)


@pytest.fixture
def provider(fake: FakeModal, app_name: str) -> ModalProvider:
    return provider_on(fake, app_name)


def new_id() -> str:
    return f"md-{uuid.uuid4().hex[:10]}"


def only(calls: list[Call]) -> Call:
    assert len(calls) == 1, calls
    return calls[0]


def container_info(fake: FakeModal, app_name: str, sandbox_id: str) -> dict[str, Any]:
    (container,) = fake.containers(app_name, modal_name(sandbox_id), running=True)
    return fake.engine.api.inspect_container(container.id)


async def sh(provider: ModalProvider, ref: SandboxRef, script: str) -> tuple[int | None, str]:
    process_id = f"p-{uuid.uuid4().hex[:8]}"
    state = await provider.start_process(ref, ProcessSpec(process_id=process_id, argv=["sh", "-c", script]))
    deadline = time.monotonic() + 30
    while state.running:
        assert time.monotonic() < deadline, f"{script!r} still running"
        await asyncio.sleep(0.02)
        state = await provider.process_state(ref, process_id)
    output = await provider.read_output(ref, process_id, 0, 1 << 20)
    return state.exit_code, output.data.decode(errors="replace")


# -- what the provider asks of Modal -------------------------------------------------------------------


async def test_create_asks_for_an_offline_sandbox_with_only_the_runs_environment(
    provider: ModalProvider, fake: FakeModal, app_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", WORKER_SECRET)
    sandbox_id = new_id()
    ref = await provider.create(sandbox_id, SandboxConfig(env={"RUN_SETTING": "it's $HOME"}))

    lookup = only(fake.calls_of("App.lookup"))
    assert lookup.args == (app_name,) and lookup.kwargs["create_if_missing"] is True
    assert only(fake.calls_of("Image.from_registry")).args == (REGISTRY_IMAGE,)
    create = only(fake.calls_of("Sandbox.create"))
    assert create.kwargs["name"] == sandbox_id
    assert create.kwargs["block_network"] is True
    assert create.kwargs["timeout"] == 86_400, "the SDK's default lifetime (300 s) must never apply"
    assert create.kwargs["env"] == {
        "HOME": "/workspace",
        "LANG": "C.UTF-8",
        "TERM": "dumb",
        "RUN_SETTING": "it's $HOME",
    }
    assert create.kwargs["tags"] == {"farline.sandbox": sandbox_id, "farline.owner": "harness"}
    assert not {"cpu", "memory", "region"} & set(create.kwargs), "no limits unless configured"
    assert container_info(fake, app_name, sandbox_id)["HostConfig"]["NetworkMode"] == "none"

    code, output = await sh(provider, ref, "env; id -u")
    assert code == 0
    assert "RUN_SETTING=it's $HOME" in output and output.endswith("0\n")
    assert WORKER_SECRET not in output and "OPENAI_API_KEY" not in output
    execs = fake.calls_of("Sandbox.exec")
    assert execs and all(call.kwargs == {"text": False, "timeout": 600} for call in execs), execs


async def test_a_sandbox_with_network_is_not_blocked(
    provider: ModalProvider, fake: FakeModal, app_name: str
) -> None:
    sandbox_id = new_id()
    await provider.create(sandbox_id, SandboxConfig(network=True))
    assert only(fake.calls_of("Sandbox.create")).kwargs["block_network"] is False
    assert container_info(fake, app_name, sandbox_id)["HostConfig"]["NetworkMode"] != "none"


async def test_the_runs_options_over_the_providers_settings(fake: FakeModal, app_name: str) -> None:
    provider = provider_on(fake, app_name, cpu=0.5, memory_mib=256, region="eu-west", timeout_s=7200)
    chosen = new_id()
    options = {
        "image": GNU_REGISTRY_IMAGE,
        "cpu": 1.0,
        "memory_mib": 512,
        "region": "us-east",
        "timeout_s": 3600,
    }
    ref = await provider.create(chosen, SandboxConfig(options=options))
    defaults = new_id()
    await provider.create(defaults, SandboxConfig())

    first, second = fake.calls_of("Sandbox.create")
    assert {key: first.kwargs[key] for key in ("cpu", "memory", "region", "timeout")} == {
        "cpu": 1.0,
        "memory": 512,
        "region": "us-east",
        "timeout": 3600,
    }
    assert {key: second.kwargs[key] for key in ("cpu", "memory", "region", "timeout")} == {
        "cpu": 0.5,
        "memory": 256,
        "region": "eu-west",
        "timeout": 7200,
    }
    assert [call.args for call in fake.calls_of("Image.from_registry")] == [
        (GNU_REGISTRY_IMAGE,),
        (REGISTRY_IMAGE,),
    ]
    host = container_info(fake, app_name, chosen)["HostConfig"]
    assert (host["NanoCpus"], host["Memory"]) == (1_000_000_000, 512 * 1024 * 1024)
    code, output = await sh(provider, ref, "/usr/bin/tar --version | head -n 1")
    assert code == 0 and "GNU tar" in output, "the run's image is the one that runs"

    with pytest.raises(OptionsError, match="gpu"):
        await provider.create(new_id(), SandboxConfig(options={"gpu": "A100"}))


async def test_stdin_goes_in_chunks_the_sdk_takes_and_output_comes_back_as_bytes(
    provider: ModalProvider, fake: FakeModal
) -> None:
    ref = await provider.create(new_id(), SandboxConfig())
    data = os.urandom(STDIN_CHUNK + 3 * 1024 * 1024)  # not UTF-8: text=True would fail to decode it
    fake.calls.clear()
    await provider.write_file(ref, "big.bin", data)
    writes = fake.calls_of("StreamWriter.write")
    sizes = [call.args[0].size if isinstance(call.args[0], Blob) else len(call.args[0]) for call in writes]
    assert sizes == [STDIN_CHUNK, 3 * 1024 * 1024]
    assert len(fake.calls_of("StreamWriter.drain")) == 3  # each chunk, then the EOF
    assert len(fake.calls_of("StreamWriter.write_eof")) == 1
    assert await provider.read_file(ref, "big.bin") == data


async def test_a_command_line_over_modals_limit_is_refused_with_a_message(
    provider: ModalProvider, fake: FakeModal
) -> None:
    ref = await provider.create(new_id(), SandboxConfig())
    execs = len(fake.calls_of("Sandbox.exec"))
    with pytest.raises(SandboxError, match="put a long script in a file"):
        await provider.start_process(ref, ProcessSpec(process_id="long", argv=["echo", "x" * 60_000]))
    assert len(fake.calls_of("Sandbox.exec")) == execs


async def test_an_exec_past_its_timeout_is_an_error(fake: FakeModal, app_name: str) -> None:
    provider = provider_on(fake, app_name, exec_timeout_s=1)
    ref = await provider.create(new_id(), SandboxConfig())
    machine = await provider._machine(ref)
    with pytest.raises(SandboxError, match="did not finish within 1s"):
        await provider._run(machine, ["sleep", "5"], None, None)
    assert await provider.health(ref), "a slow command is no gone sandbox"


async def test_commands_run_as_the_containers_user_only(provider: ModalProvider) -> None:
    ref = await provider.create(new_id(), SandboxConfig())
    machine = await provider._machine(ref)
    with pytest.raises(SandboxUnavailable, match="container's user"):
        await provider._run(machine, ["true"], None, "1000")


# -- finding sandboxes again ---------------------------------------------------------------------------


async def test_create_is_idempotent_across_workers(fakes: Callable[[], FakeModal], app_name: str) -> None:
    first_fake, second_fake, third_fake = fakes(), fakes(), fakes()
    first, second = provider_on(first_fake, app_name), provider_on(second_fake, app_name)
    sandbox_id = new_id()
    # two workers racing on one retried activity: one sandbox
    refs = await asyncio.gather(
        first.create(sandbox_id, SandboxConfig()), second.create(sandbox_id, SandboxConfig())
    )
    assert refs[0] == refs[1]
    assert len(first_fake.containers(app_name)) == 1
    await first.write_file(refs[0], "kept.txt", b"from the first worker")

    # a third worker, with no create at all: found by name
    third = provider_on(third_fake, app_name)
    assert await third.read_file(refs[0], "kept.txt") == b"from the first worker"
    assert not third_fake.calls_of("Sandbox.create")
    assert only(third_fake.calls_of("Sandbox.from_name")).args == (app_name, sandbox_id)
    assert (await first._machine(refs[0])).id == (await third._machine(refs[0])).id


async def test_a_long_sandbox_id_gets_a_modal_name_and_is_found_again(
    fakes: Callable[[], FakeModal], app_name: str
) -> None:
    sandbox_id = "run-" + "x" * 100
    fake = fakes()
    ref = await provider_on(fake, app_name).create(sandbox_id, SandboxConfig())
    create = only(fake.calls_of("Sandbox.create"))
    assert len(create.kwargs["name"]) <= 64 and create.kwargs["name"].startswith("run-xxx")
    assert create.kwargs["tags"]["farline.sandbox"] == sandbox_id
    assert await provider_on(fakes(), app_name).health(ref)


async def test_a_sandbox_modal_ended_is_gone(
    provider: ModalProvider, fake: FakeModal, fakes: Callable[[], FakeModal], app_name: str
) -> None:
    sandbox_id = new_id()
    ref = await provider.create(sandbox_id, SandboxConfig())
    await provider.write_file(ref, "a.txt", b"a")
    await asyncio.to_thread(fake.terminate_behind, app_name, modal_name(sandbox_id))

    assert not await provider.health(ref)
    with pytest.raises(SandboxGone):
        await provider.read_file(ref, "a.txt")
    with pytest.raises(SandboxGone):  # another worker, which never saw it
        await provider_on(fakes(), app_name).read_file(ref, "a.txt")
    await provider.destroy(ref)  # not an error

    removed = await provider.create(new_id(), SandboxConfig())
    await asyncio.to_thread(fake.remove_behind, app_name, modal_name(removed.sandbox_id))
    with pytest.raises(SandboxGone):
        await provider.start_process(removed, ProcessSpec(process_id="p", argv=["true"]))
    with pytest.raises(SandboxGone):
        await provider.snapshot_image(removed)


async def test_a_gone_error_from_a_running_sandbox_is_no_gone_sandbox(
    provider: ModalProvider, fake: FakeModal
) -> None:
    """Modal's NotFoundError also comes from a command router that lost the task for a moment:
    only a sandbox that Modal says has ended is SandboxGone (a new one costs the run its processes)."""
    ref = await provider.create(new_id(), SandboxConfig())
    await provider.write_file(ref, "a.txt", b"a")
    fake.fail_next_exec = NotFoundError("Task not found")
    # an operation that is not safe to repeat fails, and the sandbox is not taken for gone
    with pytest.raises(SandboxError, match="still runs") as raised:
        await provider.delete_file(ref, "a.txt")
    assert not isinstance(raised.value, SandboxGone)
    # one that is safe to repeat is repeated
    fake.fail_next_exec = NotFoundError("Task not found")
    assert await provider.read_file(ref, "a.txt") == b"a"
    assert fake.fail_next_exec is None


async def test_a_sandbox_past_its_lifetime_is_gone(fake: FakeModal, app_name: str) -> None:
    provider = provider_on(fake, app_name, timeout_s=10)
    ref = await provider.create(new_id(), SandboxConfig())
    assert only(fake.calls_of("Sandbox.create")).kwargs["timeout"] == 10
    deadline = time.monotonic() + 60
    while await provider.health(ref):
        assert time.monotonic() < deadline, "the sandbox outlived its timeout"
        await asyncio.sleep(0.5)
    with pytest.raises(SandboxGone):
        await provider.list_dir(ref)


async def test_a_users_sandbox_by_its_modal_id(
    provider: ModalProvider, fake: FakeModal, app_name: str
) -> None:
    harness_ref = await provider.create(new_id(), SandboxConfig())
    await provider.write_file(harness_ref, "theirs.txt", b"the user's")
    (container,) = fake.containers(app_name)
    ref = SandboxRef(provider="modal", sandbox_id=container.labels[LABEL_ID], owner="user")
    assert await provider.read_file(ref, "theirs.txt") == b"the user's"
    with pytest.raises(SandboxError, match="user-owned"):
        await provider.destroy(ref)
    await asyncio.to_thread(fake.terminate_behind, app_name, modal_name(harness_ref.sandbox_id))
    assert not await provider.health(ref)
    with pytest.raises(SandboxGone):
        await provider_on(fake, app_name).read_file(ref, "theirs.txt")


# -- the native primitive: file system snapshots as Modal Images -----------------------------------------


async def test_a_filesystem_snapshot_starts_a_new_sandbox(
    provider: ModalProvider, fake: FakeModal, fakes: Callable[[], FakeModal], app_name: str
) -> None:
    ref = await provider.create(new_id(), SandboxConfig())
    await provider.write_file(ref, "notes/kept.txt", b"kept")
    assert (await sh(provider, ref, "mkdir -p /opt/tool && echo installed > /opt/tool/version"))[0] == 0
    await provider.start_process(ref, ProcessSpec(process_id="sleeper", argv=["sleep", "300"]))

    image_id = await provider.snapshot_image(ref)
    assert image_id.startswith("im-")
    snapshot = only(fake.calls_of("Sandbox.snapshot_filesystem"))
    assert snapshot.kwargs == {"timeout": 300, "ttl": 30 * 24 * 3600}
    assert (await provider.process_state(ref, "sleeper")).running, "the sandbox runs on"

    # another worker starts the copy from the image id alone
    other_fake = fakes()
    other = provider_on(other_fake, app_name)
    copy = await other.create(new_id(), SandboxConfig(env={"COPY_RUN": "1"}), from_image_id=image_id)
    assert only(other_fake.calls_of("Image.from_id")).args == (image_id,)
    assert not other_fake.calls_of("Image.from_registry")
    assert await other.read_file(copy, "notes/kept.txt") == b"kept"
    code, output = await sh(other, copy, "cat /opt/tool/version; env")
    assert code == 0 and output.startswith("installed\n")
    assert "COPY_RUN=1" in output, "the copy has its own run's environment"
    with pytest.raises(ProcessNotFound):  # the old machine's processes are not the copy's
        await other.process_state(copy, "sleeper")

    # a retried create keeps what the copy started since
    await other.start_process(copy, ProcessSpec(process_id="copy-sleeper", argv=["sleep", "300"]))
    assert await other.create(copy.sandbox_id, SandboxConfig(), from_image_id=image_id) == copy
    assert (await other.process_state(copy, "copy-sleeper")).running

    with pytest.raises(SandboxUnavailable, match="snapshot image"):
        await other.create(new_id(), SandboxConfig(), from_image_id="im-doesnotexist0000000000")


# -- credentials, the SDK, the config ----------------------------------------------------------------


async def test_without_the_sdk_the_provider_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "modal", None)  # an import of it fails
    provider = ModalProvider()
    with pytest.raises(SandboxUnavailable, match=r"pip install 'farline\[modal\]'"):
        await provider.create(new_id(), SandboxConfig())
    assert "farline[modal]" in INSTALL_HINT


async def test_refused_credentials_say_which_to_set(provider: ModalProvider, fake: FakeModal) -> None:
    fake.refuse_credentials = True
    with pytest.raises(SandboxUnavailable, match="MODAL_TOKEN_ID"):
        await provider.create(new_id(), SandboxConfig())


def test_from_config_maps_the_modal_settings() -> None:
    config = SimpleNamespace(
        modal_image="python:3.11-slim",
        modal_app="farline-prod",
        modal_environment="main",
        modal_cpu=2.0,
        modal_memory_mib=4096,
        modal_region="us-east",
        modal_timeout_s=3600,
        modal_idle_timeout_s=900,
        modal_exec_timeout_s=120,
    )
    provider = ModalProvider.from_config(config)  # type: ignore[arg-type]
    assert (provider.image, provider.app_name, provider.environment_name) == (
        "python:3.11-slim",
        "farline-prod",
        "main",
    )
    assert (provider.cpu, provider.memory_mib, provider.region) == (2.0, 4096, "us-east")
    assert (provider.timeout_s, provider.idle_timeout_s, provider.exec_timeout_s) == (3600, 900, 120)


def test_the_machine_keeps_the_sdk_handle_out_of_comparisons() -> None:
    one = ModalMachine(id="sb-1", name="app/x", user="", modal_name="x", sandbox=object())
    assert one == ModalMachine(id="sb-1", name="app/x", user="", modal_name="x", sandbox=object())


# -- the fake against the real SDK --------------------------------------------------------------------


def real_callable(call: Call) -> Callable[..., Any]:
    module_name, _, class_name = SDK_CLASSES[call.name.split(".")[0]].rpartition(".")
    target = getattr(getattr(importlib.import_module(module_name), class_name), call.name.split(".")[1])
    return target.aio if call.aio else target


async def test_every_recorded_call_binds_to_the_real_sdk(
    provider: ModalProvider, fake: FakeModal, app_name: str
) -> None:
    pytest.importorskip("modal", reason="the Modal SDK is not installed (pip install 'farline[modal]')")
    ref = await provider.create(
        new_id(), SandboxConfig(options={"cpu": 0.5, "memory_mib": 256, "region": "us"})
    )
    await provider.write_file(ref, "a.txt", b"a")
    assert await provider.read_file(ref, "a.txt") == b"a"
    image_id = await provider.snapshot_image(ref)
    copy = await provider.create(new_id(), SandboxConfig(network=True), from_image_id=image_id)
    await provider.destroy(copy)
    assert not await provider.health(copy)
    await asyncio.to_thread(fake.terminate_behind, app_name, modal_name(ref.sandbox_id))
    assert not await provider.health(ref)

    names = {call.name for call in fake.calls}
    assert names >= {
        "App.lookup",
        "Image.from_registry",
        "Image.from_id",
        "Sandbox.create",
        "Sandbox.from_name",
        "Sandbox.exec",
        "Sandbox.poll",
        "Sandbox.terminate",
        "Sandbox.detach",
        "Sandbox.snapshot_filesystem",
        "ContainerProcess.wait",
        "StreamWriter.write",
        "StreamWriter.write_eof",
        "StreamWriter.drain",
        "StreamReader.read",
    }, names
    for call in fake.calls:
        signature = inspect.signature(real_callable(call))
        first = next(iter(signature.parameters), None)
        args = (object(), *call.args) if first in ("self", "cls") else call.args
        assert call.bound == (first in ("self", "cls")), call
        try:
            signature.bind(*args, **call.kwargs)
        except TypeError as error:
            pytest.fail(f"{call.name}{'.aio' if call.aio else ''}{call.args}{call.kwargs}: {error}")
