"""The agents' websocket: the live queue and the conversations an agent follows.

docs/agent-protocol.md is the contract. Writes go through handoff.services, which send
their events on commit; this consumer only checks frames, calls services and forwards events.
"""

import json
import uuid
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from django.conf import settings

from handoff import selectors, services
from handoff.services import HandoffError
from helpdesk.consumers import conversation_group
from helpdesk.websocket import WebsocketConsumer

AGENT_GROUPS = ("Agents", "Managers")


def agents_group(site_id: int) -> str:
    return f"agents.site.{site_id}"


def _may_work_queue(user) -> bool:
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return False
    return user.is_superuser or user.groups.filter(name__in=AGENT_GROUPS).exists()


def _visible_site_ids(user) -> list[int]:
    from helpdesk.models import Site

    sites = Site.objects.all()
    if not (user.is_superuser or user.groups.filter(name="Managers").exists()):
        sites = sites.filter(agents__user=user)
    return list(sites.values_list("id", flat=True))


def _int(frame: dict, field: str) -> int:
    value = frame.get(field)
    if isinstance(value, bool) or not isinstance(value, int):
        raise HandoffError("invalid_field", f"The field '{field}' must be an id.")
    return value


def _text(frame: dict, field: str, limit: int = 4000) -> str:
    value = frame.get(field)
    if not isinstance(value, str) or not value.strip():
        raise HandoffError("invalid_field", f"The field '{field}' must be non-empty text.")
    if len(value) > limit:
        raise HandoffError("invalid_field", f"The field '{field}' is over {limit} characters.")
    return value.strip()


def _client_id(frame: dict) -> str | int | None:
    """The frame's `id`, echoed in its error so a client can tell which request failed."""
    value = frame.get("id")
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return value[:100] if isinstance(value, str) else value


class AgentConsumer(WebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in self.scope["headers"]}
        origin_host = urlsplit(headers.get("origin", "")).netloc
        allowed = user is not None and await database_sync_to_async(_may_work_queue)(user)
        if not allowed or origin_host != headers.get("host", ""):
            await self.close()
            return
        self.user = user
        self.site_ids = await database_sync_to_async(_visible_site_ids)(user)
        self.following: set[int] = set()
        for site_id in self.site_ids:
            await self.channel_layer.group_add(agents_group(site_id), self.channel_name)
        # Counted before the first frame can arrive: a `presence` frame from this socket must
        # never be followed by the offline of a tab that closed before it opened.
        await database_sync_to_async(services.agent_socket_opened)(user=user)
        self.counted = True
        await self.accept()

    async def disconnect(self, code: int) -> None:
        if getattr(self, "counted", False):
            self.counted = False
            await database_sync_to_async(services.agent_socket_closed)(user=self.user)
        for site_id in getattr(self, "site_ids", ()):
            await self.channel_layer.group_discard(agents_group(site_id), self.channel_name)
        for conversation_id in getattr(self, "following", ()):
            await self.leave_group(conversation_group(conversation_id))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        client_id = None
        try:
            if text_data is None or len(text_data) > settings.HELPDESK_MAX_FRAME_BYTES * 4:
                raise HandoffError("invalid_json", "Send JSON text frames of at most 16 KB.")
            try:
                frame = json.loads(text_data)
            except ValueError:
                raise HandoffError("invalid_json", "The frame is not valid JSON.") from None
            if not isinstance(frame, dict):
                raise HandoffError("invalid_json", "The frame must be a JSON object.")
            client_id = _client_id(frame)
            handler = getattr(self, f"on_{frame.get('type')}", None)
            if not isinstance(frame.get("type"), str) or handler is None:
                raise HandoffError("unknown_type", f"Unknown frame type {frame.get('type')!r:.40}.")
            await handler(frame)
        except HandoffError as error:
            await self.send_frame(
                {"type": "error", "code": error.code, "message": str(error), "id": client_id}
            )

    async def send_frame(self, frame: dict) -> None:
        await self.send(text_data=json.dumps(frame, ensure_ascii=False, default=str))

    # Client frames

    async def on_ping(self, frame: dict) -> None:
        await self.send_frame({"type": "pong"})

    async def on_queue(self, frame: dict) -> None:
        handoffs = await database_sync_to_async(selectors.open_queue)(self.user)
        await self.send_frame({"type": "queue", "handoffs": handoffs})

    async def on_open(self, frame: dict) -> None:
        conversation_id = _int(frame, "conversation")
        transcript = await database_sync_to_async(selectors.transcript_payload)(
            conversation_id, self.user
        )
        if transcript is None:
            raise HandoffError("not_found", "No such conversation.")
        if conversation_id not in self.following:
            self.following.add(conversation_id)
            await self.join_group(conversation_group(conversation_id))
        await self.send_frame({"type": "transcript", **transcript})

    async def on_close(self, frame: dict) -> None:
        conversation_id = _int(frame, "conversation")
        if conversation_id in self.following:
            self.following.discard(conversation_id)
            await self.leave_group(conversation_group(conversation_id))

    async def on_claim(self, frame: dict) -> None:
        handoff = await database_sync_to_async(services.claim_handoff)(
            handoff_id=_int(frame, "handoff"), agent=self.user
        )
        await self.send_frame({"type": "claimed", "handoff": handoff})

    async def on_reply(self, frame: dict) -> None:
        conversation_id = _int(frame, "conversation")
        try:
            client_id = uuid.UUID(str(frame.get("id")))
        except ValueError:
            raise HandoffError("invalid_field", "The field 'id' must be a UUID.") from None
        recorded = await database_sync_to_async(services.record_agent_message)(
            conversation_id=conversation_id,
            agent=self.user,
            client_id=client_id,
            text=_text(frame, "text"),
        )
        await self.send_frame(
            {
                "type": "ack",
                "id": str(client_id),
                "message_id": recorded.message["id"],
                "conversation": conversation_id,
                "seq": recorded.message["seq"],
            }
        )

    async def on_note(self, frame: dict) -> None:
        await database_sync_to_async(services.add_internal_note)(
            conversation_id=_int(frame, "conversation"), author=self.user, text=_text(frame, "text")
        )

    async def on_typing(self, frame: dict) -> None:
        conversation_id = _int(frame, "conversation")
        if conversation_id not in self.following:
            raise HandoffError("not_found", "Open the conversation first.")
        await self.channel_layer.group_send(
            conversation_group(conversation_id),
            {
                "type": "conversation.frame",
                "frame": {
                    "type": "typing",
                    "conversation": conversation_id,
                    "author": "agent",
                    "active": bool(frame.get("active")),
                },
                "skip": self.channel_name,
                "audience": "all",
            },
        )

    async def on_resolve(self, frame: dict) -> None:
        await database_sync_to_async(services.resolve_conversation)(
            conversation_id=_int(frame, "conversation"), agent=self.user
        )

    async def on_return_to_bot(self, frame: dict) -> None:
        await database_sync_to_async(services.return_to_bot)(
            conversation_id=_int(frame, "conversation"), agent=self.user
        )

    async def on_transfer(self, frame: dict) -> None:
        to_agent = frame.get("agent")
        to_team = frame.get("team")
        if not isinstance(to_agent, int) and not isinstance(to_team, int):
            raise HandoffError("missing_field", "Name an 'agent' or a 'team' to transfer to.")
        await database_sync_to_async(services.transfer_handoff)(
            conversation_id=_int(frame, "conversation"),
            agent=self.user,
            to_agent_id=to_agent if isinstance(to_agent, int) else None,
            to_team_id=to_team if isinstance(to_team, int) else None,
        )

    async def on_presence(self, frame: dict) -> None:
        await database_sync_to_async(services.set_agent_online)(
            user=self.user, online=bool(frame.get("online"))
        )

    async def on_notifications(self, frame: dict) -> None:
        enabled = frame.get("enabled")
        if not isinstance(enabled, bool):
            raise HandoffError("invalid_field", "The field 'enabled' must be true or false.")
        await database_sync_to_async(services.set_agent_notifications)(
            user=self.user, enabled=enabled
        )
        await self.send_frame({"type": "notifications", "enabled": enabled})

    # Channel-layer events

    async def conversation_frame(self, event: dict) -> None:
        if event.get("skip") != self.channel_name:
            await self.send_frame(event["frame"])

    async def queue_event(self, event: dict) -> None:
        await self.send_frame(
            {"type": "handoff", "event": event["event"], "handoff": event["handoff"]}
        )
