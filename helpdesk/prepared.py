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
"""

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import psycopg
from django.conf import settings
from django.db import connection, transaction


class PreparingCursor(psycopg.Cursor):
    """Binds on the server and prepares every statement it runs."""

    def execute(self, query, params=None, *, prepare=None, binary=None):
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


def write_one(sql: str, params: list, *, savepoint: bool = False) -> tuple | None:
    """Run one writing statement, its first row returned.

    On its own the statement is its own transaction (no BEGIN and COMMIT round trips).
    Inside a caller's transaction it is part of it, and a failure marks that transaction
    for rollback, as the ORM does; `savepoint=True` keeps the caller's transaction usable.
    """
    in_caller_transaction = connection.in_atomic_block
    with transaction.atomic(savepoint=savepoint) if in_caller_transaction else nullcontext():
        return fetch_one(sql, params)
