"""The compliance report as a self-contained HTML page (Jinja2 with autoescaping: every value
from the log is escaped; inline CSS and SVG, no network fetch) and as CSV files, one per
section."""

from __future__ import annotations

import csv
import functools
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from gitops.model.bulk import cyclic_gc_paused
from gitops.model.times import format_time
from gitops.query.cells import cell
from gitops.query.report import ComplianceReport
from gitops.query.report_scope import Gap

__all__ = ["cell", "render_html", "write_csv"]  # cell: gitops.query.cells, re-exported

_WIDTH, _HEIGHT = 1000, 150
_LANES = (("commits", 30, "#0969da"), ("out-of-band", 60, "#cf222e"), ("drift", 90, ""), ("failures", 120,
                                                                                          "#1b1f24"))


@functools.lru_cache(maxsize=1 << 16)  # the same time is written on many rows: a commit's, on each object's
def _t(value: datetime | None) -> str:
    """A time for people: to the second, UTC (the JSON and CSV keep the full precision).
    Written for each of hundreds of thousands of rows: one isoformat, no microseconds."""
    if value is None:
        return ""
    if value.tzinfo is not UTC:  # as format_time takes it: a naive time is UTC
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.isoformat(sep=" ", timespec="seconds")[:19] + "Z"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return ""
    if seconds < 60:
        return f"{seconds:.1f}s" if seconds >= 1 else f"{seconds * 1000:.0f}ms"
    return str(timedelta(seconds=round(seconds)))


def _timeline(r: ComplianceReport) -> dict[str, Any]:
    span = max((r.until - r.since).total_seconds(), 1.0)

    def x(t: datetime) -> float:
        return round(min(max((t - r.since).total_seconds() / span, 0.0), 1.0) * (_WIDTH - 20) + 10, 1)

    lanes = {name: (y, colour) for name, y, colour in _LANES}

    def dots(lane: str, items: list[tuple[datetime, str]]) -> list[dict[str, Any]]:
        """One dot per pixel of the lane: a dot stands for every item that falls on it and its
        title says how many (a month can hold thousands: one circle each is unreadable)."""
        bins: dict[int, list[tuple[datetime, str]]] = {}
        for t, title in items:
            bins.setdefault(round(x(t)), []).append((t, title))
        y, colour = lanes[lane]
        return [{"x": px, "y": y, "colour": colour,
                 "title": group[0][1] if len(group) == 1 else
                 f"{len(group)} {lane}, {_t(min(group)[0])} to {_t(max(group)[0])}"}
                for px, group in sorted(bins.items())]

    all_dots = dots("commits", [(g.time, f"{g.commit[:12]} by {g.author_email}") for g in r.git_changes])
    all_dots += dots("out-of-band", [(o.time, f"{o.resource} by {o.actor or 'unknown'}") for o in r.out_of_band])
    all_dots += dots("failures", [(f.time, f"{f.action} {f.resource} failed") for f in r.reconcile_failures])
    bars = []
    for e in r.drift_episodes:
        start, end = x(e.opened_at), x(e.closed_at or r.until)
        bars.append({"x": start, "y": lanes["drift"][0], "w": max(round(end - start, 1), 2.0),
                     "title": f"{e.resource}: {e.resolution or 'open'}"})
    return {"width": _WIDTH, "height": _HEIGHT, "dots": all_dots, "bars": bars,
            "lanes": [{"label": name, "y": y} for name, y, _ in _LANES]}


@functools.lru_cache(maxsize=65536)  # an object is linked from each commit that changed it
def _object_id(resource: str) -> str:
    """An HTML id for an object's rows: readable, and unique (a digest of the key)."""
    readable = re.sub(r"[^A-Za-z0-9_.-]", "-", resource)[:80]
    return f"obj-{readable}-{hashlib.sha256(resource.encode()).hexdigest()[:8]}"


def _objects(r: ComplianceReport) -> list[dict[str, Any]]:
    """Each object the report names, with its rows from every section, by key."""
    rows: dict[str, list[tuple[datetime, str]]] = {}
    for g in r.git_changes:
        said: dict[str, str] = {}  # a commit's line, by change: the same on each object it changed alike
        for o in g.changed:
            what = said.get(o.change) or said.setdefault(o.change, f"{o.change} by commit {g.commit[:12]} "
                                                                   f"({g.author_email})")
            rows.setdefault(o.resource, []).append((g.time, what))
    for c in r.out_of_band:
        rows.setdefault(c.resource, []).append(
            (c.time, f"{c.change} outside Git by {c.actor or 'unknown'}{f' via {c.via}' if c.via else ''}: "
                     f"{c.outcome}"))
    for p in r.prunes:
        if p.resource:
            what = "deleted and created again" if p.recreated else "pruned"
            rows.setdefault(p.resource, []).append((p.time, f"{what}: {p.result}{' (dry run)' if p.dry_run else ''}"))
    return [{"resource": k, "rows": sorted(v)} for k, v in sorted(rows.items())]


# The sections that grow with the log (each commit's objects, the out-of-band changes, the
# drift episodes, every object's rows: 350,000, 100,000, 8,000 and 450,000 on a busy month)
# are written here, each value escaped by markupsafe as the template's autoescape would: the
# same HTML, without a template expression per value (7.5 s of a 1M-event month's report
# went there).

# The values repeat (an object's key on each row about it, a commit's line on each of its
# objects, a handful of actors, outcomes and clusters): each distinct one is escaped once.
_e = functools.lru_cache(maxsize=1 << 17)(escape)


@functools.lru_cache(maxsize=1 << 16)
def _link(resource: str, change: str) -> str:
    """An object linked from a commit's row (the same object and change on many commits)."""
    return f'<a class="mono" href="#{_object_id(resource)}">{_e(resource)}</a> ({_e(change)})'


def _links(g: Any) -> Markup:
    return Markup(", ".join([_link(o.resource, o.change) for o in g.changed]))


def _out_of_band_rows(r: ComplianceReport) -> Markup:
    return Markup("".join(
        f'<tr><td>{_t(o.time)}</td><td class="mono">{_e(o.cluster)}</td><td>{_e(o.actor or "unknown")}'
        f"{_e(f' (via {o.via})') if o.via else ''}"
        f"{_e(' (maybe ' + ', '.join(o.candidates) + ')') if o.candidates else ''}</td>"
        f'<td>{_e(o.evidence)}</td><td class="mono">{_e(o.resource)}</td><td>{_e(o.change)}</td>'
        f'<td class="mono">{_e(o.fields)}</td><td>{_e(o.outcome)}</td></tr>\n' for o in r.out_of_band))


def _drift_rows(r: ComplianceReport) -> Markup:
    return Markup("".join(
        f'<tr><td class="mono">{escape(e.cluster)}</td><td class="mono">{escape(e.resource)}</td>'
        f"<td>{escape(_t(e.opened_at))}</td><td>{escape(_t(e.closed_at)) if e.closed_at else 'open'}</td>"
        f"<td>{escape(_dur(e.duration_seconds)) if e.duration_seconds is not None else ''}</td>"
        f"<td>{escape(e.cause or 'unknown')}</td><td>{escape(e.resolution or 'open')}</td>"
        f'<td class="mono">{escape(", ".join(e.fields))}</td></tr>\n' for e in r.drift_episodes))


def _object_sections(objects: list[dict[str, Any]]) -> Markup:
    return Markup("".join(
        f'<h3 class="mono" id="{_object_id(o["resource"])}">{_e(o["resource"])}</h3>\n'
        '<table class="object"><tr><th>Time</th><th>What happened</th></tr>\n'
        + "".join(f"<tr><td>{_t(t)}</td><td>{_e(what)}</td></tr>\n" for t, what in o["rows"])
        + "</table>\n" for o in objects))


@dataclass(frozen=True)
class HtmlParts:
    """A report's HTML page made from everything in it but its integrity section: where that
    section goes, the page holds a mark. ``build_report`` gives the report to
    ``prepare_html`` while that section's check still runs on the other core
    (``meanwhile``); ``render_html`` then writes the section into it."""

    page: str


# Where the integrity section's two parts go in a page made before the check's answer: HTML
# comments, which no value from the log can make (each is escaped, so its '<' is '&lt;').
_ALARM = Markup("<!--gitops:integrity-alarm-->")
_INTEGRITY = Markup("<!--gitops:integrity-->")


@functools.cache
def _templates() -> Environment:
    env = Environment(loader=PackageLoader("gitops.query", "templates"), autoescape=select_autoescape(["j2", "html"]),
                      keep_trailing_newline=True)
    env.filters["t"] = _t
    env.filters["dur"] = _dur
    return env


@cyclic_gc_paused()  # a row per object and change: see gitops.model.bulk
def prepare_html(report: ComplianceReport) -> HtmlParts:
    """The page ``render_html`` makes of ``report``, all but its integrity section: the big
    tables, and the template's own rows (each commit's: a second of a 1M-event month's
    report, done here on this core while the check runs on the other, not after it)."""
    objects = _objects(report)
    try:
        page = _templates().get_template("report.html.j2").render(
            r=report, tl=_timeline(report), objects=objects, git_links=[_links(g) for g in report.git_changes],
            out_of_band_rows=_out_of_band_rows(report), drift_rows=_drift_rows(report),
            object_sections=_object_sections(objects), integrity_alarm=_ALARM, integrity_section=_INTEGRITY)
    finally:  # the memos are for one report: a long-running process keeps none of them
        for memo in (_e, _link, _t):
            memo.cache_clear()
    return HtmlParts(page)


def render_html(report: ComplianceReport, parts: HtmlParts | None = None) -> str:
    """The report as one self-contained HTML page; ``parts``: the page but its integrity
    section, already made (``prepare_html``) from this report or from it before its
    integrity section was known."""
    page = (parts or prepare_html(report)).page
    env = _templates()
    head, alarm_mark, rest = page.partition(_ALARM)
    middle, integrity_mark, tail = rest.partition(_INTEGRITY)
    if not (alarm_mark and integrity_mark):
        raise ValueError("the page holds no place for its integrity section: not one prepare_html made")
    return "".join((head, env.get_template("report_integrity_alarm.html.j2").render(i=report.integrity), middle,
                    env.get_template("report_integrity.html.j2").render(i=report.integrity), tail))


def _rows(models: list[Any]) -> tuple[list[str], list[dict[str, Any]]]:
    rows = [{k: cell(v) for k, v in m.model_dump(mode="json").items()} for m in models]
    return list(type(models[0]).model_fields) if models else [], rows


def write_csv(report: ComplianceReport, directory: Path) -> list[Path]:
    """One CSV file per section into ``directory`` (made if needed); returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    sections: dict[str, tuple[list[str], list[dict[str, Any]]]] = {
        "summary": (["key", "value"], [
            {"key": k, "value": cell(v)}
            for k, v in {"since": format_time(report.since), "until": format_time(report.until),
                         "generated_at": format_time(report.generated_at), "generated_by": report.generated_by,
                         **report.summary.model_dump(mode="json"),
                         **{f"coverage_{k}": v for k, v in report.coverage.model_dump(mode="json").items()}}.items()]),
        "integrity": (list(report.integrity.model_dump()),
                      [{k: cell(v) for k, v in report.integrity.model_dump(mode="json").items()}]),
    }
    if report.scope is not None:
        s = report.scope
        sections["summary"][1].extend({"key": k, "value": cell(v)} for k, v in {
            "gitops_version": s.gitops_version, "git": [f"{g.repository}#{g.branch}:{','.join(g.paths) or '/'}"
                                                        for g in s.git],
            "clusters": s.clusters, "instances": s.instances,
            "log_begins": format_time(s.log_begins) if s.log_begins else "",
            "begins_after_since": s.begins_after_since}.items())
        sections["evidence_gaps"] = (list(Gap.model_fields), [{k: cell(v) for k, v in g.model_dump(mode="json").items()}
                                                              for g in s.evidence_gaps])
    for name in ("clusters", "git_changes", "rollbacks", "out_of_band", "drift_episodes", "health",
                 "reconcile_failures", "prunes", "access"):
        models = getattr(report, name)
        header, rows = _rows(models)
        if not header:  # an empty section still says which columns it has
            field_type = type(report).model_fields[name].annotation
            header = list(field_type.__args__[0].model_fields)  # type: ignore[union-attr]
        sections[name] = (header, rows)
    written = []
    for name, (header, rows) in sections.items():
        path = directory / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=header)
            w.writeheader()
            w.writerows(rows)
        written.append(path)
    return written
