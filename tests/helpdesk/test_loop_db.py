"""The event loop's own PostgreSQL connections and their sender threads (helpdesk.loop_db),
and the customer message stored through them with no hand-off to the ORM thread."""

import asyncio
import threading

import pytest
from channels.db import database_sync_to_async
from django.db import connection

from helpdesk import loop_db, prepared
from helpdesk.models import Message
from tests.conftest import ON_POSTGRESQL
from tests.widget_client import WidgetClient

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not ON_POSTGRESQL, reason="the event loop stores on PostgreSQL only"),
]

BACKEND = "SELECT pg_backend_pid()"
CLIENT_ID = "0b7e3a52-8f7c-4d0e-9d43-5a8f2f6f1c11"


@database_sync_to_async
def terminate(pid: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])


@database_sync_to_async
def orm_backend() -> int:
    with connection.cursor() as cursor:
        cursor.execute(BACKEND)
        return cursor.fetchone()[0]


async def backend_gone(pid: int, within: float = 5.0) -> bool:
    # A closed connection's backend leaves pg_stat_activity a moment after it is closed.
    deadline = asyncio.get_running_loop().time() + within
    while await backend_alive(pid):
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


@database_sync_to_async
def backend_alive(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
        return cursor.fetchone()[0] == 1


async def test_a_statement_runs_on_a_connection_of_its_own_which_serves_the_next():
    (first,) = await loop_db.write_one(BACKEND, [])
    (second,) = await loop_db.write_one(BACKEND, [])
    assert first == second
    assert first != await orm_backend()


async def test_the_statement_is_sent_from_a_sender_thread_neither_the_loops_nor_the_orms(
    monkeypatch,
):
    senders = []
    run = loop_db._Senders.run

    def remembered_run(self, *args):
        senders.append(threading.current_thread())
        return run(self, *args)

    monkeypatch.setattr(loop_db._Senders, "run", remembered_run)
    orm_thread = await database_sync_to_async(threading.current_thread)()
    await loop_db.write_one(BACKEND, [])
    assert senders[0] not in (threading.current_thread(), orm_thread)
    assert senders[0].name.startswith("helpdesk-db")


async def test_the_work_given_runs_while_postgresql_runs_the_statement():
    clock = asyncio.get_running_loop().time
    started = clock()
    seen = []
    row = await loop_db.write_one(
        "SELECT pg_sleep(0.3)::text, %s::text",
        ["stored"],
        while_waiting=lambda: seen.append(clock()),
    )
    assert row == ("", "stored")
    assert len(seen) == 1
    assert seen[0] - started < 0.2 <= clock() - seen[0]


async def test_the_work_given_waits_until_the_sender_thread_has_sent_the_statement(
    monkeypatch,
):
    # Unless the loop waits for it, the thread gets the interpreter only once the work
    # given is done, and PostgreSQL starts on the statement only then.
    monkeypatch.setattr(loop_db, "HAND_OVER_SECONDS", 5.0)
    await loop_db.write_one(BACKEND, [])  # a connection to take, none to make
    sent = []
    execute = prepared.PreparingCursor.execute

    def remembered_execute(self, *args, **kwargs):
        sent.append(threading.current_thread())
        return execute(self, *args, **kwargs)

    monkeypatch.setattr(prepared.PreparingCursor, "execute", remembered_execute)
    seen = []
    await loop_db.write_one(BACKEND, [], while_waiting=lambda: seen.append(len(sent)))
    assert seen == [1]
    assert sent[0].name.startswith("helpdesk-db")


async def test_with_every_connection_in_use_the_caller_is_told_at_once(settings):
    settings.HELPDESK_DB_LOOP_CONNECTIONS = 1
    sleeping = asyncio.ensure_future(loop_db.write_one("SELECT pg_sleep(0.5)", []))
    await asyncio.sleep(0.1)
    started = asyncio.get_running_loop().time()
    with pytest.raises(loop_db.Unavailable):
        await loop_db.write_one(BACKEND, [])
    assert asyncio.get_running_loop().time() - started < 0.2
    assert await sleeping == ("",)


async def test_a_broken_connection_is_reported_then_replaced():
    (pid,) = await loop_db.write_one(BACKEND, [])
    await terminate(pid)
    with pytest.raises(loop_db.Unavailable):
        await loop_db.write_one(BACKEND, [])
    (replacement,) = await loop_db.write_one(BACKEND, [])
    assert replacement != pid


async def test_a_failed_statement_leaves_its_connection_usable():
    (pid,) = await loop_db.write_one(BACKEND, [])
    with pytest.raises(loop_db.Unavailable):
        await loop_db.write_one("SELECT 1 / 0", [])
    assert await loop_db.write_one(BACKEND, []) == (pid,)


async def test_closing_them_all_closes_the_idle_connections():
    (pid,) = await loop_db.write_one(BACKEND, [])
    assert await backend_alive(pid)
    loop_db.close_all()
    assert await backend_gone(pid)
    (replacement,) = await loop_db.write_one(BACKEND, [])
    assert replacement != pid


# -- the customer's message ---------------------------------------------------------------


@database_sync_to_async
def numbered() -> list[tuple[int, str]]:
    return list(Message.objects.order_by("seq").values_list("seq", "author"))


@database_sync_to_async
def terminate_loop_connections() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'helpdesk event loop'"
        )
        return len(cursor.fetchall())


async def opened_with_an_answer(site) -> WidgetClient:
    """A conversation opened and answered once: its site's settings are now cached."""
    client = await WidgetClient.opened(site.key)
    await client.say("How long does shipping take?")
    await client.answer()
    while not await client.communicator.receive_nothing(timeout=0.5):
        await client.receive()
    return client


class BusyOrmThread:
    """Holds the thread that runs the ORM (database_sync_to_async) until released."""

    def __init__(self) -> None:
        self.started = threading.Event()
        self.released = threading.Event()

    def _hold(self) -> None:
        self.started.set()
        self.released.wait(timeout=10)

    async def __aenter__(self) -> "BusyOrmThread":
        self.holding = asyncio.ensure_future(database_sync_to_async(self._hold)())
        await asyncio.to_thread(self.started.wait, 5)
        return self

    async def __aexit__(self, *exc) -> None:
        self.released.set()
        await self.holding


async def test_a_follow_up_is_stored_and_answered_while_the_orm_thread_is_busy(
    site, fake_llm, settings
):
    settings.HELPDESK_SITE_CACHE_SECONDS = 60
    client = await opened_with_an_answer(site)
    async with BusyOrmThread():
        ack = await client.say("And what does shipping cost?")
        frames = await client.receive_until("delta", timeout=2)
    assert (ack["type"], ack["seq"], ack["duplicate"]) == ("ack", 3, False)
    assert frames[-1]["text"]
    _deltas, done = await client.answer()
    assert done["state"] == "complete"
    stored = await database_sync_to_async(
        lambda: list(Message.objects.order_by("seq").values_list("seq", "author", "text"))
    )()
    assert stored[2] == (3, "visitor", "And what does shipping cost?")
    assert stored[3][:2] == (4, "bot")
    await client.close()


async def test_a_rule_that_fires_on_a_message_stored_on_the_loop_hands_over_with_no_gap(
    site, settings
):
    settings.HELPDESK_SITE_CACHE_SECONDS = 60
    client = await opened_with_an_answer(site)
    await client.send({"type": "message", "id": CLIENT_ID, "text": "I want a human"})
    frames = await client.receive_until("status")
    while not await client.communicator.receive_nothing(timeout=0.5):
        frames.append(await client.receive())
    await client.close()
    types = [frame["type"] for frame in frames]
    assert types.index("ack") < types.index("status")
    notice = next(frame["message"] for frame in frames if frame["type"] == "message")
    assert (notice["seq"], notice["author"]) == (4, "system")
    # The bot's answer reserved with the message was dropped: the notice took its number.
    assert await numbered() == [(1, "visitor"), (2, "bot"), (3, "visitor"), (4, "system")]


async def test_a_resend_of_a_message_stored_on_the_loop_is_acked_as_a_duplicate(
    site, fake_llm, settings
):
    settings.HELPDESK_SITE_CACHE_SECONDS = 60
    client = await opened_with_an_answer(site)
    first = await client.say("And what does shipping cost?", client_id=CLIENT_ID)
    await client.answer()
    again = await client.say("And what does shipping cost?", client_id=CLIENT_ID)
    await client.close()
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    assert again["message_id"] == first["message_id"]
    assert await numbered() == [(1, "visitor"), (2, "bot"), (3, "visitor"), (4, "bot")]


async def test_a_message_is_stored_through_the_orm_thread_when_the_loops_connection_broke(
    site, fake_llm, settings
):
    settings.HELPDESK_SITE_CACHE_SECONDS = 60
    client = await opened_with_an_answer(site)
    await client.say("And what does shipping cost?")
    await client.answer()
    assert await terminate_loop_connections() >= 1
    ack = await client.say("Do you ship abroad?")
    _deltas, done = await client.answer()
    await client.close()
    assert (ack["seq"], ack["duplicate"], done["state"]) == (5, False, "complete")
    assert await numbered() == [
        (1, "visitor"),
        (2, "bot"),
        (3, "visitor"),
        (4, "bot"),
        (5, "visitor"),
        (6, "bot"),
    ]
