"""The CLI as a user meets it: the real ``gitops`` entry point in a subprocess where the
exit code and stderr matter, click's runner where only the output does."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from gitops.cli import cli
from gitops.model.errors import StoreError
from gitops.store import EventLog
from tests.cli_helpers import gitops, one_failure_line
from tests.helpers import applied


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out: list[tuple[tuple[str, ...], click.Command]] = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):  # imports each command's module (they load when asked for)
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        out.append(((*prefix, name), cmd))
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, (*prefix, name)))
    return out


@pytest.mark.parametrize(("path", "cmd"), _commands(cli), ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_has_help(path: tuple[str, ...], cmd: click.Command) -> None:
    assert (cmd.help or "").strip(), f"`gitops {' '.join(path)}` has no help text"
    for p in cmd.params:
        if isinstance(p, click.Option):
            assert (p.help or "").strip(), f"option {p.opts} of `gitops {' '.join(path)}` has no help"
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output


def test_init_log_verify(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    res = gitops("init", db=db)
    assert res.returncode == 0, res.stderr
    assert "initialised" in res.stdout
    with EventLog(db) as log:
        log.append([applied(i) for i in range(3)])
    res = gitops("log", "-o", "json", db=db)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert [r["seq"] for r in rows] == [1, 2, 3]
    assert rows[0]["type"] == "desired.applied"
    assert rows[0]["payload"]["manifest"]["metadata"]["name"] == "app-0"
    res = gitops("log", "--since-seq", "2", "--type", "desired.applied", db=db)
    assert res.returncode == 0
    assert "app-2" in res.stdout and "app-0" not in res.stdout
    res = gitops("log", "--actor", "nobody@example.com", db=db)
    assert (res.returncode, res.stdout, res.stderr) == (0, "", "no events match\n")
    res = gitops("log", "--actor", "nobody@example.com", "-o", "json", db=db)
    assert json.loads(res.stdout) == []
    res = gitops("log", "-o", "csv", "--type", "desired.applied", db=db)
    lines = res.stdout.splitlines()
    assert lines[0] == "seq,effective_at,recorded_at,type,source,resource,actor,revision,detail"
    assert len(lines) == 4 and lines[1].endswith(",app.yaml")  # the detail: the file the object came from
    # each export was recorded in the log itself (an operator event), tables were not
    with EventLog(db) as log:
        exports = [r.event.payload for r in log.read(types=["operator"])]
        total = log.count()
    assert [(p.command, p.arguments["output"], p.outcome) for p in exports] == [  # type: ignore[union-attr]
        ("export", "json", "succeeded"), ("export", "json", "succeeded"), ("export", "csv", "succeeded")]
    res = gitops("verify", db=db)
    assert (res.returncode, res.stdout.strip()) == (0, f"log intact: {total} events, chain valid up to seq {total}")


def test_an_edit_with_sqlite3_makes_verify_fail_naming_the_seq(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    with EventLog(db) as log:
        log.append([applied(i) for i in range(20)])
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE events SET actor = 'someone@else' WHERE seq = 13")
    res = gitops("verify", db=db)
    assert res.returncode == 1
    assert "seq 13" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("payload", ["{broken", "[1, 2]", '{"manifest": 1}'])
def test_a_payload_changed_outside_gitops_is_one_line_wherever_it_is_read(tmp_path: Path, payload: str) -> None:
    """Not JSON, or JSON no event model reads: each command that builds events from the row
    names it in one line (no traceback), and so does the next append that needs it."""
    from tests.helpers import deployment

    db = tmp_path / "g.db"
    with EventLog(db) as log:
        log.append([applied(i) for i in range(5)])
    key = "Deployment.apps/default/app-2"  # seq 3
    with sqlite3.connect(db) as conn:
        for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        # stored whole (not packed: gitops.store.pack), the text any command reads
        conn.execute("UPDATE events SET payload = ?, packed = NULL, base = NULL WHERE seq = 3", (payload,))
    for args in (("log", "-o", "json"), ("replay", "--at", "now"), ("status",), ("blame", key)):
        res = gitops(*args, db=db)
        one_failure_line(res)
        assert "seq 3" in res.stderr or "malformed JSON" in res.stderr, (args, res.stderr)
    for args in (("audit",), ("log",)):  # read columns, not models: they may still answer, never with a traceback
        res = gitops(*args, db=db)
        assert "Traceback" not in res.stderr and (res.returncode == 0 or len(res.stderr.strip().splitlines()) == 1)
        assert res.returncode == 0 or "seq 3" in res.stderr or "malformed JSON" in res.stderr, (args, res.stderr)
    if payload == "{broken":  # a payload that is not JSON: the table cannot say what the row is about
        one_failure_line(gitops("log", db=db))
    with EventLog(db) as log, pytest.raises(StoreError, match=r"seq 3|malformed JSON"):  # its next version
        log.append([applied(2, manifest=deployment("app-2", replicas=3), commit="beef")])
    assert gitops("verify", db=db).returncode == 1


def _ingested(tmp_path: Path, subject: str) -> tuple[Path, Path]:
    """(repository, log): one commit of one ConfigMap, with this subject, ingested."""
    from tests.gitrepo import GitRepo

    repo = GitRepo(tmp_path / "repo")
    repo.write("cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: v}\n")
    repo.commit(subject)
    db = tmp_path / "g.db"
    assert gitops("ingest", "git", "--repo", str(repo.path), db=db).returncode == 0
    return repo.path, db


def test_a_checkpoint_changed_outside_gitops_is_one_line(tmp_path: Path) -> None:
    repo, db = _ingested(tmp_path, "a")
    with sqlite3.connect(db) as conn:
        assert conn.execute("UPDATE checkpoints SET value = 'garbage'").rowcount == 1
    res = gitops("ingest", "git", "--repo", str(repo), db=db)
    one_failure_line(res)
    assert "checkpoint" in res.stderr and "not JSON" in res.stderr


def test_log_csv_does_not_hand_a_spreadsheet_a_formula(tmp_path: Path) -> None:
    """A commit subject is the committer's text: in a CSV it must stay text (CSV injection)."""
    import csv
    import io

    _, db = _ingested(tmp_path, '=HYPERLINK("http://example.com/x")')
    rows = list(csv.DictReader(io.StringIO(gitops("log", "-o", "csv", db=db).stdout)))
    assert rows[0]["detail"] == """'=HYPERLINK("http://example.com/x")"""


def test_checkpoints_by_prefix_take_the_prefix_literally(tmp_path: Path) -> None:
    """A prefix is not a LIKE pattern: "_" and "%" in a path or URL match only themselves."""
    from gitops.store.log import Checkpoint

    with EventLog(tmp_path / "g.db") as log:
        log.append([], checkpoint=[Checkpoint("cluster:https://a_b:1:x", 1), Checkpoint("cluster:https://aXb:1:y", 2),
                                   Checkpoint("cluster:https://a%b:1:z", 3)])
        assert log.checkpoints("cluster:https://a_b:1:") == {"cluster:https://a_b:1:x": 1}
        assert log.checkpoints("cluster:https://a%b:") == {"cluster:https://a%b:1:z": 3}
        assert len(log.checkpoints()) == 3


def test_a_change_projection_row_changed_outside_gitops_is_one_line(tmp_path: Path) -> None:
    from tests.helpers import deployment

    db = tmp_path / "g.db"
    with EventLog(db) as log:
        log.append([applied(1), applied(1, manifest=deployment("app-1", replicas=2), commit="beef")])
    with sqlite3.connect(db) as conn:
        assert conn.execute("UPDATE changes SET fields = 'not json'").rowcount == 1
    res = gitops("audit", db=db)
    one_failure_line(res)
    assert "change projection" in res.stderr and "gitops init --rebuild-projections" in res.stderr
    assert gitops("init", "--rebuild-projections", db=db).returncode == 0
    assert "spec.replicas: 1 -> 2" in gitops("audit", db=db).stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("log", "--type", "nope"), "unknown event type 'nope'"),
        (("log", "--resource", "not a key"), "names no object: expected TYPE/NAME"),
        (("log", "--since-seq", "-4"), "-4"),
    ],
)
def test_bad_input_is_one_line_and_non_zero(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    db = tmp_path / "g.db"
    gitops("init", db=db)
    res = gitops(*args, db=db)
    assert res.returncode == 2
    assert message in res.stderr
    assert "Traceback" not in res.stderr


def test_missing_or_foreign_databases_are_clear_errors_and_left_intact(tmp_path: Path) -> None:
    res = gitops("log", db=tmp_path / "absent.db")
    assert res.returncode == 1
    assert res.stderr.strip() == f"error: no gitops database at {tmp_path / 'absent.db'}; create one with 'gitops init'"
    assert not (tmp_path / "absent.db").exists()
    junk = tmp_path / "junk.db"
    junk.write_text("hello\n" * 1000)
    for cmd in ("log", "verify", "init"):
        res = gitops(cmd, db=junk)
        assert res.returncode == 1
        assert res.stderr.count("\n") == 1 and "not a gitops database" in res.stderr
    assert junk.read_text() == "hello\n" * 1000


def test_bad_config_file_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "gitops.yaml"
    cfg.write_text("db: [unclosed\n")
    res = gitops("--config", str(cfg), "init", cwd=tmp_path)
    assert res.returncode == 2
    assert "invalid YAML" in res.stderr and "Traceback" not in res.stderr
    cfg.write_text("redact:\n  - path: 'data..x'\n")
    res = gitops("--config", str(cfg), "init", cwd=tmp_path)
    assert res.returncode == 2 and "redact.0.path" in res.stderr


def test_watch_with_nothing_to_watch_is_a_usage_error(tmp_path: Path) -> None:
    res = gitops("watch", "--no-cluster", db=tmp_path / "g.db", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.startswith("error: nothing to watch") and res.stderr.count("\n") == 1
    assert not (tmp_path / "g.db").exists()


def test_config_file_lists_may_be_given_as_one_string(tmp_path: Path) -> None:
    cfg = tmp_path / "gitops.yaml"
    cfg.write_text("git:\n  repo: r\n  paths: apps/prod/\n  include: '*.yaml'\n  exclude: kustomization.yaml\n")
    from gitops.service.config import load_config

    git = load_config(cfg).git
    assert git is not None
    assert (git.paths, git.include, git.exclude) == (["apps/prod"], ["*.yaml"], ["kustomization.yaml"])
    cfg.write_text("git:\n  repo: r\n  paths: ../elsewhere\n")
    res = gitops("--config", str(cfg), "ingest", "git", db=tmp_path / "g.db")
    assert res.returncode == 2
    assert res.stderr == f"error: config file {cfg}: git.paths: path '../elsewhere' points outside the repository\n"


def test_a_flag_gives_what_the_config_file_leaves_out(tmp_path: Path) -> None:
    from tests.gitrepo import GitRepo, configmap

    repo = GitRepo(tmp_path / "repo")
    repo.write("apps/a.yaml", configmap("a"))
    repo.write("other/b.yaml", configmap("b"))
    repo.commit("one")
    cfg = tmp_path / "gitops.yaml"
    cfg.write_text("git:\n  paths: [apps]\n")  # no repo: the flag gives it
    db = tmp_path / "g.db"
    res = gitops("--config", str(cfg), "ingest", "git", "--repo", str(repo.path), db=db)
    assert res.returncode == 0, res.stderr
    assert "1 applied" in res.stdout  # the file's paths, the flag's repository
    res = gitops("--config", str(cfg), "ingest", "git", db=tmp_path / "other.db")
    assert (res.returncode, res.stderr) == (2, "error: no repository: pass --repo, or set git.repo in the config "
                                                "file\n")
    assert not (tmp_path / "other.db").exists()


def test_commands_that_read_never_create_or_change_a_database(tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    empty.write_bytes(b"")
    for cmd in (("verify",), ("log",), ("log", "-o", "json")):
        res = gitops(*cmd, db=empty)
        assert (res.returncode, res.stderr) == (1, f"error: {empty} is empty, not a gitops database; create one "
                                                   "with 'gitops init'\n")
        assert empty.read_bytes() == b""
        assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.db"]  # no -wal, no -shm left behind
    assert gitops("init", db=empty).returncode == 0  # the command that creates may
    assert gitops("verify", db=empty).stdout.strip() == "log intact: no events yet"


def test_db_defaults_to_gitops_db_in_the_working_directory_and_env(tmp_path: Path) -> None:
    res = gitops("init", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "gitops.db").exists()
    env_db = tmp_path / "env.db"
    res = subprocess.run([sys.executable, "-m", "gitops", "init"], capture_output=True, text=True,
                         cwd=tmp_path, env={"GITOPS_DB": str(env_db), "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr
    assert env_db.exists()


def test_the_readme_config_example_is_valid(tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    example = readme.split("```yaml\n", 1)[1].split("```", 1)[0]
    cfg = tmp_path / "gitops.yaml"
    cfg.write_text(example)
    from gitops.service.config import load_config

    config = load_config(cfg)
    assert config.git is not None and config.git.paths == ["clusters/prod"]
    assert config.cluster is not None and config.cluster.kinds == ["Ingress.networking.k8s.io"]
    assert config.redact[0].kind == "Deployment"
    assert config.diff.ignore[0].pointers == ["/spec/replicas"] and config.diff.instance == "prod"
    assert config.integrity.publish_git is not None and config.integrity.checkpoint_every.events == 10000


def test_log_filters_by_valid_or_recorded_time_and_refuses_bad_times(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    with EventLog(db) as log:
        log.append([applied(i) for i in range(5)])  # valid times 2026-01-01T00:00:00..04
    res = gitops("log", "-o", "json", "--since", "2026-01-01T00:00:02Z", "--until", "2026-01-01T00:00:04Z", db=db)
    assert res.returncode == 0, res.stderr
    assert [r["seq"] for r in json.loads(res.stdout)] == [3, 4]
    res = gitops("log", "-o", "json", "--since", "1h ago", "--as-recorded", "--type", "desired.applied", db=db)
    assert [r["seq"] for r in json.loads(res.stdout)] == [1, 2, 3, 4, 5]  # all were recorded just now
    res = gitops("log", "-o", "json", "--since", "1h ago", "--type", "desired.applied", db=db)
    assert json.loads(res.stdout) == []  # but took effect in January
    for bad in (("--since", "next tuesday"), ("--since", "2026-01-02", "--until", "2026-01-01")):
        res = gitops("log", *bad, db=db)
        assert res.returncode == 2
        assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: ")


def test_every_command_is_listed_with_its_own_summary_and_imported_only_when_it_runs() -> None:
    """gitops.cli.commands names each command's module and summary so that the list costs no
    import: what it says is what the commands say, and a fresh process that lists them (or
    runs one) imports no other command's module, nor the reconciler, pykube or GitPython."""
    import importlib

    from gitops.cli.commands import COMMANDS

    for modules, _ in COMMANDS.values():
        for m in modules:
            importlib.import_module(f"gitops.cli.{m}")
    assert set(cli.commands) == set(COMMANDS)
    for name, (_, summary) in COMMANDS.items():
        assert cli.commands[name].get_short_help_str(limit=200) == summary, name
    probe = ("import sys, contextlib, io\n"
             "from gitops.cli import cli\n"
             "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
             "    cli(sys.argv[1:], prog_name='gitops')\n"
             "print(' '.join(sorted(m for m in sys.modules if m.endswith('_cmds') or m.split('.')[0] in "
             "('pykube', 'git', 'rich') or m == 'gitops.reconcile.reconciler')))")
    listed = subprocess.run([sys.executable, "-c", probe, "--help"], capture_output=True, text=True, check=True)
    assert listed.stdout.split() == []
    ran = subprocess.run([sys.executable, "-c", probe, "log", "--help"], capture_output=True, text=True, check=True)
    assert [m for m in ran.stdout.split() if not m.startswith("rich")] == ["gitops.cli.log_cmds"]


def _then(code: str, *args: str) -> str:
    """The output of ``gitops ARGS`` run in a fresh process, and then of ``code`` (Python) in
    that process: what the command left loaded or built."""
    probe = ("import sys, contextlib\n"
             "from gitops.cli import cli\n"
             "with contextlib.suppress(SystemExit):\n"
             "    cli(sys.argv[1:], prog_name='gitops')\n" + code)
    return subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, check=True).stdout


def _loaded(*modules: str) -> str:
    """Python (for ``_then``) that prints which of ``modules`` the process has loaded, sorted
    (a package counts once anything of it is loaded: its own module is then loaded too)."""
    return f"print(sorted(m for m in sys.modules if m in {modules!r}))"


def _three_applied(tmp_path: Path) -> Path:
    db = tmp_path / "log.db"
    with EventLog(db) as log:
        log.append([applied(i) for i in range(3)])
    return db


def test_gitops_log_imports_no_settings_yaml_models_or_process_pool(tmp_path: Path) -> None:
    """Start-up is most of a short command's time: ``gitops log`` (a table) imports neither the
    configuration's models (no --config given: the defaults are made when a command asks),
    nor PyYAML, nor verify's process pool, nor pydantic (it reads rows without the event
    models), nor sqlite-utils (it reads no rows by name); with --config, the file is read up
    front."""
    db = _three_applied(tmp_path)
    loaded = _loaded("gitops.service.config", "yaml", "multiprocessing", "pydantic", "sqlite_utils")
    out = _then(loaded, "--db", str(db), "log")
    assert out.splitlines()[-1] == "[]"
    assert out.count("desired.applied") == 3  # the table of the three events, before the probe's line
    config = tmp_path / "gitops.yaml"
    config.write_text(f"db: {db}\n")
    out = _then(loaded, "--config", str(config), "log", "-o", "yaml")
    assert out.splitlines()[-1] == "['gitops.service.config', 'pydantic', 'sqlite_utils', 'yaml']"
    assert out.count("type: desired.applied") == 3  # the log the file names, read


def test_reading_the_configuration_imports_no_signing_tls_or_yaml(tmp_path: Path) -> None:
    """A command that reads the configuration's models (``gitops status``) imports neither
    what signs checkpoints (cryptography) nor what serves the audit webhook (ssl), and PyYAML
    only for a file to read: their settings are plain models (85 of a status's ~400 ms of
    imports were these)."""
    db = _three_applied(tmp_path)
    out = _then(_loaded("cryptography", "ssl", "yaml", "gitops.service.config"), "--db", str(db), "status")
    assert out.splitlines()[-1] == "['gitops.service.config']"
    assert "ConfigMap" in out or "Deployment" in out  # the status of the objects, before the probe's line


def test_the_log_table_says_of_each_event_what_its_model_says(tmp_path: Path) -> None:
    """``gitops log``'s table reads rows without their models; its detail of each event is
    the one ``-o json`` gives through the models, and it builds no event model at all."""
    from datetime import UTC, datetime

    from gitops.events import EVENT_ADAPTER

    t = datetime(2026, 3, 1, tzinfo=UTC).isoformat()
    who = {"name": "A", "email": "a@example.com", "time": t}
    git = {"branch": "main", "repository": "/r", "origin": "git:/r#main"}
    raw = [
        ("git.commit", "git", {"sha": "a" * 40, "parents": [], "author": who, "committer": who,
                               "message": "  first line\nsecond\n", **git}),
        ("git.rewritten", "git", {"old_head": "b" * 40, "new_head": "c" * 40, "merge_base": None, **git}),
        ("git.reconfigured", "git", {"commit": "d" * 40, "previous": {"paths": ["a"], "same": 1},
                                     "settings": {"paths": ["b"], "same": 1, "new": True}, "valid": True, **git}),
        ("source.error", "git", {"code": "invalid-yaml", "message": "bad", "path": "apps/x.yaml", "line": 3}),
        ("source.error", "git", {"code": "invalid-yaml", "message": "whole file", "path": "apps/y.yaml"}),
        ("source.error", "cluster", {"code": "watch", "message": "lost the watch\n(retrying)"}),
        ("audit", "audit", {"audit_id": "u1", "verb": "patch", "user": "alice", "request_uri": "/x",
                            "response_code": 200}),
        ("cluster.observed", "cluster", {"manifest": {"kind": "ConfigMap", "metadata": {"name": "x"}},
                                         "resource_version": "5", "change": "modified", "attribution": "audit"}),
        ("cluster.deleted", "cluster", {"resource_version": None, "synthetic": True}),
        ("desired.removed", "git", {"commit": "e" * 40, "path": "apps/z.yaml"}),
    ]
    events = [EVENT_ADAPTER.validate_python({"id": f"e{i}", "type": ty, "source": src, "resource": "ConfigMap//x",
                                             "effective_at": t, "payload": p})
              for i, (ty, src, p) in enumerate(raw)]
    db = tmp_path / "log.db"
    with EventLog(db) as log:
        log.append(events)
    table = gitops("log", "-o", "wide", db=db).stdout.splitlines()[1:]
    exported = json.loads(gitops("log", "-o", "json", db=db).stdout)  # records the export: the table came first
    assert len(table) == len(exported) == len(raw)
    for line, row in zip(table, exported, strict=True):
        assert row["detail"] and line.rstrip().endswith(row["detail"]), (line, row["detail"])
    assert [r["detail"] for r in exported][:4] == [
        "first line", f"{'b' * 12} -> {'c' * 12}", f"settings changed: new, paths; {'d' * 12} read again",
        "apps/x.yaml:3: bad"]
    built = ("from gitops.events import models\n"
             "print([c.__name__ for c in vars(models).values() if isinstance(c, type) and "
             "issubclass(c, models.BaseModel) and c.__pydantic_complete__])")
    assert _then(built, "--db", str(db), "log").splitlines()[-1] == "[]"


def test_the_readme_reference_is_current() -> None:
    """The README's reference (config keys, environment, flags, event types) is generated from
    the models and commands: when either changes, this fails until `make docs` is run."""
    from gitops.cli.reference import END, EVENT_DESCRIPTIONS, START, render_reference
    from gitops.events.models import EVENT_TYPES

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    assert set(EVENT_DESCRIPTIONS) == set(EVENT_TYPES), "describe every event type in gitops/cli/reference.py"
    current = readme[readme.index(START):readme.index(END) + len(END)] + "\n"
    assert current == render_reference(), "the README's reference is stale: run `make docs`"


def test_new_commands_refuse_bad_input_in_one_line_and_record_none_of_it(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    with EventLog(db) as log:
        log.append([applied(i) for i in range(2)])
    cases = [
        (("blame", "not a key"), "names no object"),
        (("blame", "ConfigMap/default/nothing-here"), "holds no events about ConfigMap/default/nothing-here"),
        (("replay", "--at", "deadbeef"), "commit"),
        (("reconcile", "--repo", ".", "--dry-run", "--detect-only"), "exclude each other"),
        (("run", "--repo", ".", "--interval", "-1"), "interval"),
        (("rollback", "--repo", ".", "--to", "2h ago", "--author", "nobody"), "Name <email>"),
        (("report", "--since", "2026-01-01", "--format", "pdf"), "pdf"),
    ]
    for args, words in cases:
        res = gitops(*args, db=db)
        assert res.returncode == 2, (args, res.stderr)
        assert len(res.stderr.strip().splitlines()) == 1 and words in res.stderr, (args, res.stderr)
    with EventLog(db) as log:
        assert [r.event.type for r in log.read()] == ["desired.applied", "desired.applied"]  # nothing recorded


def test_a_limit_keeps_the_newest_rows_and_says_when_it_cut(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    with EventLog(db) as log:
        log.append([applied(i) for i in range(5)])

    def seqs(cmd: str, *args: str) -> tuple[list[str], str]:
        res = gitops(cmd, "--type", "desired.applied", *args, "-o", "csv", db=db)  # not the exports' own records
        assert res.returncode == 0, res.stderr
        return [line.split(",")[0] for line in res.stdout.splitlines()[1:]], res.stderr

    for cmd in ("log", "audit"):
        rows, err = seqs(cmd, "--limit", "2")
        assert rows == ["4", "5"] and "showing the newest 2" in err, (cmd, rows, err)
        assert seqs(cmd, "--limit", "2", "--reverse")[0] == ["5", "4"]
        rows, err = seqs(cmd, "--limit", "5")
        assert rows == ["1", "2", "3", "4", "5"] and "showing the newest" not in err
        assert seqs(cmd, "--reverse")[0] == ["5", "4", "3", "2", "1"]  # no limit: every row, newest first
        assert seqs(cmd, "--limit", "0")[0] == ["1", "2", "3", "4", "5"]


def test_the_report_lists_who_used_the_log(tmp_path: Path) -> None:
    import getpass

    db = tmp_path / "g.db"
    with EventLog(db) as log:
        log.append([applied(i) for i in range(3)])
    assert gitops("log", "-o", "json", "--type", "desired.applied", db=db).returncode == 0
    assert gitops("verify", db=db).returncode == 0
    assert gitops("replay", "--at", "now", db=db).returncode == 0
    res = gitops("report", "--since", "2000-01-01", "--format", "json", db=db)
    assert res.returncode == 0, res.stderr
    access = json.loads(res.stdout)["access"]
    assert [(a["command"], a["outcome"], a["user"]) for a in access] == [
        ("export", "succeeded", getpass.getuser()), ("verify", "succeeded", getpass.getuser()),
        ("replay", "succeeded", getpass.getuser())]
    assert "types=desired.applied" in access[0]["arguments"] and "output=json" in access[0]["arguments"]
    html = gitops("report", "--since", "2000-01-01", db=db).stdout
    assert 'id="access"' in html and html.count("<td class=\"mono\">export</td>") == 1


def test_report_and_audit_csv_cells_never_hand_a_spreadsheet_a_formula(tmp_path: Path) -> None:
    import csv as csv_module

    from gitops.sources.git import GitIngest, GitSourceConfig
    from tests.gitrepo import GitRepo, configmap

    repo = GitRepo(tmp_path / "repo")
    repo.write("a.yaml", configmap("a", "default"))
    repo.commit('=HYPERLINK("http://example.com/x")', author="=cmd|' /C calc'!A0 <-x@example.com>")
    db = tmp_path / "g.db"
    with EventLog(db) as log:
        GitIngest(log, GitSourceConfig(repo=str(repo.path))).run()
    out = tmp_path / "csv"
    assert gitops("report", "--since", "2000-01-01", "--format", "csv", "--out", str(out), db=db).returncode == 0
    row = next(csv_module.DictReader((out / "git_changes.csv").open()))
    assert row["message"] == """'=HYPERLINK("http://example.com/x")"""
    assert row["author"] == "'=cmd|' /C calc'!A0" and row["author_email"] == "'-x@example.com"
    res = gitops("audit", "-o", "csv", "--type", "git.commit", db=db)
    audit_row = next(csv_module.DictReader(res.stdout.splitlines()))
    assert audit_row["actor"] == "'-x@example.com"
    for f in out.iterdir():  # no cell of any section starts a formula
        for cells in csv_module.reader(f.open()):
            assert not any(c[:1] in ("=", "+", "-", "@") for c in cells), (f.name, cells)


def test_a_librarys_warning_is_a_line_of_the_services_own_log() -> None:
    """APScheduler warns (a trigger while a pass runs): with --log-format json that must be a
    JSON line too, not Python's bare fallback text."""
    import logging

    from gitops.cli.runlog import log_format_option

    @click.command()
    @log_format_option
    def service() -> None:
        logging.getLogger("apscheduler.scheduler").warning("Execution of job skipped: maximum number of running "
                                                           "instances reached (1)")
        logging.getLogger("urllib3").info("not shown: below warning")

    res = CliRunner().invoke(service, ["--log-format", "json"])
    assert res.exit_code == 0, res.output
    (line,) = res.stderr.splitlines()
    record = json.loads(line)
    assert (record["level"], record["logger"]) == ("warning", "apscheduler.scheduler")
    assert record["msg"].startswith("Execution of job skipped")
