"""The deployment files, checked without a Docker engine: docker-compose.yaml (parsed, and its
shell scripts run with stand-ins for Airflow), .env.example and the README against the settings the
code reads, the Dockerfile, packages.txt, and requirements.txt resolved by pip.

The settings are derived from the code (include/ and dags/), so a new Variable, environment
variable or connection cannot be forgotten in .env.example, the README or the compose file."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

COMPOSE_FILE = PROJECT_ROOT / "docker-compose.yaml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
SUPABASE_NEWEST_POSTGRES_MAJOR = 17  # Supabase runs Postgres 15 and 17 (SPEC §6)

AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
                    "airflow-triggerer", "airflow-init", "airflow-worker", "flower"}
LONG_RUNNING = {"postgres", "redis"} | AIRFLOW_SERVICES - {"airflow-init"}
CELERY_PROFILE = {"redis", "airflow-worker"}


# ---------------------------------------------------------------------------------------------
# What the code reads


def python_sources() -> list[Path]:
    """The code a deployment runs. The command line's own environment variables (cli/) are the
    settings of a person's shell, documented in `supabase-backup … --help`, not a deployment's."""
    command_line = PROJECT_ROOT / "include" / "supabase_backup" / "cli"
    return sorted(path for path in [*(PROJECT_ROOT / "include").rglob("*.py"),
                                    *(PROJECT_ROOT / "dags").rglob("*.py")]
                  if command_line not in path.parents)


def settings_read_by_code() -> dict[str, set[str]]:
    """Variables (first argument of any call, e.g. ``get_variable("supabase_backup_x", …)``),
    environment variables (``os.environ``/``os.getenv`` reads of ``SUPABASE_BACKUP_*``) and
    connection ids (``…_CONN_ID = "…"``), as the environment names Airflow reads them from."""
    variables, environment, connections = set(), set(), set()
    for path in python_sources():
        text = path.read_text()
        variables |= set(re.findall(r"\(\s*[\"'](supabase_backup_[a-z0-9_]+)[\"']", text))
        environment |= set(re.findall(
            r"os\.(?:environ\.get\(|environ\[|getenv\()\s*[\"'](SUPABASE_BACKUP_[A-Z0-9_]+)[\"']",
            text))
        connections |= set(re.findall(r"_CONN_ID\s*=\s*[\"']([a-z0-9_]+)[\"']", text))
    return {
        "variables": {f"AIRFLOW_VAR_{name.upper()}" for name in variables},
        "environment": environment,
        "connections": {f"AIRFLOW_CONN_{name.upper()}" for name in connections},
    }


SETTINGS = settings_read_by_code()
ALL_SETTINGS = set().union(*SETTINGS.values())
# Needed only by the restore drill DAG (supabase_backup_restore_drill), whose runs fail saying so
# without it: the backup itself must start without it.
OPTIONAL_CONNECTIONS = {"AIRFLOW_CONN_SUPABASE_BACKUP_DRILL_DB"}
# Without a default in the code: docker compose must refuse to start without them.
REQUIRED_SETTINGS = (SETTINGS["connections"] - OPTIONAL_CONNECTIONS) | {
    "AIRFLOW_VAR_SUPABASE_BACKUP_S3_BUCKET"}


def test_the_settings_are_found_in_the_code():
    # A guard on the derivation itself: if the code's idiom changes, this says so first.
    assert {"AIRFLOW_VAR_SUPABASE_BACKUP_S3_BUCKET", "AIRFLOW_VAR_SUPABASE_BACKUP_STAGING_ROOT",
            "AIRFLOW_VAR_SUPABASE_BACKUP_PG_DUMP_PATH"} <= SETTINGS["variables"]
    assert {"SUPABASE_BACKUP_SCHEDULE", "SUPABASE_BACKUP_RETRY_DELAY_SECONDS"} <= SETTINGS["environment"]
    assert {"AIRFLOW_CONN_SUPABASE_DB", "AIRFLOW_CONN_SUPABASE_API",
            "AIRFLOW_CONN_AWS_DEFAULT"} <= SETTINGS["connections"]


# ---------------------------------------------------------------------------------------------
# .env.example and the README


def env_example_lines() -> list[str]:
    return ENV_EXAMPLE.read_text().splitlines()


def env_example_values() -> dict[str, str]:
    """The settings .env.example sets (not the commented-out ones), as docker compose reads them."""
    values = {}
    for line in env_example_lines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value
    return values


def setting_line_index(name: str) -> int:
    for index, line in enumerate(env_example_lines()):
        if re.match(rf"(# )?{name}=", line):
            return index
    raise AssertionError(f"{name} is not in .env.example")


@pytest.mark.parametrize("name", sorted(ALL_SETTINGS))
def test_every_setting_the_code_reads_is_in_env_example_with_a_comment(name):
    lines = env_example_lines()
    index = setting_line_index(name)
    above = index - 1
    while above >= 0 and re.match(r"# [A-Z_]+=", lines[above]):  # alternatives of one setting
        above -= 1
    assert above >= 0 and lines[above].startswith("# ") and len(lines[above]) > 10, (
        f"{name} in .env.example needs a comment above it saying what it is")


def test_required_settings_are_set_in_env_example_and_optional_ones_left_to_the_code():
    values = env_example_values()
    for name in REQUIRED_SETTINGS:
        assert name in values, f"{name} is required: it must be an uncommented line of .env.example"
        assert values[name] == "", f"{name} must be left empty in .env.example (no example secret)"
    for name in ALL_SETTINGS - REQUIRED_SETTINGS:
        assert name not in values, f"{name} has a default in the code: comment it out"


@pytest.mark.parametrize("name", sorted(ALL_SETTINGS))
def test_every_setting_the_code_reads_is_in_the_readme(name):
    readme = (PROJECT_ROOT / "README.md").read_text()
    short = re.sub(r"^AIRFLOW_(VAR|CONN)_", "", name).lower()
    assert name in readme or f"`{short}`" in readme, f"{name} is not described in README.md"


def test_the_readme_links_to_the_deployment_guide():
    assert "docs/DEPLOY.md" in (PROJECT_ROOT / "README.md").read_text()
    assert (PROJECT_ROOT / "docs" / "DEPLOY.md").is_file()


# ---------------------------------------------------------------------------------------------
# docker-compose.yaml, parsed as written and as docker compose would interpolate it


def interpolate(text: str, environment: dict[str, str]) -> str:
    """The subset of docker compose's interpolation this file uses: ${NAME}, ${NAME:-default},
    ${NAME:?error} and $$ (a literal $, for the containers' shells)."""

    def replace(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        value = environment.get(name, "")
        if operator == ":?" and not value:
            raise KeyError(f"{name}: {argument}")
        if operator == ":-" and not value:
            return argument
        return value

    return re.sub(r"\$\$|\$\{(\w+)(?:(:[-?])([^}]*))?\}", replace, text)


def filled_env_example() -> dict[str, str]:
    """.env.example with every empty value filled in, as an operator would."""
    return {name: value or f"generated-{name.lower()}" for name, value in env_example_values().items()}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def rendered() -> dict:
    return yaml.safe_load(interpolate(COMPOSE_FILE.read_text(), filled_env_example()))


def test_services_and_profiles(compose):
    services = compose["services"]
    assert set(services) == LONG_RUNNING | {"airflow-init"}
    for name, service in services.items():
        profiles = set(service.get("profiles", []))
        if name in CELERY_PROFILE:
            assert profiles == {"celery"}, name
        elif name == "flower":
            assert profiles == {"flower"}
        else:
            assert not profiles, f"{name} must run without a profile"
    commands = {name: service.get("command") for name, service in services.items()}
    assert commands["airflow-apiserver"] == "api-server"
    assert commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor"
    assert commands["airflow-triggerer"] == "triggerer"
    assert commands["flower"] == "celery flower"
    assert "exec airflow celery worker" in commands["airflow-worker"][-1]
    init = commands["airflow-init"][-1]
    assert "airflow db migrate" in init and "SIMPLE_AUTH_MANAGER_PASSWORDS_FILE" in init


def test_airflow_services_share_the_image_mounts_and_include_on_the_python_path(compose):
    for name in AIRFLOW_SERVICES:
        service = compose["services"][name]
        assert service["build"]["context"] == "."
        targets = {volume.split(":")[-1] for volume in service["volumes"]}
        assert {"/opt/airflow/dags", "/opt/airflow/plugins", "/opt/airflow/include",
                "/opt/airflow/logs"} <= targets, name
        assert "/opt/airflow/include" in service["environment"]["PYTHONPATH"].split(":")


def test_local_executor_by_default_and_celery_settings(compose):
    environment = compose["services"]["airflow-scheduler"]["environment"]
    assert environment["AIRFLOW__CORE__EXECUTOR"] == "${AIRFLOW__CORE__EXECUTOR:-LocalExecutor}"
    assert environment["AIRFLOW__CELERY__BROKER_URL"] == "redis://redis:6379/0"
    assert environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].endswith("@postgres/airflow")
    assert environment["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith(
        "http://airflow-apiserver:8080/")
    # The celery profile's worker count comes from .env as well.
    assert compose["services"]["airflow-worker"]["deploy"]["replicas"].startswith(
        "${AIRFLOW_CELERY_WORKERS")


def test_every_setting_the_code_reads_reaches_every_airflow_container(compose):
    for name in AIRFLOW_SERVICES:
        environment = compose["services"][name]["environment"]
        for setting in ALL_SETTINGS:
            assert setting in environment, f"{setting} is not passed to {name}"
            value = environment[setting]
            if setting in REQUIRED_SETTINGS:
                assert value.startswith(f"${{{setting}:?"), (
                    f"{setting} is required: `${{{setting}:?…}}` makes docker compose say so")
            else:
                # Passed through only when .env sets it: the code's default applies otherwise,
                # and the Airflow UI can set it (an environment value would shadow the UI's).
                assert value is None, f"{setting} must be a bare key in docker-compose.yaml"


def test_no_secret_is_written_in_the_compose_file(compose):
    secrets = {"AIRFLOW_DB_PASSWORD", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET",
               "_AIRFLOW_WWW_USER_PASSWORD"} | (SETTINGS["connections"] - OPTIONAL_CONNECTIONS)
    text = COMPOSE_FILE.read_text()
    for name in secrets:
        uses = re.findall(rf"\$\{{{name}(:[-?][^}}]*)?\}}", text)
        assert uses, f"{name} is not read from .env"
        assert all(use.startswith(":?") for use in uses), f"{name} must have no default"
        # As .env.example ships (secrets empty), docker compose refuses to start.
        with pytest.raises(KeyError, match=name):
            interpolate(text, {**filled_env_example(), name: ""})
    for service in compose["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if (re.search(r"PASSWORD|SECRET|FERNET|_CONN_", key) and value is not None
                    and not key.endswith("_FILE")):
                assert "${" in str(value), f"{key} holds a literal value"


def test_every_name_the_compose_file_reads_is_in_env_example():
    names = set(re.findall(r"(?<!\$)\$\{(\w+)", COMPOSE_FILE.read_text()))
    documented = set(re.findall(r"^(?:# )?(\w+)=", ENV_EXAMPLE.read_text(), flags=re.M))
    assert names <= documented, sorted(names - documented)


def test_depends_on_conditions(compose):
    services = compose["services"]
    for name in AIRFLOW_SERVICES:
        assert services[name]["depends_on"]["postgres"] == {"condition": "service_healthy"}, name
        if name != "airflow-init":
            assert services[name]["depends_on"]["airflow-init"] == {
                "condition": "service_completed_successfully"}, name
    assert services["airflow-worker"]["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert services["airflow-worker"]["depends_on"]["airflow-apiserver"] == {
        "condition": "service_healthy"}
    assert services["flower"]["depends_on"]["redis"] == {"condition": "service_healthy"}
    # Without the celery profile redis does not exist: the scheduler may not require it.
    assert services["airflow-scheduler"]["depends_on"]["redis"] == {
        "condition": "service_healthy", "required": False}
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if set(services[dependency].get("profiles", [])) - set(service.get("profiles", [])):
                assert service["depends_on"][dependency].get("required") is False or (
                    set(service.get("profiles", [])) & {"celery", "flower"}), (name, dependency)


def test_health_checks(compose):
    services = compose["services"]
    for name in LONG_RUNNING:
        check = services[name].get("healthcheck")
        assert check and check["test"][0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
        assert services[name].get("restart") == "always", name
    assert "/api/v2/monitor/health" in " ".join(services["airflow-apiserver"]["healthcheck"]["test"])
    assert services["airflow-scheduler"]["environment"][
        "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"
    assert "localhost:8974/health" in " ".join(services["airflow-scheduler"]["healthcheck"]["test"])
    assert "inspect ping" in " ".join(services["airflow-worker"]["healthcheck"]["test"])
    assert "airflow-init" not in {name for name in services if services[name].get("healthcheck")}


def test_published_ports_default_to_loopback(rendered):
    for name, service in rendered["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def shell_environment(service: dict, **overrides: str) -> dict[str, str]:
    environment = {key: str(value) for key, value in service["environment"].items()
                   if value is not None}
    return {**environment, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            **overrides}


def test_airflow_init_creates_the_users_file_from_the_environment(rendered, tmp_path):
    """The init script itself, run by bash with stand-ins for Airflow and chown."""
    service = rendered["services"]["airflow-init"]
    assert service["entrypoint"] == "/bin/bash" and service["user"] == "0:0"
    script = service["command"][-1]
    for command in ("/entrypoint airflow version", "/entrypoint airflow config list",
                    "/entrypoint airflow db migrate", "chown -R"):
        assert command in script
    script = (script.replace("/opt/airflow", str(tmp_path))
              .replace("/entrypoint airflow", "true").replace("chown -R", "true"))
    environment = shell_environment(service)
    environment["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = environment[
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"].replace("/opt/airflow", str(tmp_path))
    completed = subprocess.run(["bash", "-c", script], env=environment, capture_output=True,
                               text=True)
    assert completed.returncode == 0, completed.stderr
    passwords = Path(environment["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"])
    assert json.loads(passwords.read_text()) == {"airflow": "generated-_airflow_www_user_password"}
    assert stat.S_IMODE(passwords.stat().st_mode) == 0o600
    assert "generated-_airflow_www_user_password" not in completed.stdout + completed.stderr
    assert environment["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "airflow:admin"
    assert {"logs", "dags", "plugins", "include", "config"} <= {p.name for p in tmp_path.iterdir()}


@pytest.mark.parametrize("executor, staging_root, starts", [
    ("LocalExecutor", "s3://aws_default@backups/staging", False),
    ("CeleryExecutor", None, False),
    ("CeleryExecutor", "file:///tmp/supabase-backup-staging", False),
    ("CeleryExecutor", "/tmp/staging", False),
    ("CeleryExecutor", "s3://aws_default@backups/staging", True),
])
def test_a_celery_worker_starts_only_with_the_celery_executor_and_object_store_staging(
        rendered, executor, staging_root, starts):
    service = rendered["services"]["airflow-worker"]
    assert service["command"][:2] == ["bash", "-c"]
    script = service["command"][2].replace("exec airflow celery worker", "exit 0")
    environment = shell_environment(service, AIRFLOW__CORE__EXECUTOR=executor)
    if staging_root:
        environment["AIRFLOW_VAR_SUPABASE_BACKUP_STAGING_ROOT"] = staging_root
    completed = subprocess.run(["bash", "-c", script], env=environment, capture_output=True,
                               text=True)
    assert (completed.returncode == 0) is starts, completed.stderr
    if not starts:
        assert "Set " in completed.stderr and ".env" in completed.stderr


# ---------------------------------------------------------------------------------------------
# The image: Dockerfile, packages.txt, requirements.txt


def pinned_requirements() -> dict[str, str]:
    pins = {}
    for line in (PROJECT_ROOT / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def dockerfile_arguments() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)", DOCKERFILE.read_text(), flags=re.M))


def test_the_image_is_airflow_as_pinned_with_a_new_enough_postgres_client():
    text = DOCKERFILE.read_text()
    arguments = dockerfile_arguments()
    assert re.search(r"^FROM apache/airflow:(slim-)?\$\{AIRFLOW_VERSION\}-python\$\{PYTHON_VERSION\}$",
                     text, flags=re.M)
    assert arguments["AIRFLOW_VERSION"] == pinned_requirements()["apache-airflow"]
    # requirements.txt was resolved on this interpreter's version.
    assert arguments["PYTHON_VERSION"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert int(arguments["POSTGRES_CLIENT_MAJOR"]) >= SUPABASE_NEWEST_POSTGRES_MAJOR
    assert '"postgresql-client-${POSTGRES_CLIENT_MAJOR}"' in text
    assert "apt.postgresql.org.sh" in text  # the PGDG repository (Debian's has one older major)
    assert re.search(r"pip install .*\"apache-airflow==\$\{AIRFLOW_VERSION\}\" -r \S*requirements\.txt",
                     text)
    assert "COPY packages.txt" in text and "COPY requirements.txt" in text
    # docker compose passes the same build argument from .env.
    compose = yaml.safe_load(COMPOSE_FILE.read_text())
    assert compose["x-airflow-common"]["build"]["args"]["POSTGRES_CLIENT_MAJOR"] == (
        f"${{POSTGRES_CLIENT_MAJOR:-{arguments['POSTGRES_CLIENT_MAJOR']}}}")


def test_packages_txt_lists_apt_package_names():
    names = [re.sub(r"#.*", "", line).strip()
             for line in (PROJECT_ROOT / "packages.txt").read_text().splitlines()]
    names = [name for name in names if name]
    assert "postgresql-common" in names  # brings the PGDG set-up script the Dockerfile runs
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", name) for name in names), names


def test_the_build_context_leaves_local_state_out():
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
    assert {".venv", ".git", ".env"} <= set(ignored)


def test_requirements_resolve_with_pip_to_exactly_the_pinned_set(tmp_path):
    """What the Dockerfile installs, resolved here from scratch: every pin is satisfiable together
    and nothing unpinned is pulled in."""
    report = tmp_path / "report.json"
    completed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
         "--disable-pip-version-check", "--report", str(report),
         "-r", str(PROJECT_ROOT / "requirements.txt")],
        capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr[-3000:]
    resolved = {re.sub(r"[-_.]+", "-", item["metadata"]["name"]).lower(): item["metadata"]["version"]
                for item in json.loads(report.read_text())["install"]}
    # pip freeze leaves out setuptools, which some distributions still declare; nothing else may
    # come unpinned.
    resolved.pop("setuptools", None)
    assert resolved == pinned_requirements()
    assert "apache-airflow-providers-celery" in resolved and "redis" in resolved


TEST_TOOLS = ("pytest", "moto", "playwright", "import-linter", "aiosmtpd", "ruff", "mypy",
              "apache-airflow-client")


def test_the_image_installs_no_test_tool():
    """requirements.txt is the runtime set (the Dockerfile installs only it); the test and lint
    tools live in requirements-test.txt, which `make install` adds for a developer."""
    runtime = pinned_requirements()
    assert not [tool for tool in TEST_TOOLS if tool in runtime]
    test_pins = {re.sub(r"[-_.]+", "-", line.partition("==")[0]).lower()
                 for line in (PROJECT_ROOT / "requirements-test.txt").read_text().splitlines()
                 if line and not line.startswith("#")}
    assert set(TEST_TOOLS) <= test_pins
    assert not test_pins & set(runtime), "a package pinned in both files"
    assert "requirements-test" not in DOCKERFILE.read_text()
