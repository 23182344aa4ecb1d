"""The compliance report over a time range: a documented pydantic model (its JSON Schema is
``schema/report.schema.json``), built from the log alone with targeted, indexed queries.

Sections: summary; changes through Git (commit, author, committer, signature, objects,
when applied); out-of-band changes (who, what, when, and how each ended: adopted by Git,
reverted by self-heal or by hand, still differing); drift episodes; reconcile failures and
prunes; the integrity of the whole log (hash chain and head); coverage (the share of
cluster changes traced to a commit through the reconciler).
"""

from __future__ import annotations

import json
import multiprocessing
import statistics
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gitops.events.models import (
    DriftClosed,
    DriftOpened,
    GitCommit,
    ReconcileAction,
)
from gitops.model.bulk import cyclic_gc_paused
from gitops.model.clusters import cluster_name, cluster_origin
from gitops.model.note import Checkpoint as SignedCheckpoint
from gitops.model.note import NoteError, parse_checkpoint
from gitops.model.times import check_range, utc_now
from gitops.query.access import operator_identity
from gitops.query.audit import record_changes, record_how, summary
from gitops.query.integrity import latest_checkpoint
from gitops.query.report_evidence import access_rows, objects_by_commit
from gitops.query.report_health import health_episodes
from gitops.query.report_model import (
    ClusterSummary,
    ComplianceReport,
    Coverage,
    DriftEpisodeRow,
    GitChange,
    Integrity,
    Outcome,
    OutOfBandChange,
    PruneRow,
    ReconcileFailure,
    Summary,
)
from gitops.query.report_policy import ReportSettings, allowed_keys, approval_of
from gitops.query.report_scope import scope_of
from gitops.store import EventLog, VerifyResult, open_log
from gitops.store.current import ACTUAL_TYPES, DESIRED_TYPES

__all__ = ["ComplianceReport", "build_report", "report_json_schema"]


def report_json_schema() -> str:
    schema = ComplianceReport.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


_PENDING = Integrity(ok=False, checked=0, head_seq=None, head_hash=None,
                     problem="the integrity check has not finished")  # what ``meanwhile`` is given
_OUTCOME: dict[str, Outcome] = {"reconciled": "reverted by self-heal", "reverted": "reverted by hand",
                                "git-changed": "adopted by Git", "git-removed": "removed by Git", "deleted": "deleted"}


def _integrity_of(location: str, read_only: bool, immutable: bool) -> Integrity:
    """The integrity section of a PostgreSQL log, computed in a process of its own (see
    ``build_report``)."""
    with open_log(location, create=False, read_only=read_only, immutable=immutable) as log:
        return _integrity(log)


@contextmanager
def _integrity_meanwhile(log: EventLog) -> Iterator[Callable[[], Integrity]]:
    """Start the integrity check on a second process; the callable yielded gives the section.

    A SQLite log is checked in chunks (``EventLog.verify_meanwhile``): the second process
    takes them from the first on while this one makes the report; then this one checks the
    chunks the other has not begun, from the last back. (The whole check in the second
    process left this one idle for its last third on a 1M-event log; verify's chunks on two
    workers beside the report made three busy processes on two cores.) A PostgreSQL log is
    checked whole in the second process, the rows streamed from the server. Where no second
    process can be had (no POSIX semaphores, as in some containers, or one that died), it is
    checked here instead: slower, never missing."""
    if not log.postgresql:
        text, signed = _latest(log)
        with log.verify_meanwhile(at_sizes={signed.size} if signed else ()) as verified:
            yield lambda: _section(log, text, signed, verified())
        return
    try:
        pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    except (OSError, ImportError, NotImplementedError):
        yield lambda: _integrity(log)
        return
    with pool:
        pending = pool.submit(_integrity_of, log.location, log.read_only, log.immutable)

        def result() -> Integrity:
            try:
                return pending.result()
            except BrokenProcessPool:
                return _integrity(log)

        yield result


def _latest(log: EventLog) -> tuple[str | None, SignedCheckpoint | None]:
    """The latest signed checkpoint's text, and what it signs (None: unreadable)."""
    text = latest_checkpoint(log)
    try:
        return text, parse_checkpoint(text) if text else None
    except NoteError:
        return text, None


def _integrity(log: EventLog) -> Integrity:
    text, signed = _latest(log)
    return _section(log, text, signed, log.verify(at_sizes={signed.size} if signed else ()))


def _section(log: EventLog, text: str | None, signed: SignedCheckpoint | None, result: VerifyResult) -> Integrity:
    """The integrity section from what verify found and the latest signed checkpoint."""
    head = next(iter(log.read(descending=True, limit=1)), None)
    consistent = None if text is None else (
        signed is not None and result.checked >= signed.size and result.roots.get(signed.size) == signed.root)
    problem = None if result.ok else result.describe()
    if consistent is False:
        problem = ((problem + "; ") if problem else "") + "the log does not extend its latest signed checkpoint"
    return Integrity(ok=result.ok and consistent is not False, checked=result.checked,
                     head_seq=head.seq if head else None, head_hash=head.hash if head else None, problem=problem,
                     checkpoint=text, checkpoint_size=signed.size if signed else None,
                     consistent_with_checkpoint=consistent)


@dataclass
class _Drift:
    """The drift episodes the reconciler recorded, as of the end of the range."""

    episodes: dict[str, DriftEpisodeRow] = field(default_factory=dict)  # those the range touches
    by_cause: dict[int, str] = field(default_factory=dict)  # seq of the change that opened it -> episode
    closed_how: dict[str, str] = field(default_factory=dict)
    # (cluster, resource) -> (from, to, id): episodes are per object and per cluster
    spans: dict[tuple[str, str], list[tuple[int, int | None, str]]] = field(default_factory=dict)
    followed: tuple[int, int] = (0, 0)  # the seqs a reconciler's drift step has followed: (after, up to)

    def outcome(self, seq: int, cluster: str, resource: str) -> Outcome:
        """How a change by hand ended: by the episode it opened, or the one open on its object
        when it came (the reconciler folds a second change into the episode already open);
        with neither, "no drift" only if the reconciler's drift step followed it."""
        spans = [*self.spans.get((cluster, resource), ()), *self.spans.get(("", resource), ())]  # "": before
        eid = self.by_cause.get(seq) or next((e for start, end, e in spans  # episodes named their cluster
                                              if start < seq and (end is None or seq < end)), None)
        if eid is not None:
            return _OUTCOME.get(self.closed_how.get(eid, ""), "still differs")
        return "no drift" if self.followed[0] < seq <= self.followed[1] else "not checked"


def _followed(log: EventLog) -> tuple[int, int]:
    """The seqs the reconciler's drift step has followed, from the first reconcile pass (it
    starts from the state the log holds then) to its checkpoint (``reconciler:<instance>:drift``)."""
    first = next(iter(log.read(types=["reconcile.started"], limit=1)), None)
    up_to = max((v["seq"] for name, v in log.checkpoints("reconciler:").items()
                 if name.endswith(":drift") and isinstance(v, dict) and isinstance(v.get("seq"), int)), default=0)
    return (first.seq, up_to) if first is not None else (0, 0)


def _drift(log: EventLog, since: datetime, until: datetime) -> _Drift:
    d = _Drift(followed=_followed(log))
    opened_at: dict[str, tuple[str, datetime, str | None, list[str], str]] = {}
    started: dict[str, int] = {}  # episode -> seq of the change that opened it
    for r in log.read(types=["drift.opened", "drift.closed"], end=until):
        ev = r.event
        if isinstance(ev, DriftOpened) and ev.resource:
            opened_at[ev.payload.episode_id] = (ev.resource, ev.effective_at, ev.actor, list(ev.payload.fields),
                                                ev.payload.cluster)
            started[ev.payload.episode_id] = ev.payload.cause_seq or r.seq
            if ev.payload.cause_seq is not None:
                d.by_cause[ev.payload.cause_seq] = ev.payload.episode_id
            if ev.effective_at >= since:
                d.episodes[ev.payload.episode_id] = DriftEpisodeRow(
                    cluster=cluster_name(ev.payload.cluster), resource=ev.resource, opened_at=ev.effective_at,
                    closed_at=None, duration_seconds=None,
                    cause=ev.actor, resolution=None, fields=list(ev.payload.fields))
        elif isinstance(ev, DriftClosed) and ev.payload.episode_id in opened_at:
            d.closed_how[ev.payload.episode_id] = ev.payload.how
            resource, at, cause, fields, cluster = opened_at[ev.payload.episode_id]
            d.spans.setdefault((cluster, resource), []).append(
                (started[ev.payload.episode_id], ev.payload.cause_seq or r.seq, ev.payload.episode_id))
            if ev.effective_at >= since or ev.payload.episode_id in d.episodes:
                d.episodes[ev.payload.episode_id] = DriftEpisodeRow(
                    cluster=cluster_name(cluster), resource=resource, opened_at=at, closed_at=ev.effective_at,
                    duration_seconds=(ev.effective_at - at).total_seconds(), cause=cause, resolution=ev.payload.how,
                    fields=fields)
    for eid, (resource, at, cause, fields, cluster) in opened_at.items():
        if eid in d.closed_how:
            continue
        d.spans.setdefault((cluster, resource), []).append((started[eid], None, eid))  # still open
        if eid not in d.episodes:  # opened before the range, open through it
            d.episodes[eid] = DriftEpisodeRow(cluster=cluster_name(cluster), resource=resource, opened_at=at,
                                              closed_at=None, duration_seconds=None, cause=cause, resolution=None,
                                              fields=fields)
    return d


def _out_of_band(log: EventLog, rng: dict[str, Any], drift: _Drift) -> list[OutOfBandChange]:
    """Changes to objects Git manages, made by anyone but the reconciler."""
    out = []
    for r in log.read_audit(out_of_band=True, **rng):
        facts = r.payload_facts()
        assert r.type in ACTUAL_TYPES and r.resource is not None
        change = str(facts.change) if r.type == "cluster.observed" else "deleted"
        out.append(OutOfBandChange(
            seq=r.seq, time=datetime.fromisoformat(r.effective_at), cluster=cluster_name(facts.origin),
            actor=r.actor, via=facts.via,
            evidence=record_how(r, facts),
            candidates=facts.candidates or [], resource=r.resource, change=change,
            fields=summary(record_changes(r)), outcome=drift.outcome(r.seq, facts.origin or "", r.resource)))
    return out


def _git_changes(log: EventLog, rng: dict[str, Any], policy: ReportSettings) -> list[GitChange]:
    keys = allowed_keys(policy)
    applied = log.first_applied(start=rng["start"])
    by_commit = objects_by_commit(log, rng["start"])
    out = []
    for r in log.read(types=["git.commit"], **rng):
        ev = r.event
        assert isinstance(ev, GitCommit)
        p = ev.payload
        changed = by_commit.get((p.origin, p.sha), [])  # in this source's desired state
        out.append(GitChange(
            commit=p.sha, time=ev.effective_at, author=p.author.name, author_email=p.author.email,
            committer=p.committer.name, committer_email=p.committer.email, signed=p.signed,
            signer_key=p.signer_key, valid=p.valid, source=p.origin, objects=len(changed), changed=changed,
            applied_at=applied.get(p.sha), approval=approval_of(p, policy, keys),
            message=p.message.splitlines()[0] if p.message else "", rollback_to=p.rollback_to))
    return out


def _actions(log: EventLog, rng: dict[str, Any]) -> tuple[list[ReconcileFailure], list[PruneRow]]:
    failures = []
    for r in log.read(types=["reconcile.action"], result="failed", dry_run=False, **rng):
        ev = r.event
        assert isinstance(ev, ReconcileAction)
        failures.append(ReconcileFailure(seq=r.seq, time=ev.effective_at, cluster=cluster_name(ev.payload.cluster),
                                         resource=ev.resource,
                                         action=ev.payload.action, code=ev.payload.code, reason=ev.payload.reason,
                                         error=ev.payload.error, terminal=ev.payload.terminal))
    prunes = []
    for action in ("prune", "recreate"):
        for r in log.read(types=["reconcile.action"], action=action, **rng):
            ev = r.event
            assert isinstance(ev, ReconcileAction)
            prunes.append(PruneRow(seq=r.seq, time=ev.effective_at, cluster=cluster_name(ev.payload.cluster),
                                   resource=ev.resource, result=ev.payload.result, dry_run=ev.payload.dry_run,
                                   recreated=action == "recreate", uid=ev.payload.uid))
    return failures, sorted(prunes, key=lambda p: p.seq)


@cyclic_gc_paused()  # hundreds of thousands of acyclic rows held at once: see gitops.model.bulk
def build_report(log: EventLog, since: datetime, until: datetime,
                 policy: ReportSettings | None = None, *, clusters: Sequence[str] = (),
                 meanwhile: Callable[[ComplianceReport], object] | None = None) -> ComplianceReport:
    """The report of ``[since, until)`` (valid time); of those clusters (origins) only,
    when ``clusters`` names some (Git's changes are every cluster's).

    The integrity check reads and hashes the whole log, whatever the range: about half of
    a report's time. It runs meanwhile in a second process, on another core (hashing in
    Python holds the GIL, so a thread would not overlap), and on this one too once the
    report is made (``_integrity_meanwhile``). Started with ``spawn``, as the
    multiprocessing documentation says, a script that calls this must guard its own code
    with ``if __name__ == "__main__":``. ``meanwhile`` is given the report before its
    integrity section is known (that section is a placeholder in it, never to be shown),
    while the check still runs: work that reads everything else (the HTML's big tables,
    ``report_render.prepare_html``) is done then, on this core. The projection tables are
    not part of the chain: the list of objects Git manages is always checked against the
    log's desired events; with ``policy.verify_projections`` every table is (each change's
    fields too), else the integrity section says the fields were not checked."""
    check_range(since, until)
    policy = policy or ReportSettings()
    rng: dict[str, Any] = {"start": since, "end": until}
    crng: dict[str, Any] = {**rng, "clusters": list(clusters)} if clusters else rng  # what happened in a cluster
    with _integrity_meanwhile(log) as integrity_result:
        drift = _drift(log, since, until)
        if clusters:
            drift.episodes = {k: e for k, e in drift.episodes.items() if cluster_origin(e.cluster) in clusters}
        out_of_band = _out_of_band(log, crng, drift)
        git_changes = _git_changes(log, rng, policy)
        failures, prunes = _actions(log, crng)
        health = health_episodes(log, since, until)
        durations = [e.duration_seconds for e in drift.episodes.values() if e.duration_seconds is not None]
        cluster_changes = log.count_where(types=ACTUAL_TYPES, desired_only=True, **crng)
        traced = cluster_changes - len(out_of_band)
        user, host = operator_identity()
        report = ComplianceReport(
            generated_at=utc_now(), generated_by=f"{user}@{host}", since=since, until=until, integrity=_PENDING,
            summary=Summary(
                changes=log.count_where(types=DESIRED_TYPES, **rng) + log.count_where(types=ACTUAL_TYPES, **crng),
                commits=len({g.commit for g in git_changes}),  # a commit two sources read is one commit
                authors=sorted({g.author_email for g in git_changes}), out_of_band_changes=len(out_of_band),
                drift_episodes=len(drift.episodes),
                mean_time_to_remediate_seconds=statistics.fmean(durations) if durations else None,
                max_time_to_remediate_seconds=max(durations) if durations else None,
                reconcile_passes=log.count_where(types=["reconcile.started"], modes=("apply", "detect-only"), **crng),
                dry_run_passes=log.count_where(types=["reconcile.started"], modes=("dry-run",), **crng),
                reconcile_failures=len(failures),
                approval_exceptions=sum(1 for g in git_changes if g.approval is not None and g.approval.exception),
                require=policy.require, degraded_episodes=sum(1 for h in health if h.status == "Degraded")),
            git_changes=git_changes, rollbacks=[g for g in git_changes if g.rollback_to], out_of_band=out_of_band,
            drift_episodes=sorted(drift.episodes.values(), key=lambda e: e.opened_at), reconcile_failures=failures,
            prunes=prunes, access=access_rows(log, rng), health=health, scope=scope_of(log, since, until),
            coverage=Coverage(cluster_changes=cluster_changes, traced_to_commit=traced,
                              share=round(traced / cluster_changes, 4) if cluster_changes else None),
            clusters=_by_cluster(log, rng, out_of_band, list(drift.episodes.values()), failures, prunes, clusters))
        if meanwhile is not None:
            meanwhile(report)
        # here, while the chain's check runs on in the other process: the projection tables against the log,
        # all of them when asked, else which objects Git manages (what decides that a change was out of band)
        problems = log.verify_projections() if policy.verify_projections else _managed_problems(log)
        integrity = integrity_result()
    return report.model_copy(update={"integrity": _with_projections(integrity, problems,
                                                                    whole=policy.verify_projections)})


def _managed_problems(log: EventLog) -> list[str]:
    """Where the current state's list of objects Git manages (``MANAGED``: what makes a
    change out of band) differs from the objects the log's desired events name: an object
    taken out of the table hides every change by hand to it. A second on a 1M-event log."""
    table, events = log.managed_resources(), set(log.distinct_resources(DESIRED_TYPES))
    return ([f"{r}: the log's desired events name it, but the current state does not list it as desired"
             for r in sorted(events - table)] +
            [f"{r}: the current state lists it as desired, but no desired event names it"
             for r in sorted(table - events)])


def _with_projections(integrity: Integrity, problems: list[str], *, whole: bool) -> Integrity:
    """The integrity section with what the projection check found (``whole``: every table,
    else the list of objects Git manages). The tables are not part of the chain: a row
    changed there (an object Git manages taken out of the current state, a change's fields
    rewritten) changes what the report says while the chain still verifies."""
    if not problems:
        return integrity.model_copy(update={"projections_checked": whole})
    said = (f"the projection tables the report reads differ from the log in {len(problems)} "
            f"place{'' if len(problems) == 1 else 's'} ('gitops init --rebuild-projections' rebuilds them from it)")
    return integrity.model_copy(update={
        "ok": False, "projections_checked": whole, "projection_problems": problems[:20],
        "problem": f"{integrity.problem}; {said}" if integrity.problem else said})


def _by_cluster(log: EventLog, rng: dict[str, Any], out_of_band: list[OutOfBandChange],
                episodes: list[DriftEpisodeRow], failures: list[ReconcileFailure],
                prunes: list[PruneRow], only: Sequence[str]) -> list[ClusterSummary]:
    """Each cluster's counts (of ``only``, origins, when given): from its rows above, and its
    changes counted in the log."""
    names = sorted({cluster_name(c) for c in log.clusters()}
                   | {r.cluster for rows in (out_of_band, episodes, failures, prunes) for r in rows if r.cluster})
    if only:
        names = [n for n in names if cluster_origin(n) in only]
    return [ClusterSummary(
        cluster=name, changes=log.count_where(types=ACTUAL_TYPES, clusters=[cluster_origin(name)], **rng),
        out_of_band_changes=sum(1 for o in out_of_band if o.cluster == name),
        drift_episodes=sum(1 for e in episodes if e.cluster == name),
        reconcile_failures=sum(1 for f in failures if f.cluster == name),
        prunes=sum(1 for p in prunes if p.cluster == name)) for name in names]


if __name__ == "__main__":  # make schema
    import sys

    Path(sys.argv[1]).write_text(report_json_schema())
