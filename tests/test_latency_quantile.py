"""latency_quantile (the macro Superset's latency metrics call) equals DuckDB's quantile_cont over
the latencies its buckets stand for, each repeated `events` times, bit for bit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

QUANTILES = (0.0, 0.01, 0.25, 0.5, 0.95, 0.99, 1.0, 0.123456789)
ZERO_BUCKET = -100000  # latencies at or below 1 µs (macros/latency_buckets.sql)


def random_groups(rng: np.random.Generator) -> pd.DataFrame:
    """(group, bucket, events) rows: single buckets, a bucket repeated within a group (the same
    bucket from several hours or endpoints), buckets shared across groups, the 0 ms bucket,
    ties, wide spreads and empty or null entries that quantile_cont would not see."""
    rows: list[tuple[int, int | None, int]] = [
        (0, 300, 1),
        (1, 300, 7),
        (2, 250, 3), (2, 250, 4), (2, 260, 1),
        (3, ZERO_BUCKET, 2), (3, 10, 2), (3, 400, 1),
        (4, None, 5), (4, 280, 0), (4, 290, 2),
        (5, 300, 1), (5, 301, 1),
    ]  # fmt: skip
    for group in range(6, 400):
        entries = int(rng.integers(1, 60))
        spread = int(rng.choice([1, 5, 80, 600]))
        first = int(rng.integers(-50, 900))
        for _ in range(entries):
            rows.append((group, first + int(rng.integers(0, spread)), int(rng.integers(1, 40))))
    frame = pd.DataFrame(rows, columns=["group_id", "bucket", "events"])
    frame["bucket"] = frame["bucket"].astype("Int32")
    frame["events"] = frame["events"].astype("int64")
    return frame.sample(frac=1.0, random_state=int(rng.integers(1 << 31)))  # any list order


@pytest.mark.parametrize("seed", [7, 2025])
def test_latency_quantile_equals_quantile_cont_over_expanded_buckets(pipeline_run, seed):
    entries = random_groups(np.random.default_rng(seed))
    # the events themselves, one row per event: what the buckets summarise
    expanded = entries.loc[entries.index.repeat(entries["events"])].drop(columns="events")
    with pipeline_run.serving() as con:
        con.register("entries", entries)
        con.register("expanded", expanded)
        for q in QUANTILES:
            got = dict(
                con.execute(
                    "select group_id, latency_quantile("
                    "list(struct_pack(bucket := bucket, events := events)), ?) "
                    "from entries group by group_id",
                    [q],
                ).fetchall()
            )
            expected = dict(
                con.execute(
                    "select group_id, quantile_cont(latency_bucket_value(bucket), ?) "
                    "from expanded group by group_id",
                    [q],
                ).fetchall()
            )
            assert got.keys() == set(entries["group_id"]), q
            # groups whose only entries are empty or null have no latency: null on both sides
            assert got == {group: expected.get(group) for group in got}, q


def test_latency_quantile_single_bucket_and_extremes(pipeline_run):
    with pipeline_run.serving() as con:
        value = con.execute("select latency_bucket_value(300)").fetchone()[0]
        lowest, highest = con.execute(
            "select latency_bucket_value(250), latency_bucket_value(260)"
        ).fetchone()
        rows = con.execute(
            """
            select
                latency_quantile([{'bucket': 300, 'events': 5}], 0.5),
                latency_quantile([{'bucket': 300, 'events': 1}], 0.0),
                latency_quantile([{'bucket': 260, 'events': 2}, {'bucket': 250, 'events': 1}], 0),
                latency_quantile([{'bucket': 260, 'events': 2}, {'bucket': 250, 'events': 1}], 1),
                latency_quantile([{'bucket': 260, 'events': 1}, {'bucket': 250, 'events': 1}], 0.5)
            """
        ).fetchone()
        # a group whose buckets hold no latency at all (empty, or null bucket)
        nothing = con.execute(
            "select latency_quantile(list(struct_pack(bucket := bucket, events := events)), 0.5) "
            "from (values (300, 0::bigint), (null, 3::bigint)) as entries (bucket, events)"
        ).fetchone()[0]
    assert rows[0] == value and rows[1] == value
    assert rows[2] == lowest and rows[3] == highest
    assert rows[4] == pytest.approx((lowest + highest) / 2, rel=1e-15)
    assert nothing is None
