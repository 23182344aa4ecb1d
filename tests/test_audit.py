"""Audit, blame and the compliance report, on a log made by a real scenario: a real repository,
the real control plane, alice's kubectl, the reconciler's self-heal and a failed apply. The
HTML report is opened in headless Chromium (Debian's package, installed by .ci/run)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import sqlite3
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gitops.model.times import format_time
from gitops.projections import resolve_at
from gitops.query.audit import audit_rows
from gitops.query.blame import blame
from gitops.store import EventLog
from tests.cluster_fixtures import Cluster, grant, kubectl
from tests.gitrepo import configmap
from tests.test_reconcile import Env

SCHEMA = Path(__file__).resolve().parent.parent / "schema" / "report.schema.json"
SCRIPT = "<script>alert(1)</script>"


def gitops(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gitops", "--db", str(db), *args], capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def story(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory, admin_api: Any) -> Any:
    """Ann commits an app; a second commit holds a Deployment the API rejects; alice edits the
    ConfigMap with kubectl; the reconciler heals it."""
    if cluster.audit_log is None:
        pytest.skip("naming alice needs the API server's audit log")
    import uuid

    import pykube

    ns = f"t-{uuid.uuid4().hex[:10]}"
    pykube.Namespace(admin_api, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}).create()
    env = Env(cluster, tmp_path_factory.mktemp("audit"), ns)
    try:
        grant(cluster, ns, "alice")
        env.write("app.yaml", configmap("app", ns, k="1", note="plain"))
        first = env.repo.commit(f"the app {SCRIPT}", author="Ann Author <ann@example.com>")
        env.run()
        bad = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bad", "namespace": ns},
               "spec": {"selector": {"matchLabels": {"app": "x"}},
                        "template": {"metadata": {"labels": {"app": "y"}},
                                     "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}}
        env.write("bad.yaml", bad)
        second = env.repo.commit("a bad deployment", author="Bo Other <bo@example.com>")
        env.run()
        kubectl(cluster, "alice", "-n", ns, "patch", "configmap", "app", "-p",
                json.dumps({"data": {"k": "alice", "note": SCRIPT}}))
        env.run()  # drift opened in alice's name, healed
        env.run()  # the close recorded
        yield env, first, second
    finally:
        env.close()
        pykube.Namespace(admin_api, {"metadata": {"name": ns}}).delete()


def test_the_timeline_names_each_actor(story: Any) -> None:
    env, first, _ = story
    ns = env.ns
    with EventLog(env.db) as log:
        rows = list(audit_rows(log, namespace=ns))
        oob = list(audit_rows(log, out_of_band=True, namespace=ns))
        git_only = list(audit_rows(log, commit=first[:8], types=("desired.applied",)))
        by_glob = list(audit_rows(log, resource=f"ConfigMap/{ns}/*", actor="ali*"))  # her change and its drift
    desired = [r for r in rows if r.action == "desired.applied" and r.resource == f"ConfigMap/{ns}/app"]
    assert [(r.actor, r.revision) for r in desired] == [("ann@example.com", first)]
    assert [(r.actor, r.resource, r.how) for r in oob] == [("alice", f"ConfigMap/{ns}/app", "audit")]
    assert {(c.path, c.old, c.new) for c in oob[0].changes} == {("data.k", "1", "alice"),
                                                               ("data.note", "plain", SCRIPT)}
    healed = [r for r in rows if r.action == "cluster.observed" and r.actor == "gitops" and
              any(c.path == "data.k" and c.new == "1" for c in r.changes)]
    assert healed and not healed[-1].out_of_band
    failed = [r for r in rows if r.action == "reconcile.action" and "failed" in r.how]
    assert [r.resource for r in failed] == [f"Deployment.apps/{ns}/bad"] and "selector" in failed[0].detail
    assert [r.resource for r in git_only] == [f"ConfigMap/{ns}/app"]
    assert oob[0].seq in [r.seq for r in by_glob]
    # her request's audit record is kept in the change's own event, not in a row of its own
    assert {r.action for r in by_glob} == {"cluster.observed", "drift.opened"}
    with EventLog(env.db) as log:
        change = next(iter(log.read(since_seq=oob[0].seq - 1, limit=1))).event
    assert change.payload.audit is not None and change.payload.audit.user == "alice"  # type: ignore[union-attr]
    assert change.payload.audit.audit_id == change.payload.audit_id  # type: ignore[union-attr]
    assert {r.actor for r in by_glob} == {"alice"}
    # -o jsonl: one object a line, with every changed field for programs (the table's summary names four);
    # -o json: the same objects, as one document
    res = gitops(env.db, "audit", "--out-of-band", "-n", ns, "-o", "jsonl")
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert json.loads(gitops(env.db, "audit", "--out-of-band", "-n", ns, "-o", "json").stdout) == lines
    assert [(d["actor"], d["how"], d["out_of_band"]) for d in lines] == [("alice", "audit", True)]
    assert lines[0]["fields"] == [{"path": "data.k", "old": "1", "new": "alice"},
                                  {"path": "data.note", "old": "plain", "new": SCRIPT}]
    # the table: who, and how that is known, side by side; a commit by its first 12 digits, as gitops log shows it
    def table(*args: str) -> str:
        return subprocess.run([sys.executable, "-m", "gitops", "--db", str(env.db), "audit", *args], text=True,
                              capture_output=True, timeout=120, env={**os.environ, "COLUMNS": "250"}).stdout

    assert re.search(r"\salice\s+audit\s+cluster.observed", table("--out-of-band", "-n", ns))
    assert re.search(rf"\sann@example.com\s+git\s+git\s+desired.applied .*\s{first[:12]}\s+.*created",
                     table("--commit", first[:8], "--type", "desired.applied", "-o", "wide"))


def test_blame_says_who_set_each_field_desired_and_live_then_and_now(story: Any) -> None:
    env, first, _ = story
    key = f"ConfigMap/{env.ns}/app"
    with EventLog(env.db) as log:
        edit = next(r for r in log.read(resource=key, types=["cluster.observed"]) if r.event.actor == "alice")
        now = {(b.side, b.path): b for b in blame(log, key, resolve_at(log, "now"))}
        then = {(b.side, b.path): b for b in blame(log, key, resolve_at(log, format_time(edit.event.effective_at)))}
    assert (now["desired", "data.k"].actor, now["desired", "data.k"].via) == ("ann@example.com", f"commit {first[:12]}")
    assert (now["live", "data.k"].value, now["live", "data.k"].actor, now["live", "data.k"].how) == (
        "1", "gitops", "reconciler")
    assert (then["live", "data.k"].value, then["live", "data.k"].actor, then["live", "data.k"].how) == (
        "alice", "alice", "audit")
    assert then["live", "metadata.name"].actor == "gitops"  # fields alice did not touch keep their setter


def test_the_report_in_every_format(story: Any, tmp_path: Path) -> None:
    env, first, second = story
    res = gitops(env.db, "report", "--since", "2000-01-01", "--format", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    ns = env.ns
    assert doc["integrity"]["ok"] and doc["integrity"]["head_hash"]
    commits = {g["commit"]: g for g in doc["git_changes"]}
    assert commits[first]["author_email"] == "ann@example.com" and commits[first]["applied_at"]
    assert commits[second]["author_email"] == "bo@example.com"
    # what each commit did to which object, as Git itself has it
    assert commits[first]["changed"] == [{"resource": f"ConfigMap/{env.ns}/app", "change": "created"}]
    assert commits[second]["changed"] == [{"resource": f"Deployment.apps/{env.ns}/bad", "change": "created"}]
    shown = subprocess.run(["git", "-C", str(env.repo.path), "show", "--name-status", "--format=", second],
                           capture_output=True, text=True, check=True).stdout.split()
    assert shown == ["A", "bad.yaml"]
    oob = [o for o in doc["out_of_band"] if o["resource"] == f"ConfigMap/{ns}/app"]
    assert [(o["actor"], o["evidence"], o["outcome"]) for o in oob] == [("alice", "audit", "reverted by self-heal")]
    episodes = [e for e in doc["drift_episodes"] if e["resource"] == f"ConfigMap/{ns}/app"]
    assert [(e["cause"], e["resolution"]) for e in episodes] == [("alice", "reconciled")]
    assert [f["resource"] for f in doc["reconcile_failures"]] == [f"Deployment.apps/{ns}/bad"]
    assert doc["reconcile_failures"][0]["code"] == 422
    assert doc["summary"]["out_of_band_changes"] >= 1 and doc["summary"]["reconcile_passes"] >= 4
    assert 0 < doc["coverage"]["share"] < 1
    # CSV: one file per section, each parses
    out = tmp_path / "csv"
    assert gitops(env.db, "report", "--since", "2000-01-01", "--format", "csv", "--out", str(out)).returncode == 0
    files = {p.name for p in out.iterdir()}
    assert {"summary.csv", "git_changes.csv", "out_of_band.csv", "drift_episodes.csv", "reconcile_failures.csv",
            "prunes.csv", "integrity.csv"} <= files
    rows = list(csv.DictReader((out / "out_of_band.csv").open()))
    assert any(r["actor"] == "alice" for r in rows)
    # the log recorded each of these reads
    with EventLog(env.db) as log:
        ops = [r.event.payload for r in log.read(types=["operator"])]
    assert [(p.command, p.arguments.get("format")) for p in ops][-2:] == [("report", "json"), ("report", "csv")]  # type: ignore[union-attr]


def _png_is_not_blank(path: Path) -> bool:
    """Decode a PNG's pixels (8-bit RGB/RGBA, as Chromium writes them) and see that they are
    not all one colour."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 4
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, _depth, colour = struct.unpack(">IIBB", chunk[:10])
            channels = {2: 3, 6: 4}[colour]
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    stride = width * channels + 1
    colours: set[bytes] = set()
    for y in range(0, height, max(1, height // 200)):
        row = raw[y * stride + 1:(y + 1) * stride]  # filtered bytes: enough to see variety
        colours.update(row[i:i + channels] for i in range(0, len(row), channels * 7))
        if len(colours) > 20:
            return True
    return False


def test_the_html_report_is_self_contained_escaped_and_renders(story: Any, tmp_path: Path) -> None:
    env, _, _ = story
    html_path = tmp_path / "report.html"
    res = gitops(env.db, "report", "--since", "2000-01-01", "--out", str(html_path))
    assert res.returncode == 0, res.stderr
    html = html_path.read_text()
    assert SCRIPT not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    for external in ("src=", "<link", "@import", "url("):  # nothing fetched: no network
        assert external not in html, external
    assert not re.search(r"""(?:href|action|data)=["']?(?:https?:)?//""", html)  # a cluster's URL is text, no link
    assert 'id="timeline"' in html and "<circle" in html and 'id="out-of-band"' in html
    links = set(re.findall(r'href="#(obj-[^"]+)"', html))  # each commit's objects link to the object's rows
    ids = set(re.findall(r'id="(obj-[^"]+)"', html))
    assert links and links <= ids
    app = next(i for i in ids if f"ConfigMap-{env.ns}-app" in i)
    rows = html[html.index(f'id="{app}"'):].split("</table>", 1)[0]
    assert "created by commit" in rows and "outside Git by alice" in rows and "reverted by self-heal" in rows
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if __import__("os").environ.get("CI"):
            pytest.fail("CI=true but chromium is not installed: .ci/run installs it")
        pytest.skip("headless Chromium is not installed (apt-get install chromium) to render the report")
    shot = tmp_path / "report.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600",
                    f"--screenshot={shot}", html_path.as_uri()], capture_output=True, timeout=120, check=False)
    assert shot.exists(), "chromium wrote no screenshot"
    assert _png_is_not_blank(shot)


def test_bad_input_is_one_line_and_exit_2_and_edge_cases_are_valid(story: Any, tmp_path: Path) -> None:
    env, _, _ = story
    for args, words in ((["report", "--since", "2026-02-01", "--until", "2026-01-01"], "is after --until"),
                        (["report", "--since", "whenever"], "time"),
                        (["report", "--since", "2000-01-01", "--format", "pdf"], "pdf"),
                        (["report", "--since", "2000-01-01", "--out", "/nonexistent/dir/r.html"], "does not exist"),
                        (["report", "--since", "2000-01-01", "--format", "csv", "--out", "-"], "not -"),
                        (["audit", "--since", "yesterday-ish"], "time"),
                        (["audit", "--since", "2026-02-01", "--until", "2026-01-01"], "is after --until"),
                        (["audit", "--type", "no.such"], "unknown event type"),
                        (["audit", "--commit", "HEAD~1"], "not a commit sha")):
        res = gitops(env.db, *args)
        assert res.returncode == 2, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1 and words in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr
    nothing = gitops(env.db, "audit", "--resource", "Deployment.apps/nowhere/*", "-o", "json")
    assert (nothing.returncode, nothing.stdout) == (0, "[]\n")
    unknown = gitops(env.db, "audit", "--resource", "Nothing/*", "-o", "json")
    assert unknown.returncode == 2 and "unknown kind 'Nothing'" in unknown.stderr
    empty = gitops(env.db, "report", "--since", "2001-01-01", "--until", "2001-01-02", "--format", "json", "--out", "-")
    assert not (Path.cwd() / "-").exists()  # "-" is standard output, not a file of that name
    doc = json.loads(empty.stdout)
    jsonschema.validate(doc, json.loads(SCHEMA.read_text()))
    assert doc["git_changes"] == [] and doc["summary"]["changes"] == 0


def test_a_tampered_log_still_gives_a_report_that_says_so_first(story: Any, tmp_path: Path) -> None:
    env, _, _ = story
    copy = tmp_path / "tampered.db"
    with EventLog(env.db) as log:
        log.conn.execute("VACUUM INTO ?", (str(copy),))
    conn = sqlite3.connect(copy)
    conn.execute("DROP TRIGGER IF EXISTS events_no_update")
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f'DROP TRIGGER "{name}"')
    conn.execute("UPDATE events SET actor = 'mallory' WHERE seq = 3")
    conn.commit()
    conn.close()
    res = gitops(copy, "report", "--since", "2000-01-01", "--out", str(tmp_path / "r.html"))
    assert res.returncode == 1 and "failed verification" in res.stderr
    html = (tmp_path / "r.html").read_text()
    body = html[html.index("<body>"):]
    assert body.index('id="integrity-alarm"') < body.index("<h1>")
