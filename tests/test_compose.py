"""docker-compose.yml: valid against the Compose specification, and held to our policies.

Docker cannot run here, so the file is checked statically: the Compose schema (vendored by
check-jsonschema, offline), every image pinned, a health check on every service, ports on
loopback only, every variable it interpolates documented in .env.example, and the images
built from the same DAGs, dbt project, expectations and Superset assets as the default.
"""

from __future__ import annotations

import json
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


# ---------------------------------------------------------------- least privilege (issue 18)
#: Variables that hold secrets: their values must never reach a command line, which `ps`
#: shows to every user of the host (and `docker inspect` to every member of the docker group).
SECRET_NAME = re.compile(r"PASSWORD|SECRET|_KEY\b|KEY$|AUTH")
#: ``$$NAME`` / ``$${NAME}``: a variable the container's shell expands, not Compose.
SHELL_VARIABLE = re.compile(r"\$\$\{?([A-Za-z_][A-Za-z0-9_]*)")
#: Where a shell command line starts: the shell itself, or after an operator or a pipe.
COMMAND_BOUNDARY = re.compile(r"&&|\|\||[|;()\n]|\bthen\b|\bdo\b|\bin\b|;;")


def _command_lines(svc: dict) -> dict[str, str]:
    """The texts that become processes' argv: command, entrypoint and health check."""
    out = {}
    for key in ("command", "entrypoint"):
        value = svc.get(key)
        if value is not None:
            out[key] = value if isinstance(value, str) else " ".join(map(str, value))
    test = (svc.get("healthcheck") or {}).get("test")
    if test:
        out["healthcheck"] = test if isinstance(test, str) else " ".join(map(str, test))
    return out


def test_no_command_line_carries_a_secret(compose):
    for name, svc in compose["services"].items():
        for where, text in _command_lines(svc).items():
            # Compose interpolation puts the value itself into argv
            interpolated = [v for v in VARIABLE.findall(text) if SECRET_NAME.search(v)]
            assert not interpolated, f"{name} {where} interpolates {interpolated}"
            assert not re.search(r"--requirepass|--password|\s-a\s|-p\s*\$", text), (name, where)
            # A shell variable may hold a secret only as an argument of the builtin printf
            # (its output goes to a pipe or a file, never to another process's argv).
            for segment in COMMAND_BOUNDARY.split(text):
                secrets = [v for v in SHELL_VARIABLE.findall(segment) if SECRET_NAME.search(v)]
                assert not secrets or segment.split()[0] == "printf", (
                    f"{name} {where}: {secrets} on the command line of {segment.strip()!r}"
                )


def test_redis_reads_its_password_from_a_file_and_the_environment(compose):
    redis = compose["services"]["redis"]
    assert "REDIS_PASSWORD" in redis["environment"]
    assert redis["environment"]["REDISCLI_AUTH"] == "${REDIS_PASSWORD}"
    assert "redis-server /tmp/redis.conf" in _command_lines(redis)["command"]


def _lake_policy(compose: dict) -> dict:
    content = compose["configs"]["lake-policy"]["content"]
    return json.loads(content.replace("${INFERWATCH_LAKE_BUCKET:-inferwatch-lake}", "lake"))


def test_the_lake_connection_is_a_user_limited_to_the_lake_bucket(compose):
    airflow_env = compose["services"]["airflow-scheduler"]["environment"]
    connection = airflow_env["AIRFLOW_CONN_INFERWATCH_LAKE"]
    assert "MINIO_ROOT" not in connection
    assert "${INFERWATCH_LAKE_USER" in connection and "${INFERWATCH_LAKE_PASSWORD" in connection
    # MinIO's root login is known to minio and the one-shot minio-init only
    for name, svc in compose["services"].items():
        env = json.dumps(svc.get("environment") or {})
        if name not in ("minio", "minio-init"):
            assert "MINIO_ROOT" not in env, name
    init = compose["services"]["minio-init"]
    command = _command_lines(init)["command"]
    for step in ("mc mb --ignore-existing", "mc admin user add root", "mc admin policy create root"
                 " inferwatch-lake", "mc admin policy attach root inferwatch-lake"):  # fmt: skip
        assert step in command, step
    assert init["configs"][0]["source"] == "lake-policy"
    # every pipeline service starts after the lake user exists
    for name, svc in compose["services"].items():
        if name.startswith("airflow-"):
            depends = svc["depends_on"]
            assert depends["minio-init"]["condition"] == "service_completed_successfully", name
    policy = _lake_policy(compose)
    resources = set()
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        assert all(a.startswith("s3:") and "*" not in a for a in statement["Action"])
        resources.update(statement["Resource"])
    assert resources == {"arn:aws:s3:::lake", "arn:aws:s3:::lake/*"}


def test_superset_can_read_the_state_the_pipeline_writes_and_no_one_else_can(compose):
    """The pipeline's state is owner-only by default (inferwatch.filemodes); Superset runs as
    another user, so the pipeline's services share it with their group and Superset joins it."""
    from inferwatch.filemodes import state_umask

    services = compose["services"]
    airflow = [n for n in services if n.startswith("airflow-") and n != "airflow-init"]
    superset = [n for n in services if n.startswith("superset")]
    for name in airflow:
        umask = state_umask({"INFERWATCH_UMASK": services[name]["environment"]["INFERWATCH_UMASK"]})
        assert umask & 0o040 == 0 and umask & 0o007 == 0o007, name  # group reads, others never
    for name in superset:
        assert "0" in [str(g) for g in services[name].get("group_add", [])], name
