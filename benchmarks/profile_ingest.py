"""Where bronze ingest's DuckDB statement spends its time: one stage and one column at a time.

    .venv/pipeline/bin/python benchmarks/profile_ingest.py --events 1000000
    .venv/pipeline/bin/python benchmarks/profile_ingest.py --lake /path/to/lake --lines 200000

Takes about ``--lines`` raw lines (whole objects, sampled across models and hours), then times:
the whole parse statement (``inferwatch.ingest.parse.parse_sql``, what ingest runs per chunk);
each of its CTEs materialised in turn (the difference to the previous one is that CTE's cost);
and each output column of the final SELECT evaluated alone over the materialised ``judged`` CTE
(``sum(hash(expr))``, so DuckDB cannot prune it). Also prints EXPLAIN ANALYZE's operator times.
Column costs overlap (shared sub-expressions are computed once in the real statement), so they
add up to more than the statement: read them as a ranking, not a sum. The DuckDB floor on the
same objects is printed beside them for scale.

The parser's fast path (issue 20, ``inferwatch.ingest.fast_path``) is timed the same way: the
whole parse with it off and on (``parse(fast=...)``: on, the fast statement then the full
statement over the lines it did not take), how many lines it took, and its CTEs in turn.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb

from inferwatch.ingest import fast_path
from inferwatch.ingest.lines import decompress, lines_table
from inferwatch.ingest.parse import parse, parse_sql
from inferwatch.ingest.pii import register_functions
from inferwatch.lake import Lake, is_raw_log


def timed(fn, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split SQL on ``sep`` outside parentheses, brackets and quotes."""
    parts, depth, quote, start = [], 0, None, 0
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == sep and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


def dissect(sql: str) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(CTE name, body) pairs and (alias, expression) pairs of the final SELECT."""
    sql = re.sub(r"--[^\n]*", "", sql)
    body = sql[sql.index(" as\nwith ") + 4 :].strip()[len("with") :]
    final_at = body.rindex("\nselect")
    ctes_text, final = body[:final_at], body[final_at:].strip()
    ctes = []
    for part in split_top_level(ctes_text):
        name, _, rest = part.partition(" as ")
        ctes.append((name.strip(), rest.strip()[1:-1]))
    select_list = final[len("select") : final.rindex("from")]
    columns = []
    for expr in split_top_level(select_list):
        m = re.match(r"(?s)(.*)\s+as\s+(\w+)$", expr)
        columns.append((m.group(2), m.group(1)) if m else (expr, expr))
    return ctes, columns


def cte_times(con, ctes: list[tuple[str, str]], repeat: int, prefix: str = "") -> dict:
    """Each CTE materialised in turn (as ``cte_<prefix><name>``): the difference to the
    previous one is that CTE's cost."""
    out, previous = {}, 0.0
    for i, (name, _) in enumerate(ctes):
        with_clause = ",\n".join(f"{n_} as ({b})" for n_, b in ctes[: i + 1])
        stmt = f"create or replace temp table cte_{prefix}{name} as with {with_clause} select * from {name}"  # noqa: E501
        seconds = timed(lambda stmt=stmt: con.execute(stmt), repeat)
        out[name] = round(seconds - previous, 3)
        print(f"  {name:<30} {seconds:9.2f}s {seconds - previous:10.2f}s")
        previous = seconds
    return out


def sample_lines(lake: Lake, want: int, seed: int):
    objects = [o for o in lake.list("raw") if is_raw_log(o.key)]
    random.Random(seed).shuffle(objects)
    decoded, lines, keys = [], 0, []
    for obj in objects:
        if lines >= want:
            break
        item = decompress(obj.key, lake.read_bytes(obj.key))
        if item.truncated:
            continue  # the floor cannot read a cut gzip stream
        decoded.append(item)
        keys.append(obj.key)
        lines += item.text.count(b"\n")
    return decoded, keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lake", help="an existing lake (default: simulate one day)")
    parser.add_argument("--events", type=int, default=1_000_000, help="if simulating")
    parser.add_argument("--lines", type=int, default=200_000, help="lines to profile")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        lake_url = args.lake
        if not lake_url:
            from inferwatch.simulate import simulate

            lake_url = str(Path(tmp) / "lake")
            end = datetime(2025, 5, 2, tzinfo=UTC)
            simulate(lake_url, truth_dir=Path(tmp) / "truth", start=end - timedelta(days=1),
                     end=end, events=args.events, objects_per_hour=4)  # fmt: skip
        lake = Lake(lake_url)
        decoded, keys = sample_lines(lake, args.lines, args.seed)
        table = lines_table(decoded)
        con = duckdb.connect()
        con.execute("set threads = 2")
        con.execute("set TimeZone = 'UTC'")
        con.register("lines", table)
        n = table.num_rows
        out: dict = {"lines": n, "objects": len(keys)}
        print(f"{n:,} lines from {len(keys)} objects, DuckDB {duckdb.__version__}, 2 threads\n")

        files = "[" + ", ".join(f"'{lake.path(k)}'" for k in keys) + "]"
        out["floor_s"] = timed(
            lambda: con.execute(
                f"select json ->> '$.model', count(*), "
                f"quantile_cont(try_cast(json ->> '$.latency_ms' as double), [0.5, 0.95, 0.99]) "
                f"from read_json_objects({files}, format = 'newline_delimited', "
                f"ignore_errors = true) group by all"
            ).fetchall(),
            args.repeat,
        )
        register_functions(con)  # the scrubber of suspect fields, as parse() does
        sql = parse_sql()
        out["parse_s"] = timed(lambda: con.execute(sql), args.repeat)
        print(f"floor (read, parse, aggregate):   {out['floor_s']:7.2f}s")
        print(f"ingest parse statement:           {out['parse_s']:7.2f}s "
              f"({out['parse_s'] / out['floor_s']:.1f}x the floor)\n")  # fmt: skip

        taken = parse(con, fast=True)
        fast_sql = fast_path.fast_sql("lines", 1 << 20)
        out["parse_off_s"] = timed(lambda: parse(con, fast=False), args.repeat)
        out["parse_on_s"] = timed(lambda: parse(con, fast=True), args.repeat)
        out["fast_s"] = timed(lambda: con.execute(fast_sql), args.repeat)
        out["fast_lines"] = taken
        ratio = out["parse_on_s"] / out["floor_s"]
        print(f"parse, fast path off (full only): {out['parse_off_s']:7.2f}s")
        print(f"parse, fast path on:              {out['parse_on_s']:7.2f}s ({ratio:.1f}x the "
              f"floor); the fast statement alone {out['fast_s']:.2f}s")  # fmt: skip
        print(f"the fast path took {taken:,} of {n:,} lines ({taken / n:.1%})\n")
        print("fast statement: CTE (materialised in turn)  cumulative   this step")
        out["fast_ctes"] = cte_times(con, dissect(fast_sql)[0], args.repeat, "fast_")

        ctes, columns = dissect(sql)
        print("\nfull statement: CTE (materialised in turn)  cumulative   this step")
        out["ctes"] = cte_times(con, ctes, args.repeat)
        last = ctes[-1][0]
        print(f"\nfinal SELECT columns, each alone over cte_{last} (overlapping; a ranking)")
        out["columns"] = {}
        baseline = timed(
            lambda: con.execute(f"select sum(hash(line_number)) from cte_{last}").fetchall(),
            args.repeat,
        )
        for alias, expr in columns:
            stmt = f"select sum(hash({expr})) from cte_{last}"
            try:
                seconds = timed(lambda stmt=stmt: con.execute(stmt).fetchall(), args.repeat)
            except duckdb.Error as error:
                print(f"  {alias:<30} (could not time: {str(error)[:60]})")
                continue
            out["columns"][alias] = round(seconds - baseline, 3)
        for alias, seconds in sorted(out["columns"].items(), key=lambda kv: -kv[1]):
            print(f"  {alias:<30} {seconds:9.2f}s")

        profile = Path(tmp) / "profile.json"
        con.execute("pragma enable_profiling = 'json'")
        con.execute(f"pragma profiling_output = '{profile}'")
        con.execute(sql)
        con.execute("pragma disable_profiling")
        operators: list[tuple[str, float]] = []

        def walk(node: dict, depth: int) -> None:
            name = node.get("operator_type") or node.get("operator_name") or "?"
            operators.append(("  " * depth + name, node.get("operator_timing", 0.0)))
            for child in node.get("children", []):
                walk(child, depth + 1)

        for child in json.loads(profile.read_text()).get("children", []):
            walk(child, 0)
        print("\nEXPLAIN ANALYZE operators (thread time, s)")
        for name, seconds in operators:
            if seconds >= 0.01:
                print(f"  {name:<40} {seconds:8.2f}")
        out["operators"] = [(name.strip(), round(s, 3)) for name, s in operators if s >= 0.01]
        if args.json:
            args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    sys.exit(main())
