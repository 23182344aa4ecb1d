"""Benchmark: audit queries, blame and a month's report on a large log.

Builds a log of N events (default 1,000,000) over 30 simulated days through the real
``append``: commits by five authors and their desired.* events, cluster changes (most by
the reconciler, a fifth by audited users: out of band), reconcile passes and actions
(some failed), drift episodes, and one object changed 1,000 times. ``--by-hand`` sets the
share of cluster changes made out of band (default 0.2: a heavy case). Then times, in the same
run, each query as ``gitops audit`` runs it (rows read, each with its changed fields) next to
a raw SQL fetch of the same rows with their payloads (both warmed, then alternated three
times; medians), and a raw SQL count of them for reference:
- one object's history; one actor over a week; out-of-band changes over a month;
- blame of the object with 1,000 versions;
- a month's report in HTML, JSON and CSV, including the full integrity check.
Targets (issue #32): each audit query under 1 s and within 5x of the raw fetch; the HTML
report under 10 s.

    python scripts/bench_audit.py [--events 1000000] [--db PATH]
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from gitops.events.models import (
    AnyEvent,
    Attribution,
    ClusterObserved,
    DesiredApplied,
    DriftClosed,
    DriftOpened,
    GitCommit,
    ReconcileAction,
    ReconcileFinished,
)
from gitops.projections import Moment
from gitops.query.audit import audit_rows
from gitops.query.blame import blame
from gitops.query.report import build_report
from gitops.query.report_render import HtmlParts, prepare_html, render_html, write_csv
from gitops.store import EventLog
from gitops.store.filters import OUT_OF_BAND

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAYS = 30
AUTHORS = [f"dev{i}@example.com" for i in range(5)]
USERS = ["alice", "bob", "carol"]
HOT = "ConfigMap/team-0/hot"


def _manifest(name: str, ns: str, version: int) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns, "labels": {
        "app": "x", "gitops.dev/instance": "default"}}, "data": {"version": str(version), "mode": "production"}}


class Builder:
    def __init__(self, n: int, objects: int, seed: int = 7, by_hand: float = 0.2) -> None:
        self.n, self.objects, self.rng = n, objects, random.Random(seed)
        self.by_hand = by_hand
        self.commit = "0" * 40
        self.run_id = "r0"

    def at(self, i: int) -> datetime:
        return T0 + timedelta(seconds=DAYS * 86400 * i / self.n)

    def event(self, i: int) -> AnyEvent:
        rng, at = self.rng, self.at(i)
        if i % 1000 == 0:  # the hot object: 1,000 versions over the month
            return ClusterObserved.model_validate({
                "id": f"e{i}", "source": "cluster", "resource": HOT, "actor": rng.choice(USERS), "effective_at": at,
                "revision": str(i), "payload": {"manifest": _manifest("hot", "team-0", i), "resource_version": str(i),
                                                "change": "modified", "origin": "cluster:x",
                                                "attribution": Attribution.AUDIT}})
        if i % 200 == 1:
            self.commit = f"{i:040x}"
            author = rng.choice(AUTHORS)
            return GitCommit.model_validate({
                "id": f"e{i}", "source": "git", "actor": author, "effective_at": at, "revision": self.commit,
                "payload": {"sha": self.commit, "parents": [], "branch": "main", "repository": "/r",
                            "origin": "git:/r#main", "message": "change",
                            "author": {"name": "Dev", "email": author, "time": at},
                            "committer": {"name": "Dev", "email": author, "time": at}}})
        if i % 200 == 2:
            self.run_id = f"r{i}"
            return ReconcileFinished.model_validate({
                "id": f"e{i}", "source": "reconciler", "actor": "gitops", "effective_at": at,
                "payload": {"run_id": self.run_id, "status": "succeeded", "updated": 3}})
        obj = rng.randrange(self.objects)
        key, name, ns = f"ConfigMap/team-{obj % 50}/cm-{obj:05d}", f"cm-{obj:05d}", f"team-{obj % 50}"
        roll = rng.random()
        if roll < 0.35:
            return DesiredApplied.model_validate({
                "id": f"e{i}", "source": "git", "resource": key, "actor": rng.choice(AUTHORS), "effective_at": at,
                "revision": self.commit, "payload": {"manifest": _manifest(name, ns, i), "commit": self.commit,
                                                     "path": "p.yaml", "document_index": 0, "origin": "git:/r#main"}})
        if roll < 0.85:
            by_hand = rng.random() < self.by_hand
            return ClusterObserved.model_validate({
                "id": f"e{i}", "source": "cluster", "resource": key,
                "actor": rng.choice(USERS) if by_hand else "gitops", "effective_at": at, "revision": str(i),
                "payload": {"manifest": _manifest(name, ns, i), "resource_version": str(i), "change": "modified",
                            "origin": "cluster:x",
                            "attribution": Attribution.AUDIT if by_hand else Attribution.RECONCILER}})
        if roll < 0.97:
            failed = rng.random() < 0.05
            return ReconcileAction.model_validate({
                "id": f"e{i}", "source": "reconciler", "resource": key, "actor": "gitops", "effective_at": at,
                "payload": {"run_id": self.run_id, "action": "update", "result": "failed" if failed else "succeeded",
                            "commit": self.commit,
                            **({"error": "HTTP 422 Invalid: no", "code": 422} if failed else {})}})
        episode = f"ep{obj}"
        if roll < 0.985:
            return DriftOpened.model_validate({"id": f"e{i}", "source": "reconciler", "resource": key,
                                               "actor": rng.choice(USERS), "effective_at": at,
                                               "payload": {"episode_id": episode, "cause_seq": i}})
        return DriftClosed.model_validate({"id": f"e{i}", "source": "reconciler", "resource": key, "actor": "gitops",
                                           "effective_at": at, "payload": {"episode_id": episode, "how": "reconciled"}})


def timed(f: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = f()
    return time.perf_counter() - start, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--objects", type=int, default=10_000)
    ap.add_argument("--by-hand", type=float, default=0.2, help="share of cluster changes made by hand (out of band)")
    ap.add_argument("--db", type=Path, default=None,
                    help="reuse the log built there by an earlier run with the same options (built when absent)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = args.db or Path(d) / "log.db"
        if not path.exists():
            b = Builder(args.events, args.objects, by_hand=args.by_hand)
            t, _ = timed(lambda: _build(path, b, args.events))
            print(f"built {args.events:,} events in {t:.0f}s")
        raw = sqlite3.connect(path)
        week = (T0 + timedelta(days=7), T0 + timedelta(days=14))
        month = (T0, T0 + timedelta(days=DAYS))
        one = "ConfigMap/team-7/cm-00007"
        queries: list[tuple[str, Callable[[EventLog], Any], str, tuple[Any, ...]]] = [
            ("one object's history", lambda log: list(audit_rows(log, resource=one)),
             "resource = ?", (one,)),
            ("one actor over a week", lambda log: list(audit_rows(log, actor="alice", since=week[0], until=week[1])),
             "actor = ? AND effective_at >= ? AND effective_at < ?", ("alice", _t(week[0]), _t(week[1]))),
            ("out-of-band over a month", lambda log: list(audit_rows(log, out_of_band=True, since=month[0],
                                                                     until=month[1])),
             f"{OUT_OF_BAND} AND resource IN (SELECT resource FROM current_state WHERE side = 'desired') "
             "AND effective_at >= ? AND effective_at < ?", (_t(month[0]), _t(month[1]))),
            ("blame of 1,000 versions", lambda log: blame(log, HOT, Moment(month[1])),
             "resource = ?", (HOT,)),
        ]
        with EventLog(path, create=False) as log:
            for name, query, where, params in queries:
                def ask(q: Callable[[EventLog], Any] = query) -> Any:
                    return q(log)

                def fetch(w: str = where, p: tuple[Any, ...] = params) -> list[Any]:
                    return _fetch(raw, w, p)

                rows, _ = ask(), fetch()  # both warmed once, untimed
                q_runs, f_runs = [], []
                for _ in range(3):  # then alternating, so that the machine's noise falls on both alike
                    q_runs.append(timed(ask)[0])
                    f_runs.append(timed(fetch)[0])
                q_s, f_s = statistics.median(q_runs), statistics.median(f_runs)
                c_s, count = timed(lambda w=where, p=params: _count(raw, w, p))  # type: ignore[misc]
                print(f"{name:26s} {q_s * 1000:8.0f} ms for {len(rows):6,} rows ({count:,} events); raw fetch of "
                      f"the same rows with their payloads {f_s * 1000:6.1f} ms ({q_s / f_s:4.1f}x); raw count "
                      f"{c_s * 1000:6.1f} ms  [targets < 1 s, <= 5x the raw fetch]")
            for fmt in ("html", "json", "csv"):
                def run(fmt: str = fmt) -> None:  # as 'gitops report' does: the HTML's tables made meanwhile
                    parts: list[HtmlParts] = []
                    r = build_report(log, month[0], month[1], meanwhile=(
                        lambda body: parts.append(prepare_html(body))) if fmt == "html" else None)
                    if fmt == "html":
                        render_html(r, parts[0])
                    elif fmt == "json":
                        r.model_dump_json()
                    else:
                        write_csv(r, Path(d) / "csv")
                r_s, _ = timed(run)
                print(f"a month's report, {fmt:4s}    {r_s:6.1f} s (integrity check of all {log.count():,} events "
                      f"included){'  [target < 10 s]' if fmt == 'html' else ''}")
            v_s, _ = timed(log.verify)
            s_s, _ = timed(lambda: sum(1 for _ in raw.execute("SELECT * FROM events ORDER BY seq")))
            print(f"of which verify            {v_s:6.1f} s; bare scan {s_s:.1f} s ({v_s / s_s:.2f}x)")


def _table(where: str) -> str:
    """The raw baseline is given the same index as the query when it asks for the same rows."""
    return "events INDEXED BY events_by_hand" if where.startswith(OUT_OF_BAND) else "events"


def _count(raw: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> int:
    return int(raw.execute(f"SELECT count(*) FROM {_table(where)} WHERE {where}", params).fetchone()[0])


def _fetch(raw: sqlite3.Connection, where: str, params: tuple[Any, ...]) -> list[Any]:
    return raw.execute(f"SELECT * FROM {_table(where)} WHERE {where}", params).fetchall()


def _t(t: datetime) -> str:
    from gitops.model.times import format_time

    return format_time(t)


def _build(path: Path, b: Builder, n: int) -> None:
    with EventLog(path) as log:
        for start in range(0, n, 5000):
            log.append([b.event(i) for i in range(start, min(n, start + 5000))])


if __name__ == "__main__":
    main()
