"""The connection layer of the PostgreSQL adapter (``gitops.store.postgres``), psycopg 3:
connections from one pool per server and process (``psycopg_pool``), in autocommit mode,
and cursors that take the store's ``?`` statements (``gitops.store.dbapi.Cursor``), a
batch of new rows loaded with COPY. Errors become the store's, naming the server by host,
port and database only: a connection string is never printed whole."""

from __future__ import annotations

import atexit
import functools
import re
import threading
from collections.abc import Generator, Iterable, Iterator
from typing import Any, cast

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

from gitops.model.errors import DatabaseLockedError, StoreError

__all__ = ["Connection", "Cursor", "NoWal", "Rows", "where"]


def where(dsn: str) -> str:
    """The server and database a DSN names, for messages: never its password."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "a PostgreSQL server (the connection string is not valid)"
    host, port, db = parts.get("host", "localhost"), parts.get("port", "5432"), parts.get("dbname", "")
    return f"postgresql://{host}:{port}/{db}"


@functools.lru_cache(maxsize=1024)
def _pg(sql: str) -> str:
    """A statement with ``?`` placeholders (the store's) in psycopg's ``%s`` style."""
    return sql.replace("%", "%%").replace("?", "%s")


_PLAIN_INSERT = re.compile(r"INSERT INTO (?P<table>\w+) \((?P<columns>[\w, ]+)\) VALUES \(\?(?:, \?)*\)\Z")
"""An insert of new rows with no ON CONFLICT: what COPY does the same, in one pass."""


def _error(e: psycopg.Error, place: str) -> StoreError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    if isinstance(e, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled):
        return DatabaseLockedError(f"{place}: the log stayed locked by another writer ({first})")
    if isinstance(e, psycopg.OperationalError):
        return StoreError(f"{place}: cannot reach the PostgreSQL server: {first}")
    return StoreError(f"{place}: {first}")


class Cursor:
    """A psycopg cursor that takes the store's ``?`` statements (``gitops.store.dbapi.Cursor``)."""

    postgresql = True  # what the few statements written per engine (gitops.store.current) look for

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._cur = conn.raw.cursor()

    @property
    def connection(self) -> Connection:
        return self._conn

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        if sql == "BEGIN":  # a read: one snapshot for all its statements, as SQLite's read transaction is
            sql = "BEGIN ISOLATION LEVEL REPEATABLE READ"
        try:
            self._cur.execute(cast(Any, _pg(sql)), list(parameters))
        except psycopg.Error as e:
            raise _error(e, self._conn.place) from e
        return self

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> Cursor:
        rows = [list(p) for p in seq_of_parameters]
        plain = _PLAIN_INSERT.match(sql)
        try:
            if plain and len(rows) > 1:  # a batch of new rows (the events): COPY, PostgreSQL's bulk load
                with self._cur.copy(cast(Any, f"COPY {plain['table']} ({plain['columns']}) FROM STDIN")) as copy:
                    for row in rows:
                        copy.write_row(row)
            else:
                self._cur.executemany(cast(Any, _pg(sql)), rows)
        except psycopg.Error as e:
            raise _error(e, self._conn.place) from e
        return self

    def script(self, sql: str) -> None:
        """Statements with no parameters, several at once (the schema)."""
        try:
            self._cur.execute(cast(Any, sql))
        except psycopg.Error as e:
            raise _error(e, self._conn.place) from e

    def stream(self, sql: str, parameters: Any = (), /) -> Generator[Any, None, None]:
        """The rows of ``sql`` one at a time from the server (libpq's single-row mode), not
        loaded whole: for a pass over every event. Nothing else runs on the connection
        until the rows are consumed."""
        try:
            yield from self._cur.stream(cast(Any, _pg(sql)), list(parameters))
        except psycopg.Error as e:
            raise _error(e, self._conn.place) from e

    def fetchone(self) -> Any:
        return self._cur.fetchone()

    def fetchall(self) -> list[Any]:
        return self._cur.fetchall()

    def fetchmany(self, size: int = 1, /) -> list[Any]:
        return self._cur.fetchmany(size)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._cur)

    def close(self) -> None:
        self._cur.close()

    def dicts(self) -> Iterator[dict[str, Any]]:
        names = [d.name for d in self._cur.description or ()]
        for row in self._cur:
            yield dict(zip(names, row, strict=True))


class Connection:
    """A connection of the process's pool for this server (``psycopg_pool``), in autocommit
    mode, its transactions opened and closed explicitly as the SQLite adapter's are
    (``BEGIN`` ... ``COMMIT``). A process opens a log per thread and per short task (a
    refresh, a notification); the pool keeps those from each paying a new connection."""

    def __init__(self, dsn: str, place: str, timeout: float, *, read_only: bool) -> None:
        self.place = place
        self._pool = _pool(dsn, place, timeout)
        try:
            self.raw = self._pool.getconn(timeout=timeout)
        except (psycopg.Error, PoolTimeout) as e:
            raise _error(e, place) if isinstance(e, psycopg.Error) else \
                StoreError(f"{place}: no connection to the PostgreSQL server within {timeout:.0f}s ({e})") from e
        try:  # set on every checkout: a pooled connection keeps what its last user set
            self.execute(f"SET lock_timeout = '{int(timeout * 1000)}ms'")
            self.execute(f"SET default_transaction_read_only = {'on' if read_only else 'off'}")
        except BaseException:
            self.close()
            raise

    @property
    def in_transaction(self) -> bool:
        return self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def cursor(self) -> Cursor:
        return Cursor(self)

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor:
        return self.cursor().execute(sql, parameters)

    def close(self) -> None:
        self._pool.putconn(self.raw)  # rolled back first if a transaction was left open


_pools: dict[str, ConnectionPool] = {}
_pools_lock = threading.Lock()


def _pool(dsn: str, place: str, timeout: float) -> ConnectionPool:
    with _pools_lock:
        pool = _pools.get(dsn)
        if pool is None:
            try:  # one plain connection first: a server that is down or refuses us says so at once, in one line
                psycopg.connect(dsn, connect_timeout=max(1, int(timeout))).close()
            except psycopg.Error as e:
                raise _error(e, place) from e
            pool = ConnectionPool(dsn, min_size=1, max_size=32, kwargs={"autocommit": True}, open=False,
                                  name=place, timeout=timeout)
            try:
                pool.open(wait=True, timeout=timeout)
            except PoolTimeout:
                pool.close()
                raise StoreError(f"{place}: cannot reach the PostgreSQL server within {timeout:.0f}s") from None
            _pools[dsn] = pool
        return pool


@atexit.register
def _close_pools() -> None:
    with _pools_lock:
        for pool in _pools.values():
            pool.close()
        _pools.clear()


class Rows:
    """``query(sql, params)``, rows as dicts: the one call of sqlite-utils the log's reads make."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def query(self, sql: str, params: Any = ()) -> Iterator[dict[str, Any]]:
        return self._conn.execute(sql, params).dicts()


class NoWal:
    """PostgreSQL checkpoints its own write-ahead log: nothing to do after an append."""

    def wrote(self, nbytes: int) -> None:
        pass

    def idle(self, timeout: float | None = None) -> bool:
        return True

    def close(self) -> None:
        pass
