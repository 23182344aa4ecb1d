"""Benchmark: the event log on PostgreSQL, each figure against a baseline in the same run.

1. Append, one writer: N events of about 1 KB (scripts/bench_append.py's Deployments), built
   and appended in batches of 500 through ``PostgresEventLog.append`` (validation,
   redaction, chain, idempotency, checkpoint, projections, the append lock), against
   ``COPY events FROM STDIN`` of the very same rows into an identical table of another
   database (same schema and indexes).
2. Append, eight writers: eight processes append N/8 events each at once, against eight
   processes each copying its share of the same rows at once; meanwhile a reader tails the
   log (``read(since_seq=...)``) and the lag of each event (seen - recorded) is measured:
   p50 and p99.
3. Reads on a generated log of M events (scripts/bench_audit.py's month of 10,000
   objects), made in SQLite and copied to PostgreSQL with ``gitops copy``: state at T (the
   actual state at mid-month) and an audit query (one actor over a week), warm, alternated,
   median of 5, on PostgreSQL against the same on SQLite.

    eval "$(scripts/local-postgres env)"
    python scripts/bench_postgres.py [--events 40000] [--read-events 100000]
    python scripts/bench_postgres.py --read-events 1000000     # the issue's 1M-event figure

Needs a server whose user may create databases: --url, or GITOPS_TEST_POSTGRES.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_append
import bench_audit

from gitops.model.times import utc_now
from gitops.projections import Moment, actual_at
from gitops.query.audit import audit_rows
from gitops.store import Checkpoint, EventLog
from gitops.store.copy import copy_log
from gitops.store.postgres import PostgresEventLog
from gitops.store.rows import STORED as COLUMNS  # the rows as stored (packed or not)

BATCH = 500


@contextmanager
def database(server: str) -> Iterator[str]:
    name = f"gitops_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}".encode())
    try:
        yield server.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(server, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)".encode())


def append_share(url: str, first: int, count: int) -> None:
    """One writer's share: events ``first`` .. ``first + count`` in batches, as a source writes them."""
    with PostgresEventLog(url) as log:
        for start in range(first, first + count, BATCH):
            n = min(BATCH, first + count - start)
            log.append([bench_append.build_event(i) for i in range(start, start + n)],
                       checkpoint=Checkpoint(f"bench:{first}", start))


def copy_share(url: str, rows: list[tuple[Any, ...]]) -> None:
    """The baseline's share: the same rows, copied in batches of the same size."""
    with psycopg.connect(url, autocommit=True) as c:
        for start in range(0, len(rows), BATCH):
            with c.transaction(), c.cursor().copy(f"COPY events ({', '.join(COLUMNS)}) FROM STDIN".encode()) as cp:
                for row in rows[start:start + BATCH]:
                    cp.write_row(row)


def insert_share(url: str, rows: list[tuple[Any, ...]]) -> None:
    """The other baseline: the same rows by executemany of INSERTs (psycopg pipelines them)."""
    sql = f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join(['%s'] * len(COLUMNS))})"
    with psycopg.connect(url, autocommit=True) as c:
        for start in range(0, len(rows), BATCH):
            with c.transaction():
                c.cursor().executemany(sql.encode(), rows[start:start + BATCH])


def rows_of(url: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as c:
        return [tuple(r) for r in c.execute(f"SELECT {', '.join(COLUMNS)} FROM events ORDER BY seq".encode())]


def empty_log(url: str) -> None:
    PostgresEventLog(url).close()  # the schema, as the log makes it


def tail(url: str, total: int, lags: list[float]) -> None:
    """Read what is appended, as a tailing reader does; the lag of each event it sees."""
    with PostgresEventLog(url, create=False) as log:
        cursor = 0
        while cursor < total:
            seen = list(log.read(since_seq=cursor))
            now = utc_now()
            for r in seen:
                lags.append((now - r.recorded_at).total_seconds())
            if seen:
                assert seen[0].seq == cursor + 1 and seen[-1].seq == cursor + len(seen)  # gapless, in order
                cursor = seen[-1].seq
            else:
                time.sleep(0.002)


def at_once(procs: list[Any]) -> float:
    """Seconds from starting ``procs`` together to the last one's end."""
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    return time.perf_counter() - start


def appends(server: str, n: int) -> None:
    spawn = multiprocessing.get_context("spawn")
    with database(server) as a, database(server) as b, database(server) as e:
        empty_log(b)
        empty_log(e)
        start = time.perf_counter()
        append_share(a, 0, n)
        ours = time.perf_counter() - start
        rows = rows_of(a)
        start = time.perf_counter()
        copy_share(b, rows)
        base = time.perf_counter() - start
        start = time.perf_counter()
        insert_share(e, rows)
        many = time.perf_counter() - start
    print(f"append, 1 writer, {n:,} events of ~1 KB, batches of {BATCH}:")
    print(f"  PostgresEventLog.append   {n / ours:10,.0f} events/s ({ours:.1f} s)")
    print(f"  COPY of the same rows     {n / base:10,.0f} events/s ({base:.1f} s)   ratio {base / ours:.2f}x")
    print(f"  executemany of them       {n / many:10,.0f} events/s ({many:.1f} s)   ratio {many / ours:.2f}x")

    writers = 8
    share = n // writers
    total = share * writers
    with database(server) as c, database(server) as d:
        empty_log(c)
        empty_log(d)
        lags: list[float] = []
        import threading

        reader = threading.Thread(target=tail, args=(c, total, lags))
        reader.start()
        ours = at_once([spawn.Process(target=append_share, args=(c, w * 1_000_000, share)) for w in range(writers)])
        reader.join()
        rows = rows_of(c)
        shares = [rows[w::writers] for w in range(writers)]  # any split: COPY has no order to keep
        base = at_once([spawn.Process(target=copy_share, args=(d, s)) for s in shares])
    lags.sort()
    print(f"append, {writers} writers at once, {total:,} events:")
    print(f"  PostgresEventLog.append   {total / ours:10,.0f} events/s ({ours:.1f} s)")
    print(f"  {writers} COPYs of the same rows {total / base:10,.0f} events/s ({base:.1f} s)   "
          f"ratio {base / ours:.2f}x")
    print(f"  a tailing reader's lag (seen - recorded): p50 {statistics.median(lags) * 1000:.0f} ms, "
          f"p99 {lags[int(len(lags) * 0.99)] * 1000:.0f} ms, over {len(lags):,} events (none skipped)")


def median_of(f: Callable[[], Any], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reads(server: str, m: int) -> None:
    with tempfile.TemporaryDirectory() as d, database(server) as url:
        path = Path(d) / "log.db"
        start = time.perf_counter()
        bench_audit._build(path, bench_audit.Builder(m, 10_000), m)
        built = time.perf_counter() - start
        with EventLog(path, create=False) as src, PostgresEventLog(url) as dst:
            start = time.perf_counter()
            copy_log(src, dst, batch=10_000)
            copied = time.perf_counter() - start
        print(f"reads on a generated log of {m:,} events (built in SQLite in {built:.0f} s, copied to PostgreSQL "
              f"with gitops copy in {copied:.0f} s):")
        mid = Moment(bench_audit.T0 + timedelta(days=bench_audit.DAYS / 2))
        week = (bench_audit.T0 + timedelta(days=7), bench_audit.T0 + timedelta(days=14))
        with EventLog(path, create=False) as sq, PostgresEventLog(url, create=False) as pg:
            queries: list[tuple[str, Callable[[EventLog], Any]]] = [
                ("state at T (actual, mid-month)", lambda log: actual_at(log, mid)),
                ("audit: one actor over a week", lambda log: list(audit_rows(log, actor="alice", since=week[0],
                                                                              until=week[1]))),
            ]
            for name, q in queries:
                a, b = q(sq), q(pg)  # warm both, and check they agree
                assert len(a) == len(b), (name, len(a), len(b))
                t_sq = t_pg = 0.0
                for _ in range(2):  # alternated
                    t_sq += median_of(lambda q=q: q(sq), 3)  # type: ignore[misc]
                    t_pg += median_of(lambda q=q: q(pg), 3)  # type: ignore[misc]
                print(f"  {name:<34} PostgreSQL {t_pg / 2 * 1000:8.0f} ms, SQLite {t_sq / 2 * 1000:8.0f} ms, "
                      f"ratio {t_pg / t_sq:.2f}x  ({len(a):,} rows)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=os.environ.get("GITOPS_TEST_POSTGRES"),
                    help="a database URL on the server (its user may create databases)")
    ap.add_argument("--events", type=int, default=40_000, help="events appended (1 writer, then 8)")
    ap.add_argument("--read-events", type=int, default=100_000, help="events of the generated log for reads")
    args = ap.parse_args()
    if not args.url:
        sys.exit("no server: pass --url or run `eval \"$(scripts/local-postgres env)\"`")
    print(f"{datetime.now():%Y-%m-%d %H:%M}, PostgreSQL at {args.url.split('@')[-1]}, {os.cpu_count()} cores")
    appends(args.url, args.events)
    reads(args.url, args.read_events)


if __name__ == "__main__":
    main()
