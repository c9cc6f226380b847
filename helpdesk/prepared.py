"""Cursors for the statements on the path of every customer message, prepared on PostgreSQL.

Django binds parameters on the client and never prepares, so PostgreSQL parses and plans
each statement anew: 0.2-0.5 ms apiece on this project's machine, for statements that run
in 0.05 ms. These cursors bind on the server with psycopg's `prepare=True`, so a pooled
connection plans each statement once. Elsewhere (SQLite, or
`HELPDESK_DB_PREPARED_STATEMENTS=0` behind a pooler that cannot keep prepared statements)
they are Django's usual cursors.

The cursor is still Django's wrapper: errors become `django.db` errors, broken
transactions are refused, and execute wrappers apply. While Django logs queries (DEBUG, or
a test capturing them) the statements run unprepared: psycopg keeps no text of a prepared
execution for the log to show.

A statement that stands alone can also leave the thread free while PostgreSQL runs it
(`write_one(while_waiting=...)`, psycopg's pipeline mode), and statements that make one
transaction can go in one round trip (`write_together`).
"""

import itertools
import re
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from functools import lru_cache

import psycopg
from django.conf import settings
from django.db import connection, transaction

_PLACEHOLDER = re.compile("%[%s]")


@lru_cache(maxsize=256)
def numbered(sql: str) -> str:
    """`sql` with Django's `%s` placeholders as PostgreSQL's `$1, $2, ...` and `%%` as `%`."""
    count = itertools.count(1)
    return _PLACEHOLDER.sub(lambda found: "%" if found[0] == "%%" else f"${next(count)}", sql)


class PreparingCursor(psycopg.RawCursor):
    """Binds on the server and prepares every statement it runs.

    A raw cursor, given each statement numbered once: psycopg's own cursor parses the
    placeholders again on every execution of a statement with more than 50 parameters
    (the one that stores a customer message has 63), 0.07 ms a time.
    """

    def execute(self, query, params=None, *, prepare=None, binary=None):
        if params is not None:
            query = numbered(query)
        return super().execute(query, params, prepare=True, binary=binary)


def prepares() -> bool:
    return (
        connection.vendor == "postgresql"
        and settings.HELPDESK_DB_PREPARED_STATEMENTS
        and not connection.queries_logged
    )


@contextmanager
def prepared_cursor() -> Iterator:
    if not prepares():
        with connection.cursor() as cursor:
            yield cursor
        return
    connection.ensure_connection()
    with connection.make_cursor(PreparingCursor(connection.connection)) as cursor:
        yield cursor


def fetch_all(sql: str, params: list) -> list[tuple]:
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def fetch_one(sql: str, params: list) -> tuple | None:
    with prepared_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()


def write_one(
    sql: str,
    params: list,
    *,
    savepoint: bool = False,
    while_waiting: Callable[[], None] | None = None,
) -> tuple | None:
    """Run one writing statement, its first row returned.

    On its own the statement is its own transaction (no BEGIN and COMMIT round trips).
    Inside a caller's transaction it is part of it, and a failure marks that transaction
    for rollback, as the ORM does; `savepoint=True` keeps the caller's transaction usable.

    `while_waiting` runs while PostgreSQL runs the statement, where the statement stands
    alone and is prepared; elsewhere it does not run. It must not use the database, and
    should it raise, the statement has still run.
    """
    in_caller_transaction = connection.in_atomic_block
    if while_waiting is not None and _pipelines():
        return _write_pipelined([(sql, params)], while_waiting)
    with transaction.atomic(savepoint=savepoint) if in_caller_transaction else nullcontext():
        return fetch_one(sql, params)


def write_together(
    statements: list[tuple[str, list]],
    *,
    savepoint: bool = False,
    while_waiting: Callable[[], None] | None = None,
) -> tuple | None:
    """Run writing statements (sql, params) as one transaction, the last one's first row
    returned. Each statement sees what was committed before it started, as in any
    transaction at PostgreSQL's default isolation.

    Where they stand alone and are prepared, they go in one round trip with no BEGIN and
    COMMIT: in psycopg's pipeline mode, everything sent before the Sync is one implicit
    transaction. Elsewhere they run in `transaction.atomic` (with `savepoint` inside a
    caller's transaction, as in `write_one`). `while_waiting` is as in `write_one`.
    """
    if _pipelines():
        return _write_pipelined(statements, while_waiting)
    with transaction.atomic(savepoint=savepoint), prepared_cursor() as cursor:
        for sql, params in statements:
            cursor.execute(sql, params)
        return cursor.fetchone()


def _pipelines() -> bool:
    return not connection.in_atomic_block and prepares() and psycopg.Pipeline.is_supported()


def _write_pipelined(
    statements: list[tuple[str, list]], while_waiting: Callable[[], None] | None
) -> tuple | None:
    # In pipeline mode the statements are sent without waiting for their results; leaving
    # the pipeline sends the Sync that commits them and reads the rows, one round trip in
    # all. A cursor each: a cursor's results are those of its last statement.
    with connection.wrap_database_errors, ExitStack() as cursors:
        opened = [cursors.enter_context(prepared_cursor()) for _statement in statements]
        with connection.connection.pipeline():
            for cursor, (sql, params) in zip(opened, statements, strict=True):
                cursor.execute(sql, params)
            if while_waiting is not None:
                while_waiting()
        return opened[-1].fetchone()
