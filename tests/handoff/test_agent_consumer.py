"""Visitor <-> agent over the real consumers and channel layer."""

import asyncio
import json
import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import Group
from django.test import Client
from django.utils import timezone

from bots import engine
from bots.engine import start_moderation
from handoff.models import AgentProfile, Handoff, InternalNote
from helpdesk import consumers
from helpdesk.asgi import application
from helpdesk.models import Conversation, Message
from tests.conftest import make_site
from tests.widget_client import WidgetClient

pytestmark = pytest.mark.django_db(transaction=True)


def make_agent(django_user_model, site, username="alice", group="Agents"):
    user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name=group)[0])
    profile = AgentProfile.objects.create(user=user, display_name=username.title())
    if site is not None:
        profile.sites.add(site)
    return user


def session_cookie(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


class AgentClient:
    def __init__(self, cookie: bytes | None, origin: bytes = b"http://testserver") -> None:
        headers = [(b"host", b"testserver"), (b"origin", origin)]
        if cookie:
            headers.append((b"cookie", cookie))
        self.communicator = WebsocketCommunicator(application, "/ws/agent/", headers=headers)

    async def connect(self) -> bool:
        return (await self.communicator.connect())[0]

    async def send(self, frame: dict) -> None:
        await self.communicator.send_to(text_data=json.dumps(frame))

    async def receive(self, timeout: float = 5) -> dict:
        return json.loads(await self.communicator.receive_from(timeout=timeout))

    async def receive_until(self, predicate, timeout: float = 5) -> dict:
        while True:
            frame = await self.receive(timeout)
            if predicate(frame):
                return frame

    async def close(self) -> None:
        await self.communicator.disconnect()


async def connected_agent(user) -> AgentClient:
    cookie = await database_sync_to_async(session_cookie)(user)
    agent = AgentClient(cookie)
    assert await agent.connect()
    return agent


async def customer_asking_for_a_person(site) -> tuple[WidgetClient, int]:
    visitor = await WidgetClient.opened(site.key)
    await visitor.send({"type": "handoff", "reason": "button"})
    status = (await visitor.receive_until("status"))[-1]
    assert status["status"] == "waiting"
    return visitor, status["conversation"]


@pytest.fixture
def shop(db):
    return make_site(name="Shop")


async def test_only_agents_and_managers_may_connect(shop, django_user_model):
    assert not await AgentClient(None).connect()
    clerk = await database_sync_to_async(django_user_model.objects.create_user)(
        "clerk", password="pw", is_staff=True
    )
    assert not await AgentClient(await database_sync_to_async(session_cookie)(clerk)).connect()
    agent = await database_sync_to_async(make_agent)(django_user_model, shop)
    cookie = await database_sync_to_async(session_cookie)(agent)
    assert not await AgentClient(cookie, origin=b"https://evil.example").connect()
    client = AgentClient(cookie)
    assert await client.connect()
    await client.close()


async def test_a_new_handoff_appears_live_and_in_the_queue(shop, django_user_model):
    user = await database_sync_to_async(make_agent)(django_user_model, shop)
    agent = await connected_agent(user)
    await agent.send({"type": "queue"})
    assert (await agent.receive())["handoffs"] == []
    visitor, conversation_id = await customer_asking_for_a_person(shop)
    pushed = await agent.receive_until(lambda f: f["type"] == "handoff")
    assert pushed["event"] == "created"
    assert pushed["handoff"]["conversation"] == conversation_id
    assert (pushed["handoff"]["rule"], pushed["handoff"]["priority"]) == ("customer_request", 1)
    await agent.send({"type": "queue"})
    queue = await agent.receive_until(lambda f: f["type"] == "queue")
    assert [h["conversation"] for h in queue["handoffs"]] == [conversation_id]
    await visitor.close()
    await agent.close()


async def test_agents_of_other_sites_see_nothing(shop, django_user_model):
    other = await database_sync_to_async(make_site)(name="Other")
    user = await database_sync_to_async(make_agent)(django_user_model, other, username="bob")
    agent = await connected_agent(user)
    visitor, conversation_id = await customer_asking_for_a_person(shop)
    await agent.send({"type": "open", "conversation": conversation_id})
    error = await agent.receive_until(lambda f: f["type"] == "error")
    assert error["code"] == "not_found"
    await agent.send({"type": "queue"})
    assert (await agent.receive_until(lambda f: f["type"] == "queue"))["handoffs"] == []
    await visitor.close()
    await agent.close()


async def test_claim_reply_and_relay_both_ways(shop, django_user_model):
    user = await database_sync_to_async(make_agent)(django_user_model, shop)
    agent = await connected_agent(user)
    visitor, conversation_id = await customer_asking_for_a_person(shop)
    handoff = await database_sync_to_async(Handoff.objects.get)(conversation_id=conversation_id)

    await agent.send({"type": "open", "conversation": conversation_id})
    transcript = await agent.receive_until(lambda f: f["type"] == "transcript")
    assert transcript["conversation"]["id"] == conversation_id

    await agent.send({"type": "claim", "handoff": handoff.pk})
    assert (await agent.receive_until(lambda f: f["type"] == "claimed"))["handoff"][
        "id"
    ] == handoff.pk
    joined = (await visitor.receive_until("agent"))[-1]
    assert (joined["name"], joined["joined"]) == ("Alice", True)

    # Visitor -> agent, and the bot stays quiet while a human owns the conversation.
    await visitor.say("My tent arrived torn")
    relayed = await agent.receive_until(
        lambda f: f["type"] == "message" and f["message"]["author"] == "visitor"
    )
    assert relayed["message"]["text"] == "My tent arrived torn"

    # Agent -> visitor.
    reply_id = str(uuid.uuid4())
    await agent.send(
        {
            "type": "reply",
            "conversation": conversation_id,
            "id": reply_id,
            "text": "Sorry! Refund on its way.",
        }
    )
    ack = await agent.receive_until(lambda f: f["type"] == "ack")
    assert ack["id"] == reply_id
    seen = (await visitor.receive_until("message"))[-1]
    while seen["message"]["author"] != "agent":
        seen = (await visitor.receive_until("message"))[-1]
    assert seen["message"]["text"] == "Sorry! Refund on its way."

    # Typing both ways.
    await agent.send({"type": "typing", "conversation": conversation_id, "active": True})
    typing = (await visitor.receive_until("typing"))[-1]
    assert (typing["author"], typing["active"]) == ("agent", True)
    await visitor.send({"type": "typing", "active": True})
    from_visitor = await agent.receive_until(lambda f: f["type"] == "typing")
    assert from_visitor["author"] == "visitor"

    authors = await database_sync_to_async(
        lambda: list(
            Message.objects.filter(conversation_id=conversation_id).values_list("author", flat=True)
        )
    )()
    assert "bot" not in authors
    await visitor.close()
    await agent.close()


async def test_internal_notes_never_reach_the_customer(shop, django_user_model):
    user = await database_sync_to_async(make_agent)(django_user_model, shop)
    agent = await connected_agent(user)
    visitor, conversation_id = await customer_asking_for_a_person(shop)
    await agent.send({"type": "open", "conversation": conversation_id})
    await agent.receive_until(lambda f: f["type"] == "transcript")
    await agent.send({"type": "note", "conversation": conversation_id, "text": "VIP, be nice"})
    note = await agent.receive_until(lambda f: f["type"] == "note")
    assert note["note"]["text"] == "VIP, be nice"
    await visitor.send({"type": "ping"})
    # Everything the visitor gets until its pong: no note among it.
    frames = [await visitor.receive()]
    while frames[-1]["type"] != "pong":
        frames.append(await visitor.receive())
    assert all("VIP" not in json.dumps(f) for f in frames)
    assert await database_sync_to_async(InternalNote.objects.count)() == 1
    await visitor.close()
    await agent.close()


async def test_an_agent_cannot_reply_to_someone_elses_conversation(shop, django_user_model):
    alice = await database_sync_to_async(make_agent)(django_user_model, shop)
    bob = await database_sync_to_async(make_agent)(django_user_model, shop, username="bob")
    visitor, conversation_id = await customer_asking_for_a_person(shop)
    handoff = await database_sync_to_async(Handoff.objects.get)(conversation_id=conversation_id)
    first = await connected_agent(alice)
    await first.send({"type": "claim", "handoff": handoff.pk})
    await first.receive_until(lambda f: f["type"] == "claimed")
    second = await connected_agent(bob)
    await second.send({"type": "claim", "handoff": handoff.pk})
    assert (await second.receive_until(lambda f: f["type"] == "error"))["code"] == "already_claimed"
    reply_id = str(uuid.uuid4())
    await second.send(
        {"type": "reply", "conversation": conversation_id, "id": reply_id, "text": "Hi"}
    )
    error = await second.receive_until(lambda f: f["type"] == "error")
    assert (error["code"], error["id"]) == ("not_yours", reply_id)
    await visitor.close()
    await first.close()
    await second.close()


async def test_messages_sent_while_the_agent_is_away_are_in_the_transcript(shop, django_user_model):
    user = await database_sync_to_async(make_agent)(django_user_model, shop)
    visitor, conversation_id = await customer_asking_for_a_person(shop)
    await visitor.say("Hello? Anyone?")
    await visitor.say("Order 4821")
    agent = await connected_agent(user)
    await agent.send({"type": "open", "conversation": conversation_id})
    transcript = await agent.receive_until(lambda f: f["type"] == "transcript")
    texts = [m["text"] for m in transcript["messages"]]
    assert texts[-2:] == ["Hello? Anyone?", "Order 4821"]
    await visitor.close()
    await agent.close()


async def test_resolve_then_the_customer_rates_once(shop, django_user_model):
    user = await database_sync_to_async(make_agent)(django_user_model, shop)
    agent = await connected_agent(user)
    visitor, conversation_id = await customer_asking_for_a_person(shop)
    handoff = await database_sync_to_async(Handoff.objects.get)(conversation_id=conversation_id)
    await agent.send({"type": "claim", "handoff": handoff.pk})
    await agent.receive_until(lambda f: f["type"] == "claimed")
    await agent.send({"type": "resolve", "conversation": conversation_id})
    status = (await visitor.receive_until("status"))[-1]
    while status["status"] != "resolved":
        status = (await visitor.receive_until("status"))[-1]
    await visitor.send({"type": "rating", "score": 5, "comment": "Great help"})
    assert ((await visitor.receive_until("rating"))[-1])["score"] == 5
    await visitor.send({"type": "rating", "score": 1})
    assert ((await visitor.receive_until("error"))[-1])["code"] == "already_rated"
    conversation = await database_sync_to_async(Conversation.objects.get)(pk=conversation_id)
    assert conversation.status == "resolved"
    await visitor.close()
    await agent.close()


async def test_asking_for_a_person_in_words_reaches_the_queue(shop, django_user_model):
    visitor = await WidgetClient.opened(shop.key)
    await visitor.say("转人工")
    status = (await visitor.receive_until("status"))[-1]
    assert status["status"] == "waiting"
    handoff = await database_sync_to_async(Handoff.objects.get)()
    assert handoff.rule == "customer_request"
    await visitor.close()


async def test_the_bot_failing_n_times_in_a_row_calls_a_person(shop):
    from handoff.models import HandoffSettings

    await database_sync_to_async(HandoffSettings.objects.create)(site=shop, failure_threshold=2)
    visitor = await WidgetClient.opened(shop.key)
    for question in ["What is the airspeed of a swallow?", "Who won the cup in 1966?"]:
        await visitor.say(question)
        await visitor.answer()
    status = (await visitor.receive_until("status"))[-1]
    assert status["status"] == "waiting"
    handoff = await database_sync_to_async(Handoff.objects.get)()
    assert handoff.rule == "failures"
    await visitor.close()


async def test_a_provider_that_is_down_answers_offline_then_offers_a_person(
    site, fake_llm, settings
):
    from tests.fake_llm import Reply

    settings.HELPDESK_CIRCUIT_FAILURES = 1
    fake_llm.script(Reply(status=500))
    visitor = await WidgetClient.opened(site.key)
    await visitor.say("How much does shipping cost?")
    _, done = await visitor.answer()
    assert done["answer_source"] == "offline"
    status = (await visitor.receive_until("status"))[-1]
    assert status["status"] == "waiting"
    handoff = await database_sync_to_async(Handoff.objects.get)()
    assert handoff.rule == "provider_down"
    await visitor.close()


async def test_the_first_message_of_a_conversation_fires_conversation_started(shop):
    from handoff.models import Webhook, WebhookDelivery

    await database_sync_to_async(Webhook.objects.create)(
        site=shop,
        url="http://127.0.0.1:9/hook",
        secret="s3cret-s3cret",
        events=["conversation.started"],
    )
    visitor = await WidgetClient.opened(shop.key)
    await visitor.say("Hello there, shipping?")
    await visitor.answer()
    await visitor.say("And returns?")
    await visitor.answer()
    await visitor.close()
    deliveries = await database_sync_to_async(
        lambda: list(WebhookDelivery.objects.values_list("event", flat=True))
    )()
    assert deliveries == ["conversation.started"]


async def test_a_conversation_begun_with_the_button_fires_conversation_started(shop):
    from handoff.models import Webhook, WebhookDelivery

    await database_sync_to_async(Webhook.objects.create)(
        site=shop,
        url="http://127.0.0.1:9/hook",
        secret="s3cret-s3cret",
        events=["conversation.started", "handoff.created"],
    )
    visitor, conversation_id = await customer_asking_for_a_person(shop)
    await visitor.say("Hello? My order is late")
    await visitor.close()
    deliveries = await database_sync_to_async(
        lambda: list(
            WebhookDelivery.objects.order_by("pk").values_list(
                "event", "payload__data__conversation"
            )
        )
    )()
    assert deliveries == [
        ("conversation.started", conversation_id),
        ("handoff.created", conversation_id),
    ]


async def test_a_moderation_flag_reaches_the_queue_at_high_priority(shop):
    from bots.models import BotConfig

    await database_sync_to_async(BotConfig.objects.create)(site=shop, banned_words="bombshell")
    visitor = await WidgetClient.opened(shop.key)
    await visitor.say("Tell me about the bombshell offer")
    status = (await visitor.receive_until("status"))[-1]
    while status["status"] != "waiting":
        status = (await visitor.receive_until("status"))[-1]
    await visitor.close()
    handoff = await database_sync_to_async(Handoff.objects.get)()
    assert (handoff.rule, handoff.priority) == ("moderation", 2)


async def test_after_return_to_bot_only_new_failures_count(shop, django_user_model):
    from handoff.models import HandoffSettings

    await database_sync_to_async(HandoffSettings.objects.create)(site=shop, failure_threshold=2)
    user = await database_sync_to_async(make_agent)(django_user_model, shop)
    visitor = await WidgetClient.opened(shop.key)
    for question in ["What is the airspeed of a swallow?", "Who won the cup in 1966?"]:
        await visitor.say(question)
        await visitor.answer()
    assert (await visitor.receive_until("status"))[-1]["status"] == "waiting"
    handoff = await database_sync_to_async(Handoff.objects.get)()
    agent = await connected_agent(user)
    await agent.send({"type": "claim", "handoff": handoff.pk})
    await agent.receive_until(lambda f: f["type"] == "claimed")
    await agent.send({"type": "return_to_bot", "conversation": handoff.conversation_id})
    status = (await visitor.receive_until("status"))[-1]
    while status["status"] != "bot":
        status = (await visitor.receive_until("status"))[-1]

    # One failure after the return is not a streak of two: the bot keeps the conversation.
    await visitor.say("What colour is the moon's far side?")
    await visitor.answer()
    # The check after the answer runs in the answer's task: wait for it to finish.
    if running := list(consumers._running_answers):
        await asyncio.wait(running, timeout=10)
    assert await database_sync_to_async(Handoff.objects.open().count)() == 0
    conversation = await database_sync_to_async(Conversation.objects.get)()
    assert conversation.status == "bot"

    # The second one in a row is.
    await visitor.say("How many grains of sand are on the beach?")
    await visitor.answer()
    assert (await visitor.receive_until("status"))[-1]["status"] == "waiting"
    rules = await database_sync_to_async(
        lambda: list(Handoff.objects.order_by("pk").values_list("rule", "status"))
    )()
    assert rules == [("failures", "resolved"), ("failures", "waiting")]
    await visitor.close()
    await agent.close()


@pytest.mark.parametrize("request_id", ["req-7", 42])
async def test_errors_echo_the_requests_id(shop, django_user_model, request_id):
    user = await database_sync_to_async(make_agent)(django_user_model, shop)
    agent = await connected_agent(user)
    refused = [
        {"type": "note", "conversation": 999999, "text": "lost"},
        {"type": "resolve", "conversation": 999999},
        {"type": "claim", "handoff": 999999},
        {"type": "return_to_bot", "conversation": 999999},
        {"type": "transfer", "conversation": 999999, "team": 1},
        {"type": "note", "conversation": "x", "text": "bad field"},
        {"type": "notifications", "enabled": "yes"},
    ]
    for frame in refused:
        await agent.send({**frame, "id": request_id})
        error = await agent.receive_until(lambda f: f["type"] == "error")
        assert error["id"] == request_id, frame
    await agent.send({"type": "resolve", "conversation": 999999})
    assert (await agent.receive_until(lambda f: f["type"] == "error"))["id"] is None
    await agent.close()


def online_agents(site) -> list[str]:
    return list(
        AgentProfile.objects.filter(sites=site, is_online=True).values_list(
            "user__username", flat=True
        )
    )


async def test_an_agent_goes_offline_when_their_last_socket_closes(shop, django_user_model):
    from handoff.models import HandoffSettings

    await database_sync_to_async(HandoffSettings.objects.create)(
        site=shop, auto_assign=HandoffSettings.AutoAssign.ROUND_ROBIN
    )
    user = await database_sync_to_async(make_agent)(django_user_model, shop)
    first_tab = await connected_agent(user)
    second_tab = await connected_agent(user)
    await first_tab.send({"type": "presence", "online": True})
    await first_tab.send({"type": "ping"})
    await first_tab.receive_until(lambda f: f["type"] == "pong")
    assert await database_sync_to_async(online_agents)(shop) == ["alice"]

    # One of two tabs closing leaves the agent online...
    await first_tab.close()
    assert await database_sync_to_async(online_agents)(shop) == ["alice"]
    # ...the last one takes them offline.
    await second_tab.close()
    assert await database_sync_to_async(online_agents)(shop) == []

    # Auto-assignment no longer picks them: the customer waits in the queue.
    visitor, conversation_id = await customer_asking_for_a_person(shop)
    handoff = await database_sync_to_async(Handoff.objects.get)(conversation_id=conversation_id)
    assert (handoff.status, handoff.agent_id) == ("waiting", None)
    await visitor.close()


async def test_the_notification_switch_is_saved_on_the_profile(shop, django_user_model):
    user = await database_sync_to_async(make_agent)(django_user_model, shop)
    agent = await connected_agent(user)
    await agent.send({"type": "notifications", "enabled": False})
    frame = await agent.receive_until(lambda f: f["type"] == "notifications")
    assert frame["enabled"] is False
    profile = await database_sync_to_async(AgentProfile.objects.get)(user=user)
    assert profile.notifications is False
    await agent.send({"type": "notifications", "enabled": True})
    await agent.receive_until(lambda f: f["type"] == "notifications")
    await database_sync_to_async(profile.refresh_from_db)()
    assert profile.notifications is True
    await agent.close()


async def frames_until_quiet(client, quiet: float = 0.5) -> list[dict]:
    """Every frame the client gets until none comes for `quiet` seconds."""
    frames = []
    # receive_nothing(), not a receive that times out: that would cancel the consumer.
    while not await client.communicator.receive_nothing(timeout=quiet):
        frames.append(await client.receive())
    return frames


@pytest.mark.parametrize("ask", ["button", "words"])
async def test_with_auto_assignment_the_customer_ends_with_the_agent(shop, django_user_model, ask):
    from handoff.models import HandoffSettings

    await database_sync_to_async(HandoffSettings.objects.create)(
        site=shop, auto_assign=HandoffSettings.AutoAssign.ROUND_ROBIN
    )
    user = await database_sync_to_async(make_agent)(django_user_model, shop)
    await database_sync_to_async(AgentProfile.objects.filter(user=user).update)(is_online=True)
    visitor = await WidgetClient.opened(shop.key)
    if ask == "button":
        await visitor.send({"type": "handoff", "reason": "button"})
    else:
        await visitor.say("I want to talk to a human")
    frames = await frames_until_quiet(visitor)
    await visitor.close()

    # In the order they happened: waiting with the notice, then the claim.
    assert [f["status"] for f in frames if f["type"] == "status"] == ["waiting", "human"]
    agent = next(f for f in frames if f["type"] == "agent")
    assert (agent["name"], agent["joined"]) == ("Alice", True)
    system = [f["message"]["text"] for f in frames if f["type"] == "message"]
    assert system[-2].startswith("Thanks")
    assert system[-1] == "Alice joined the conversation."
    conversation = await database_sync_to_async(Conversation.objects.get)()
    assert conversation.status == "human"


async def reloaded(site, token: str, after: int = 0) -> tuple[WidgetClient, list[dict]]:
    """A new socket of the same visitor (a reload of the page): the frames of its hello."""
    client = WidgetClient(site.key)
    assert await client.connect()
    await client.send({"type": "hello", "token": token, "after": after, "language": "en"})
    return client, await client.receive_until("synced")


async def test_a_reload_while_waiting_gets_the_queue_place_and_the_address_again(shop):
    ahead, _ = await customer_asking_for_a_person(shop)
    first, conversation_id = await customer_asking_for_a_person(shop)
    await first.send({"type": "contact", "email": "kim@example.com"})
    await first.receive_until("contact")
    await first.close()
    visitor, frames = await reloaded(shop, first.token, after=1)

    types = [f["type"] for f in frames]
    assert types[0] == "ready"
    assert types.index("queue") < types.index("synced")
    queue = next(f for f in frames if f["type"] == "queue")
    assert queue == {
        "type": "queue",
        "conversation": conversation_id,
        "position": 2,
        "expected_wait_seconds": None,
        "agents_online": False,
        "open_now": True,
    }
    contact = next(f for f in frames if f["type"] == "contact")
    assert (contact["conversation"], contact["email"]) == (conversation_id, "kim@example.com")
    assert "agent" not in types
    await visitor.close()
    await ahead.close()


async def test_a_reload_with_an_agent_gets_the_agents_name_again(shop, django_user_model):
    user = await database_sync_to_async(make_agent)(django_user_model, shop)
    first, conversation_id = await customer_asking_for_a_person(shop)
    handoff = await database_sync_to_async(Handoff.objects.get)(conversation_id=conversation_id)
    agent = await connected_agent(user)
    await agent.send({"type": "claim", "handoff": handoff.pk})
    await agent.receive_until(lambda f: f["type"] == "claimed")
    await first.receive_until("agent")
    await first.close()

    visitor, frames = await reloaded(shop, first.token)
    types = [f["type"] for f in frames]
    assert frames[0]["conversation"]["status"] == "human"
    # The state comes first, then the history (which holds the "joined" system message).
    assert types.index("agent") < types.index("message")
    joined = next(f for f in frames if f["type"] == "agent")
    assert joined == {
        "type": "agent",
        "conversation": conversation_id,
        "name": "Alice",
        "joined": True,
    }
    assert "queue" not in types

    # Back with the bot: nothing about a person any more.
    await agent.send({"type": "return_to_bot", "conversation": conversation_id})
    await visitor.receive_until("status")
    await visitor.close()
    again, frames = await reloaded(shop, first.token)
    assert not {"agent", "queue", "contact"} & {f["type"] for f in frames}
    await again.close()
    await agent.close()


async def test_an_address_left_by_the_customer_reaches_the_console_live(shop, django_user_model):
    user = await database_sync_to_async(make_agent)(django_user_model, shop)
    agent = await connected_agent(user)
    visitor, conversation_id = await customer_asking_for_a_person(shop)
    await agent.send({"type": "open", "conversation": conversation_id})
    await agent.receive_until(lambda f: f["type"] == "transcript")

    await visitor.send({"type": "contact", "email": "kim@example.com"})
    seen = await agent.receive_until(lambda f: f["type"] == "contact")
    assert (seen["conversation"], seen["email"]) == (conversation_id, "kim@example.com")
    # The customer gets one answer: theirs, not the consoles' copy too.
    frames = await frames_until_quiet(visitor)
    assert [f["type"] for f in frames if f["type"] == "contact"] == ["contact"]
    await visitor.close()
    await agent.close()


async def resolved_by_an_agent(shop, django_user_model) -> tuple[AgentClient, str, int]:
    """A customer asked for a person, an agent claimed and resolved, the customer left: the
    agent's socket, the customer's token and the conversation."""
    user = await database_sync_to_async(make_agent)(django_user_model, shop)
    agent = await connected_agent(user)
    visitor, conversation_id = await customer_asking_for_a_person(shop)
    handoff = await database_sync_to_async(Handoff.objects.get)(conversation_id=conversation_id)
    await agent.send({"type": "claim", "handoff": handoff.pk})
    await agent.receive_until(lambda f: f["type"] == "claimed")
    await agent.send({"type": "resolve", "conversation": conversation_id})
    while (await visitor.receive_until("status"))[-1]["status"] != "resolved":
        pass
    await visitor.close()
    return agent, visitor.token, conversation_id


async def test_a_reload_after_resolve_still_offers_the_rating(shop, django_user_model):
    agent, token, conversation_id = await resolved_by_an_agent(shop, django_user_model)

    # The reload names the resolved conversation, so the widget shows it and asks to rate.
    again, frames = await reloaded(shop, token)
    ready = frames[0]
    assert ready["conversation"]["id"] == conversation_id
    assert ready["conversation"]["status"] == "resolved"
    assert [f["message"]["seq"] for f in frames if f["type"] == "message"]
    await again.send({"type": "rating", "score": 4})
    assert (await again.receive_until("rating"))[-1]["score"] == 4
    await again.close()

    # Rated: the next reload starts afresh.
    last, frames = await reloaded(shop, token)
    assert frames[0]["conversation"] is None
    await last.close()
    await agent.close()


async def test_the_rating_offer_ends_a_day_after_resolve(shop, django_user_model):
    agent, token, conversation_id = await resolved_by_an_agent(shop, django_user_model)
    await database_sync_to_async(Conversation.objects.filter(pk=conversation_id).update)(
        resolved_at=timezone.now() - timedelta(hours=25)
    )
    again, frames = await reloaded(shop, token)
    assert frames[0]["conversation"] is None
    await again.close()
    await agent.close()


async def test_a_message_for_a_person_is_never_sent_to_the_providers_moderation(
    shop, fake_llm, monkeypatch
):
    # Each start is noted (and carried out): one cancelled early might never reach the
    # server, yet would have been a mistake.
    started = []

    def noting(question):
        started.append(question)
        return start_moderation(question)

    monkeypatch.setattr(engine, "start_moderation", noting)
    visitor, _conversation = await customer_asking_for_a_person(shop)
    await visitor.say("Are you still there?")
    again = WidgetClient(shop.key)
    assert await again.connect()
    await again.hello(token=visitor.token)
    await again.say("Hello? Anyone?")
    await visitor.receive_until("message")
    assert started == []
    assert [r for r in fake_llm.requests if r.path == "/v1/moderations"] == []
    await again.close()
    await visitor.close()
