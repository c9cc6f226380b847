"""A test client that speaks the widget protocol (docs/protocol.md) over a real consumer."""

import asyncio
import json
import uuid

from channels.testing import WebsocketCommunicator

from helpdesk import consumers, websocket
from helpdesk.asgi import application

SHOP_ORIGIN = "https://shop.example"


class WidgetClient:
    """A widget frame's websocket, speaking docs/protocol.md."""

    def __init__(self, site_key: str, *, origin: str = SHOP_ORIGIN) -> None:
        headers = [(b"host", b"testserver"), (b"user-agent", b"pytest")]
        if origin:
            headers.append((b"origin", origin.encode()))
        self.communicator = WebsocketCommunicator(
            application, f"/ws/widget/{site_key}/", headers=headers
        )
        self.token: str | None = None

    @classmethod
    async def opened(cls, site_key: str, **kwargs) -> "WidgetClient":
        """A client that has connected and said hello."""
        client = cls(site_key, **kwargs)
        assert await client.connect()
        await client.hello()
        return client

    async def connect(self) -> bool:
        connected, _ = await self.communicator.connect()
        return connected

    async def send(self, frame: dict) -> None:
        await self.communicator.send_to(text_data=json.dumps(frame))

    async def receive(self, timeout: float = 5) -> dict:
        return json.loads(await self.communicator.receive_from(timeout=timeout))

    async def receive_until(self, frame_type: str, timeout: float = 5) -> list[dict]:
        frames = []
        while True:
            frame = await self.receive(timeout)
            frames.append(frame)
            if frame["type"] == frame_type:
                return frames

    async def hello(self, token: str | None = None, after: int = 0) -> tuple[dict, list[dict]]:
        """Say hello; return the ready frame and the replayed messages."""
        await self.send({"type": "hello", "token": token, "after": after, "language": "en"})
        frames = await self.receive_until("synced")
        ready = frames[0]
        assert ready["type"] == "ready"
        self.token = ready["token"]
        return ready, [f["message"] for f in frames if f["type"] == "message"]

    async def say(self, text: str, client_id: str | None = None) -> dict:
        """Send a customer message and return its ack."""
        client_id = client_id or str(uuid.uuid4())
        await self.send({"type": "message", "id": client_id, "text": text})
        frames = await self.receive_until("ack")
        return frames[-1]

    async def answer(self) -> tuple[list[dict], dict]:
        """Collect a bot answer: its deltas and the final done frame."""
        frames = await self.receive_until("done")
        return [f for f in frames if f["type"] == "delta"], frames[-1]

    async def close(self) -> None:
        await self.communicator.disconnect()
        # Answers outlive their socket by design; a test must not end (and flush the
        # database) while one is still writing.
        running = [*consumers._running_answers, *websocket._sending]
        if running:
            await asyncio.wait(running, timeout=10)
