"""docker-compose.yml: valid against the Compose specification, and held to our policies.

Docker cannot run here, so the file is checked statically: the Compose schema (vendored by
check-jsonschema, offline), every image pinned, a health check on every service, ports on
loopback only, every variable it interpolates documented in .env.example, and the images
built from the same DAGs, dbt project, expectations and Superset assets as the default.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"

#: ${NAME}, ${NAME:-default}, ${NAME:?message}; "$$" escapes are not variables.
VARIABLE = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:[:?-][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def _images(compose: dict) -> dict[str, str]:
    return {name: svc["image"] for name, svc in compose["services"].items()}


def test_validates_against_the_compose_schema():
    checker = Path(sys.executable).with_name("check-jsonschema")
    result = subprocess.run(
        [str(checker), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_scaled_out_services_are_all_there(compose):
    services = set(compose["services"])
    assert {
        "postgres", "redis", "minio", "airflow-apiserver", "airflow-scheduler",
        "airflow-dag-processor", "airflow-triggerer", "airflow-worker", "superset",
        "superset-worker", "superset-beat",
    } <= services  # fmt: skip
    assert compose["services"]["airflow-worker"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == (
        "CeleryExecutor"
    )
    assert "${AIRFLOW_WORKERS" in str(compose["services"]["airflow-worker"]["deploy"]["replicas"])
    assert compose["services"]["superset"]["environment"]["SUPERSET_METADATA_URI"].startswith(
        "postgresql+psycopg2://"
    )


def test_every_image_and_base_image_is_pinned(compose):
    for name, image in _images(compose).items():
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest", f"{name}: image {image!r} is not pinned"
    for name, svc in compose["services"].items():
        inline = (svc.get("build") or {}).get("dockerfile_inline", "")
        for base in re.findall(r"^FROM\s+(\S+)", inline, flags=re.M):
            assert re.search(r":[\w.-]+$", base) and not base.endswith(":latest"), (name, base)


def test_every_service_has_a_health_check(compose):
    for name, svc in compose["services"].items():
        check = svc.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), name


def test_ports_are_published_on_loopback_only(compose):
    published = [
        (name, port) for name, svc in compose["services"].items() for port in svc.get("ports", [])
    ]
    assert published, "the API server, Superset and MinIO should be reachable from the host"
    for name, port in published:
        assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_every_variable_is_documented_in_env_example():
    documented = {
        line.split("=", 1)[0]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    used = set(VARIABLE.findall(COMPOSE.read_text()))
    assert used - documented == set(), f"undocumented in .env.example: {used - documented}"
    secrets = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in ENV_EXAMPLE.read_text().splitlines()
        if re.match(r"^[A-Z_]*(PASSWORD|SECRET|KEY)[A-Z_]*=", line)
    }
    assert secrets and all(value == "" for value in secrets.values()), secrets


def test_images_carry_the_same_project_as_the_default(compose):
    airflow_build = compose["services"]["airflow-scheduler"]["build"]["dockerfile_inline"]
    for folder in ("plugins", "dags", "dbt_project", "expectations", "superset"):
        assert f"COPY --chown=airflow:root {folder} " in airflow_build
        assert (ROOT / folder).is_dir()
    assert "requirements/pipeline.lock.txt" in airflow_build
    superset_build = compose["services"]["superset"]["build"]["dockerfile_inline"]
    assert "requirements/superset.lock.txt" in superset_build
    config = compose["services"]["superset"]["environment"]["SUPERSET_CONFIG_PATH"]
    assert config.endswith("/superset_config.py")
    assert (ROOT / "superset" / "superset_config.py").exists()
