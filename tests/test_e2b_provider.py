"""The e2b provider at its SDK boundary, on the fake E2B SDK (tests/fake_clouds/e2b_fake.py), whose
sandboxes are real containers of the podman service: the calls it makes (settings, timeouts, no
network, only the run's environment), lookups from a fresh worker, gone sandboxes, pause and
resume. Where the real `e2b` package is installed, every recorded call must bind to its
signatures. The contract suite runs on the same fake (tests/providers/factory_e2b.py)."""

from __future__ import annotations

import asyncio
import base64
import importlib
import importlib.util
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from harness.sandbox_options import OptionsError
from sandbox_providers.base import SandboxConfig, SandboxError, SandboxGone, SandboxRef, SandboxUnavailable
from sandbox_providers.e2b import LABEL_SANDBOX, STDOUT_MARK, E2BProvider, decoded_stdout, shell_command
from tests.fake_clouds.e2b_fake import (
    AuthenticationException,
    FakeE2B,
    SandboxNotRunningException,
    ServiceBusyException,
    unbound_calls,
    unlike_the_sdk,
)
from tests.podman_service import PodmanService
from tests.providers.support import ProviderSetup, ProviderUnderTest

REAL_SDK = importlib.import_module("e2b") if importlib.util.find_spec("e2b") else None
NO_REAL_SDK = "the real E2B SDK is not installed (pip install 'farline[e2b]')"

Clouds = Callable[[], FakeE2B]


@pytest.fixture
def clouds(podman_service: PodmanService) -> Iterator[Clouds]:
    """Makes fake SDKs of one E2B account: each is one worker's view of it."""
    account = {"farline.test": uuid.uuid4().hex[:12]}
    made: list[FakeE2B] = []

    def cloud() -> FakeE2B:
        templates = {"base": podman_service.image, "gnu": podman_service.gnu_image}
        made.append(FakeE2B(podman_service.base_url, templates=templates, labels=account))
        return made[-1]

    yield cloud
    for fake in made:
        fake.remove_all()
    if REAL_SDK is not None:
        assert not [problem for fake in made for problem in unbound_calls(REAL_SDK, fake.calls)]


@pytest.fixture
def cloud(clouds: Clouds) -> FakeE2B:
    return clouds()


def under_test(provider: E2BProvider) -> ProviderUnderTest:
    return ProviderUnderTest("e2b", ProviderSetup(provider=provider))


def one_sandbox(cloud: FakeE2B, sandbox_id: str) -> str:
    [e2b_id] = cloud.sandbox_ids(**{LABEL_SANDBOX: sandbox_id})
    return e2b_id


# -- what reaches E2B ----------------------------------------------------------------------------------


async def test_create_passes_the_run_s_settings_and_nothing_of_the_worker(
    cloud: FakeE2B, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-worker-secret")
    provider = E2BProvider(sdk=cloud, template="base", timeout_s=1200)
    put = under_test(provider)
    ref = await put.create(
        "e2b-settings", env={"RUN_VAR": "run"}, options={"template": "gnu", "timeout_s": 900}
    )

    [create] = cloud.calls_of("AsyncSandbox.create")
    assert create.kwargs["template"] == "gnu" and create.kwargs["timeout"] == 900
    assert create.kwargs["envs"] == {"RUN_VAR": "run"}
    assert create.kwargs["allow_internet_access"] is False
    assert create.kwargs["lifecycle"] == {"on_timeout": "kill"}
    assert create.kwargs["metadata"][LABEL_SANDBOX] == "e2b-settings"
    assert create.kwargs["metadata"]["farline.timeout_s"] == "900"
    assert create.kwargs["request_timeout"] == provider.request_timeout_s
    finished = await put.run(ref, ["sh", "-c", "/usr/bin/tar --version | head -1; env"])
    assert "GNU tar" in finished.text, "the run's template is the sandbox's image"
    assert "RUN_VAR=run" in finished.text and "sk-worker-secret" not in finished.text

    runs = cloud.calls_of("Commands.run")
    assert runs[0].kwargs["user"] == "root", "the setup runs as root"
    assert {call.kwargs["user"] for call in runs[1:]} == {"user"}
    for call in runs:  # the SDK's 60 s default would cut long operations short
        assert call.kwargs["timeout"] == provider.command_timeout_s
        assert call.kwargs["request_timeout"] == provider.request_timeout_s
        assert call.kwargs["background"] is True

    networked = E2BProvider(sdk=cloud, pause_on_timeout=True)
    await under_test(networked).create("e2b-networked", network=True)
    create = cloud.calls_of("AsyncSandbox.create")[-1]
    assert create.kwargs["allow_internet_access"] is True
    assert create.kwargs["template"] == "base" and create.kwargs["timeout"] == 3600
    assert create.kwargs["lifecycle"] == {"on_timeout": "pause", "auto_resume": False}
    await put.destroy_all()


async def test_bad_options_and_templates_are_refused(cloud: FakeE2B) -> None:
    provider = E2BProvider(sdk=cloud)
    with pytest.raises(OptionsError, match="cpu"):
        await provider.create("e2b-bad", SandboxConfig(options={"cpu": 2}))
    with pytest.raises(SandboxError, match="template 'missing'") as refused:
        await provider.create("e2b-bad", SandboxConfig(options={"template": "missing"}))
    assert not isinstance(refused.value, SandboxGone)


async def test_output_is_binary_safe_and_stdin_files_are_removed(cloud: FakeE2B) -> None:
    provider = E2BProvider(sdk=cloud)
    put = under_test(provider)
    ref = await put.create("e2b-binary")
    data = bytes(range(256)) * 512
    await provider.write_file(ref, "blob.bin", data)
    assert await provider.read_file(ref, "blob.bin") == data
    finished = await put.run(ref, ["sh", "-c", "printf '\\377\\000\\376'; printf '\\377' >&2"])
    assert finished.output == b"\xff\x00\xfe\xff"

    [upload] = cloud.calls_of("Filesystem.write")
    assert upload.args[1] == data and upload.kwargs["user"] == "user"
    assert any(f"< {upload.args[0]} |" in call.args[0] for call in cloud.calls_of("Commands.run"))
    leftovers = await put.run(ref, ["sh", "-c", "ls /tmp"])
    assert "farline-stdin" not in leftovers.text
    await put.destroy_all()


def test_the_command_line_survives_quoting_and_a_chatty_profile() -> None:
    argv = ["printf", "%s|", "a b", "it's", "$HOME", "`x`", "ünï"]
    ran = subprocess.run(["bash", "-c", shell_command(argv, None)], capture_output=True, check=True)
    assert decoded_stdout(ran.stdout.decode()) == "a b|it's|$HOME|`x`|ünï|".encode()
    encoded = base64.encodebytes(b"\x00\xff" * 100).decode()
    noisy = f"Welcome!\n{STDOUT_MARK}\n{encoded}"
    assert decoded_stdout(noisy) == b"\x00\xff" * 100
    assert decoded_stdout("bash: no base64\n") == b""


# -- finding sandboxes again ---------------------------------------------------------------------------


async def test_a_fresh_worker_finds_the_sandbox_by_its_metadata(clouds: Clouds) -> None:
    first, second = clouds(), clouds()
    one = E2BProvider(sdk=first)
    other = E2BProvider(sdk=second)
    ref = await one.create("e2b-shared", SandboxConfig())
    await one.write_file(ref, "note.txt", b"from the first worker")
    assert await other.read_file(ref, "note.txt") == b"from the first worker"
    assert await other.create("e2b-shared", SandboxConfig()) == ref
    assert second.calls_of("AsyncSandbox.create") == []
    for listing in second.calls_of("AsyncSandbox.list"):
        assert listing.kwargs["query"].metadata == {LABEL_SANDBOX: "e2b-shared"}
    e2b_id = one_sandbox(first, ref.sandbox_id)
    assert {connect.args[0] for connect in second.calls_of("AsyncSandbox.connect")} == {e2b_id}
    await other.destroy(ref)
    assert first.sandbox_ids(**{LABEL_SANDBOX: "e2b-shared"}) == []


async def test_racing_first_creates_keep_one_sandbox(clouds: Clouds) -> None:
    fakes = [clouds(), clouds()]
    workers = [E2BProvider(sdk=fake) for fake in fakes]
    refs = await asyncio.gather(*(worker.create("e2b-race", SandboxConfig()) for worker in workers))
    assert refs[0] == refs[1]
    one_sandbox(fakes[0], "e2b-race")
    created = sum(len(fake.calls_of("AsyncSandbox.create")) for fake in fakes)
    killed = sum(len(fake.calls_of("AsyncSandbox.kill")) for fake in fakes)
    assert created - killed == 1, "each duplicate was killed"
    await workers[0].write_file(refs[0], "x.txt", b"one")
    assert await workers[1].read_file(refs[1], "x.txt") == b"one"
    await workers[0].destroy(refs[0])


async def test_a_lost_sandbox_is_gone_for_every_worker(clouds: Clouds) -> None:
    fake = clouds()
    provider = E2BProvider(sdk=fake)
    ref = await provider.create("e2b-lost", SandboxConfig())
    fake.lose(one_sandbox(fake, "e2b-lost"))
    with pytest.raises(SandboxGone):
        await provider.read_file(ref, "x")  # a live handle: the command fails, connect says gone
    with pytest.raises(SandboxGone):
        await E2BProvider(sdk=clouds()).read_file(ref, "x")  # nothing listed
    assert not await provider.health(ref)
    await provider.destroy(ref)  # gone already: no error


async def test_a_user_s_sandbox_is_used_as_it_is(cloud: FakeE2B) -> None:
    mine = await cloud.AsyncSandbox.create(template="base", timeout=600)
    provider = E2BProvider(sdk=cloud)
    ref = SandboxRef(provider="e2b", sandbox_id=mine.sandbox_id, owner="user")
    finished = await under_test(provider).run(ref, ["echo", "hello"])  # the workspace is made on first use
    assert finished.text == "hello\n"
    assert all("timeout" not in call.kwargs for call in cloud.calls_of("AsyncSandbox.connect"))
    with pytest.raises(SandboxError, match="user-owned"):
        await provider.destroy(ref)
    with pytest.raises(SandboxError, match="user-owned"):
        await provider.suspend(ref)
    assert await provider.health(ref)


# -- pause and resume (the native primitive), renewal --------------------------------------------------


async def test_suspend_keeps_files_and_processes_and_the_next_operation_resumes(clouds: Clouds) -> None:
    fake = clouds()
    provider = E2BProvider(sdk=fake)
    put = under_test(provider)
    ref = await put.create("e2b-pause")
    await provider.write_file(ref, "kept.txt", b"kept")
    process_id = await put.start(ref, ["sleep", "300"])
    e2b_id = one_sandbox(fake, "e2b-pause")

    assert await provider.suspend(ref) is True
    assert fake.is_paused(e2b_id)
    with pytest.raises(SandboxNotRunningException):  # nothing runs in a paused sandbox
        await fake.AsyncSandbox(e2b_id).commands.run("true", timeout=10)
    assert await provider.health(ref) and fake.is_paused(e2b_id), "health does not resume it"
    assert await provider.suspend(ref) is False

    assert await provider.read_file(ref, "kept.txt") == b"kept"
    assert not fake.is_paused(e2b_id)
    assert (await provider.process_state(ref, process_id)).running, "its memory was kept"

    # paused by another worker while this one holds a handle on it
    assert await E2BProvider(sdk=clouds()).suspend(ref) is True
    connects = len(fake.calls_of("AsyncSandbox.connect"))
    assert await provider.read_file(ref, "kept.txt") == b"kept"
    assert len(fake.calls_of("AsyncSandbox.connect")) == connects + 1
    assert [call.args[0] for call in fake.calls_of("AsyncSandbox.pause")] == [e2b_id] * 2
    await put.destroy_all()


async def test_a_sandbox_paused_with_a_hung_guest_is_rebooted(cloud: FakeE2B) -> None:
    provider = E2BProvider(sdk=cloud)
    put = under_test(provider)
    ref = await put.create("e2b-hung")
    await provider.write_file(ref, "kept.txt", b"kept")
    process_id = await put.start(ref, ["sleep", "300"])
    await provider.suspend(ref)
    cloud.guest_unresponsive.add(one_sandbox(cloud, "e2b-hung"))

    assert await provider.read_file(ref, "kept.txt") == b"kept"
    assert [call.kwargs["on_resume"] for call in cloud.calls_of("AsyncSandbox.connect")] == [
        "restore",
        "reboot",
    ]
    state = await provider.process_state(ref, process_id)
    assert state.lost and not state.running, "a reboot ends the processes"
    await put.destroy_all()


async def test_the_sandbox_s_life_is_renewed_by_use(cloud: FakeE2B) -> None:
    now = [1000.0]
    provider = E2BProvider(sdk=cloud, timeout_s=600, clock=lambda: now[0])
    ref = await provider.create("e2b-renew", SandboxConfig())
    await provider.write_file(ref, "a.txt", b"a")
    assert cloud.calls_of("AsyncSandbox.connect") == []
    now[0] += 600 * 0.25 + 1
    await provider.write_file(ref, "b.txt", b"b")
    [renewal] = cloud.calls_of("AsyncSandbox.connect")
    assert renewal.kwargs["timeout"] == 600
    await provider.destroy(ref)


# -- errors and setup ----------------------------------------------------------------------------------


async def test_sdk_errors_become_the_protocol_s(cloud: FakeE2B, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = E2BProvider(sdk=cloud)

    def failing(error: Exception) -> Callable[..., Any]:
        async def create(*args: object, **kwargs: object) -> None:
            raise error

        return create

    monkeypatch.setattr(cloud.AsyncSandbox, "create", failing(ServiceBusyException("503: busy")))
    with pytest.raises(SandboxError, match="busy") as busy:
        await provider.create("e2b-errors", SandboxConfig())
    assert not isinstance(busy.value, (SandboxGone, SandboxUnavailable))
    monkeypatch.setattr(cloud.AsyncSandbox, "create", failing(AuthenticationException("401")))
    with pytest.raises(SandboxUnavailable, match="E2B_API_KEY"):
        await provider.create("e2b-errors", SandboxConfig())


async def test_without_the_sdk_the_provider_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "e2b", None)  # import e2b fails
    with pytest.raises(SandboxUnavailable, match=r"pip install 'farline\[e2b\]'"):
        await E2BProvider().create("e2b-nosdk", SandboxConfig())


def test_from_config() -> None:
    config = SimpleNamespace(e2b_template="py", e2b_timeout_s=900, e2b_user="me", e2b_pause_on_timeout=True)
    provider = E2BProvider.from_config(config)  # type: ignore[arg-type]
    assert (provider.template, provider.timeout_s, provider.user, provider.pause_on_timeout) == (
        "py",
        900,
        "me",
        True,
    )


# -- the fake against the real SDK ---------------------------------------------------------------------


@pytest.mark.skipif(REAL_SDK is None, reason=NO_REAL_SDK)
def test_the_fake_has_the_sdk_s_exceptions_and_data_classes() -> None:
    assert not unlike_the_sdk(REAL_SDK)


@pytest.mark.skipif(REAL_SDK is None, reason=NO_REAL_SDK)
async def test_every_call_binds_to_the_real_sdk(cloud: FakeE2B) -> None:
    provider = E2BProvider(sdk=cloud)
    ref = await provider.create("e2b-bind", SandboxConfig(env={"A": "1"}))
    await provider.write_file(ref, "a.txt", b"a")
    await provider.suspend(ref)
    assert await provider.read_file(ref, "a.txt") == b"a"
    assert await provider.health(ref)
    await provider.destroy(ref)
    names = {call.name for call in cloud.calls}
    assert {"AsyncSandbox.create", "AsyncSandbox.pause", "Commands.run", "Filesystem.write"} <= names
    assert not unbound_calls(REAL_SDK, cloud.calls)
