"""The consumers' base (helpdesk.websocket): events straight to their handlers, group sends
in order without waiting for them."""

import asyncio

import channels.consumer
import pytest
from channels.layers import InMemoryChannelLayer

from helpdesk.websocket import OrderedGroupSends
from tests.widget_client import WidgetClient

pytestmark = pytest.mark.django_db(transaction=True)


class SlowFirstLayer(InMemoryChannelLayer):
    """A channel layer whose first sends take longest, as a busy Redis can."""

    def __init__(self) -> None:
        super().__init__()
        self.delays = iter([0.05, 0.03, 0.01])

    async def group_send(self, group, message):
        await asyncio.sleep(next(self.delays, 0))
        await super().group_send(group, message)


async def test_group_sends_arrive_in_the_order_they_were_asked_for():
    layer = SlowFirstLayer()
    await layer.group_add("conversation.1", "other-tab")
    sends = OrderedGroupSends(layer)
    for n in range(5):
        sends.send("conversation.1", {"type": "conversation.frame", "n": n})
    await sends.flush()
    received = [(await layer.receive("other-tab"))["n"] for _ in range(5)]
    assert received == [0, 1, 2, 3, 4]


async def test_a_failed_group_send_does_not_stop_the_ones_after_it():
    layer = InMemoryChannelLayer()
    await layer.group_add("conversation.1", "other-tab")
    sends = OrderedGroupSends(layer)
    sends.send("not a group name!", {"type": "conversation.frame", "n": 0})
    sends.send("conversation.1", {"type": "conversation.frame", "n": 1})
    await sends.flush()
    assert (await layer.receive("other-tab"))["n"] == 1


async def test_events_reach_their_handlers_without_a_trip_to_the_database_thread(site, monkeypatch):
    # Channels' own dispatch closes old connections in the database thread before every
    # event; the consumers' database calls do that themselves.
    async def forbidden():
        raise AssertionError("an extra trip to the database thread")

    monkeypatch.setattr(channels.consumer, "aclose_old_connections", forbidden)
    client = await WidgetClient.opened(site.key)
    await client.say("How long does shipping take?")
    _deltas, done = await client.answer()
    assert done["state"] == "complete"
    await client.close()


async def received_within(layer, channel: str, seconds: float) -> dict | None:
    try:
        return await asyncio.wait_for(layer.receive(channel), seconds)
    except TimeoutError:
        return None


async def test_held_sends_wait_for_their_release_and_keep_their_order():
    layer = InMemoryChannelLayer()
    await layer.group_add("conversation.1", "other-tab")
    sends = OrderedGroupSends(layer)
    sends.send("conversation.1", {"type": "conversation.frame", "n": 0})
    sends.hold(5)
    sends.send("conversation.1", {"type": "conversation.frame", "n": 1})
    sends.send("conversation.1", {"type": "conversation.frame", "n": 2})
    assert (await received_within(layer, "other-tab", 1))["n"] == 0
    assert await received_within(layer, "other-tab", 0.2) is None
    sends.release()
    received = [(await received_within(layer, "other-tab", 1))["n"] for _ in range(2)]
    assert received == [1, 2]


async def test_a_hold_ends_by_itself_after_its_time():
    layer = InMemoryChannelLayer()
    await layer.group_add("conversation.1", "other-tab")
    sends = OrderedGroupSends(layer)
    clock = asyncio.get_running_loop().time
    started = clock()
    sends.hold(0.3)
    sends.send("conversation.1", {"type": "conversation.frame", "n": 0})
    assert (await received_within(layer, "other-tab", 2))["n"] == 0
    assert 0.3 <= clock() - started < 1.5


async def test_a_flush_sends_what_is_held():
    layer = InMemoryChannelLayer()
    await layer.group_add("conversation.1", "other-tab")
    sends = OrderedGroupSends(layer)
    sends.hold(5)
    sends.send("conversation.1", {"type": "conversation.frame", "n": 0})
    await asyncio.wait_for(sends.flush(), 1)
    assert (await received_within(layer, "other-tab", 0.1))["n"] == 0
