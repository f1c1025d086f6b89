"""Raw bytes → numbered lines, without a Python loop per line.

Decompression is zlib's (it survives a cut gzip stream, keeping what it could inflate); line
splitting finds newline offsets with NumPy and hands DuckDB a zero-copy Arrow binary column.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

BOM = b"\xef\xbb\xbf"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Decoded:
    key: str
    text: bytes  # decompressed, leading BOM removed
    truncated: bool  # the gzip stream ended early or was corrupt: the tail is lost


def decompress(key: str, data: bytes) -> Decoded:
    """Inflate gzip (all members; a cut or corrupt stream keeps what inflated) or pass through."""
    truncated = False
    if data[:2] == b"\x1f\x8b":
        parts: list[bytes] = []
        rest = data
        while rest:
            inflater = zlib.decompressobj(wbits=31)
            try:
                # Chunked so that a corrupt block late in the stream keeps the blocks before it.
                for start in range(0, len(rest), _CHUNK):
                    parts.append(inflater.decompress(rest[start : start + _CHUNK]))
                    if inflater.eof:
                        break
                parts.append(inflater.flush())
            except zlib.error:
                truncated = True
                break
            if not inflater.eof:
                truncated = True
                break
            rest = inflater.unused_data
            if rest[:2] != b"\x1f\x8b":  # trailing garbage after the last member is ignored
                break
        text = b"".join(parts)
    else:
        text = data
    if text.startswith(BOM):
        text = text[len(BOM) :]
    return Decoded(key=key, text=text, truncated=truncated)


def split_lines(text: bytes) -> pa.LargeBinaryArray:
    """One binary value per line (each keeps its line end; SQL trims it).

    A final empty piece after a trailing newline is not a line.
    """
    if not text:
        return pa.array([], type=pa.large_binary())
    newlines = np.flatnonzero(np.frombuffer(text, dtype=np.uint8) == 10)
    ends = newlines + 1
    if not len(ends) or ends[-1] != len(text):
        ends = np.append(ends, len(text))
    offsets = np.concatenate(([0], ends)).astype(np.int64)
    return pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), len(ends), [None, pa.py_buffer(offsets), pa.py_buffer(text)]
    )


def lines_table(decoded: list[Decoded]) -> pa.Table:
    """``object_key`` (dictionary), ``line_number`` (from 1) and ``line`` for many objects."""
    keys = pa.array([d.key for d in decoded], type=pa.string())
    batches = []
    for index, item in enumerate(decoded):
        lines = split_lines(item.text)
        count = len(lines)
        if not count:
            continue
        object_key = pa.DictionaryArray.from_arrays(
            pa.array(np.full(count, index, dtype=np.int32)), keys
        )
        batches.append(
            pa.record_batch(
                [object_key, pa.array(np.arange(1, count + 1, dtype=np.int64)), lines],
                names=["object_key", "line_number", "line"],
            )
        )
    schema = pa.schema(
        [
            ("object_key", pa.dictionary(pa.int32(), pa.string())),
            ("line_number", pa.int64()),
            ("line", pa.large_binary()),
        ]
    )
    return pa.Table.from_batches(batches, schema=schema)
