"""Lake access: one URL names the lake root; local folders and s3:// go through fsspec.

The lake layout (DESIGN.md): ``raw/`` (producers write, never changed here), ``reference/``,
``registry/``, ``quarantine/``, ``bronze/``.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.core import url_to_fs

RAW_SUFFIXES = (".jsonl", ".ndjson", ".json")


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

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None):
        self.url = url.rstrip("/")
        self.storage_options = storage_options or {}
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

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every file under ``prefix`` (recursively), sorted by key."""
        base = self.path(prefix)
        if not self.fs.exists(base):
            return
        found = self.fs.find(base, detail=True)
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

    def read_bytes(self, key: str) -> bytes:
        return self.fs.cat_file(self.path(key))

    def exists(self, key: str) -> bool:
        return self.fs.exists(self.path(key))

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
            self.fs.pipe_file(target, data)

    def move_in(self, local_path: str, key: str) -> None:
        """Move a finished local file to ``key``, atomically for readers (the source is gone)."""
        target = self.path(key)
        self.fs.makedirs(posixpath.dirname(target), exist_ok=True)
        if self.is_local:
            tmp = f"{target}.{uuid.uuid4().hex}.tmp"
            shutil.move(local_path, tmp)  # a rename when both are on one filesystem
            os.replace(tmp, target)
        else:  # an object-store PUT is atomic
            self.fs.put_file(local_path, target)
            os.remove(local_path)

    def remove(self, key: str) -> None:
        if self.fs.exists(self.path(key)):
            self.fs.rm(self.path(key))
