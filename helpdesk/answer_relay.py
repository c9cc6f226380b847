"""The relay of a bot answer's frames from the widget consumer.

`AnswerRelay` sends the answer's frames straight to the socket that asked and forwards them,
in order, through the channel layer to the conversation's other connections (the visitor's
other tabs, agents' consoles): the asking socket never waits for a channel-layer round trip,
and the first token reaches it as soon as the model gives it.
"""

import asyncio
import contextlib
import logging

logger = logging.getLogger(__name__)


class AnswerRelay:
    """The frames of one bot answer, to the asking socket at once and to the group in order.

    `send_own(frame)` delivers to the asking socket if it is still open and on this
    conversation; one forwarder task sends the same frames, one after another, to the
    conversation's group, skipping the asking socket.
    """

    def __init__(
        self, *, conversation_id: int, group: str, channel_layer, channel_name: str, send_own
    ) -> None:
        self.conversation_id = conversation_id
        self.group = group
        self.channel_layer = channel_layer
        self.channel_name = channel_name
        self.send_own = send_own
        self.pending: asyncio.Queue[dict | None] = asyncio.Queue()
        self.forwarder = asyncio.create_task(self._forward())

    async def send(self, frame: dict) -> None:
        frame = {"conversation": self.conversation_id, **frame}
        self.pending.put_nowait(frame)
        await self.send_own(self.conversation_id, frame)

    async def close(self) -> None:
        """Wait until every frame has gone to the group."""
        self.pending.put_nowait(None)
        try:
            await asyncio.shield(self.forwarder)
        except asyncio.CancelledError:
            self.forwarder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.forwarder
            raise

    async def _forward(self) -> None:
        while (frame := await self.pending.get()) is not None:
            try:
                await self.channel_layer.group_send(
                    self.group,
                    {"type": "conversation.frame", "frame": frame, "skip": self.channel_name},
                )
            except Exception:
                logger.exception("Could not relay a frame of conversation %s", self.conversation_id)
