"""Owner-only state: every file InferWatch or a process it starts creates under the data dir.

The data dir holds the warehouse, the published DuckDB files, the audit ledger, Airflow's
metadata DB and generated passwords and ``secrets.env``: nothing there is for other local
users. Processes InferWatch starts (the CLI, ``inferwatch run``, the Airflow components, every
pipeline step) run with the umask ``INFERWATCH_UMASK`` (default ``077``), so what they create is
owner-only; a data dir an older version left readable is tightened in place on first use.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

UMASK_ENV = "INFERWATCH_UMASK"
DEFAULT_UMASK = 0o077
#: Written into a tree once it has been tightened, so that the walk happens once.
MARKER = ".owner-only"

_secured: set[Path] = set()


def state_umask(env: dict[str, str] | None = None) -> int:
    """``INFERWATCH_UMASK`` as a number (octal text, e.g. ``027`` to share with a group).

    Other users never get anything: a umask that would let them in is refused.
    """
    text = ((os.environ if env is None else env).get(UMASK_ENV) or "").strip()
    value = int(text, 8) if text else DEFAULT_UMASK
    if value & 0o007 != 0o007 or not 0 <= value <= 0o777:
        raise ValueError(f"{UMASK_ENV}={text!r} would let other users read or write the state")
    return value


def restrict_umask() -> int:
    """Give this process (and what it starts) the state umask; returns it."""
    value = state_umask()
    os.umask(value)
    return value


def secure_tree(root: Path) -> None:
    """Create ``root`` owner-only; the first time a process meets an existing tree that is not
    yet marked as tightened, strip the umask's bits from everything beneath it."""
    umask = restrict_umask()
    root = Path(root)
    if root in _secured:
        return
    root.mkdir(parents=True, exist_ok=True)
    marker = root / MARKER
    if root.resolve() in (Path("/"), Path.home().resolve()):
        log.warning("%s is not a folder of its own: not made owner-only", root)
        return
    try:
        if root.stat().st_mode & umask or not marker.exists():
            changed = _tighten(root, umask)
            if changed:
                log.warning("%s: removed group/other permissions from %d paths", root, changed)
            marker.touch()
    except OSError as error:  # e.g. a read-only mount: a reader has nothing to tighten
        log.warning("cannot make %s owner-only: %s", root, error)
    _secured.add(root)


def _tighten(root: Path, umask: int) -> int:
    changed = 0
    # Children first, the root last: a walk cut short is resumed by the next process.
    for folder, dirs, files in os.walk(root, topdown=False):
        for name in [*files, *dirs]:
            changed += _chmod(Path(folder) / name, umask)
    return changed + _chmod(root, umask)


def _chmod(path: Path, umask: int) -> int:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:  # deleted meanwhile (a temp file)
        return 0
    if stat.S_ISLNK(mode) or not stat.S_IMODE(mode) & umask:
        return 0
    try:
        os.chmod(path, stat.S_IMODE(mode) & ~umask)
    except (FileNotFoundError, PermissionError) as error:
        log.warning("cannot tighten %s: %s", path, error)
        return 0
    return 1
