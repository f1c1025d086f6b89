"""A private PostgreSQL server from the machine's packages, for Airflow's and Superset's metadata.

The scaled-out deployment (docker-compose.yml) keeps both metadata databases in PostgreSQL.
This module runs the same thing natively so that it can be tested here: ``initdb`` into a
folder of our own, a server on 127.0.0.1 (no Unix socket outside that folder), password
authentication with a generated password, stopped by the pid in ``postmaster.pid``.

PostgreSQL refuses to run as root; as root the server runs as the ``postgres`` system user
(Debian's package creates it), which must be able to reach the folder.
"""

from __future__ import annotations

import logging
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SUPERUSER = "inferwatch"
SYSTEM_USER = "postgres"


@dataclass(frozen=True)
class PostgresServer:
    data_dir: Path
    port: int
    password: str
    pid: int

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg2") -> str:
        return f"{driver}://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create ``name`` if missing; return its SQLAlchemy URL."""
        import psycopg2

        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, password=self.password,
            dbname="postgres",
        )  # fmt: skip
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                cur.execute("select 1 from pg_database where datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'create database "{name}"')
        finally:
            conn.close()
        return self.url(name)


def bin_dir() -> Path:
    """The newest installed server's binaries (Debian: /usr/lib/postgresql/<major>/bin)."""
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
    )
    if candidates:
        return candidates[-1].parent
    found = shutil.which("initdb") or shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    raise RuntimeError("no PostgreSQL server installed: `make postgresql` (Debian: postgresql)")


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", SYSTEM_USER, "--", *argv] if os.geteuid() == 0 else argv


def _give_to_server_user(path: Path) -> None:
    if os.geteuid() == 0:
        user = pwd.getpwnam(SYSTEM_USER)
        os.chown(path, user.pw_uid, user.pw_gid)


def init(data_dir: Path) -> str:
    """``initdb`` an empty cluster (UTF-8, password auth) into ``data_dir``; return the password."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(data_dir, 0o700)
    _give_to_server_user(data_dir)
    password = secrets.token_urlsafe(24)
    pwfile = data_dir.parent / f".{data_dir.name}.pw"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    _give_to_server_user(pwfile)
    try:
        subprocess.run(
            _as_server_user([
                str(bin_dir() / "initdb"), "-D", str(data_dir), "-U", SUPERUSER,
                "--pwfile", str(pwfile), "--auth=scram-sha-256", "-E", "UTF8",
                "--locale=C.UTF-8",
            ]),
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
    finally:
        pwfile.unlink(missing_ok=True)
    return password


def start(data_dir: Path, port: int, password: str, timeout: float = 60.0) -> PostgresServer:
    """Start the server on 127.0.0.1:``port``; its socket stays inside ``data_dir``."""
    data_dir = Path(data_dir)
    logfile = data_dir / "server.log"
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={data_dir}"
    subprocess.run(
        _as_server_user([
            str(bin_dir() / "pg_ctl"), "-D", str(data_dir), "-l", str(logfile), "-o", options,
            "-w", "-t", str(int(timeout)), "start",
        ]),
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    pid = _postmaster_pid(data_dir)
    log.info("PostgreSQL pid %d on 127.0.0.1:%d (data %s)", pid, port, data_dir)
    return PostgresServer(data_dir=data_dir, port=port, password=password, pid=pid)


def stop(server: PostgresServer, timeout: float = 30.0) -> None:
    """Fast shutdown by pid (SIGINT: roll back open transactions, then exit)."""
    try:
        os.kill(server.pid, signal.SIGINT)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(server.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(server.pid, signal.SIGKILL)


def _postmaster_pid(data_dir: Path) -> int:
    # postmaster.pid is readable by its owner only; as root we may read it anyway.
    return int((data_dir / "postmaster.pid").read_text().splitlines()[0])
