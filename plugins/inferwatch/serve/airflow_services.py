"""Start and stop the demo's Airflow components, each bound to 127.0.0.1, tracked by pid file.

`airflow standalone` would start log servers on 0.0.0.0 with no setting to change it
(ports 8793/8794), so the components are started one by one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from inferwatch import airflow_env
from inferwatch.config import Settings
from inferwatch.filemodes import restrict_umask, secure_tree

log = logging.getLogger(__name__)

COMPONENTS = {
    "api-server": ["api-server", "-H", "127.0.0.1", "-p", "{port}"],
    "scheduler": ["scheduler", "--skip-serve-logs"],
    "dag-processor": ["dag-processor"],
    "triggerer": ["triggerer", "--skip-serve-logs"],
}


def _pid_dir(home: Path) -> Path:
    return home / "pids"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    return pid if _alive(pid) else None


def is_healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=5
        ) as response:
            return response.status == 200 and "healthy" in json.loads(response.read()).get(
                "metadatabase", {}
            ).get("status", "")
    except (OSError, ValueError):
        return False


def start(settings: Settings, port: int = 8080, timeout_s: float = 180) -> dict[str, int]:
    """Start every component not already running from this Airflow home; wait for the API.
    Each runs with the owner-only umask (the API server writes the generated passwords)."""
    secure_tree(settings.data_dir)
    env = {**os.environ, **airflow_env.airflow_environment(settings, port=port)}
    home = Path(env["AIRFLOW_HOME"])
    airflow_env.ensure_metadata_db(env)
    airflow_bin = str(Path(sys.executable).with_name("airflow"))
    pids: dict[str, int] = {}
    _pid_dir(home).mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    for name, args in COMPONENTS.items():
        pid_file = _pid_dir(home) / f"{name}.pid"
        running = _read_pid(pid_file)
        if running:
            pids[name] = running
        else:
            log_file = open(home / f"{name}.log", "ab")  # noqa: SIM115 (owned by the child)
            proc = subprocess.Popen(
                [airflow_bin, *[a.format(port=port) for a in args]],
                env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
                umask=restrict_umask(),
            )  # fmt: skip
            pid_file.write_text(f"{proc.pid}\n")
            pids[name] = proc.pid
            log.info("started airflow %s (pid %d)", name, proc.pid)
        if name == "api-server":
            # Tasks report to the API server's execution API: a scheduler started before it
            # answers sends its first tasks into a timeout.
            while not is_healthy(port):
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"Airflow API on 127.0.0.1:{port} not healthy; see {home}/api-server.log"
                    )
                time.sleep(2)
    return pids


def stop(settings: Settings) -> list[str]:
    """Stop the components started from this Airflow home, by the pids they were started with."""
    home = airflow_env.airflow_home(settings)
    stopped = []
    for name in COMPONENTS:
        pid_file = _pid_dir(home) / f"{name}.pid"
        pid = _read_pid(pid_file)
        if pid:
            # Each component leads its own session (start_new_session): signal its group so
            # the workers it forked stop with it.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGTERM)
            for _ in range(30):
                if not _alive(pid):
                    break
                time.sleep(0.5)
            else:
                os.killpg(pid, signal.SIGKILL)
            stopped.append(name)
        pid_file.unlink(missing_ok=True)
    return stopped


def admin_login(settings: Settings) -> tuple[str, str]:
    """The simple auth manager's generated admin password (written at the API's first start)."""
    home = airflow_env.airflow_home(settings)
    path = home / "passwords.json"
    try:
        return "admin", json.loads(path.read_text()).get("admin", "")
    except (FileNotFoundError, ValueError):
        return "admin", "(generated at first start into " + str(path) + ")"
