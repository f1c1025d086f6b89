"""A local Superset run from its own virtual environment, managed from the pipeline's.

Superset 6.1 needs SQLAlchemy < 2 and cannot share the pipeline's environment, so everything here
goes through subprocesses of the Superset venv (``PROJECT_ROOT/.venv/superset`` or
``INFERWATCH_SUPERSET_VENV``). A Superset *home* folder holds its whole state:

- ``superset.db``: the SQLite metadata DB (unless ``SUPERSET_METADATA_URI`` names another);
- ``secret_key`` (mode 600): the ``SECRET_KEY`` fixed at :func:`prepare`, read by :func:`start`;
- ``prepared.json``: what :func:`prepare` did, so that a second call costs nothing;
- ``superset.pid``, ``superset.url``, ``superset.log``: the running gunicorn;
- ``reports/``: Redis, the Celery worker and beat of Alerts & Reports
  (:mod:`inferwatch.serve.report_workers`), started and stopped together with gunicorn.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import requests

from inferwatch.config import PROJECT_ROOT, SUPERSET_ASSETS_DIR, Settings
from inferwatch.serve import report_workers

log = logging.getLogger(__name__)

ADMIN_USERNAME = "admin"
CONFIG_PATH = SUPERSET_ASSETS_DIR / "superset_config.py"
_GUNICORN_APP = "superset.app:create_app()"

# db upgrade, the admin user and init in ONE Python process of the Superset venv: the three CLI
# calls cost ~50 s, mostly imports; together ~25 s. The admin password comes on stdin (never
# argv, which any local user can read). Steps are chosen by the caller through argv.
_PREPARE_SCRIPT = r"""
import sys
from superset.cli.main import superset as cli

steps = sys.argv[1:]
password = sys.stdin.readline().rstrip("\n")
if "upgrade" in steps:
    cli.main(["db", "upgrade"], standalone_mode=False)
if "init" in steps:
    cli.main(["init"], standalone_mode=False)
if "admin" in steps:
    from superset.app import create_app

    app = create_app()
    with app.app_context():
        sm = app.appbuilder.sm
        user = sm.find_user(username="__USERNAME__")
        if user is None:
            role = sm.find_role(sm.auth_role_admin)
            user = sm.add_user("__USERNAME__", "Admin", "InferWatch", "admin@localhost", role,
                               password)
            if not user:
                sys.exit("could not create the Superset admin user")
            print("created admin user", flush=True)
        else:
            sm.reset_password(user.id, password)
            print("reset admin password", flush=True)
""".replace("__USERNAME__", ADMIN_USERNAME)


# ---------- paths
def superset_venv() -> Path:
    return Path(os.environ.get("INFERWATCH_SUPERSET_VENV") or PROJECT_ROOT / ".venv" / "superset")


def _bin(name: str) -> Path:
    path = superset_venv() / "bin" / name
    if not path.exists():
        raise FileNotFoundError(
            f"{path} not found: install the Superset environment "
            "(requirements/superset.lock.txt) or set INFERWATCH_SUPERSET_VENV"
        )
    return path


def _pid_file(home: Path) -> Path:
    return home / "superset.pid"


def _url_file(home: Path) -> Path:
    return home / "superset.url"


def log_file(home: Path) -> Path:
    return home / "superset.log"


def _superset_version() -> str:
    site = sorted(superset_venv().glob("lib/python*/site-packages/apache_superset-*.dist-info"))
    return site[-1].name.removesuffix(".dist-info") if site else "unknown"


# ---------- environment of every Superset subprocess
def _read_secret_key(home: Path) -> str:
    try:
        return (home / "secret_key").read_text().strip()
    except FileNotFoundError:
        raise RuntimeError(f"{home} is not a prepared Superset home: run prepare() first") from None


def _superset_env(
    home: Path, secret_key: str, extra: dict[str, str] | None = None
) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        # the pipeline's interpreter settings must not leak into the Superset venv
        if key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    }
    env.update(
        SUPERSET_HOME=str(home),
        SUPERSET_CONFIG_PATH=str(CONFIG_PATH),
        SUPERSET_SECRET_KEY=secret_key,
        FLASK_APP="superset.app:create_app()",
        PYTHONUNBUFFERED="1",
        SUPERSET_REDIS_URL=report_workers.redis_url(home),
    )
    env.update(extra or {})
    return env


# ---------- prepare
def _fingerprint(home: Path) -> dict[str, str]:
    """What a prepared home depends on; a change reruns the migrations and init."""
    metadata_uri = os.environ.get("SUPERSET_METADATA_URI") or f"sqlite:{home}/superset.db"
    return {
        "superset": _superset_version(),
        "metadata_db": hashlib.sha256(metadata_uri.encode()).hexdigest()[:16],
        "config": hashlib.sha256(CONFIG_PATH.read_bytes()).hexdigest()[:16],
    }


def _password_digest(password: str, salt: str) -> str:
    return hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), 100_000).hex()


@contextlib.contextmanager
def _locked(path: Path):
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def prepare(home: Path, admin_password: str, secret_key: str) -> None:
    """Make ``home`` a ready Superset home: metadata DB migrated, roles synced, admin user.

    Idempotent: ``prepared.json`` records what was done, and a second call with the same
    Superset, configuration and password starts no process. A changed password is reset; a
    changed Superset version or metadata DB reruns ``db upgrade`` and ``init``. The secret key
    is fixed at the first call (it encrypts stored connection secrets): another one is refused.
    """
    if len(secret_key) < 32:
        raise ValueError("secret_key must be at least 32 characters")
    if not admin_password:
        raise ValueError("admin_password must not be empty")
    home = Path(home).resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    with _locked(home / ".prepare.lock"):
        key_file = home / "secret_key"
        if key_file.exists():
            if key_file.read_text().strip() != secret_key:
                raise ValueError(
                    f"{home} was prepared with another secret key; changing it needs "
                    "`superset re-encrypt-secrets` (or a new home)"
                )
        else:
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secret_key + "\n")

        marker = home / "prepared.json"
        done = json.loads(marker.read_text()) if marker.exists() else {}
        fingerprint = _fingerprint(home)
        salt = done.get("salt") or secrets.token_hex(16)
        digest = _password_digest(admin_password, salt)
        steps = []
        if done.get("fingerprint") != fingerprint:
            steps += ["upgrade", "init"]
        if steps or done.get("admin_password") != digest:
            steps.append("admin")
        if not steps:
            log.info("Superset home %s already prepared", home)
            return

        started = time.monotonic()
        with log_file(home).open("a") as out:
            out.write(f"\n=== prepare {' '.join(steps)} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
            out.flush()
            proc = subprocess.run(
                [str(_bin("python")), "-c", _PREPARE_SCRIPT, *steps],
                input=admin_password + "\n",
                text=True,
                cwd=home,
                env=_superset_env(home, secret_key),
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            )
        if proc.returncode != 0:
            raise RuntimeError(
                f"preparing Superset failed (exit {proc.returncode}); "
                f"last lines of {log_file(home)}:\n{_tail(log_file(home))}"
            )
        marker.write_text(
            json.dumps(
                {"fingerprint": fingerprint, "salt": salt, "admin_password": digest}, indent=2
            )
        )
        os.chmod(marker, 0o600)
        log.info(
            "Superset home %s prepared (%s) in %.1f s", home, steps, time.monotonic() - started
        )


# ---------- start / stop
_children: dict[int, subprocess.Popen] = {}


def is_healthy(url: str, timeout: float = 2.0) -> bool:
    """True when Superset at ``url`` answers ``/health`` with 200."""
    try:
        return requests.get(f"{url.rstrip('/')}/health", timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def _running_pid(home: Path) -> int | None:
    """The pid in the pid file if that process is alive and is this home's gunicorn."""
    try:
        pid = int(_pid_file(home).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    _reap(pid)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    ours = _GUNICORN_APP.encode() in cmdline and f"SUPERSET_HOME={home}".encode() in environ
    return pid if ours else None


def running_url(home: Path) -> str | None:
    """URL of the Superset running from ``home``, if any."""
    home = Path(home).resolve()
    if _running_pid(home) is None:
        return None
    with contextlib.suppress(FileNotFoundError):
        return _url_file(home).read_text().strip()
    return None


def reports_env(settings: Settings) -> dict[str, str]:
    """What the report worker needs from InferWatch's settings: SMTP and the publish lock."""
    from inferwatch.pipeline import publish_lock_path

    return {
        "INFERWATCH_SMTP_HOST": settings.smtp_host,
        "INFERWATCH_SMTP_PORT": str(settings.smtp_port),
        "INFERWATCH_SMTP_FROM": settings.smtp_from,
        "INFERWATCH_PUBLISH_LOCK": str(publish_lock_path(settings)),
        "SUPERSET_PUBLIC_URL": settings.superset_url.rstrip("/") + "/",
    }


def start(
    home: Path,
    port: int = 8088,
    host: str = "127.0.0.1",
    timeout: float = 180.0,
    *,
    reports: bool = False,
    extra_env: dict[str, str] | None = None,
) -> int:
    """Start gunicorn serving Superset from a prepared ``home``; return its pid once healthy.

    With ``reports`` (what ``inferwatch superset start`` asks for), Redis, the Celery worker and
    beat of Alerts & Reports start too (:func:`start_reports`). ``extra_env`` (e.g.
    :func:`reports_env`) is added to the environment of every process. If this home's Superset
    already runs and answers, it is reused (whatever its port). The servers run in their own
    sessions: they outlive the caller until :func:`stop`.
    """
    home = Path(home).resolve()
    pid = _running_pid(home)
    if pid is not None:
        url = running_url(home)
        if url and is_healthy(url):
            log.info("reusing Superset pid %s at %s", pid, url)
            if reports:
                start_reports(home, url, extra_env)
            return pid
        stop(home)  # alive but not answering: replace it

    url = f"http://{host}:{port}"
    if is_healthy(url):
        raise RuntimeError(f"another Superset already answers at {url}")
    env = _superset_env(home, _read_secret_key(home), extra_env)
    command = [
        str(_bin("gunicorn")),
        "--bind", f"{host}:{port}",
        "--workers", "2",
        "--worker-class", "gthread",
        "--threads", "2",
        "--timeout", "120",
        "--graceful-timeout", "10",
        "--limit-request-line", "0",
        "--limit-request-field_size", "0",
        # gunicorn 27 otherwise opens ~/.gunicorn/gunicorn.ctl, one path shared by every instance
        "--no-control-socket",
        _GUNICORN_APP,
    ]  # fmt: skip
    with log_file(home).open("a") as out:
        out.write(f"\n=== start {url} {time.strftime('%Y-%m-%dT%H:%M:%S')}\n")
        out.flush()
        proc = subprocess.Popen(
            command,
            cwd=home,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _children[proc.pid] = proc
    _pid_file(home).write_text(f"{proc.pid}\n")
    _url_file(home).write_text(url + "\n")

    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            _forget(home, proc.pid)
            raise RuntimeError(
                f"Superset exited with {proc.returncode} while starting; "
                f"last lines of {log_file(home)}:\n{_tail(log_file(home))}"
            )
        if is_healthy(url):
            log.info(
                "Superset pid %s healthy at %s after %.1f s",
                proc.pid,
                url,
                time.monotonic() - started,
            )
            if reports:
                start_reports(home, url, extra_env)
            return proc.pid
        time.sleep(0.5)
    stop(home)
    raise TimeoutError(f"Superset did not answer {url}/health within {timeout:.0f} s")


def start_reports(home: Path, url: str, extra_env: dict[str, str] | None = None) -> dict[str, int]:
    """Start Redis, the Celery worker and beat for the Superset at ``url`` (reusing running
    ones); ``{component: pid}``. The worker's Chromium opens ``url`` (WEBDRIVER_BASEURL)."""
    home = Path(home).resolve()
    env = _superset_env(
        home,
        _read_secret_key(home),
        {"SUPERSET_WEBDRIVER_BASEURL": url.rstrip("/") + "/", **(extra_env or {})},
    )
    pids = report_workers.start(home, env, celery=_bin("celery"))
    log.info("Superset reports running: %s", pids)
    return pids


def stop(home: Path, timeout: float = 30.0) -> bool:
    """Stop the Superset started from ``home`` by the pid in its pid file, and its report
    workers (beat, worker, Redis) by theirs; True if gunicorn ran."""
    home = Path(home).resolve()
    report_workers.stop(home, timeout=timeout)
    pid = _running_pid(home)
    if pid is None:
        _forget(home, None)
        return False
    os.kill(pid, signal.SIGTERM)  # gunicorn master: graceful stop of its workers
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.2)
    if _alive(pid):
        log.warning("Superset pid %s ignored SIGTERM; killing its process group", pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # the session start() created: pgid == pid
        while _alive(pid):
            time.sleep(0.1)
    _forget(home, pid)
    return True


def _reap(pid: int) -> None:
    """Collect ``pid`` if it is our exited child, so that it does not linger as a zombie."""
    proc = _children.get(pid)
    if proc is not None:
        proc.poll()
        return
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _alive(pid: int) -> bool:
    _reap(pid)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def _forget(home: Path, pid: int | None) -> None:
    if pid is not None:
        _children.pop(pid, None)
    for path in (_pid_file(home), _url_file(home)):
        path.unlink(missing_ok=True)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
