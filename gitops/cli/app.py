"""The ``gitops`` command group, its shared options, and the one place errors become exits.

Commands only parse, call the library and render. A ``GitOpsError`` raised anywhere below
becomes one line on stderr (``error: …``) and its exit code; never a traceback.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from gitops.cli.commands import COMMANDS
from gitops.model.errors import GitOpsError, StoreError, UsageError

if TYPE_CHECKING:  # imported where used: a command pays only for what it needs (``gitops --help``: none)
    from gitops.events.redaction import Redaction
    from gitops.service.config import Config
    from gitops.store import EventLog

__all__ = ["DEFAULT_DB", "Context", "GitOpsGroup", "cli", "hoist_global_options", "main", "pass_ctx"]

F = TypeVar("F", bound=Callable[..., Any])
DEFAULT_DB = Path("gitops.db")  # in the working directory, when neither --db, GITOPS_DB nor the config name one


def postgresql_keys(url: str) -> Path:
    """Where a PostgreSQL log's keys are kept unless integrity.key_dir says: beside no file, so
    in the user's configuration folder, one per server and database
    (``~/.config/gitops/HOST_PORT_DB.keys``); never in the working directory."""
    from gitops.store.locate import where

    name = "".join(c if c.isalnum() or c in ".-" else "_" for c in where(url).removeprefix("postgresql://"))
    home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return home / "gitops" / name


@dataclass
class Context:
    db_path: Path  # the SQLite file; for a PostgreSQL log, where its keys are kept by default (``db_url``)
    loaded_config: Config | None = None  # the --config file, read up front (it may name the log); None: no file
    read_only: bool = False  # --read-only: open the log read-only (mode=ro), write nothing
    immutable: bool = False  # --immutable: and take no locks (immutable=1): a file on read-only media
    db_url: str | None = None  # --db postgresql://...: the log is on PostgreSQL (gitops.store.postgres)

    @property
    def config(self) -> Config:
        """The configuration: the file's, or the defaults, made when first asked for: the
        settings' models are most of a command's start (``gitops log`` asks for none)."""
        if self.loaded_config is None:
            from gitops.service.config import Config

            self.loaded_config = Config()
        return self.loaded_config

    @property
    def db(self) -> str | Path:
        """Where the log is: the PostgreSQL URL, or the SQLite file."""
        return self.db_url or self.db_path

    @property
    def where(self) -> str:
        """The log's location as messages name it (never a password)."""
        from gitops.store.locate import where

        return where(self.db)

    @cached_property
    def redaction(self) -> Redaction:
        """What the log's writers digest (the rules the log recorded, and the config's, which
        it records), under the log's digest key (made the first time). Worked out once per
        command: it opens the log and reads the key."""
        from gitops.events.redaction import Redaction
        from gitops.query.integrity import KeyStore, check_digest_key, log_redaction_rules

        key = KeyStore(self.config.integrity.key_dir, db=self.db_path).digest_key(create=not self.read_only)
        rules = tuple(self.config.redact)
        # a log not made yet is made here only to record rules: a command that refuses its
        # settings then leaves no database behind unless the config redacts something
        if not self.read_only and (self.db_url or self.db_path.exists() or rules):
            with self.open_log(create=True) as log:
                if self.db_url and key is not None:  # a shared log: every writer keys alike
                    check_digest_key(log, key)
                rules = log_redaction_rules(log, rules)
        return Redaction(rules, key)

    def open_log(self, *, create: bool = False) -> EventLog:
        from gitops.store.locate import open_log

        return open_log(self.db, create=create, read_only=self.read_only, immutable=self.immutable)

    @contextmanager
    def accessed(self, command: str, **arguments: object) -> Iterator[None]:
        """Record in the log that ``command`` read it (an ``operator`` event), with its
        outcome: succeeded, or failed when the body raises. A log that cannot be written
        (a read-only copy) is still read; the user is told the access went unrecorded.
        Input the command refused (a ``UsageError``: an unknown commit, a time outside the
        log) is not recorded: nothing a user types reaches the chained log unless valid."""
        try:
            yield
        except (StoreError, UsageError):
            raise  # no log to record it in (missing, not ours, locked), or input that was not valid
        except SystemExit as e:  # a command that ends with an exit code of its own (verify: tampered)
            self.record(command, arguments, "failed" if e.code else "succeeded", f"exit code {e.code}")
            raise
        except BaseException as e:
            self.record(command, arguments, "failed", str(e).splitlines()[0] if str(e) else type(e).__name__)
            raise
        self.record(command, arguments, "succeeded", "")

    def record(self, command: str, arguments: Mapping[str, object], outcome: str, detail: str) -> None:
        from gitops.query.access import record_access

        try:
            with self.open_log() as log:
                record_access(log, command, arguments, outcome=outcome, detail=detail)
        except StoreError as e:
            click.echo(f"warning: this {command} was not recorded in the log: {e}", err=True)


_GLOBAL_VALUES = ("--db", "--config")  # the group's options, which may also follow the subcommand
_GLOBAL_FLAGS = ("--read-only", "--immutable")


def hoist_global_options(args: list[str]) -> list[str]:
    """``gitops status --db x.db`` as ``gitops --db x.db status``: kubectl takes its global
    flags anywhere, and so does gitops. Nothing after ``--`` moves; a subcommand's option
    value that is itself ``--db`` would (none takes one that starts with ``--``)."""
    moved: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest.extend(args[i:])
            break
        if a in _GLOBAL_VALUES and i + 1 < len(args):
            moved += [a, args[i + 1]]
            i += 2
            continue
        if a in _GLOBAL_FLAGS or a.split("=", 1)[0] in _GLOBAL_VALUES:
            moved.append(a)
        else:
            rest.append(a)
        i += 1
    return moved + rest


class GitOpsGroup(click.Group):
    """A click group that turns library errors into one line and an exit code, and imports
    each command's module when the command is asked for (``gitops.cli.commands``)."""

    lazy: Mapping[str, tuple[tuple[str, ...], str]] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            for module in self.lazy[cmd_name][0]:
                importlib.import_module(f"gitops.cli.{module}")  # its decorators register it on ``cli``
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The list of commands, from their summaries: no command module is imported for it."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:  # a command not imported is shortened as click shortens one: through a stand-in
            command = self.commands.get(name) or click.Command(name, help=self.lazy[name][1])
            rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        return super().parse_args(ctx, hoist_global_options(args) if ctx.parent is None else args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GitOpsError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except click.UsageError as e:  # a bad option or value: one line too, and where to look
            where = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
            click.echo(f"error: {e.format_message()}{where}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            sys.exit(0)


pass_ctx = click.make_pass_decorator(Context)


@click.group(cls=GitOpsGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", "db", envvar="GITOPS_DB", default=None, metavar="FILE|URL",
              help="The event log: a SQLite file, or a PostgreSQL URL postgresql://USER@HOST:PORT/DB (env GITOPS_DB; "
                   "default ./gitops.db).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              envvar="GITOPS_CONFIG", default=None, help="YAML configuration file (env GITOPS_CONFIG).")
@click.option("--read-only", is_flag=True, envvar="GITOPS_READ_ONLY",
              help="Open the log read-only and write nothing to it, not even the record of this command (a copy "
                   "kept as evidence; automatic when the file cannot be written).")
@click.option("--immutable", is_flag=True,
              help="With --read-only: also take no locks (SQLite immutable=1), for a file on read-only media.")
@click.version_option(package_name="gitops")
@click.pass_context
def cli(ctx: click.Context, db: str | None, config_file: Path | None, read_only: bool, immutable: bool) -> None:
    """Event-sourced GitOps: who changed what, when, and what the cluster looked like then."""
    config = None
    if config_file is not None:
        from gitops.service.config import load_config

        config = load_config(config_file)  # errors become one line in GitOpsGroup.invoke, like all others
    location = db or (config.db if config is not None else None) or str(DEFAULT_DB)
    url = location if location.startswith(("postgresql://", "postgres://")) else None
    ctx.obj = Context(db_path=postgresql_keys(url) if url else Path(location), loaded_config=config,
                      read_only=read_only or immutable, immutable=immutable, db_url=url)


cli.lazy = COMMANDS


def main() -> None:
    cli(prog_name="gitops")
