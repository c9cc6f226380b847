"""The base of Helpdesk's websocket consumers."""

import asyncio
import logging
import time
from functools import cached_property

from channels.consumer import get_handler_name
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer

logger = logging.getLogger(__name__)


class WebsocketConsumer(AsyncWebsocketConsumer):
    """Channels' async websocket consumer, without its trip to the database thread before
    every event.

    Channels closes stale database connections, in the database thread, before it hands
    each event to its handler. Every database call of these consumers goes through
    `database_sync_to_async`, which does the same before and after the call, so the extra
    trip only queued up in the one database thread ahead of real work: one for each frame a
    customer sends and one for each frame published to a conversation, every delta of every
    answer included.
    """

    async def dispatch(self, message: dict) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def join_group(self, group: str) -> None:
        """Follow a conversation's group, and tell its other members (`group_joined`): one
        that thought it was alone sends the copies of its frames again."""
        await self.channel_layer.group_add(group, self.channel_name)
        self.group_sends.send(group, {"type": "group.joined", "channel": self.channel_name})

    async def leave_group(self, group: str) -> None:
        await self.channel_layer.group_discard(group, self.channel_name)
        self.group_sends.send(group, {"type": "group.left", "channel": self.channel_name})

    @cached_property
    def group_sends(self) -> "OrderedGroupSends":
        """This connection's sends to its groups, in the order it asked for them."""
        return OrderedGroupSends(self.channel_layer)

    async def group_joined(self, event: dict) -> None:
        """Another connection follows a group of this one."""

    async def group_left(self, event: dict) -> None:
        """Another connection stopped following a group of this one."""


class OrderedGroupSends:
    """Group sends that leave in the order they were asked for, without their caller
    waiting for the channel layer.

    A customer's own socket gets its frames directly; the copies for the conversation's
    other connections (other tabs, agents) go through the channel layer, a round trip to
    Redis each. Queued here, they no longer stand between the customer's message and the
    bot's first token, nor between one delta and the next.

    A hold (`hold`) keeps the sends asked for meanwhile queued until `release` or `flush`,
    or for the time it was given at most: while a customer's message is being answered, the
    Redis round trips of its copies would otherwise take the interpreter between the ack
    and the bot's request to the LLM.
    """

    def __init__(self, layer) -> None:
        self.layer = layer
        self.last: asyncio.Task | None = None
        self.gate: asyncio.Future | None = None
        self.gate_timer: asyncio.TimerHandle | None = None

    def send(self, group: str, event: dict) -> None:
        task = asyncio.create_task(self._send_after(self.last, self.gate, group, event))
        _sending.add(task)
        task.add_done_callback(_sending.discard)
        self.last = task

    def hold(self, seconds: float) -> None:
        """Keep the sends asked for from now on until `release()` or `flush()`, `seconds`
        at most."""
        if self.gate is None:
            loop = asyncio.get_running_loop()
            self.gate = loop.create_future()
            self.gate_timer = loop.call_later(seconds, self.release)

    def release(self) -> None:
        """Let the held sends go."""
        if self.gate is None:
            return
        self.gate_timer.cancel()
        if not self.gate.done():
            self.gate.set_result(None)
        self.gate = self.gate_timer = None

    async def flush(self) -> None:
        """Wait until everything asked for so far is sent (held sends included)."""
        self.release()
        if self.last is not None:
            await asyncio.wait([self.last])

    async def _send_after(
        self,
        previous: "asyncio.Task | None",
        gate: "asyncio.Future | None",
        group: str,
        event: dict,
    ) -> None:
        # asyncio.wait, not await: a cancelled send must not cancel what it waits for.
        if gate is not None:
            await asyncio.wait([gate])
        if previous is not None:
            await asyncio.wait([previous])
        try:
            await self.layer.group_send(group, event)
        except Exception:
            logger.exception("Sending to %s failed", group)


# Sends in flight, kept from the garbage collector until they are done.
_sending: set[asyncio.Task] = set()


async def group_size(layer, group: str) -> int | None:
    """How many channels follow the group now, or None when the layer cannot tell.

    Channels has no API for it; this reads the group as the two layers Helpdesk runs on
    store it: channels-redis in a sorted set scored by join time (expired entries are
    left out, as its group_send leaves them out), the in-memory layer in a dict.
    """
    if isinstance(layer, RedisChannelLayer):
        connection = layer.connection(layer.consistent_hash(group))
        fresh = int(time.time()) - layer.group_expiry
        return await connection.zcount(layer._group_key(group), fresh, "+inf")
    if isinstance(layer, InMemoryChannelLayer):
        return len(layer.groups.get(group, ()))
    return None
