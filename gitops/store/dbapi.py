"""The part of DB-API 2.0 the store's SQL helpers use (``gitops.store.integrity``,
``tree``, ``current``, ``changes`` and the log's inserts): a cursor whose ``execute``
takes ``?`` placeholders. ``sqlite3.Cursor`` is one; the PostgreSQL adapter gives one over
psycopg (``gitops.store.postgres``), so the same statements write both. The statements
these helpers run are written in the SQL both engines accept (an upsert is ``ON CONFLICT
... DO UPDATE``, a new row's id comes from ``RETURNING``); what differs is in each
adapter."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

__all__ = ["Connection", "Cursor"]


class Cursor(Protocol):
    def execute(self, sql: str, parameters: Any = (), /) -> Any: ...

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def fetchmany(self, size: int = 1, /) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...

    @property
    def connection(self) -> Any: ...


class Connection(Protocol):
    def execute(self, sql: str, parameters: Any = (), /) -> Any: ...

    def cursor(self) -> Any: ...
