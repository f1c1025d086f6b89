"""A plain reader of the raw log contract (v1): nothing but zlib and json.

Tests compute their expected figures from what this reads, independently of InferWatch's
DuckDB parser, so that a bug in either shows up as a mismatch.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BOM = b"\xef\xbb\xbf"


def decompressed(path: Path) -> tuple[bytes, bool]:
    """The object's bytes after gunzip (as far as zlib gets) and whether the stream was whole."""
    data = path.read_bytes()
    if not path.name.endswith(".gz"):
        return data, True
    inflater = zlib.decompressobj(wbits=31)
    out = inflater.decompress(data) + inflater.flush()
    return out, inflater.eof


def read_lines(path: Path) -> list[str]:
    data, _ = decompressed(path)
    if data.startswith(BOM):
        data = data[len(BOM) :]
    pieces = data.decode("utf-8", errors="replace").split("\n")
    if pieces[-1] == "":
        pieces.pop()
    return [p[:-1] if p.endswith("\r") else p for p in pieces]


def parse_timestamp(value: Any) -> datetime | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000 if value >= 1e11 else value, tz=UTC)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed.astimezone(UTC) if parsed.tzinfo else None
    return None


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def accept(line: str) -> dict | None:
    """The contract's checks; returns the event (with derived fields) or None to quarantine."""
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), str):
        return None
    when = parse_timestamp(obj.get("timestamp"))
    checks = (
        when is not None,
        "confidence" not in obj or (is_number(obj["confidence"]) and 0 <= obj["confidence"] <= 1),
        "latency_ms" not in obj or (is_number(obj["latency_ms"]) and obj["latency_ms"] >= 0),
        "retry_count" not in obj or (type(obj["retry_count"]) is int and obj["retry_count"] >= 0),
        obj.get("status", "ok") in ("ok", "error"),
        isinstance(obj.get("input_features", {}), dict),
    )
    if not all(checks):
        return None
    name, version = obj["model"], obj.get("model_version")
    if version is None:
        match = re.fullmatch(r"(.+)_(v\d+)", name)
        name, version = (match.group(1), match.group(2)) if match else (name, "unknown")
    status = obj.get("status") or ("error" if "error" in obj else "ok")
    return {"obj": obj, "name": name, "version": version, "when": when, "status": status}


def dedupe_key(line: str, obj: dict) -> str:
    return obj.get("event_id") or hashlib.sha256(line.encode()).hexdigest()


@dataclass
class Reread:
    """What a plain reader makes of the whole lake."""

    objects: dict[str, tuple[int, int, int, int]]  # key -> read, blank, malformed, valid
    rejected: dict[tuple[str, int], str]  # (key, line number) -> line text
    events: dict[str, dict]  # dedupe key -> event, first sighting
    sightings: Counter  # dedupe key -> number of times it was seen
    texts: dict[str, set[str]]  # dedupe key -> the distinct line texts carrying it


def reread(lake: Path) -> Reread:
    result = Reread({}, {}, {}, Counter(), defaultdict(set))
    for path in sorted((lake / "raw").rglob("*")):
        if not path.is_file():
            continue
        key = path.relative_to(lake).as_posix()
        blank = malformed = valid = 0
        lines = read_lines(path)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                blank += 1
                continue
            event = accept(line)
            if event is None:
                malformed += 1
                result.rejected[key, number] = line
                continue
            valid += 1
            dedupe = dedupe_key(line, event["obj"])
            result.sightings[dedupe] += 1
            result.texts[dedupe].add(line)
            result.events.setdefault(dedupe, event)
        result.objects[key] = (len(lines), blank, malformed, valid)
    return result
