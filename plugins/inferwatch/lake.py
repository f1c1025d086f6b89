"""Lake access: one URL names the lake root; local folders and s3:// go through fsspec.

The lake layout (README): ``raw/`` (producers write, never changed here), ``reference/``,
``registry/``, ``quarantine/``, ``bronze/``.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import fsspec
from fsspec.core import url_to_fs

from inferwatch.names import InvalidName

log = logging.getLogger(__name__)
T = TypeVar("T")

RAW_SUFFIXES = (".jsonl", ".ndjson", ".json")
#: Attempts per lake operation, and the first pause between them (doubled each time): an
#: object store that hiccups is waited out; one that is down fails the task within about
#: 15 s plus the client's own timeouts, naming the object, and the next run completes it.
ATTEMPTS = int(os.environ.get("INFERWATCH_LAKE_ATTEMPTS", "4"))
FIRST_BACKOFF_S = float(os.environ.get("INFERWATCH_LAKE_BACKOFF_S", "1.0"))
#: botocore's own defaults wait 60 s to connect and retry on top of ours; keep them short.
S3_CLIENT_CONFIG = {"connect_timeout": 5, "read_timeout": 30, "retries": {"max_attempts": 1}}


class LakeError(IOError):
    """A lake operation still failed after the bounded retries; names the object."""


#: What a lake key's part may never hold: a separator (a part is one folder or file name),
#: NUL (cut short by C libraries), nor be ``.`` or ``..`` (the folder itself or its parent).
_SEPARATORS = ("/", "\\", "\x00")


def lake_key(*parts: str, folder: bool = False) -> str:
    """The lake key of ``parts`` joined by ``/`` (a trailing ``/`` when ``folder``).

    Every key built from a value that came from data (a model name, a version, a day) goes
    through here: a part that is empty, ``.`` or ``..``, or holds ``/``, ``\\`` or NUL would
    name another folder (``reference/../bronze/events``) or leave the lake
    (``../../outside``), so it raises InvalidName instead; no part can make the key absolute.
    """
    for part in parts:
        if (
            not isinstance(part, str)
            or part in ("", ".", "..")
            or any(separator in part for separator in _SEPARATORS)
        ):
            raise InvalidName(f"not a lake key part: {part!r} (in {parts!r})")
    return "/".join(parts) + ("/" if folder else "")


def is_raw_log(key: str) -> bool:
    name = key.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    return name.endswith(RAW_SUFFIXES)


@dataclass(frozen=True)
class ObjectInfo:
    """One object as listed: what the manifest compares to find new or rewritten objects."""

    key: str  # relative to the lake root, e.g. "raw/2025/05/20/14/part-0.jsonl.gz"
    size: int
    version: str  # etag for object stores, mtime for local files


class Lake:
    """A lake root on any fsspec filesystem.

    ``storage_options`` are passed to fsspec (for S3: ``key``, ``secret``,
    ``client_kwargs={"endpoint_url": ..., "region_name": ...}``); the Airflow layer builds them
    from a connection, the core never imports Airflow.
    """

    def __init__(
        self,
        url: str,
        storage_options: dict[str, Any] | None = None,
        *,
        attempts: int = ATTEMPTS,
        backoff_s: float = FIRST_BACKOFF_S,
    ):
        self.url = url.rstrip("/")
        self.storage_options = dict(storage_options or {})
        if self.url.startswith(("s3://", "s3a://")):
            self.storage_options.setdefault("config_kwargs", S3_CLIENT_CONFIG)
        self.attempts = max(1, attempts)
        self.backoff_s = backoff_s
        self.fs: fsspec.AbstractFileSystem
        self.fs, root = url_to_fs(self.url, **self.storage_options)
        self.root = root.rstrip("/")
        self.is_local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )

    def __repr__(self) -> str:
        return f"Lake({self.url!r})"

    def path(self, key: str) -> str:
        return posixpath.join(self.root, key) if key else self.root

    def full_url(self, key: str) -> str:
        """A URL DuckDB or fsspec can open (local path for local lakes)."""
        if self.is_local:
            return self.path(key)
        protocol = self.fs.protocol[0] if isinstance(self.fs.protocol, tuple) else self.fs.protocol
        return f"{protocol}://{self.path(key)}"

    def _retry(self, what: str, key: str, operation: Callable[[], T]) -> T:
        """Run ``operation``; on an I/O error retry with doubling pauses, then raise LakeError.

        Every operation here is idempotent (reads, listings, whole-object PUTs, renames of a
        finished temp file), so repeating one after a failure cannot leave a partial object.
        """
        pause, attempt = self.backoff_s, 1
        while True:
            try:
                return operation()
            except FileNotFoundError:
                raise
            except Exception as error:  # botocore, aiohttp and OS errors share no base class
                if attempt >= self.attempts:
                    raise LakeError(
                        f"{what} {self.full_url(key)} failed after {attempt} attempts: "
                        f"{type(error).__name__}: {error}"
                    ) from error
                log.warning(
                    "%s %s: %s (attempt %d/%d; retrying in %.1fs)",
                    what, key, error, attempt, self.attempts, pause,
                )  # fmt: skip
                time.sleep(pause)
                self._forget_connections()
                pause, attempt = pause * 2, attempt + 1

    def _forget_connections(self) -> None:
        # s3fs keeps directory listings and a client whose pool may hold dead connections.
        self.fs.invalidate_cache()

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every file under ``prefix`` (recursively), sorted by key."""
        base = self.path(prefix)
        found = self._retry("list", prefix, lambda: self._find(base))
        for full, info in sorted(found.items()):
            if info.get("type") == "directory":
                continue
            key = posixpath.relpath(full, self.root)
            version = (
                info.get("ETag")
                or info.get("etag")
                or str(info.get("mtime") or info.get("LastModified") or "")
            )
            yield ObjectInfo(
                key=key, size=int(info.get("size") or 0), version=str(version).strip('"')
            )

    def _find(self, base: str) -> dict:
        if not self.fs.exists(base):
            return {}
        return self.fs.find(base, detail=True)

    def read_bytes(self, key: str) -> bytes:
        """The whole object; a read cut short is retried whole, never returned in part."""
        return self._retry("read", key, lambda: self.fs.cat_file(self.path(key)))

    def exists(self, key: str) -> bool:
        return self._retry("check", key, lambda: self.fs.exists(self.path(key)))

    def write_bytes(self, key: str, data: bytes) -> None:
        """Write atomically: readers see the old object or the whole new one, never a part."""
        target = self.path(key)
        self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        if self.is_local:
            tmp = f"{target}.{uuid.uuid4().hex}.tmp"
            with self.fs.open(tmp, "wb") as fh:
                fh.write(data)
            self.fs.mv(tmp, target)
        else:  # an object-store PUT is atomic
            self._retry("write", key, lambda: self.fs.pipe_file(target, data))

    def move_in(self, local_path: str, key: str) -> None:
        """Move a finished local file to ``key``, atomically for readers (the source is gone)."""
        target = self.path(key)
        self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        if self.is_local:
            tmp = f"{target}.{uuid.uuid4().hex}.tmp"
            shutil.move(local_path, tmp)  # a rename when both are on one filesystem
            os.replace(tmp, target)
        else:  # an object-store PUT is atomic
            self._retry("write", key, lambda: self.fs.put_file(local_path, target))
            os.remove(local_path)

    def remove(self, key: str) -> None:
        if self.exists(key):
            self._retry("remove", key, lambda: self.fs.rm(self.path(key)))
