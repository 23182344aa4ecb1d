"""The log against an attacker who can write its file: a cut tail, a rewrite with the
chain recomputed, a fork, and proofs checked by someone who holds only the public key.
Each attack is made on a real SQLite file, through the real ``gitops`` entry point."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import pytest

from gitops.model.errors import ConfigError, TamperedLogError
from gitops.store import EventLog
from gitops.store.chain import FIELDS, row_hash
from tests.cli_helpers import gitops, one_failure_line
from tests.gitrepo import GitRepo, configmap
from tests.helpers import applied


class Setup:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.db = tmp_path / "g.db"
        self.keys = tmp_path / "keys"
        self.published = tmp_path / "published"
        self.remote = tmp_path / "anchors.git"
        subprocess.run(["git", "init", "-q", "--bare", str(self.remote)], check=True)
        self.cfg = tmp_path / "gitops.yaml"
        self.cfg.write_text(
            "integrity:\n"
            f"  key_dir: {self.keys}\n"
            f"  publish_dir: {self.published}\n"
            f"  publish_git: {{repo: {self.remote}}}\n")

    def run(self, *args: str, db: Path | None = None) -> subprocess.CompletedProcess[str]:
        return gitops("--config", str(self.cfg), *args, db=db or self.db)

    def events(self, start: int, n: int, db: Path | None = None, commit: str = "c0ffee") -> None:
        with EventLog(db or self.db) as log:
            log.append([applied(i, commit=commit) for i in range(start, start + n)])

    def checkpoint(self, db: Path | None = None) -> str:
        res = self.run("checkpoint", db=db)
        assert res.returncode == 0, res.stderr
        assert "published to" in res.stderr
        return res.stdout


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    s = Setup(tmp_path)
    assert s.run("init").returncode == 0
    res = s.run("keys", "init", "--name", "test-log")
    assert res.returncode == 0, res.stderr
    assert (s.keys / "signing.key").stat().st_mode & 0o077 == 0
    assert res.stdout.startswith("test-log+")
    s.events(0, 20)
    return s


def _operators(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:  # closed: the last connection to a WAL log removes -wal, -shm
        return int(conn.execute("SELECT count(*) FROM events WHERE type = 'operator'").fetchone()[0])


def _git_tip(remote: Path) -> str:
    return subprocess.run(["git", "-C", str(remote), "rev-parse", "refs/gitops/checkpoints"],
                          capture_output=True, text=True, check=True).stdout.strip()


def test_a_checkpoint_is_a_signed_note_published_to_a_directory_and_a_git_ref(setup: Setup) -> None:
    text = setup.checkpoint()
    lines = text.splitlines()
    assert lines[1] == "20" and lines[0].startswith("gitops.log/")  # origin, then the tree size
    assert any(line.startswith("\u2014 test-log ") for line in lines)  # the signature line (C2SP signed note)
    assert (setup.published / "checkpoint").read_text() == text
    shown = subprocess.run(["git", "-C", str(setup.remote), "show", "refs/gitops/checkpoints:checkpoint"],
                           capture_output=True, text=True, check=True).stdout
    assert shown == text
    res = setup.run("report", "--since", "2000-01-01", "--format", "json")
    assert res.returncode == 0, res.stderr
    integrity = json.loads(res.stdout)["integrity"]
    assert (integrity["checkpoint"], integrity["checkpoint_size"], integrity["consistent_with_checkpoint"]) == (
        text, 20, True)
    first = _git_tip(setup.remote)
    setup.events(20, 3)
    second = setup.checkpoint()
    assert second.splitlines()[1] == "25"  # 20, the integrity.checkpoint event, the report's operator event, 3
    log = subprocess.run(["git", "-C", str(setup.remote), "rev-list", "refs/gitops/checkpoints"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert log[1] == first and len(log) == 2  # one commit per checkpoint, on top of the last: never forced
    for where in (str(setup.published / "checkpoint"), f"git:{setup.remote}"):
        res = setup.run("verify", "--checkpoint", where)
        assert res.returncode == 0, res.stderr
        assert "consistent: the log" in res.stdout


def test_a_cut_tail_stays_visible_and_no_writer_erases_it(setup: Setup) -> None:
    setup.checkpoint()
    anchor = setup.published / "checkpoint"
    setup.events(20, 10)
    with sqlite3.connect(setup.db) as conn:
        last = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
        conn.execute("DELETE FROM events WHERE seq > ?", (last - 10,))
    operators = _operators(setup.db)
    for _ in range(2):  # the first verify no longer re-anchors the chain: the second says the same
        res = setup.run("verify")
        assert res.returncode == 1
        assert f"log tampered at seq {last - 9}: truncated" in res.stderr
    assert _operators(setup.db) == operators  # a failed verify appends nothing
    with EventLog(setup.db) as log, pytest.raises(TamperedLogError, match=rf"ends at seq {last - 10}"):
        log.append([applied(99)])
    res = setup.run("checkpoint")
    one_failure_line(res)
    assert "refusing to sign" in res.stderr
    res = setup.run("report", "--since", "2000-01-01", "--format", "json")
    assert res.returncode == 1 and "not recorded in the log: refusing to write" in res.stderr
    assert json.loads(res.stdout)["integrity"]["ok"] is False
    assert _operators(setup.db) == operators
    # the operator records the finding; writers go on from there
    res = setup.run("verify", "--acknowledge", "--reason", "restored from the tape of Monday")
    assert res.returncode == 1 and "integrity.acknowledged" in res.stderr
    setup.events(40, 2)
    res = setup.run("verify")
    assert res.returncode == 0, res.stderr
    assert "acknowledged by" in res.stderr  # the finding is still said, every time
    with EventLog(setup.db) as log:
        ack = [r.event.payload for r in log.read(types=["integrity.acknowledged"])]
    assert [(a.problem, a.first_bad_seq, a.reason) for a in ack] == [  # type: ignore[union-attr]
        ("truncated", last - 9, "restored from the tape of Monday")]
    # the checkpoint published before the cut covers only what is left intact: it still holds
    assert setup.run("verify", "--checkpoint", str(anchor)).returncode == 0


def test_a_checkpoint_after_the_events_that_were_cut_catches_the_cut_after_acknowledgement(setup: Setup) -> None:
    setup.events(20, 10)
    setup.checkpoint()  # signs 30 events
    kept = setup.tmp / "kept-checkpoint"
    shutil.copy(setup.published / "checkpoint", kept)
    with sqlite3.connect(setup.db) as conn:
        conn.execute("DELETE FROM events WHERE seq > 25")
    assert setup.run("verify", "--acknowledge", "--reason", "x").returncode == 1
    setup.events(50, 10)  # the log grows past the checkpoint's size again
    res = setup.run("verify", "--checkpoint", str(kept))
    assert res.returncode == 1
    assert "not the ones the checkpoint signed" in res.stderr
    res = setup.run("checkpoint")  # and it is never published over the anchor
    one_failure_line(res)
    assert "does not extend the checkpoint of 30 events" in res.stderr
    assert (setup.published / "checkpoint").read_text() == kept.read_text()


def test_a_cut_tail_with_the_head_moved_back_passes_the_chain_but_not_an_anchor(setup: Setup) -> None:
    setup.checkpoint()  # signs 20 events
    with sqlite3.connect(setup.db) as conn:
        conn.execute("DELETE FROM events WHERE seq > 15")
        conn.execute("UPDATE chain_head SET seq = 15, hash = (SELECT hash FROM events WHERE seq = 15) WHERE id = 1")
    conn.close()
    assert setup.run("init", "--rebuild-projections").returncode == 0  # and the tree made to follow
    assert setup.run("verify").returncode == 0  # the chain alone cannot tell
    res = setup.run("verify", "--checkpoint", str(setup.published / "checkpoint"))
    assert res.returncode == 1 and "fewer than the 20 the checkpoint signed" in res.stderr, res.stderr
    res = setup.run("checkpoint")
    one_failure_line(res)
    assert "does not extend the checkpoint of 20 events" in res.stderr


def _rewrite(db: Path, seq: int, payload: dict[str, object]) -> str:
    """Change event ``seq``'s payload and recompute the chain after it, and the recorded head:
    what an attacker who knows the format does. Returns the new head's hash."""
    with EventLog(db) as log:  # the rows from there on, their packed payloads unpacked (gitops.store.pack)
        rows = [log.row(s) for s in range(seq, log.last_seq() + 1)]
    with sqlite3.connect(db) as conn:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        prev = conn.execute("SELECT hash FROM events WHERE seq = ?", (seq - 1,)).fetchone()[0]
        for row in rows:
            assert row is not None
            if row["seq"] == seq:
                row["payload"] = json.dumps(payload)
            h = row_hash(prev, [row[f] for f in FIELDS])
            conn.execute("UPDATE events SET payload = ?, packed = NULL, base = NULL, prev_hash = ?, hash = ? "
                         "WHERE seq = ?", (row["payload"], prev, h, row["seq"]))
            prev = h
        last = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
        conn.execute("UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1", (last, prev))
    return str(prev)


def test_a_full_rewrite_passes_the_chain_but_not_an_anchor(setup: Setup) -> None:
    setup.checkpoint()
    with EventLog(setup.db) as log:
        head = log.row(log.last_seq())
        original = log.row(5)
    assert head is not None and original is not None
    payload = json.loads(original["payload"])
    payload["manifest"]["spec"]["replicas"] = 0
    _rewrite(setup.db, 5, payload)
    assert setup.run("init", "--rebuild-projections").returncode == 0  # the tree follows the rewritten rows
    res = setup.run("verify")
    assert res.returncode == 0, res.stderr  # the chain alone cannot tell
    for where in (str(setup.published / "checkpoint"), f"git:{setup.remote}"):
        res = setup.run("verify", "--checkpoint", where)
        assert res.returncode == 1
        assert "not the ones the checkpoint signed" in res.stderr, res.stderr
    res = setup.run("verify", "--expect-head", f"{head['seq']}:{head['hash']}")  # what a report printed
    assert res.returncode == 1 and f"head seq {head['seq']}: does not match" in res.stderr
    res = setup.run("report", "--since", "2000-01-01", "--format", "json")
    assert res.returncode == 1  # the report is written, and says the log no longer extends its checkpoint
    integrity = json.loads(res.stdout)["integrity"]
    assert (integrity["ok"], integrity["consistent_with_checkpoint"], integrity["checkpoint_size"]) == (
        False, False, 20)
    assert integrity["checkpoint"] == (setup.published / "checkpoint").read_text()
    res = setup.run("verify", "--expect-head", "nonsense")
    one_failure_line(res, code=2)


def test_a_fork_is_caught_by_the_other_copy_s_checkpoint_and_never_published(setup: Setup) -> None:
    setup.checkpoint()
    fork = setup.tmp / "fork.db"
    with sqlite3.connect(setup.db) as src, sqlite3.connect(fork) as dst:
        src.backup(dst)
    setup.events(20, 2)
    setup.checkpoint()  # the original goes on and publishes (24 events)
    setup.events(100, 10, db=fork, commit="f0f0")  # the copy goes its own way
    res = setup.run("verify", db=fork)
    assert res.returncode == 0  # by itself the fork is a perfect log
    res = setup.run("verify", "--checkpoint", str(setup.published / "checkpoint"), db=fork)
    assert res.returncode == 1 and "not the ones the checkpoint signed" in res.stderr
    tip = _git_tip(setup.remote)
    res = setup.run("checkpoint", db=fork)
    one_failure_line(res)
    assert "refusing to publish" in res.stderr and "fork" in res.stderr
    assert _git_tip(setup.remote) == tip  # the anchor did not move


def test_a_proof_is_checked_without_the_database(setup: Setup, tmp_path: Path) -> None:
    setup.checkpoint()
    res = setup.run("prove", "7", "-o", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    auditor = tmp_path / "auditor"
    auditor.mkdir()
    (auditor / "proof.json").write_text(res.stdout)
    pub = shutil.copy(setup.keys / "signing.pub", auditor / "log.pub")
    res = gitops("verify-proof", "proof.json", "--key", str(pub), cwd=auditor)
    assert res.returncode == 0, res.stderr
    assert "event seq 7 (desired.applied Deployment.apps/default/app-6) is in gitops.log/" in res.stdout
    assert not list(auditor.glob("*.db"))  # no database was made or needed

    def check(changed: dict[str, object], name: str) -> subprocess.CompletedProcess[str]:
        (auditor / name).write_text(json.dumps(changed))
        return gitops("verify-proof", name, "--key", str(pub), cwd=auditor)

    edited = json.loads(json.dumps(doc))
    edited["event"]["actor"] = "someone-else@example.com"
    res = check(edited, "edited.json")
    one_failure_line(res)
    assert "do not match its hash" in res.stderr
    # the event's hash recomputed too: the inclusion proof no longer holds under the signed root
    edited["event"]["hash"] = row_hash(edited["event"]["prev_hash"], [edited["event"][f] for f in FIELDS])
    res = check(edited, "rehashed.json")
    one_failure_line(res)
    assert "inclusion proof does not hold" in res.stderr
    swapped = setup.tmp / "swapped"
    cfg = swapped.with_suffix(".yaml")
    cfg.write_text(f"integrity:\n  key_dir: {swapped}\n")
    assert gitops("--config", str(cfg), "keys", "init", "--name", "test-log", cwd=tmp_path).returncode == 0
    res = gitops("verify-proof", "proof.json", "--key", str(swapped / "signing.pub"), cwd=auditor)
    one_failure_line(res)
    assert "checkpoint" in res.stderr
    res = setup.run("verify", "--checkpoint", str(setup.published / "checkpoint"), "--key",
                    str(swapped / "signing.pub"))
    one_failure_line(res)


def test_keys_are_never_replaced_and_a_readable_key_is_refused(setup: Setup) -> None:
    res = setup.run("keys", "init")
    one_failure_line(res, code=2)
    assert "never replaced" in res.stderr
    (setup.keys / "signing.key").chmod(0o644)
    res = setup.run("checkpoint")
    one_failure_line(res, code=2)
    assert "readable by others" in res.stderr


READERS = (("verify",), ("log",), ("status",), ("audit",), ("report", "--since", "2000-01-01", "--format", "json"),
           ("blame", "Deployment.apps/default/app-3"), ("replay", "--at", "now"))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_damaged_page_is_one_line_from_every_command_and_init_refuses_it(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    with EventLog(db) as log:
        log.append([applied(i) for i in range(300)])
        page = log.conn.execute("PRAGMA page_size").fetchone()[0]
        root = log.conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events'").fetchone()[0]
    with db.open("r+b") as f:  # random bytes over the events table's first page
        f.seek(page * (root - 1))
        f.write(random.Random(7).randbytes(page))
    before = _sha(db)
    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a", "default", k="1"))
    repo.commit("a")
    for args in (*READERS, ("verify", "--projections"), ("init",), ("ingest", "git", "--repo", str(repo.path))):
        res = gitops(*args, db=db)
        one_failure_line(res)
        assert f"{db} is damaged at page {root} (of events)" in res.stderr, (args, res.stderr)
    assert "init leaves it as it is" in gitops("init", db=db).stderr
    assert _sha(db) == before  # nothing was written over the damage


def test_a_read_only_copy_is_read_and_never_written(setup: Setup) -> None:
    setup.checkpoint()
    copy = setup.tmp / "evidence" / "g.db"
    copy.parent.mkdir()
    src, dst = sqlite3.connect(setup.db), sqlite3.connect(copy)
    src.backup(dst)
    dst.execute("PRAGMA journal_mode = WAL")  # as the log is kept: SQLite would make -wal and -shm to read it
    src.close()
    dst.close()
    assert sorted(p.name for p in copy.parent.iterdir()) == ["g.db"]
    before, operators = _sha(copy), _operators(copy)
    assert sorted(p.name for p in copy.parent.iterdir()) == ["g.db"]
    for flags in (("--read-only",), ("--immutable",)):
        for args in (*READERS, ("verify", "--checkpoint", str(setup.published / "checkpoint"))):
            res = setup.run(*flags, *args, db=copy)
            assert res.returncode == 0, (args, res.stderr)
            assert "Traceback" not in res.stderr
            assert sorted(p.name for p in copy.parent.iterdir()) == ["g.db"], args  # no -wal, no -shm beside it
            if args[0] not in ("log", "status"):  # the commands that record their access say it was not
                assert "was not recorded in the log" in res.stderr and "read-only" in res.stderr, (args, res.stderr)
        res = setup.run(*flags, "ingest", "git", "--repo", str(setup.tmp), db=copy)
        one_failure_line(res)
        assert "is read-only" in res.stderr
        assert sorted(p.name for p in copy.parent.iterdir()) == ["g.db"]  # no -wal, no -shm beside it
    assert (_sha(copy), _operators(copy)) == (before, operators)
    if os.geteuid() != 0:  # root writes whatever the mode says; anyone else meets a file without write permission
        copy.chmod(0o444)
        copy.parent.chmod(0o555)
        try:
            res = setup.run("verify", db=copy)
            assert res.returncode == 0 and "not recorded" in res.stderr, res.stderr
        finally:
            copy.parent.chmod(0o755)


def test_secrets_are_stored_under_the_log_s_digest_key_and_old_digests_stay(tmp_path: Path) -> None:
    """A log written with plain digests keeps them (its chain is never rewritten); the next
    read under a key re-reads the last commit, recorded as the operator's reconfiguration,
    and the values are stored as HMACs under a key made beside the log (mode 600)."""
    from gitops.events import DesiredApplied
    from gitops.sources.git import GitIngest, GitSourceConfig

    clear = "correct-horse-battery-staple"
    repo = GitRepo(tmp_path / "repo")
    repo.write("s.yaml", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "default"},
                          "type": "Opaque", "stringData": {"password": clear}})
    repo.commit("a secret")
    db = tmp_path / "g.db"
    with EventLog(db) as log:  # as gitops did before keys: plain SHA-256
        GitIngest(log, GitSourceConfig(repo=str(repo.path))).run()
        old = [r for r in log.read(types=["desired.applied"])]
    plain = hashlib.sha256(clear.encode()).hexdigest()
    assert old[0].event.payload.manifest["stringData"]["password"] == f"sha256:{plain}"  # type: ignore[union-attr]
    res = gitops("ingest", "git", "--repo", str(repo.path), db=db)
    assert res.returncode == 0, res.stderr
    key_file = tmp_path / "g.db.keys" / "digest.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    with EventLog(db) as log:
        assert log.verify().ok
        again = [r for r in log.read(types=["desired.applied"])]
        assert [r.event.type for r in log.read(types=["git.reconfigured"])] == ["git.reconfigured"]
    assert again[0].hash == old[0].hash  # the old event as it was
    new = again[-1].event
    assert isinstance(new, DesiredApplied) and len(again) == 2
    assert new.payload.manifest["stringData"]["password"].startswith("hmac-sha256:")
    assert new.payload.digest_scheme is not None and new.payload.digest_scheme.startswith("hmac-sha256:")
    export = gitops("log", "-o", "json", db=db).stdout
    assert clear not in export and plain not in export.replace(f"sha256:{plain}", "", 1)  # the keyed event hides it

    with EventLog(db) as log:  # a reading without the key must not store plain digests again
        seen = log.count()
        with pytest.raises(ConfigError, match="digested under the log's key"):
            GitIngest(log, GitSourceConfig(repo=str(repo.path))).run()
        assert log.count() == seen


def test_a_rollback_reads_secrets_under_the_log_s_digest_key(tmp_path: Path) -> None:
    """gitops rollback reads the branch first; it read it without the log's key, so the
    last commit was read again as new settings and a Secret's value stored as plain SHA-256."""
    clear = "correct-horse-battery-staple"
    repo = GitRepo(tmp_path / "repo")
    repo.write("s.yaml", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "default"},
                          "type": "Opaque", "stringData": {"password": clear}})
    repo.write("cm.yaml", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default"},
                           "data": {"k": "1"}})
    first = repo.commit("one")
    repo.write("cm.yaml", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "default"},
                           "data": {"k": "2"}})
    repo.commit("two")
    db = tmp_path / "g.db"
    assert gitops("ingest", "git", "--repo", str(repo.path), db=db).returncode == 0
    res = gitops("rollback", "--repo", str(repo.path), "--to", first, db=db)
    assert res.returncode == 0, res.stderr
    assert repo.git("show", "HEAD:cm.yaml") == repo.git("show", f"{first}:cm.yaml")
    export = gitops("log", "-o", "json", db=db).stdout
    assert '"git.reconfigured"' not in export
    assert clear not in export and hashlib.sha256(clear.encode()).hexdigest() not in export


def test_checkpoints_are_pushed_to_a_remote_one_commit_on_top_of_the_last(setup: Setup, tmp_path: Path) -> None:
    """A URL (file://, as https or ssh would be): each checkpoint is a commit pushed on top
    of the ref's tip, never forced; verify reads the anchor back from the remote."""
    remote = tmp_path / "remote-anchors.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    cfg = setup.tmp / "remote.yaml"
    cfg.write_text(f"integrity:\n  key_dir: {setup.keys}\n  publish_git: {{repo: 'file://{remote}'}}\n")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return gitops("--config", str(cfg), *args, db=setup.db)

    assert run("checkpoint").returncode == 0
    first = _git_tip(remote)
    setup.events(20, 2)
    res = run("checkpoint")
    assert res.returncode == 0 and f"file://{remote}" in res.stderr, res.stderr
    parents = subprocess.run(["git", "-C", str(remote), "rev-list", "--parents", "-n", "1",
                              "refs/gitops/checkpoints"], capture_output=True, text=True, check=True).stdout.split()
    assert parents[1] == first  # on top of the last: the history of roots only grows
    res = run("verify", "--checkpoint", f"git:file://{remote}")
    assert res.returncode == 0 and "consistent" in res.stdout, res.stderr
    # a fork of the log is refused by the fetch that would push it: the remote's tip stays
    fork = setup.tmp / "fork.db"
    src, dst = sqlite3.connect(setup.db), sqlite3.connect(fork)
    src.backup(dst)
    dst.execute("DELETE FROM events WHERE seq > 10")
    dst.execute("UPDATE chain_head SET seq = 10, hash = (SELECT hash FROM events WHERE seq = 10) WHERE id = 1")
    dst.commit()
    src.close()
    dst.close()
    assert gitops("--config", str(cfg), "init", "--rebuild-projections", db=fork).returncode == 0
    setup.events(200, 30, db=fork, commit="f0f0")
    tip = _git_tip(remote)
    res = gitops("--config", str(cfg), "checkpoint", db=fork)
    one_failure_line(res)
    assert f"git:file://{remote}" in res.stderr and "does not extend" in res.stderr
    assert _git_tip(remote) == tip


def test_a_publish_directory_that_cannot_be_written_is_one_line(setup: Setup) -> None:
    blocker = setup.tmp / "not-a-directory"
    blocker.write_text("a file where the directory should be")
    cfg = setup.tmp / "blocked.yaml"
    cfg.write_text(f"integrity:\n  key_dir: {setup.keys}\n  publish_dir: {blocker}\n")
    res = gitops("--config", str(cfg), "checkpoint", db=setup.db)
    one_failure_line(res, code=2)
    assert f"integrity.publish_dir {blocker}" in res.stderr


def test_bad_input_to_prove_and_verify_proof_is_one_line_and_records_nothing(setup: Setup, tmp_path: Path) -> None:
    res = setup.run("prove", "1")  # no checkpoint yet
    one_failure_line(res, code=2)
    assert "no checkpoint yet" in res.stderr
    setup.checkpoint()
    before = _operators(setup.db)
    for seq in ("0", "999"):
        res = setup.run("prove", seq)
        one_failure_line(res, code=2)
        assert "not covered by the checkpoint" in res.stderr
    res = gitops("verify-proof", str(tmp_path / "missing.json"), "--key", str(setup.keys / "signing.pub"))
    one_failure_line(res, code=2)
    (tmp_path / "junk.json").write_text("{not json")
    res = gitops("verify-proof", str(tmp_path / "junk.json"), "--key", str(setup.keys / "signing.pub"))
    one_failure_line(res, code=2)
    assert _operators(setup.db) == before


def _digest_key_at(directory: str, start: float) -> str:
    import time

    from gitops.query.integrity import KeyStore

    while time.time() < start:  # all at once, as the gitops of a fleet start
        pass
    key = KeyStore(directory).digest_key(create=True)
    assert key is not None
    return key.hex()


def test_processes_making_the_digest_key_at_once_all_get_the_same_whole_key(tmp_path: Path) -> None:
    import multiprocessing
    import time

    start = time.time() + 1.5
    with multiprocessing.get_context("spawn").Pool(6) as pool:
        keys = pool.starmap(_digest_key_at, [(str(tmp_path / "keys"), start)] * 6)
    assert len(set(keys)) == 1 and len(keys[0]) == 64
    assert [p.name for p in (tmp_path / "keys").iterdir()] == ["digest.key"]  # no part file left behind


def test_a_command_without_the_config_digests_what_the_config_s_rules_digest(tmp_path: Path) -> None:
    """The config's redact rules are recorded in the log, and every later writer applies
    them: a one-shot command run without the config file stored the value in clear (in a
    log that can never forget it), and re-read the last commit as new settings."""
    clear = "tok-very-secret-123"
    repo = GitRepo(tmp_path / "repo")
    repo.write("cm.yaml", configmap("a", token=clear, other="kept"))
    repo.commit("one")
    config = tmp_path / "gitops.yaml"
    config.write_text(json.dumps({"git": {"repo": str(repo.path)},
                                  "redact": [{"kind": "ConfigMap", "path": "data.token"}]}))
    db = tmp_path / "g.db"
    assert gitops("--config", str(config), "ingest", "git", db=db).returncode == 0
    res = gitops("ingest", "git", "--repo", str(repo.path), db=db)  # no config: no rules of its own
    assert res.returncode == 0, res.stderr
    repo.write("cm.yaml", configmap("a", token=clear + "-2", other="changed"))
    repo.commit("two")
    assert gitops("ingest", "git", "--repo", str(repo.path), db=db).returncode == 0
    export = gitops("log", "-o", "json", db=db).stdout
    assert clear not in export and '"git.reconfigured"' not in export
    manifests = [e["payload"]["manifest"]["data"] for e in json.loads(export) if e["type"] == "desired.applied"]
    assert [m["other"] for m in manifests] == ["kept", "changed"]
    assert all(m["token"].startswith("hmac-sha256:") for m in manifests)
