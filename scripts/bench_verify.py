"""Benchmark: ``EventLog.verify`` on a large log runs in bounded memory.

Builds a log of N events (default 1,000,000) through the real ``append``, then verifies it
in one pass and as ``gitops verify`` does on a big log (in chunks on every core:
``gitops.store.verify_pool``), and reports the rates and the Python heap peak of the one
pass (tracemalloc), next to a baseline in the same run: a bare ``SELECT`` scan of the same
rows that hashes nothing. The peak must not grow with N: run with --events 100000 and
1000000 to compare. The heap is measured in another verify under tracemalloc, not in the
timed one. Target: within 3x of the bare scan.

    python scripts/bench_verify.py [--events 1000000]
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
import tracemalloc
from pathlib import Path

from bench_append import build_event

from gitops.store import EventLog


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "log.db"
        with EventLog(path) as log:
            for b in range(0, args.events, 2000):
                log.append([build_event(i) for i in range(b, min(args.events, b + 2000))])
            # timed without tracemalloc, which slows every allocation several times over (the
            # 37k events/s, 11x the scan, that an earlier version of this script printed)
            start = time.perf_counter()
            result = log.verify(parallel=False)
            verify_s = time.perf_counter() - start
            start = time.perf_counter()
            assert log.verify().ok
            chunked_s = time.perf_counter() - start
            tracemalloc.start()  # then, in another run, the memory it needs
            log.verify(parallel=False)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
        assert result.ok, result.describe()
        conn = sqlite3.connect(path)
        start = time.perf_counter()
        n = sum(1 for _ in conn.execute("SELECT * FROM events ORDER BY seq"))
        scan_s = time.perf_counter() - start
        conn.close()
    assert n == args.events
    print(f"events: {args.events}")
    print(f"verify, one pass:             {args.events / verify_s:10,.0f} events/s ({verify_s:.1f} s), "
          f"Python heap peak {peak / 1e6:.2f} MB")
    print(f"verify, on every core:        {args.events / chunked_s:10,.0f} events/s ({chunked_s:.1f} s)")
    print(f"bare SELECT scan (baseline):  {args.events / scan_s:10,.0f} rows/s ({scan_s:.1f} s)")
    print(f"ratio: verify takes {verify_s / scan_s:.2f}x the bare scan's time in one pass, "
          f"{chunked_s / scan_s:.2f}x on every core (target <= 3x)")


if __name__ == "__main__":
    main()
