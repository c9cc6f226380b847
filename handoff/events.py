"""Channel-layer broadcasts of the handoff services, sent when their transaction commits.

Sync code only (services run in a thread under `database_sync_to_async`). An event for a
change that rolls back is never sent, and an event is never sent before its rows are
visible to whoever reacts to it.
"""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction


def conversation_group(conversation_id: int) -> str:
    # The same name as helpdesk.consumers.conversation_group; not imported from there so the
    # services do not load the widget consumer and the bot engine with it.
    return f"conversation.{conversation_id}"


def agents_group(site_id: int) -> str:
    return f"agents.site.{site_id}"


def send_to_conversation(conversation_id: int, frame: dict, *, agents_only: bool = False) -> None:
    """A frame for every socket following the conversation: the visitor's tabs and consoles.

    `agents_only` frames (internal notes) carry `"audience": "agents"`, which the widget
    consumer drops.
    """
    _group_send_on_commit(
        conversation_group(conversation_id),
        {
            "type": "conversation.frame",
            "frame": {"conversation": conversation_id, **frame},
            "skip": None,
            "audience": "agents" if agents_only else "all",
        },
    )


def send_to_agents(site_id: int, event: str, handoff: dict) -> None:
    """A queue change (`created`, `claimed`, …) for every agent who can see the site."""
    _group_send_on_commit(
        agents_group(site_id), {"type": "queue.event", "event": event, "handoff": handoff}
    )


def _group_send_on_commit(group: str, message: dict) -> None:
    def send() -> None:
        layer = get_channel_layer()
        if layer is not None:
            async_to_sync(layer.group_send)(group, message)

    # robust: the change is committed by then; a channel layer that is down must not turn a
    # stored change into an error for the caller. Clients catch up on reconnect (`resume`,
    # `queue`, `open`), which read the database.
    transaction.on_commit(send, robust=True)
