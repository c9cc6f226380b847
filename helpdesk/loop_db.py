"""The event loop's own PostgreSQL connections, for the statement that stores a customer
message.

The ORM runs in a thread (`database_sync_to_async`), so a message stored through it is
handed to that thread and back; after an idle spell each hand-off costs 0.2-0.6 ms on this
project's machine (docs/performance.md). The common case, a new message into the open
conversation the connection follows, is one prepared statement: it runs here instead, on
an async psycopg connection of the event loop, and the thread is not involved. Nor does
the message queue behind whatever that thread is doing: it is one thread per process.

Each loop opens up to `HELPDESK_DB_LOOP_CONNECTIONS` connections, when first needed. When
none is free, or PostgreSQL fails, `write_one` raises `Unavailable` and the caller takes the
ORM thread's path: the loop never waits for a connection. That, and closing the connections
of a loop that has ended from wherever the next loop starts (the tests run one loop per
test), is why this is not psycopg_pool's AsyncConnectionPool, whose workers and whose
closing belong to the loop that opened it.

The connections are configured like Django's (its connection parameters and its adapters,
so values come back as the ORM's would) and run in autocommit, every statement its own
transaction; PostgreSQL shows them as `helpdesk event loop` (`application_name`). Django
logs none of these statements; while it logs queries (DEBUG) this path is off, as prepared
statements are (helpdesk.prepared).
"""

import asyncio
import logging
import threading
from collections.abc import Callable

import psycopg
from django.conf import settings
from django.db import connection

from helpdesk import prepared

logger = logging.getLogger(__name__)


class Unavailable(Exception):
    """The statement did not run here (no free connection, or PostgreSQL failed): take the
    ORM thread's path. When PostgreSQL failed it may still have stored what it was sent."""


class PreparingAsyncCursor(psycopg.AsyncRawCursor):
    """`helpdesk.prepared.PreparingCursor`, async."""

    async def execute(self, query, params=None, *, prepare=None, binary=None):
        if params is not None:
            query = prepared.numbered(query)
        return await super().execute(query, params, prepare=True, binary=binary)


class _LoopConnections:
    """The connections of one event loop: the idle ones, and how many are open."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.idle: list[psycopg.AsyncConnection] = []
        self.open = 0

    def close(self) -> None:
        for conn in self.idle:
            # Synchronous: the loop these belong to may have ended.
            conn.pgconn.finish()
        self.idle.clear()


_of_loop: dict[asyncio.AbstractEventLoop, _LoopConnections] = {}
_lock = threading.Lock()


def enabled() -> bool:
    """Whether the event loop may store messages itself (PostgreSQL, prepared statements
    on, connections allowed); without it every statement runs in the ORM thread."""
    return settings.HELPDESK_DB_LOOP_CONNECTIONS > 0 and prepared.prepares()


def _connections() -> _LoopConnections:
    loop = asyncio.get_running_loop()
    found = _of_loop.get(loop)
    if found is not None:
        return found
    close_ended()
    with _lock:
        return _of_loop.setdefault(loop, _LoopConnections(loop))


def close_ended() -> None:
    """Close the connections of event loops that have ended."""
    with _lock:
        for ended in [loop for loop in _of_loop if loop.is_closed()]:
            _of_loop.pop(ended).close()


def close_all() -> None:
    """Close every loop's idle connections, at shutdown; one in use is closed when it is
    given back."""
    with _lock:
        for connections in _of_loop.values():
            connections.close()
        _of_loop.clear()


async def _connect() -> psycopg.AsyncConnection:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    # Told apart from the ORM's in pg_stat_activity.
    params["application_name"] = f"{params.get('application_name') or 'helpdesk'} event loop"
    conn = await psycopg.AsyncConnection.connect(**params, autocommit=True)
    timezone_name = connection.timezone_name
    if conn.info.parameter_status("TimeZone") != timezone_name:
        await conn.execute("SELECT set_config('TimeZone', %s, false)", [timezone_name])
    return conn


async def _take(connections: _LoopConnections) -> psycopg.AsyncConnection:
    if connections.idle:
        return connections.idle.pop()
    if connections.open >= settings.HELPDESK_DB_LOOP_CONNECTIONS:
        raise Unavailable("every connection of this event loop is in use")
    connections.open += 1
    try:
        return await _connect()
    except BaseException as error:
        connections.open -= 1
        if isinstance(error, psycopg.Error):
            logger.warning("Connecting the event loop to PostgreSQL failed: %s", error)
            raise Unavailable(str(error)) from error
        raise


def _give_back(connections: _LoopConnections, conn: psycopg.AsyncConnection) -> None:
    usable = (
        _of_loop.get(connections.loop) is connections
        and not conn.closed
        and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    )
    if usable:
        connections.idle.append(conn)
        return
    connections.open = max(0, connections.open - 1)
    conn.pgconn.finish()


async def write_one(
    sql: str,
    params: list,
    *,
    on_sent: Callable[[], None] | None = None,
    while_waiting: Callable[[], None] | None = None,
) -> tuple | None:
    """Run one writing statement as its own transaction, prepared, its first row returned;
    as `helpdesk.prepared.write_one` does outside a transaction, but on this event loop.

    `on_sent` is called as soon as the statement is on its way: a task it starts takes its
    first step right after the statement is sent. `while_waiting` runs next (in the loop,
    holding it), while PostgreSQL runs the statement; it must not use the database. Raises
    `Unavailable` when the statement could not run here. Once on its way, the statement
    runs to its end even if the caller is cancelled meanwhile, as it would in the ORM
    thread.
    """
    connections = _connections()
    conn = await _take(connections)
    # A task of its own sends the statement at its first step, then waits for the row,
    # which PostgreSQL sends once the statement has committed; one pass of the loop later,
    # the caller's work runs while it waits.
    statement = asyncio.ensure_future(_run(connections, conn, sql, params))
    if on_sent is not None:
        on_sent()
    if while_waiting is not None:
        await asyncio.sleep(0)
        while_waiting()
    try:
        return await asyncio.shield(statement)
    except psycopg.IntegrityError as error:
        raise Unavailable(str(error)) from error
    except psycopg.Error as error:
        logger.warning("Storing from the event loop failed, the ORM thread stores: %s", error)
        raise Unavailable(str(error)) from error


async def _run(
    connections: _LoopConnections, conn: psycopg.AsyncConnection, sql: str, params: list
) -> tuple | None:
    try:
        cursor = PreparingAsyncCursor(conn)
        await cursor.execute(sql, params)
        return await cursor.fetchone()
    finally:
        _give_back(connections, conn)
