"""The widget websocket end to end: real consumer, real channel layer, real database."""

import asyncio
import json
import threading
import uuid
from collections.abc import Callable

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings

from helpdesk.asgi import application
from helpdesk.models import Conversation, Message, Visitor
from tests.conftest import ON_POSTGRESQL, make_site
from tests.widget_client import WidgetClient

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def stored_messages(**filters) -> list[tuple[str, str, str]]:
    return list(
        Message.objects.filter(**filters).order_by("seq").values_list("author", "text", "state")
    )


async def test_handshake_is_refused_for_an_unknown_site_key(site):
    client = WidgetClient("pk_does-not-exist")
    assert not await client.connect()


async def test_handshake_is_refused_for_an_origin_the_site_does_not_allow(site):
    assert not await WidgetClient(site.key, origin="https://evil.example").connect()
    assert not await WidgetClient(site.key, origin="").connect()


async def test_handshake_is_refused_for_an_inactive_site(site):
    site.is_active = False
    await database_sync_to_async(site.save)()
    assert not await WidgetClient(site.key).connect()


async def test_the_frame_on_helpdesks_own_origin_may_connect(site):
    client = WidgetClient(site.key, origin="http://testserver")
    assert await client.connect()
    await client.close()


async def test_hello_issues_a_token_and_starts_with_no_conversation(site):
    client = WidgetClient(site.key)
    assert await client.connect()
    ready, replayed = await client.hello()
    assert ready["token"]
    assert ready["conversation"] is None
    assert ready["greeting"] == site.greeting
    assert replayed == []
    await client.close()


async def test_a_message_is_stored_before_it_is_acked(site):
    client = await WidgetClient.opened(site.key)
    client_id = str(uuid.uuid4())
    await client.send({"type": "message", "id": client_id, "text": "How long does shipping take?"})
    ack = (await client.receive_until("ack"))[-1]
    # The ack names the stored row, and the row is there the moment the ack arrives.
    row = await database_sync_to_async(Message.objects.get)(pk=ack["message_id"])
    assert ack == {
        "type": "ack",
        "id": client_id,
        "message_id": row.pk,
        "conversation": row.conversation_id,
        "seq": 1,
        "duplicate": False,
    }
    assert (row.author, row.text, str(row.client_id)) == (
        "visitor",
        "How long does shipping take?",
        client_id,
    )
    await client.answer()
    await client.close()


async def test_a_resent_message_is_acked_again_and_stored_once(site):
    client = await WidgetClient.opened(site.key)
    client_id = str(uuid.uuid4())
    first = await client.say("Do you ship abroad?", client_id)
    await client.answer()
    second = await client.say("Do you ship abroad?", client_id)
    assert second["duplicate"] is True
    assert second["message_id"] == first["message_id"]
    assert second["seq"] == first["seq"]
    # No second answer either: only the one bot reply to the one stored question.
    assert [a for a, _, _ in await stored_messages()] == ["visitor", "bot"]
    await client.close()


async def test_the_offline_answerer_streams_the_best_article(site):
    client = await WidgetClient.opened(site.key)
    await client.say("How long does shipping take and what does it cost?")
    deltas, done = await client.answer()
    assert len(deltas) > 1
    assert "".join(d["text"] for d in deltas) == done["text"]
    assert [d["offset"] for d in deltas] == [
        sum(len(d["text"]) for d in deltas[:i]) for i in range(len(deltas))
    ]
    assert "Standard shipping takes 3-5 business days" in done["text"]
    assert done["state"] == "complete"
    assert done["seq"] == 2
    assert {d["seq"] for d in deltas} == {2}
    stored = await database_sync_to_async(Message.objects.get)(pk=done["message_id"])
    assert (stored.author, stored.state, stored.answer_source) == ("bot", "complete", "offline")
    assert stored.text == done["text"]
    assert stored.first_token_ms is not None
    await client.close()


async def test_the_offline_answerer_says_so_when_nothing_matches(site):
    client = await WidgetClient.opened(site.key)
    await client.say("What is the airspeed velocity of an unladen swallow?")
    _, done = await client.answer()
    assert "couldn't find" in done["text"]
    await client.close()


async def test_chinese_questions_get_the_chinese_article(site):
    client = await WidgetClient.opened(site.key)
    await client.say("退货政策是什么？")
    _, done = await client.answer()
    assert "30天内退货" in done["text"]
    await client.close()


async def test_a_reconnect_resumes_from_the_last_seen_sequence(site):
    first = await WidgetClient.opened(site.key)
    await first.say("Shipping cost?")
    await first.answer()
    await first.say("And returns?")
    await first.answer()
    token = first.token
    await first.close()

    again = WidgetClient(site.key)
    assert await again.connect()
    ready, replayed = await again.hello(token=token, after=2)
    assert ready["conversation"]["seq"] == 4
    assert [m["seq"] for m in replayed] == [3, 4]
    assert [m["author"] for m in replayed] == ["visitor", "bot"]
    await again.close()

    reload = WidgetClient(site.key)
    assert await reload.connect()
    _, everything = await reload.hello(token=token, after=0)
    assert [m["seq"] for m in everything] == [1, 2, 3, 4]
    await reload.close()


async def test_resume_returns_what_a_gap_lost(site):
    client = await WidgetClient.opened(site.key)
    await client.say("Shipping cost?")
    await client.answer()
    await client.send({"type": "resume", "after": 0})
    frames = await client.receive_until("synced")
    assert [f["message"]["seq"] for f in frames if f["type"] == "message"] == [1, 2]
    assert frames[-1]["seq"] == 2
    await client.close()


async def test_an_answer_survives_the_socket_closing_midway(site):
    client = await WidgetClient.opened(site.key)
    await client.say("How long does shipping take?")
    token = client.token
    await client.close()
    for _ in range(100):
        if [a for a, _, s in await stored_messages() if s == "complete"] == ["visitor", "bot"]:
            break
        await asyncio.sleep(0.05)
    again = WidgetClient(site.key)
    assert await again.connect()
    _, replayed = await again.hello(token=token, after=1)
    assert [(m["author"], m["state"]) for m in replayed] == [("bot", "complete")]
    await again.close()


async def test_a_second_tab_of_the_same_visitor_sees_the_conversation_live(site):
    tab_a = await WidgetClient.opened(site.key)
    await tab_a.say("Shipping?")
    await tab_a.answer()
    tab_b = WidgetClient(site.key)
    assert await tab_b.connect()
    await tab_b.hello(token=tab_a.token, after=2)
    await tab_a.say("Returns?")
    echoed = (await tab_b.receive_until("message"))[-1]
    assert echoed["message"]["text"] == "Returns?"
    assert echoed["message"]["seq"] == 3
    seen_by_b, done = await tab_b.answer()
    assert done["seq"] == 4
    # The asking tab gets the answer straight from its consumer, the other through the
    # conversation's group: the same deltas, each once.
    seen_by_a, done_a = await tab_a.answer()
    assert seen_by_a == seen_by_b
    assert "".join(d["text"] for d in seen_by_a) == done_a["text"] == done["text"]
    after_done = await tab_a.receive_until("typing")
    assert [f["type"] for f in after_done] == ["typing"]
    assert await tab_a.communicator.receive_nothing(timeout=0.2)
    await tab_a.close()
    await tab_b.close()


async def test_a_visitor_cannot_open_another_visitors_conversation(site):
    owner = await WidgetClient.opened(site.key)
    await owner.say("My order number is 1234, where is it?")
    await owner.answer()
    await owner.close()

    forged = owner.token[:-2] + ("AA" if not owner.token.endswith("AA") else "BB")
    for token in [forged, "not-a-token", None]:
        stranger = WidgetClient(site.key)
        assert await stranger.connect()
        ready, replayed = await stranger.hello(token=token, after=0)
        assert ready["conversation"] is None
        assert replayed == []
        assert ready["token"] != owner.token
        await stranger.close()

    other_site = await database_sync_to_async(make_site)(name="Other shop")
    elsewhere = WidgetClient(other_site.key)
    assert await elsewhere.connect()
    ready, replayed = await elsewhere.hello(token=owner.token, after=0)
    assert ready["conversation"] is None
    assert replayed == []
    await elsewhere.close()
    assert await database_sync_to_async(Visitor.objects.count)() == 5


BAD_FRAMES = [
    ("not json at all", "invalid_json"),
    ("[1, 2, 3]", "invalid_json"),
    ('{"type": "shout"}', "unknown_type"),
    ('{"text": "no type"}', "unknown_type"),
    ('{"type": "message", "text": "no id"}', "missing_field"),
    ('{"type": "message", "id": "4b0e8c1e-6f1e-4a57-9a43-3d9e1f0a7a10"}', "missing_field"),
    ('{"type": "message", "id": "not-a-uuid", "text": "hi"}', "invalid_field"),
    (
        '{"type": "message", "id": "4b0e8c1e-6f1e-4a57-9a43-3d9e1f0a7a10", "text": "  "}',
        "invalid_field",
    ),
    (
        '{"type": "message", "id": "4b0e8c1e-6f1e-4a57-9a43-3d9e1f0a7a10", "text": 42}',
        "invalid_field",
    ),
    ('{"type": "resume", "after": -1}', "invalid_field"),
    ('{"type": "attributes", "attributes": {"plan": ["a", "list"]}}', "invalid_field"),
]


@pytest.mark.parametrize(("raw", "code"), BAD_FRAMES)
async def test_bad_frames_get_an_error_and_the_connection_stays_open(site, raw, code):
    client = await WidgetClient.opened(site.key)
    await client.communicator.send_to(text_data=raw)
    error = await client.receive()
    assert error["type"] == "error"
    assert error["code"] == code
    assert error["message"]
    await client.send({"type": "ping"})
    assert await client.receive() == {"type": "pong"}
    assert await stored_messages() == []
    await client.close()


@pytest.mark.parametrize(
    ("frame", "about"),
    [
        ({"type": "contact", "email": "not an address"}, "contact"),
        ({"type": "rating", "score": 9}, "rating"),
        ({"type": "rating", "score": 5}, "rating"),  # nothing resolved to rate yet
        ({"type": "feedback", "message_id": 424242, "vote": "up"}, "feedback"),
        ({"type": "message", "text": "no id"}, "message"),
        ({"type": "shout"}, None),
    ],
)
async def test_an_error_names_the_frame_it_answers(site, frame, about):
    # Only a message's errors carry a client id; the others say which request failed.
    client = await WidgetClient.opened(site.key)
    await client.send(frame)
    error = await client.receive()
    assert (error["type"], error["about"], error["id"]) == ("error", about, None)
    await client.close()


async def test_binary_frames_are_refused_with_an_error(site):
    client = await WidgetClient.opened(site.key)
    await client.communicator.send_to(bytes_data=b"\x00\x01")
    assert (await client.receive())["code"] == "binary_not_supported"
    await client.send({"type": "ping"})
    assert await client.receive() == {"type": "pong"}
    await client.close()


async def test_frames_over_four_kilobytes_are_refused_and_nothing_is_stored(site):
    client = await WidgetClient.opened(site.key)
    big = json.dumps({"type": "message", "id": str(uuid.uuid4()), "text": "x" * 4100})
    await client.communicator.send_to(text_data=big)
    assert (await client.receive())["code"] == "frame_too_large"
    # Four kilobytes are bytes, not characters: 1,400 Chinese characters are 4,200 bytes.
    wide = json.dumps(
        {"type": "message", "id": str(uuid.uuid4()), "text": "货" * 1400}, ensure_ascii=False
    )
    await client.communicator.send_to(text_data=wide)
    assert (await client.receive())["code"] == "frame_too_large"
    assert await stored_messages() == []
    await client.say("Still here?")
    await client.answer()
    await client.close()


async def test_frames_before_hello_are_refused(site):
    communicator = WebsocketCommunicator(
        application,
        f"/ws/widget/{site.key}/",
        headers=[(b"host", b"testserver"), (b"origin", b"https://shop.example")],
    )
    assert (await communicator.connect())[0]
    await communicator.send_json_to({"type": "message", "id": str(uuid.uuid4()), "text": "hi"})
    assert (await communicator.receive_json_from())["code"] == "not_ready"
    assert await stored_messages() == []
    await communicator.disconnect()


async def test_too_many_messages_are_refused_without_storing_them(site, settings):
    settings.HELPDESK_RATE_LIMIT_MESSAGES = 2
    client = await WidgetClient.opened(site.key)
    await client.say("One: shipping?")
    await client.answer()
    await client.say("Two: returns?")
    await client.answer()
    refused_id = str(uuid.uuid4())
    await client.send({"type": "message", "id": refused_id, "text": "Three"})
    error = (await client.receive_until("error"))[-1]
    assert (error["code"], error["id"]) == ("rate_limited", refused_id)
    assert [t for _, t, _ in await stored_messages(author="visitor")] == [
        "One: shipping?",
        "Two: returns?",
    ]
    await client.close()


async def test_attributes_from_the_host_page_are_stored_on_the_visitor(site):
    client = await WidgetClient.opened(site.key)
    await client.send({"type": "attributes", "attributes": {"plan": "pro", "orders": 3}})
    await client.send({"type": "ping"})
    assert await client.receive() == {"type": "pong"}
    visitor = await database_sync_to_async(Visitor.objects.get)()
    assert visitor.attributes == {"plan": "pro", "orders": 3}
    await client.close()


async def test_a_resolved_conversation_is_followed_by_a_new_one(site):
    client = await WidgetClient.opened(site.key)
    first = await client.say("Shipping?")
    await client.answer()
    await database_sync_to_async(Conversation.objects.filter(pk=first["conversation"]).update)(
        status=Conversation.Status.RESOLVED
    )
    second = await client.say("Hello again, returns?")
    assert second["conversation"] != first["conversation"]
    assert second["seq"] == 1
    await client.answer()
    await client.close()


async def quiet_frames(client, quiet: float = 0.5) -> list[dict]:
    frames = []
    while not await client.communicator.receive_nothing(timeout=quiet):
        frames.append(await client.receive())
    return frames


async def opened_then_followed_up(site) -> dict:
    """A conversation's first message (which opens it), then a second one (into the open
    conversation); the second answer's done frame. On PostgreSQL both are stored pipelined."""
    client = await WidgetClient.opened(site.key)
    await client.say("How long does shipping take?")
    await client.answer()
    await quiet_frames(client)
    await client.say("And what does shipping cost?")
    _deltas, done = await client.answer()
    await client.close()
    return done


@database_sync_to_async
def numbered_messages() -> list[tuple[int, str, str]]:
    return list(Message.objects.order_by("seq").values_list("seq", "author", "state"))


async def test_asking_for_a_person_mid_chat_leaves_no_empty_answer_and_no_gap(site):
    # On PostgreSQL the bot's answer is stored with the customer's message; when the policy
    # hands the conversation to a person instead, the notice takes the answer's place.
    client = await WidgetClient.opened(site.key)
    await client.say("How long does shipping take?")
    await client.answer()
    await quiet_frames(client)  # the answer's bookkeeping is done: the next turn is read at once
    await client.send({"type": "message", "id": str(uuid.uuid4()), "text": "I want a human"})
    frames = await quiet_frames(client)
    await client.close()

    # The customer hears the message is stored before what the escalation says.
    types = [f["type"] for f in frames]
    assert types.index("ack") < types.index("status")

    notice = next(f["message"] for f in frames if f["type"] == "message")
    assert notice["seq"] == 4
    assert await numbered_messages() == [
        (1, "visitor", "complete"),
        (2, "bot", "complete"),
        (3, "visitor", "complete"),
        (4, "system", "complete"),
    ]


async def test_a_turn_that_cannot_be_read_leaves_no_answer_streaming(site, monkeypatch):
    from bots import engine

    client = await WidgetClient.opened(site.key)
    await client.say("How long does shipping take?")
    await client.answer()
    await quiet_frames(client)

    def failing(**kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(engine, "read_turn", failing)
    await client.say("And returns?")
    frames = await client.receive_until("error")
    assert frames[-1]["code"] == "bot_unavailable"
    await quiet_frames(client)
    monkeypatch.undo()
    await client.say("Hello?")
    await client.answer()
    await client.close()

    assert await numbered_messages() == [
        (1, "visitor", "complete"),
        (2, "bot", "complete"),
        (3, "visitor", "complete"),
        (4, "visitor", "complete"),
        (5, "bot", "complete"),
    ]


async def test_the_ack_does_not_wait_for_a_slow_turn_read(site, monkeypatch):
    # The turn read (a cache rebuilt, say) goes on only once the customer has the ack.
    from bots import engine

    acked = threading.Event()
    waited = []
    read_turn = engine.read_turn

    def slow_read_turn(**kwargs):
        waited.append(acked.wait(timeout=2))
        return read_turn(**kwargs)

    monkeypatch.setattr(engine, "read_turn", slow_read_turn)
    client = await WidgetClient.opened(site.key)
    ack = await client.say("How long does shipping take?")
    acked.set()
    assert ack["type"] == "ack"
    _deltas, done = await client.answer()
    assert done["state"] == "complete"
    await client.close()
    assert waited == [True]


async def test_a_first_messages_turn_is_read_while_its_ack_is_on_its_way(site, monkeypatch):
    # The ack of a new conversation follows it (the channel layer) while the trip goes on
    # to the conversation's webhooks and the turn, instead of waiting for the ack.
    from bots import engine
    from helpdesk import consumers

    monkeypatch.setattr(consumers, "_ACK_WAIT_SECONDS", 10)
    loop = asyncio.get_running_loop()
    turn_read = asyncio.Event()
    read_turn = engine.read_turn

    def watched_read_turn(**kwargs):
        loop.call_soon_threadsafe(turn_read.set)
        return read_turn(**kwargs)

    acknowledge = consumers.WidgetConsumer.acknowledge

    async def ack_once_the_turn_is_read(self, client_id, recorded):
        await asyncio.wait_for(turn_read.wait(), timeout=3)
        await acknowledge(self, client_id, recorded)

    monkeypatch.setattr(engine, "read_turn", watched_read_turn)
    monkeypatch.setattr(consumers.WidgetConsumer, "acknowledge", ack_once_the_turn_is_read)
    client = await WidgetClient.opened(site.key)
    ack = await client.say("How long does shipping take?")
    assert (ack["type"], ack["seq"]) == ("ack", 1)
    _deltas, done = await client.answer()
    assert done["state"] == "complete"
    await client.close()


@pytest.mark.skipif(not ON_POSTGRESQL, reason="the statement runs in psycopg's pipeline mode")
async def test_the_turns_lookups_are_made_while_the_message_is_stored(site, settings, monkeypatch):
    import psycopg
    from django.db import connection

    from bots import engine

    settings.HELPDESK_SITE_CACHE_SECONDS = 60
    made = []
    lookups_ahead = engine.lookups_ahead
    in_flight = statements_held_in_flight(monkeypatch)

    def watched(**kwargs):
        lookups = lookups_ahead(**kwargs)
        if _on_event_loop():
            made.append((in_flight(), lookups is not None))
        else:
            made.append((connection.connection.pgconn.pipeline_status, lookups is not None))
        return lookups

    monkeypatch.setattr(engine, "lookups_ahead", watched)
    done = await opened_then_followed_up(site)
    # Both are made while PostgreSQL stores the message: the first message's in the ORM
    # thread while its conversation is opened in pipeline mode (the site's settings are not
    # cached yet, so the turn read makes them), the second's on the event loop while its one
    # statement is in flight in a sender thread.
    assert made == [(psycopg.pq.PipelineStatus.ON, False), (1, True)]
    assert done["state"] == "complete"


@pytest.mark.skipif(not ON_POSTGRESQL, reason="the event loop stores on PostgreSQL only")
async def test_the_policys_rules_on_the_text_are_told_while_the_message_is_stored(
    site, settings, monkeypatch
):
    from handoff import escalation

    settings.HELPDESK_SITE_CACHE_SECONDS = 60
    told = []
    text_lets_bot_answer = escalation.text_lets_bot_answer
    in_flight = statements_held_in_flight(monkeypatch)

    def watched(**kwargs):
        if _on_event_loop():
            told.append(in_flight())
        return text_lets_bot_answer(**kwargs)

    monkeypatch.setattr(escalation, "text_lets_bot_answer", watched)
    done = await opened_then_followed_up(site)
    # The follow-up's, on the event loop, while its one statement is in flight.
    assert told == [1]
    assert done["state"] == "complete"


def statements_held_in_flight(monkeypatch) -> Callable[[], int]:
    """The sender threads of helpdesk.loop_db hold each statement in flight (five seconds at
    most) until the function returned is called: it tells how many were in flight, and
    lets them go."""
    from helpdesk import loop_db

    seen = threading.Event()
    run = loop_db._Senders.run

    def held(self, *args):
        seen.wait(timeout=5)
        return run(self, *args)

    def in_flight() -> int:
        count = loop_db._current_senders.in_flight
        seen.set()
        return count

    monkeypatch.setattr(loop_db._Senders, "run", held)
    return in_flight


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.mark.skipif(not ON_POSTGRESQL, reason="the statement runs in psycopg's pipeline mode")
async def test_moderation_starts_once_the_statement_storing_the_message_is_sent(
    site, fake_llm, monkeypatch
):
    import psycopg

    from bots import engine
    from helpdesk import prepared

    sent_in_pipeline = threading.Event()
    execute = prepared.PreparingCursor.execute

    def watched_execute(self, *args, **kwargs):
        result = execute(self, *args, **kwargs)
        if self.connection.pgconn.pipeline_status == psycopg.pq.PipelineStatus.ON:
            sent_in_pipeline.set()
        return result

    started = []
    start_moderation = engine.start_moderation

    def watched_start(question):
        started.append((question, sent_in_pipeline.is_set()))
        return start_moderation(question)

    monkeypatch.setattr(prepared.PreparingCursor, "execute", watched_execute)
    monkeypatch.setattr(engine, "start_moderation", watched_start)
    done = await opened_then_followed_up(site)
    assert done["state"] == "complete"
    # Each message's moderation waits until the statements that store it have left.
    assert started == [
        ("How long does shipping take?", True),
        ("And what does shipping cost?", True),
    ]
    moderated = [r.body["input"] for r in fake_llm.requests if r.path == "/v1/moderations"]
    assert moderated == ["How long does shipping take?", "And what does shipping cost?"]


async def test_a_quiet_connection_outlasts_the_channel_layers_blocking_wait(site):
    # The Redis layer's receive blocks in Redis for up to 5 s at a time; a socket timeout no
    # longer than that (redis-py 8's default) ends every connection quiet for 5 s.
    client = await WidgetClient.opened(site.key)
    await client.hello()
    await asyncio.sleep(6)
    await client.send({"type": "ping"})
    assert (await client.receive())["type"] == "pong"
    ack = await client.say("Still there?")
    assert ack["type"] == "ack"
    await client.close()


@pytest.mark.skipif(
    "RedisChannelLayer" not in django_settings.CHANNEL_LAYERS["default"]["BACKEND"],
    reason="the Redis channel layer's connections",
)
async def test_the_channel_layers_redis_commands_run_without_a_socket_timeout():
    # With a timeout, redis-py sends each command through asyncio.wait_for, which on
    # Python 3.11 may swallow the cancellation of a closed socket's receive: that receive
    # then goes on forever (the browser tests' teardown saw it as connections that never
    # closed).
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    pool = layer.connection(0).connection_pool
    assert pool.connection_kwargs["socket_timeout"] is None
    assert pool.connection_kwargs.get("socket_keepalive", True) is True


async def test_a_first_messages_turn_is_read_without_querying_its_conversation(
    site, fake_llm, monkeypatch
):
    # The message that opens a conversation brings back the conversation's language; its
    # summary and earlier turns are known to be empty.
    from bots import services as bot_services

    queried = []
    turn_rows = bot_services._turn_rows

    def watched(**kwargs):
        queried.append(kwargs)
        return turn_rows(**kwargs)

    monkeypatch.setattr(bot_services, "_turn_rows", watched)
    client = await WidgetClient.opened(site.key)
    await client.say("How long does shipping take?")
    _deltas, done = await client.answer()
    await client.close()
    assert done["state"] == "complete"
    assert queried == []
    chat = [r.body for r in fake_llm.requests if r.path == "/v1/chat/completions"]
    assert chat[0]["messages"][-1] == {"role": "user", "content": "How long does shipping take?"}
