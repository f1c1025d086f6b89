"""Run one command as a child process and measure its wall time and the peak RSS of its tree.

Two memory figures per child, because neither alone is enough:

- ``tree_peak_rss``: the largest *sum* of RSS over the child and all its descendants, sampled
  with psutil every ``interval`` seconds (what the machine must hold at once; a peak shorter
  than the interval can be missed);
- ``max_rss``: the kernel's exact high-water mark of the largest single process in the tree
  (``ru_maxrss`` from ``wait4`` of the child, which covers the descendants it reaped).

The sampled sums are kept as a timeline (epoch seconds, bytes), so that the peak of one part of
a long run (one Airflow task of ``inferwatch run``) can be read off it afterwards.

``TreeSampler`` alone samples process trees this process did not start and does not wait for
(a deployment of servers started by pid file: ``benchmarks/freshness.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

MB = 1 << 20


def add_output_arguments(parser: argparse.ArgumentParser, default_out: str) -> None:
    """--keep, --out, --render and --readme: the options every benchmark command shares."""
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    parser.add_argument("--out", type=Path, help=f"results JSON (default {default_out})")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS_JSON",
        help="measure nothing: print (with --readme, append) a saved run's table",
    )
    parser.add_argument(
        "--readme", action="store_true", help="append the Markdown table to benchmarks/README.md"
    )


@dataclass
class Measured:
    label: str
    wall_s: float
    returncode: int
    tree_peak_rss: int  # bytes, sampled
    max_rss: int  # bytes, kernel high-water mark of the largest single process
    samples: int
    load_avg: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at start and at end
    log: str = ""
    extra: dict = field(default_factory=dict)
    timeline: list[tuple[float, int]] = field(default_factory=list, repr=False)

    def peak_between(self, start: float, end: float) -> int:
        """The largest sampled tree RSS between two epoch times (0 if none was sampled)."""
        return max((rss for t, rss in self.timeline if start <= t <= end), default=0)

    @property
    def peak_rss(self) -> int:
        return max(self.tree_peak_rss, self.max_rss)

    def as_dict(self) -> dict:
        return {
            "label": self.label,
            "wall_s": round(self.wall_s, 3),
            "returncode": self.returncode,
            "tree_peak_rss_mb": round(self.tree_peak_rss / MB, 1),
            "max_rss_mb": round(self.max_rss / MB, 1),
            "peak_rss_mb": round(self.peak_rss / MB, 1),
            "rss_samples": self.samples,
            "load_avg_start_end": [round(x, 2) for x in self.load_avg],
            "log": self.log,
            **self.extra,
        }


class TreeSampler(threading.Thread):
    """Samples the summed RSS of process trees every ``interval`` seconds, in a thread.

    ``roots()`` names the trees' root pids at each sample ({name: pid}), so that a deployment
    whose servers start, restart or fork workers later is followed as it is; a process in two
    trees counts once. ``peak_parts`` is each root's share at the moment of the peak.
    """

    def __init__(self, roots: Callable[[], dict[str, int]], interval: float):
        super().__init__(daemon=True)
        self.roots = roots
        self.interval = interval
        self.peak = 0
        self.peak_parts: dict[str, int] = {}
        self.samples = 0
        self.timeline: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def sample(self) -> tuple[int, dict[str, int]] | None:
        seen: set[int] = set()
        parts: dict[str, int] = {}
        for name, pid in self.roots().items():
            try:
                root = psutil.Process(pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for proc in procs:
                if proc.pid in seen:
                    continue
                seen.add(proc.pid)
                with contextlib.suppress(psutil.Error):
                    parts[name] = parts.get(name, 0) + proc.memory_info().rss
        return (sum(parts.values()), parts) if seen else None

    def run(self) -> None:
        while not self._halt.is_set():
            measured = self.sample()
            if measured is None and self.samples:
                break  # every tree has exited
            if measured is not None:
                total, parts = measured
                if total > self.peak:
                    self.peak, self.peak_parts = total, parts
                self.samples += 1
                self.timeline.append((time.time(), total))
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _TreeSampler(pid: int, interval: float) -> TreeSampler:  # noqa: N802 (the one-child case)
    return TreeSampler(lambda: {"child": pid}, interval)


def run_measured(
    label: str,
    argv: list[str],
    *,
    env: dict[str, str],
    log_path: Path,
    cwd: Path | None = None,
    interval: float = 0.1,
    timeout: float | None = None,
    check: bool = True,
) -> Measured:
    """Run ``argv`` to completion; stdout and stderr go to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    load_start = os.getloadavg()[0]
    with log_path.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
        sampler = _TreeSampler(proc.pid, interval)
        sampler.start()
        deadline = None if timeout is None else started + timeout
        try:
            while True:
                # wait4 (not Popen.wait) to get this child's own resource usage.
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if deadline is not None and time.perf_counter() > deadline:
                    proc.kill()  # our own child, by pid
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.02)
        except BaseException:
            proc.kill()
            os.wait4(proc.pid, 0)
            raise
        finally:
            sampler.stop()
        wall = time.perf_counter() - started
    returncode = os.waitstatus_to_exitcode(status)
    proc.returncode = returncode  # Popen must not try to reap it again
    measured = Measured(
        label=label,
        wall_s=wall,
        returncode=returncode,
        tree_peak_rss=sampler.peak,
        max_rss=usage.ru_maxrss * 1024,  # Linux reports KiB
        samples=sampler.samples,
        load_avg=(load_start, os.getloadavg()[0]),
        log=str(log_path),
        timeline=sampler.timeline,
    )
    if check and returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-40:]
        raise RuntimeError(f"{label} exited with {returncode}; log {log_path}:\n" + "\n".join(tail))
    return measured
