"""Redis, a Celery worker and Celery beat for Superset's Alerts & Reports, managed by pid.

All three belong to one Superset *home* (see :mod:`inferwatch.serve.superset_server`) and keep
their state in ``home/reports/``:

- ``redis.conf`` (mode 600): port, password, ``bind 127.0.0.1``, ``protected-mode yes`` and no
  persistence (no RDB, no AOF): the broker only holds queued report tasks, which beat re-sends;
- ``redis.pid``, ``worker.pid``, ``beat.pid`` and ``<name>.log``;
- ``celerybeat-schedule``: beat's own bookkeeping.

Each process leads its own session (``start_new_session``), is recorded by pid and stopped by
signalling that pid's process group (the worker's forked pool and the Chromium it drives stop
with it); a pid is trusted only if ``/proc/<pid>/environ`` names this home. Nothing is ever
stopped by name. Redis is Debian's ``redis-server``; Celery is the Superset environment's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

log = logging.getLogger(__name__)

#: name → how readiness shows in its log (after the start offset)
COMPONENTS = ("redis", "worker", "beat")
_READY = {"worker": b" ready.", "beat": b"beat: Starting"}
_CELERY_APP = "superset.tasks.celery_app:app"
#: the environment marker by which a pid is recognised as this home's
HOME_MARKER = "INFERWATCH_REPORTS_HOME"


def reports_dir(home: Path) -> Path:
    return Path(home) / "reports"


def log_file(home: Path, name: str) -> Path:
    return reports_dir(home) / f"{name}.log"


def _pid_file(home: Path, name: str) -> Path:
    return reports_dir(home) / f"{name}.pid"


def redis_server() -> str:
    path = os.environ.get("INFERWATCH_REDIS_SERVER") or shutil.which("redis-server")
    if not path:
        raise FileNotFoundError(
            "redis-server not found: `make services` installs Debian's redis-server (as root)"
        )
    return path


# ---------- redis configuration (fixed at first use, kept for the home's life)
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis_settings(home: Path) -> dict[str, str]:
    conf = reports_dir(home) / "redis.conf"
    values: dict[str, str] = {}
    with contextlib.suppress(FileNotFoundError):
        for line in conf.read_text().splitlines():
            key, _, value = line.partition(" ")
            values[key] = value.strip().strip('"')
    return values


def ensure_redis_config(home: Path) -> Path:
    """Write ``home/reports/redis.conf`` once (a free port and a generated password)."""
    folder = reports_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    conf = folder / "redis.conf"
    if conf.exists():
        return conf
    lines = [
        "bind 127.0.0.1",
        "protected-mode yes",
        f"port {_free_port()}",
        f"requirepass {secrets.token_urlsafe(24)}",
        'save ""',
        "appendonly no",
        f"dir {folder}",
        "daemonize no",
        "databases 2",
        "maxmemory 128mb",
        "maxmemory-policy noeviction",
        "loglevel notice",
    ]
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    return conf


def redis_url(home: Path, db: int = 0) -> str:
    """The broker URL of this home's Redis (password included: keep it out of argv and logs)."""
    ensure_redis_config(home)
    values = _redis_settings(home)
    return f"redis://:{values['requirepass']}@127.0.0.1:{values['port']}/{db}"


def redis_ping(home: Path, timeout: float = 2.0) -> bool:
    """True when this home's Redis answers AUTH + PING."""
    values = _redis_settings(home)
    if not values:
        return False
    try:
        with socket.create_connection(("127.0.0.1", int(values["port"])), timeout=timeout) as s:
            password = values["requirepass"].encode()
            s.sendall(b"AUTH " + password + b"\r\nPING\r\n")
            data = b""
            while data.count(b"\r\n") < 2:
                chunk = s.recv(256)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return False
    return data.startswith(b"+OK\r\n+PONG")


# ---------- processes
def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z"


def running_pid(home: Path, name: str) -> int | None:
    """The recorded pid of ``name`` if alive and started for this home."""
    home = Path(home).resolve()
    try:
        pid = int(_pid_file(home, name).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    if not _alive(pid):
        return None
    try:
        if name == "redis":
            # redis-server rewrites its argv and environment into its title,
            # "redis-server 127.0.0.1:<port>": the port of this home's redis.conf identifies it
            title = (
                Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode("utf-8", "replace")
            )
            port = _redis_settings(home).get("port")
            ours = "redis-server" in title and title.split()[-1:] == [f"127.0.0.1:{port}"]
            return pid if port and ours else None
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return pid if f"{HOME_MARKER}={home}".encode() in environ else None


def running(home: Path) -> dict[str, int]:
    """``{component: pid}`` of the components running for this home."""
    pids = {name: running_pid(home, name) for name in COMPONENTS}
    return {name: pid for name, pid in pids.items() if pid}


def _commands(home: Path, celery: Path) -> dict[str, list[str]]:
    folder = reports_dir(home)
    return {
        "redis": [redis_server(), str(folder / "redis.conf")],
        "worker": [
            str(celery), f"--app={_CELERY_APP}", "worker",
            "--pool=prefork", "--concurrency=1",  # one Chromium at a time (~1 GB each)
            "--prefetch-multiplier=1", "-O", "fair",
            "--without-gossip", "--without-mingle",
            "--loglevel=INFO", f"--hostname=inferwatch-reports-{os.getpid()}@%h",
        ],
        "beat": [
            str(celery), f"--app={_CELERY_APP}", "beat", "--loglevel=INFO",
            f"--schedule={folder / 'celerybeat-schedule'}",
            f"--pidfile={folder / 'celerybeat.pid'}",
        ],
    }  # fmt: skip


def start(home: Path, env: dict[str, str], celery: Path, timeout: float = 180.0) -> dict[str, int]:
    """Start Redis, then the worker and beat together (each only if not already running for
    ``home``).

    ``env`` is the Superset environment (``SUPERSET_*``, SMTP, the publish lock); it must hold
    ``SUPERSET_REDIS_URL`` = :func:`redis_url`. Returns ``{component: pid}`` once Redis answers
    and the worker and beat logged that they are ready (~30 s: both import Superset).
    """
    home = Path(home).resolve()
    ensure_redis_config(home)
    env = {**env, HOME_MARKER: str(home)}
    commands = _commands(home, celery)
    pids: dict[str, int] = {}
    deadline = time.monotonic() + timeout
    for group in (("redis",), ("worker", "beat")):
        starting = {}
        for name in group:
            pid = running_pid(home, name)
            if pid is None:
                log_path = log_file(home, name)
                offset = log_path.stat().st_size if log_path.exists() else 0
                with log_path.open("ab") as out:
                    out.write(f"\n=== start {time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
                    out.flush()
                    proc = subprocess.Popen(
                        commands[name], cwd=reports_dir(home), env=env, stdin=subprocess.DEVNULL,
                        stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                    )  # fmt: skip
                pid = proc.pid
                _pid_file(home, name).write_text(f"{pid}\n")
                log.info("started %s for Superset reports (pid %d)", name, pid)
                starting[name] = (pid, offset)
            pids[name] = pid
        for name, (pid, offset) in starting.items():
            _wait_ready(home, name, pid, offset, deadline)
    return pids


def _wait_ready(home: Path, name: str, pid: int, offset: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise RuntimeError(
                f"{name} (pid {pid}) exited while starting; see {log_file(home, name)}:\n"
                + _tail(log_file(home, name))
            )
        if name == "redis":
            if redis_ping(home):
                return
        else:
            with log_file(home, name).open("rb") as handle:
                handle.seek(offset)
                if _READY[name] in handle.read():
                    return
        time.sleep(0.5)
    stop(home)
    raise TimeoutError(f"{name} not ready in time; see {log_file(home, name)}")


def stop(home: Path, timeout: float = 30.0) -> list[str]:
    """Stop beat, the worker and Redis of this home, by their recorded pids; return their names."""
    home = Path(home).resolve()
    stopped = []
    for name in reversed(COMPONENTS):  # beat first: nothing new is queued while the rest stop
        pid = running_pid(home, name)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)  # its session: the worker's pool and Chromium too
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.2)
            if _alive(pid):
                log.warning("%s pid %s ignored SIGTERM; killing its process group", name, pid)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            stopped.append(name)
        _pid_file(home, name).unlink(missing_ok=True)
    return stopped


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""
