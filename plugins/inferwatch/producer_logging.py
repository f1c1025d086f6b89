"""The producer side: model servers log inferences as contract v1 lines, shipped to the lake.

Standard library only (shipping uses :class:`inferwatch.lake.Lake`, imported when called), so a
model server can vendor this one module. Model metadata is given once; each inference adds its
own fields::

    import logging
    from inferwatch.producer_logging import ContractFileHandler

    log = logging.getLogger("inferences")
    log.propagate = False
    log.addHandler(ContractFileHandler("/var/log/inferwatch", model="customer_churn",
                                       model_version="v3", endpoint="/predict"))
    log.info("scored", extra={"inference": {"input_features": {"age": 35},
                                             "prediction": "churn", "latency_ms": 12.5}})

or, with loguru (``logger.add(LoguruContractSink(...), filter=LoguruContractSink.wants)`` and
``logger.info("scored", inference={...})``). Files are written as ``<prefix>-…jsonl.open``,
rotated by size and by time into closed ``.jsonl.gz`` files, and :func:`ship` uploads the closed
ones to ``raw/<…>/yyyy/mm/dd/hh/`` in the lake. docs/producers.md has the whole recipe.
"""

from __future__ import annotations

import argparse
import atexit
import gzip
import json
import logging
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: The contract version these lines are written in (``schema_version`` on every line).
SCHEMA_VERSION = 1

#: Contract v1 fields (inference_log.v1.json); an event may also carry any other field, which
#: readers keep as an unknown field.
CONTRACT_FIELDS = (
    "timestamp", "model", "model_version", "event_id", "request_id", "endpoint", "client_id",
    "user_id", "input_features", "prediction", "confidence", "latency_ms", "status", "error",
    "retry_count", "fallback", "geo", "resources", "model_metadata", "usage", "schema_version",
    "batch",
)  # fmt: skip

OPEN_SUFFIX = ".open"
_CLOSED_NAME = re.compile(r"-(\d{8}T\d{6}Z)-[^/]*\.jsonl(\.gz)?$")


def rfc3339(when: datetime | float) -> str:
    """UTC, millisecond precision, ``Z``: ``2025-05-20T14:52:00.125Z``."""
    if not isinstance(when, datetime):
        when = datetime.fromtimestamp(when, UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ModelInfo:
    """What every line of one model server carries, filled in once."""

    model: str
    model_version: str | None = None
    endpoint: str | None = None
    #: ``{git_commit, training_data_hash, deployed_at, …}`` (lineage in mart_model_lineage).
    model_metadata: Mapping[str, Any] | None = None
    #: Any other fields to put on every line (kept by readers as unknown fields).
    static: Mapping[str, Any] = field(default_factory=dict)

    def record(self, fields: Mapping[str, Any], when: datetime | float) -> dict[str, Any]:
        """One contract line as a dict: metadata, then the event's own fields (which win)."""
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "timestamp": rfc3339(when),
            "event_id": uuid.uuid4().hex,
            "model": self.model,
        }
        for name in ("model_version", "endpoint", "model_metadata"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        out.update(self.static)
        out.update({k: v for k, v in fields.items() if v is not None})
        return out


def dumps(record: Mapping[str, Any]) -> str:
    """One JSON line (no newline inside: JSON escapes them); unknown types become strings."""
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)


def _fields(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Contract fields from log-record attributes, plus everything under ``inference``."""
    out = {k: attributes[k] for k in CONTRACT_FIELDS if k in attributes}
    inference = attributes.get("inference")
    if isinstance(inference, Mapping):
        out.update(inference)
    return out


def _error(exc: BaseException | None) -> dict[str, str] | None:
    if exc is None:
        return None
    return {"type": type(exc).__name__, "message": str(exc)}


# ---------------------------------------------------------------- files


class RotatingJsonlWriter:
    """Appends lines to ``<prefix>-<opened>-<host>-<pid>-<token>-<seq>.jsonl.open``.

    The file is closed (renamed without ``.open``, gzipped when ``compress``) when it reaches
    ``max_bytes``, when the clock crosses a multiple of ``interval_s`` (hourly files line up with
    the lake's hour partitions), and at :meth:`close` (also at interpreter exit). Only closed
    files are shipped, so the lake never sees a file still being written. Thread-safe; each
    process writes its own files.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        prefix: str = "inferences",
        max_bytes: int = 64 << 20,
        interval_s: float = 3600,
        compress: bool = True,
        clock: Callable[[], float] = time.time,
    ):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prefix, self.max_bytes, self.interval_s = prefix, max_bytes, interval_s
        self.compress, self.clock = compress, clock
        self._token = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._seq = 0
        self._lock = threading.Lock()
        self._file: Any = None
        self._path: Path | None = None
        self._size = 0
        self._rollover_at = 0.0
        self.closed_files: list[Path] = []
        atexit.register(self.close)

    def write(self, line: str) -> None:
        data = (line.rstrip("\n") + "\n").encode("utf-8")
        with self._lock:
            now = self.clock()
            if self._file is not None and (
                now >= self._rollover_at or self._size + len(data) > self.max_bytes
            ):
                self._finish()
            if self._file is None:
                self._open(now)
            self._file.write(data)
            self._file.flush()  # a crash loses at most the line being written
            self._size += len(data)

    def rotate(self) -> Path | None:
        """Close the current file now; returns the closed file (None when nothing was open)."""
        with self._lock:
            return self._finish()

    def close(self) -> None:
        self.rotate()

    def _open(self, now: float) -> None:
        opened = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
        self._seq += 1
        name = f"{self.prefix}-{opened}-{self._token}-{self._seq:05d}.jsonl{OPEN_SUFFIX}"
        self._path = self.directory / name
        self._file = open(self._path, "ab")  # noqa: SIM115 (kept open between writes)
        self._size = 0
        self._rollover_at = (now // self.interval_s + 1) * self.interval_s

    def _finish(self) -> Path | None:
        if self._file is None or self._path is None:
            return None
        self._file.close()
        path, self._file, self._path = self._path, None, None
        if self._size == 0:
            path.unlink(missing_ok=True)
            return None
        closed = finish_file(path, compress=self.compress)
        self.closed_files.append(closed)
        return closed


def finish_file(path: Path, *, compress: bool) -> Path:
    """``x.jsonl.open`` → ``x.jsonl`` or ``x.jsonl.gz`` (written aside, then renamed)."""
    plain = path.with_name(path.name.removesuffix(OPEN_SUFFIX))
    if not compress:
        os.replace(path, plain)
        return plain
    target = plain.with_name(plain.name + ".gz")
    partial = target.with_name(target.name + ".part")
    with open(path, "rb") as src, gzip.open(partial, "wb") as dst:
        shutil.copyfileobj(src, dst)
    os.replace(partial, target)
    path.unlink()
    return target


# ---------------------------------------------------------------- logging and loguru


class ContractFormatter(logging.Formatter):
    """Formats a log record as one contract v1 line.

    The event's fields come from ``extra={"inference": {...}}`` or from ``extra`` keys that are
    contract field names; ``timestamp`` is the record's creation time; ``logger.exception``
    fills ``error`` with the exception's type and message.
    """

    def __init__(self, info: ModelInfo):
        super().__init__()
        self.info = info

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record.__dict__)
        if record.exc_info and "error" not in fields:
            fields["error"] = _error(record.exc_info[1])
        return dumps(self.info.record(fields, record.created))


class ContractFileHandler(logging.Handler):
    """A ``logging`` handler writing contract lines into rotated JSON-lines files."""

    def __init__(
        self,
        directory: str | Path,
        model: str | None = None,
        *,
        info: ModelInfo | None = None,
        level: int = logging.NOTSET,
        **options: Any,
    ):
        """``model``, ``model_version``, ``endpoint``, ``model_metadata``, ``static`` build the
        :class:`ModelInfo` (or pass ``info``); the rest (``prefix``, ``max_bytes``,
        ``interval_s``, ``compress``) go to :class:`RotatingJsonlWriter`."""
        super().__init__(level)
        info_keys = ("model_version", "endpoint", "model_metadata", "static")
        if info is None:
            if model is None:
                raise ValueError("ContractFileHandler needs model= (or info=ModelInfo(...))")
            info = ModelInfo(model, **{k: options.pop(k) for k in info_keys if k in options})
        self.setFormatter(ContractFormatter(info))
        self.writer = RotatingJsonlWriter(directory, **options)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.write(self.format(record))
        except Exception:
            self.handleError(record)

    def close(self) -> None:
        self.writer.close()
        super().close()


class LoguruContractSink:
    """A loguru sink writing contract lines (loguru itself is not imported here).

    ``logger.add(LoguruContractSink(dir, model="m"), filter=LoguruContractSink.wants)``, then
    ``logger.info("scored", inference={"prediction": 1, "latency_ms": 3})`` or
    ``logger.bind(prediction=1).info(...)``: the event's fields are the record's ``extra``.
    """

    def __init__(
        self,
        directory: str | Path,
        model: str | None = None,
        *,
        info: ModelInfo | None = None,
        **options: Any,
    ):
        handler = ContractFileHandler(directory, model, info=info, **options)
        self.info: ModelInfo = handler.formatter.info  # type: ignore[union-attr]
        self.writer = handler.writer

    @staticmethod
    def wants(record: Mapping[str, Any]) -> bool:
        """A loguru ``filter``: only records that carry an inference."""
        extra = record.get("extra", {})
        return "inference" in extra or "prediction" in extra

    def __call__(self, message: Any) -> None:
        record = message.record
        fields = _fields(record["extra"])
        exception = record.get("exception")
        if exception is not None and "error" not in fields:
            fields["error"] = _error(exception.value)
        self.writer.write(dumps(self.info.record(fields, record["time"])))

    def close(self) -> None:
        self.writer.close()


# ---------------------------------------------------------------- shipping


def closed_files(directory: str | Path, *, stale_after_s: float | None = None) -> list[Path]:
    """Closed log files in ``directory``; with ``stale_after_s``, ``.open`` files untouched that
    long (left by a crashed process) are closed first (their last line may be cut: it is then
    quarantined as invalid JSON, and counted)."""
    directory = Path(directory)
    if stale_after_s is not None:
        for path in directory.glob(f"*.jsonl{OPEN_SUFFIX}"):
            if time.time() - path.stat().st_mtime >= stale_after_s:
                finish_file(path, compress=True)
    return sorted(p for p in directory.iterdir() if _CLOSED_NAME.search(p.name))


def ship(
    directory: str | Path,
    lake: Any,
    prefix: str,
    *,
    delete: bool = True,
    stale_after_s: float | None = None,
) -> list[str]:
    """Upload closed files to ``<prefix>/yyyy/mm/dd/hh/<file>`` in the lake; returns the keys.

    ``lake`` is a :class:`inferwatch.lake.Lake` or its URL. Each upload is atomic
    (``Lake.write_bytes``); a file is deleted only after its upload, so a crash in between
    uploads it again under the same key with the same bytes (the ingest treats that as the same
    object rewritten: its rows are replaced, never doubled).
    """
    if not prefix.startswith("raw/"):
        raise ValueError(f"ship: prefix {prefix!r} must be under raw/ (producers write there)")
    if isinstance(lake, str):
        from inferwatch.lake import Lake

        lake = Lake(lake)
    keys = []
    for path in closed_files(directory, stale_after_s=stale_after_s):
        opened = datetime.strptime(_CLOSED_NAME.search(path.name).group(1), "%Y%m%dT%H%M%SZ")
        key = f"{prefix.strip('/')}/{opened:%Y/%m/%d/%H}/{path.name}"
        lake.write_bytes(key, path.read_bytes())
        if delete:
            path.unlink()
        keys.append(key)
    return keys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m inferwatch.producer_logging",
        description="Ship closed contract log files from a model server's log folder to the lake.",
    )
    parser.add_argument("directory", help="the folder the handler or sink writes into")
    parser.add_argument("lake", help="lake root URL (path, file://, s3://bucket/root)")
    parser.add_argument("prefix", help="lake prefix under raw/, e.g. raw/customer_churn")
    parser.add_argument("--keep", action="store_true", help="keep local files after upload")
    parser.add_argument(
        "--stale-after", type=float, default=None, metavar="SECONDS",
        help="also close and ship .open files untouched this long (a crashed writer's)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    for key in ship(args.directory, args.lake, args.prefix, delete=not args.keep,
                    stale_after_s=args.stale_after):  # fmt: skip
        print(key)


if __name__ == "__main__":
    main()
