"""Raw bytes → numbered lines, without a Python loop per line.

Decompression is zlib's (it survives a cut gzip stream, keeping what it could inflate) and is
streamed under a cap, so that a gzip bomb stops at the cap instead of filling memory; line
splitting finds newline offsets with NumPy and hands DuckDB Arrow binary columns in record
batches bounded in bytes.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20
#: Raw line bytes per Arrow record batch handed to DuckDB (and at most one DuckDB vector of
#: rows). DuckDB scans a registered Arrow table batch by batch, and every JSON parse of the
#: ingest statement holds its working memory for a whole batch: byte-bounded batches keep that
#: small however long the lines are, and independent of how many objects a chunk holds.
BATCH_BYTES = int(os.environ.get("INFERWATCH_INGEST_BATCH_BYTES", 1 << 20))
BATCH_ROWS = 2048
LINES_SCHEMA = pa.schema(
    [
        ("object_key", pa.dictionary(pa.int32(), pa.string())),
        ("line_number", pa.int64()),
        ("line", pa.large_binary()),
    ]
)


@dataclass(frozen=True)
class Decoded:
    key: str
    text: bytes  # decompressed, leading BOM removed
    truncated: bool  # the gzip stream ended early or was corrupt: the tail is lost
    #: Which size cap stopped the read (``OBJECT_BYTES``, ``INFLATED_BYTES``), None when the
    #: object was read whole: ``text`` is what was read before the cap.
    limit_exceeded: str | None = None
    #: Bytes inflated (or read, for an object stored uncompressed) before any cut.
    inflated_bytes: int = 0


#: ``Decoded.limit_exceeded`` values (also the manifest's ``limit_exceeded``).
OBJECT_BYTES = "object_bytes"
INFLATED_BYTES = "inflated_bytes"


def refused(key: str) -> Decoded:
    """An object not read at all: its stored size is over the cap."""
    return Decoded(key=key, text=b"", truncated=False, limit_exceeded=OBJECT_BYTES)


def decompress(key: str, data: bytes, max_bytes: int | None = None) -> Decoded:
    """Inflate gzip (all members; a cut or corrupt stream keeps what inflated) or pass through.

    At most ``max_bytes`` are kept: past it the object is cut there (``limit_exceeded``), and
    a gzip stream is checked while it inflates, so a gzip bomb never takes more than the cap.
    """
    if data[:2] == GZIP_MAGIC:
        text, truncated, over = _inflate(data, max_bytes)
    else:
        over = max_bytes is not None and len(data) > max_bytes
        text, truncated = (data[:max_bytes] if over else data), False
    inflated = len(text)
    if text.startswith(BOM):
        text = text[len(BOM) :]
    return Decoded(
        key=key,
        text=text,
        truncated=truncated,
        limit_exceeded=INFLATED_BYTES if over else None,
        inflated_bytes=inflated,
    )


def _inflate(data: bytes, cap: int | None) -> tuple[bytes, bool, bool]:
    """(text, truncated, over the cap): every gzip member, fed in slices so that a corrupt
    block late in the stream keeps the blocks before it, each slice's output bounded by what
    is left under the cap (zlib's ``max_length``: the rest waits in ``unconsumed_tail``)."""
    parts: list[bytes] = []
    size = 0

    def keep(piece: bytes) -> bool:
        """Keep what fits under the cap; False once the cap is passed."""
        nonlocal size
        size += len(piece)
        if cap is not None and size > cap:
            parts.append(piece[: len(piece) - (size - cap)])
            return False
        parts.append(piece)
        return True

    view = memoryview(data)
    start = 0  # where the current member begins
    while start < len(data):
        inflater = zlib.decompressobj(wbits=31)
        fed = start
        try:
            while not inflater.eof:
                feed = inflater.unconsumed_tail or view[fed : fed + _CHUNK]
                if not feed:  # the input ended inside this member
                    if not keep(inflater.flush()):
                        return b"".join(parts), False, True
                    break
                if not inflater.unconsumed_tail:
                    fed += len(feed)
                # 0 is unbounded; one byte more than the room tells that the cap is passed
                if not keep(inflater.decompress(feed, 0 if cap is None else cap - size + 1)):
                    return b"".join(parts), False, True
        except zlib.error:
            return b"".join(parts), True, False
        if not inflater.eof:
            return b"".join(parts), True, False
        # the next member starts where this one's compressed data ended
        start = fed - len(inflater.unused_data) - len(inflater.unconsumed_tail)
        if data[start : start + 2] != GZIP_MAGIC:  # trailing garbage is ignored
            break
    return b"".join(parts), False, False


def line_offsets(text: bytes) -> np.ndarray:
    """Start offsets of every line plus the end (n + 1 values; a line keeps its line end).

    A final empty piece after a trailing newline is not a line.
    """
    if not text:
        return np.zeros(1, dtype=np.int64)
    ends = np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == 10) + 1
    if not len(ends) or ends[-1] != len(text):
        ends = np.append(ends, len(text))
    return np.concatenate(([0], ends)).astype(np.int64)


def split_lines(text: bytes, offsets: np.ndarray | None = None) -> pa.LargeBinaryArray:
    """One binary value per line (each keeps its line end; SQL trims it)."""
    offsets = line_offsets(text) if offsets is None else offsets
    if not text:
        return pa.array([], type=pa.large_binary())
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(offsets) - 1, [None, pa.py_buffer(offsets), pa.py_buffer(text)]
    )


def lines_table(decoded: list[Decoded], batch_bytes: int = BATCH_BYTES) -> pa.Table:
    """``object_key`` (dictionary), ``line_number`` (from 1) and ``line`` for many objects, in
    record batches of at most ``batch_bytes`` of lines (a longer line is a batch of its own)
    and ``BATCH_ROWS`` rows: small objects share a batch, large ones are sliced (no copy)."""
    keys = pa.array([d.key for d in decoded], type=pa.string())
    batches = [_batch(keys, pieces) for pieces in _batch_pieces(decoded, batch_bytes)]
    return pa.Table.from_batches(batches, schema=LINES_SCHEMA)


def bounded_batches(table: pa.Table, batch_bytes: int = BATCH_BYTES) -> pa.Table:
    """``table`` (with a binary ``line`` column) sliced, without copying, into record batches
    within ``batch_bytes`` of lines and ``BATCH_ROWS`` rows (a longer line alone)."""
    out = []
    for batch in table.to_batches():
        ends = np.cumsum(pc.binary_length(batch["line"]).fill_null(0).to_numpy())
        start = 0
        while start < batch.num_rows:
            base = ends[start - 1] if start else 0
            stop = int(np.searchsorted(ends, base + batch_bytes, side="right"))
            stop = min(max(stop, start + 1), start + BATCH_ROWS, batch.num_rows)
            out.append(batch.slice(start, stop - start))
            start = stop
    return pa.Table.from_batches(out, schema=table.schema)


def _batch_pieces(
    decoded: list[Decoded], batch_bytes: int
) -> Iterator[list[tuple[int, int, pa.LargeBinaryArray]]]:
    """Groups of (object index, first line number, lines) that make one batch each."""
    pieces: list[tuple[int, int, pa.LargeBinaryArray]] = []
    size = rows = 0
    for index, item in enumerate(decoded):
        offsets = line_offsets(item.text)
        lines = split_lines(item.text, offsets)
        start = 0
        while start < len(lines):
            # the most lines from ``start`` that fit in what is left of the batch
            room = batch_bytes - size
            stop = int(np.searchsorted(offsets, offsets[start] + room, side="right")) - 1
            stop = min(stop, start + BATCH_ROWS - rows, len(lines))
            if stop <= start:
                if pieces:
                    yield pieces
                    pieces, size, rows = [], 0, 0
                    continue
                stop = start + 1  # one line longer than a whole batch: a batch of its own
            pieces.append((index, start + 1, lines.slice(start, stop - start)))
            size += int(offsets[stop] - offsets[start])
            rows += stop - start
            start = stop
    if pieces:
        yield pieces


def _batch(keys: pa.Array, pieces: list[tuple[int, int, pa.LargeBinaryArray]]) -> pa.RecordBatch:
    indices = np.concatenate([np.full(len(lines), index, dtype=np.int32)
                              for index, _, lines in pieces])  # fmt: skip
    numbers = np.concatenate([np.arange(first, first + len(lines), dtype=np.int64)
                              for _, first, lines in pieces])  # fmt: skip
    lines = pieces[0][2] if len(pieces) == 1 else pa.concat_arrays([p[2] for p in pieces])
    return pa.record_batch(
        [pa.DictionaryArray.from_arrays(pa.array(indices), keys), pa.array(numbers), lines],
        schema=LINES_SCHEMA,
    )
