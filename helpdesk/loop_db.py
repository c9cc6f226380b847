"""Connections of their own, and threads of their own to send on them, for the statement that
stores a customer message from the event loop.

The ORM runs in one thread per process (`database_sync_to_async`): a message stored
through it queues behind whatever that thread is doing, and asgiref's hand-off there and
back costs 0.2-0.6 ms after an idle spell on this project's machine (docs/performance.md).
The common case, a new message into the open conversation the connection follows, is one
prepared statement, and the event loop hands it to a sender thread of this module instead,
with nothing of asgiref's: a plain thread pool, one connection per statement in flight.

Why not an async connection on the loop itself (stop 19 did that): the kernel puts the
PostgreSQL backend that a write wakes on the writer's CPU, expecting the writer to wait
next. The event loop does not wait, it makes the turn's lookups meanwhile, so the backend
preempted it on three turns in four: 1.7 ms until the loop ran again against 0.5 ms
(docs/performance.md, stop 20). A sender thread does wait, so the backend runs there and
the loop goes on beside it.

The loop does wait for one thing: the thread taking the statement. Until the thread has
sent it, it needs the interpreter, which the loop would hold through the turn's lookups; a
thread waiting for the interpreter gets it after the switch interval (5 ms) or when the
loop next blocks, and in the meantime PostgreSQL has nothing to run. Waiting until the
thread has the statement, the loop lets the thread send it and PostgreSQL runs beside the
lookups: the server's part of the way to the first token is 1.7 ms shorter
(docs/performance.md, stop 21).

Up to `HELPDESK_DB_LOOP_CONNECTIONS` statements are in flight, each on a connection opened
when first needed and kept. When all are in use, or PostgreSQL fails, `write_one` raises
`Unavailable` and the caller takes the ORM thread's path: the loop never waits for a
connection.

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
from concurrent.futures import ThreadPoolExecutor

import psycopg
from django.conf import settings
from django.db import connection

from helpdesk import prepared

logger = logging.getLogger(__name__)

# The longest the event loop waits for a sender thread to take its statement (`write_one`).
HAND_OVER_SECONDS = 0.002


class Unavailable(Exception):
    """The statement did not run here (no free connection, or PostgreSQL failed): take the
    ORM thread's path. When PostgreSQL failed it may still have stored what it was sent."""


class _Senders:
    """The sender threads and their connections: the idle ones, and how many statements
    are in flight."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="helpdesk-db")
        self.idle: list[psycopg.Connection] = []
        self.in_flight = 0
        self.lock = threading.Lock()

    def take(self) -> bool:
        """A place for one more statement in flight, if there is one."""
        with self.lock:
            if self.in_flight >= self.size:
                return False
            self.in_flight += 1
            return True

    def give_up(self) -> None:
        with self.lock:
            self.in_flight -= 1

    def run(self, sql: str, params: list, taken: threading.Event) -> tuple | None:
        """In a sender thread: the statement on an idle connection, or a new one; `taken`
        set as the thread starts (it keeps the interpreter until it waits on the socket:
        the statement sent, or a connection being made)."""
        taken.set()
        conn = None
        try:
            with self.lock:
                conn = self.idle.pop() if self.idle else None
            if conn is None:
                conn = _connect()
            cursor = prepared.PreparingCursor(conn)
            cursor.execute(sql, params)
            return cursor.fetchone()
        finally:
            self._give_back(conn)

    def _give_back(self, conn: psycopg.Connection | None) -> None:
        usable = (
            conn is not None
            and not conn.closed
            and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        )
        with self.lock:
            self.in_flight -= 1
            if usable and self is _current_senders:
                self.idle.append(conn)
                return
        if conn is not None:
            conn.close()

    def close(self) -> None:
        with self.lock:
            idle, self.idle = self.idle, []
        for conn in idle:
            conn.close()
        self.executor.shutdown(wait=False)


_current_senders: _Senders | None = None
_senders_lock = threading.Lock()


def enabled() -> bool:
    """Whether the event loop may store messages this way (PostgreSQL, prepared statements
    on, connections allowed); without it every statement runs in the ORM thread."""
    return settings.HELPDESK_DB_LOOP_CONNECTIONS > 0 and prepared.prepares()


def _current() -> _Senders:
    """The senders, new when the setting changed (the tests change it)."""
    global _current_senders
    size = settings.HELPDESK_DB_LOOP_CONNECTIONS
    current = _current_senders
    if current is not None and current.size == size:
        return current
    with _senders_lock:
        replaced = _current_senders
        if replaced is not None and replaced.size == size:
            return replaced
        _current_senders = current = _Senders(size)
    if replaced is not None:
        replaced.close()
    return current


def close_all() -> None:
    """Close the idle connections, at shutdown; one in use is closed when it is given
    back."""
    global _current_senders
    with _senders_lock:
        current, _current_senders = _current_senders, None
    if current is not None:
        current.close()


def _connect() -> psycopg.Connection:
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    # Told apart from the ORM's in pg_stat_activity.
    params["application_name"] = f"{params.get('application_name') or 'helpdesk'} event loop"
    try:
        conn = psycopg.connect(**params, autocommit=True)
    except psycopg.Error as error:
        logger.warning("Connecting the event loop to PostgreSQL failed: %s", error)
        raise
    timezone_name = connection.timezone_name
    if conn.info.parameter_status("TimeZone") != timezone_name:
        conn.execute("SELECT set_config('TimeZone', %s, false)", [timezone_name])
    return conn


async def write_one(
    sql: str, params: list, *, while_waiting: Callable[[], None] | None = None
) -> tuple | None:
    """Run one writing statement as its own transaction, prepared, its first row returned;
    as `helpdesk.prepared.write_one` does outside a transaction, but without the ORM's
    thread.

    `while_waiting` runs in the loop, holding it, once a sender thread has taken the
    statement (`HAND_OVER_SECONDS` at most), while the thread sends it and PostgreSQL runs
    it; it must not use the database. Raises `Unavailable` when the statement could not
    run here. Once handed over, the statement runs to its end even if the caller is
    cancelled meanwhile, as it would in the ORM thread.
    """
    senders = _current()
    if not senders.take():
        raise Unavailable("every connection of the event loop is in use")
    taken = threading.Event()
    try:
        sent = senders.executor.submit(senders.run, sql, params, taken)
    except RuntimeError as error:  # closed meanwhile
        senders.give_up()
        raise Unavailable(str(error)) from error
    # Blocks the loop, without the interpreter, while the thread sends (see the module's
    # docstring).
    taken.wait(HAND_OVER_SECONDS)
    statement = asyncio.wrap_future(sent)
    if while_waiting is not None:
        while_waiting()
    try:
        return await asyncio.shield(statement)
    except psycopg.IntegrityError as error:
        raise Unavailable(str(error)) from error
    except psycopg.Error as error:
        logger.warning("Storing from the event loop failed, the ORM thread stores: %s", error)
        raise Unavailable(str(error)) from error
