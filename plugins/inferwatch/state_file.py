"""Small JSON state files in the data dir (what the gate passed, which Data Docs pages and which
Superset assets a run last rendered): owner-only, replaced whole, so a reader sees the old file
or the new one."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any


def read_json(path: Path, default: Any, *, unreadable_is_default: bool = False) -> Any:
    """The file's value; ``default`` when it does not exist (or, if asked, cannot be parsed:
    for caches that a missing or broken file only makes rebuild)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except (OSError, ValueError):
        if unreadable_is_default:
            return default
        raise


def write_json(path: Path, value: Any) -> None:
    """Owner-only, replaced whole (a temp file of its own per writer, then one rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(value, handle, indent=1)
    os.replace(tmp, path)
