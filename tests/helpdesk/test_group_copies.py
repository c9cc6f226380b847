"""Copies of an answer's frames for the conversation's group, only while someone else
follows it: the real consumers and the real channel layer (Redis in CI)."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from helpdesk.models import Conversation
from tests.fake_llm import Reply
from tests.handoff.test_agent_consumer import connected_agent, make_agent
from tests.helpdesk.test_consumer import quiet_frames
from tests.widget_client import WidgetClient

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def group_sends(monkeypatch) -> list[dict]:
    """The frames the channel layer is asked to send to conversation groups."""
    layer = get_channel_layer()
    sent = []
    group_send = layer.group_send

    async def recorded(group, event):
        if event.get("type") == "conversation.frame":
            sent.append(event["frame"])
        return await group_send(group, event)

    monkeypatch.setattr(layer, "group_send", recorded)
    return sent


def fleeting(frames: list[dict]) -> list[str]:
    return [f["type"] for f in frames if f["type"] in ("delta", "typing")]


async def asked(client: WidgetClient, text: str) -> tuple[list[dict], dict]:
    await client.say(text)
    deltas, done = await client.answer()
    await quiet_frames(client)
    return deltas, done


async def test_a_lone_customers_answer_sends_no_copies_of_its_deltas(site, group_sends):
    client = await WidgetClient.opened(site.key)
    await asked(client, "How long does shipping take?")
    group_sends.clear()
    deltas, done = await asked(client, "And what does it cost?")
    await client.close()

    assert deltas
    assert fleeting(group_sends) == []
    # What is stored still goes to the group: the customer's message and the answer.
    assert [f["type"] for f in group_sends] == ["message", "done"]
    assert group_sends[-1]["text"] == done["text"]


async def answered_then_a_second_tab(site) -> tuple[WidgetClient, WidgetClient]:
    """A tab whose first question is answered (it counted itself alone), and a second tab
    of the same visitor that joined after."""
    tab_a = await WidgetClient.opened(site.key)
    await asked(tab_a, "How long does shipping take?")
    tab_b = WidgetClient(site.key)
    assert await tab_b.connect()
    await tab_b.hello(token=tab_a.token, after=2)
    return tab_a, tab_b


async def test_a_tab_that_joins_gets_the_deltas_again(site, group_sends):
    tab_a, tab_b = await answered_then_a_second_tab(site)
    await quiet_frames(tab_a, quiet=0.2)
    seen_by_a, _done = await asked(tab_a, "And what does it cost?")
    seen_by_b, _done_b = await tab_b.answer()
    await tab_a.close()
    await tab_b.close()

    assert seen_by_b == seen_by_a
    assert fleeting(group_sends)


async def test_an_agent_who_opens_the_conversation_gets_the_deltas(
    site, group_sends, django_user_model
):
    client = await WidgetClient.opened(site.key)
    _deltas, done = await asked(client, "How long does shipping take?")
    user = await database_sync_to_async(make_agent)(django_user_model, site)
    agent = await connected_agent(user)
    await agent.send({"type": "open", "conversation": done["conversation"]})
    await agent.receive_until(lambda f: f["type"] == "transcript")
    await quiet_frames(client, quiet=0.2)
    deltas, _done = await asked(client, "And what does it cost?")
    first = await agent.receive_until(lambda f: f["type"] == "delta")
    await agent.close()
    await client.close()

    assert first["text"] == deltas[0]["text"]


async def test_a_tab_left_alone_stops_sending_copies(site, group_sends):
    tab_a, tab_b = await answered_then_a_second_tab(site)
    await tab_b.close()
    await quiet_frames(tab_a, quiet=0.3)
    group_sends.clear()
    await asked(tab_a, "And what does it cost?")
    await tab_a.close()

    assert fleeting(group_sends) == []


async def test_the_copy_of_a_message_the_bot_answers_waits_for_the_bots_request(
    site, fake_llm, settings
):
    # The provider's moderation, which the bot's request to the LLM waits for, takes 0.2 s,
    # and the LLM 0.4 s more: the other tab gets the customer's message once the request is
    # on its way, before the hold's 0.5 s are up and before the answer.
    settings.HELPDESK_MODERATION = "auto"
    tab_a, tab_b = await answered_then_a_second_tab(site)
    await quiet_frames(tab_a, quiet=0.2)
    await quiet_frames(tab_b, quiet=0.2)
    fake_llm.moderation_delay = 0.2
    fake_llm.script(Reply(text="It costs $5.", delay=0.4))
    clock = asyncio.get_running_loop().time
    await tab_a.say("And what does it cost?")
    acked = clock()
    frames_b = await tab_b.receive_until("message")
    echoed = clock()
    seen_by_b, _done = await tab_b.answer()
    await tab_a.answer()
    await tab_a.close()
    await tab_b.close()

    assert frames_b[-1]["message"]["text"] == "And what does it cost?"
    assert 0.1 <= echoed - acked < 0.45
    assert seen_by_b


async def test_the_copy_of_a_message_no_bot_answers_goes_at_once(site, fake_llm, settings):
    tab_a, tab_b = await answered_then_a_second_tab(site)
    await database_sync_to_async(
        lambda: Conversation.objects.update(status=Conversation.Status.WAITING)
    )()
    await quiet_frames(tab_a, quiet=0.2)
    await quiet_frames(tab_b, quiet=0.2)
    fake_llm.moderation_delay = 0.3
    clock = asyncio.get_running_loop().time
    await tab_a.say("Are you there?")
    acked = clock()
    frames_b = await tab_b.receive_until("message")
    await tab_a.close()
    await tab_b.close()

    assert frames_b[-1]["message"]["text"] == "Are you there?"
    assert clock() - acked < 0.2
