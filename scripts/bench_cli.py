"""Benchmark: the command line on a big log, as a user runs it, against raw SQL.

Builds (or reuses, with --db) a log of N events (default 1,000,000) over M objects
(default 10,000), the same as scripts/bench_replay.py builds, then runs each command as
its own process, the way a user does, several times, and takes the median wall time and
the largest peak RSS. Each is printed next to a baseline run the same way: a Python
process that reads the same rows with raw sqlite3 and prints them (for --help: a process
that starts and imports nothing of gitops). Targets (issue #32):
- ``gitops --help`` and ``gitops log`` (the newest 1,000 rows, its default table) < 0.25 s;
- ``gitops replay --at T`` (both sides, YAML) < 2 s and < 150 MB;
- ``gitops status`` of 10,000 objects < 1 s, piped (plain rows);
- ``gitops audit --out-of-band`` (its default: the newest 1,000 rows) < 1 s, as each audit
  query (this log's cluster changes are all unattributed: every one is out of band), against
  a raw read of the newest 1,000 cluster changes with their payloads.
Printed for information, without a target of its own (the issue's "about a second"):
``gitops diff`` as text (a unified diff of each differing object, of the same rows status
reads), against the same raw read as status.

    python scripts/bench_cli.py [--events 1000000] [--objects 10000] [--db PATH] [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# This process imports nothing of gitops: a child's peak RSS (ru_maxrss) counts what it had
# when it was forked from here, so the log is built, and read, in children of their own.
PY = sys.executable
HERE = str(Path(__file__).resolve())


def build(path: Path, n: int, objects: int) -> None:
    import random

    from gitops.store import EventLog

    sys.path.insert(0, str(Path(HERE).parent))
    from bench_replay import make_event  # the same log as bench_replay's

    rng = random.Random(11)
    start = time.perf_counter()
    with EventLog(path) as log:
        for b in range(0, n, 5000):
            log.append([make_event(i, n, objects, rng) for i in range(b, min(n, b + 5000))])
        log.wal_idle(600)
    print(f"built {n:,} events over {objects:,} objects in {time.perf_counter() - start:.0f} s", flush=True)


def run(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one process, its output read and dropped as a pipe would."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None
    while proc.stdout.read(1 << 20):
        pass
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in (0, 1):  # status exits 1 when out of sync
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}")
    return seconds, usage.ru_maxrss / 1024


def measure(argv: list[str], env: dict[str, str], runs: int) -> tuple[float, float]:
    results = [run(argv, env) for _ in range(runs)]
    return statistics.median(s for s, _ in results), max(m for _, m in results)


RAW_LOG = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
rows = c.execute("SELECT seq, effective_at, type, resource, actor, revision FROM events ORDER BY seq DESC LIMIT 1000")
out = sys.stdout.write
for r in reversed(rows.fetchall()):
    out("\\t".join("" if v is None else str(v) for v in r) + "\\n")
"""

RAW_BY_HAND = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
rows = c.execute("SELECT seq, effective_at, type, resource, actor, payload FROM events "
                 "WHERE type IN ('cluster.observed', 'cluster.deleted') ORDER BY seq DESC LIMIT 1000")
out = sys.stdout.write
for r in reversed(rows.fetchall()):
    out("\\t".join("" if v is None else str(v) for v in r) + "\\n")
"""

RAW_STATE = """
import json, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
out = sys.stdout.write
for sql, params in ((sys.argv[2], sys.argv[4]), (sys.argv[3], sys.argv[5])):
    for (payload,) in c.execute(sql, json.loads(params)):
        out(payload + "\\n")
"""

RAW_CURRENT = """
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
out = sys.stdout.write
for row in c.execute("SELECT e.resource, e.payload FROM current_state s JOIN events e ON e.seq = s.seq "
                     "WHERE s.present = 1 ORDER BY s.resource"):
    out(row[0] + "\\t" + row[1] + "\\n")
"""


def state_sql(db: Path, at: str) -> list[str]:
    """The SQL the log runs for the state at ``at`` on each side, and its parameters."""
    from gitops.model.times import format_time, parse_time
    from gitops.store import EventLog
    from gitops.store import current as current_state

    with EventLog(db, create=False) as log:
        cur = log.conn.cursor()
        out = []
        for side in ("desired", "actual"):
            sql, params = current_state.state_at(cur, side, at=format_time(parse_time(at)))
            out.append(f"SELECT e.payload FROM ({sql}) s JOIN events e ON e.seq = s.seq ORDER BY e.resource")
            out.append(json.dumps(params))
    return [out[0], out[2], out[1], out[3]]


def line(what: str, got: tuple[float, float], base: tuple[float, float], target: str) -> None:
    print(f"{what:<34} {got[0]:6.2f} s {got[1]:6.0f} MB | raw {base[0]:6.2f} s {base[1]:5.0f} MB | "
          f"{got[0] / base[0]:5.1f}x | target {target}", flush=True)


def describe(db: Path) -> dict[str, object]:
    """The log's size, the moment to replay (half way through it) and the SQL of that state."""
    from datetime import timedelta

    from gitops.store import EventLog

    with EventLog(db, create=False) as log:
        n, first, last = log.count(), log.first_time(), log.last_time()
    assert first is not None and last is not None
    at = first + (last - first) / 2
    at_text = (at - timedelta(microseconds=at.microsecond)).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"events": n, "at": at_text, "sql": state_sql(db, at_text)}


def child(*args: str) -> str:
    return subprocess.run([PY, HERE, *args], capture_output=True, text=True, check=True).stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--objects", type=int, default=10_000)
    ap.add_argument("--db", type=Path, default=None, help="reuse this log (built there when it does not exist)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--build", action="store_true", help=argparse.SUPPRESS)  # a child's job
    ap.add_argument("--describe", action="store_true", help=argparse.SUPPRESS)  # a child's job
    args = ap.parse_args()
    if args.build:
        build(args.db, args.events, args.objects)
        return
    if args.describe:
        print(json.dumps(describe(args.db)))
        return
    with tempfile.TemporaryDirectory() as d:
        db = args.db or Path(d) / "log.db"
        if not db.exists():
            print(child("--build", "--db", str(db), "--events", str(args.events), "--objects", str(args.objects)),
                  end="", flush=True)
        env = {**os.environ, "GITOPS_DB": str(db), "NO_COLOR": "1"}
        env.pop("GITOPS_CONFIG", None)
        gitops = [PY, "-m", "gitops"]
        info = json.loads(child("--describe", "--db", str(db)))
        n, at_text, sql = info["events"], info["at"], info["sql"]
        print(f"log: {n:,} events; replay at {at_text}; medians of {args.runs} runs, each a process of its own")
        runs = args.runs
        line("gitops --help", measure([*gitops, "--help"], env, runs), measure([PY, "-c", "pass"], env, runs),
             "< 0.25 s")
        line("gitops log (newest 1,000)", measure([*gitops, "--read-only", "log"], env, runs),
             measure([PY, "-c", RAW_LOG, str(db)], env, runs), "< 0.25 s")
        line("gitops audit --out-of-band", measure([*gitops, "--read-only", "audit", "--out-of-band"], env, runs),
             measure([PY, "-c", RAW_BY_HAND, str(db)], env, runs), "< 1 s")
        line("gitops status (piped)", measure([*gitops, "--read-only", "status"], env, runs),
             measure([PY, "-c", RAW_CURRENT, str(db)], env, runs), "< 1 s")
        line("gitops diff (text, every object)", measure([*gitops, "--read-only", "diff"], env, runs),
             measure([PY, "-c", RAW_CURRENT, str(db)], env, runs), "none (about a second)")
        line("gitops replay --at T (yaml)", measure([*gitops, "--read-only", "replay", "--at", at_text], env, runs),
             measure([PY, "-c", RAW_STATE, str(db), *sql], env, runs), "< 2 s, < 150 MB")
        line("gitops replay --at T -o json", measure([*gitops, "--read-only", "replay", "--at", at_text, "-o",
                                                       "json"], env, runs),
             measure([PY, "-c", RAW_STATE, str(db), *sql], env, runs), "< 2 s, < 150 MB")


if __name__ == "__main__":
    main()
