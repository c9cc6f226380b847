"""Reads of the human handoff: the agents' queue, a conversation's transcript, queue positions.

Every payload here is plain JSON data (ids, strings, ISO datetimes), fit for the channel
layer and the websocket; never a model instance.
"""

import logging
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from handoff.models import AgentProfile, Handoff, HandoffSettings, InternalNote, Rating, Team
from helpdesk.models import Conversation, Message

logger = logging.getLogger(__name__)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Resolved handoffs whose handle time estimates the wait: recent enough to follow the
# staffing of the day, many enough that one long conversation does not swing it.
HANDLE_TIME_SAMPLE = 50
LAST_MESSAGE_PREVIEW = 200
# What handoff_payload() reads, in one query.
PAYLOAD_RELATED = ("site", "team", "agent__agent_profile", "conversation__visitor")

_UNSET = object()


@dataclass(frozen=True)
class QueueInfo:
    """What a waiting customer is told (the widget's `queue` frame)."""

    position: int | None
    expected_wait_seconds: int | None
    agents_online: bool
    open_now: bool

    def as_frame(self) -> dict:
        return {
            "type": "queue",
            "position": self.position,
            "expected_wait_seconds": self.expected_wait_seconds,
            "agents_online": self.agents_online,
            "open_now": self.open_now,
        }


# Who may see what


def is_supervisor(user) -> bool:
    """Superusers and managers see and may act on every site's conversations."""
    return user.is_superuser or user.groups.filter(name="Managers").exists()


def can_see_site(user, site_id: int) -> bool:
    """The same rule as HandoffQuerySet.visible_to(), for one site."""
    return is_supervisor(user) or AgentProfile.objects.filter(user=user, sites=site_id).exists()


def agent_name(user) -> str:
    """The name a customer sees: the profile's display name, else the full name or username."""
    try:
        profile = user.agent_profile
    except AgentProfile.DoesNotExist:
        profile = None
    if profile is not None:
        return profile.name
    return user.get_full_name() or user.get_username()


def settings_for_site(site_id: int) -> HandoffSettings:
    """The site's handoff settings, or the defaults (unsaved) when it has none yet."""
    return HandoffSettings.objects.filter(site_id=site_id).first() or HandoffSettings(
        site_id=site_id
    )


# Payloads


def load_handoff(handoff_id: int) -> Handoff:
    return Handoff.objects.select_related(*PAYLOAD_RELATED).get(pk=handoff_id)


def handoff_payload(handoff: Handoff, *, now: datetime | None = None, last_message=_UNSET) -> dict:
    """The handoff object of docs/agent-protocol.md.

    Load the handoff with PAYLOAD_RELATED. `last_message` (a Message or None) saves the one
    query that finds it; open_queue() passes it for a whole page at once.
    """
    now = now or timezone.now()
    conversation = handoff.conversation
    visitor = conversation.visitor
    if last_message is _UNSET:
        last_message = Message.objects.filter(
            conversation_id=handoff.conversation_id, seq=conversation.last_seq
        ).first()
    # A waiting handoff is still waiting now; a claimed one waited until its claim.
    if handoff.status == Handoff.Status.WAITING:
        waited_until = now
    else:
        waited_until = handoff.claimed_at or handoff.resolved_at or now
    return {
        "id": handoff.pk,
        "conversation": handoff.conversation_id,
        "site": {"id": handoff.site_id, "name": handoff.site.name},
        "status": handoff.status,
        "priority": handoff.priority,
        "rule": handoff.rule,
        "reason": handoff.reason,
        "team": {"id": handoff.team_id, "name": handoff.team.name} if handoff.team else None,
        "agent": (
            {"id": handoff.agent_id, "name": agent_name(handoff.agent)} if handoff.agent else None
        ),
        "created_at": handoff.created_at.isoformat(),
        "claimed_at": handoff.claimed_at.isoformat() if handoff.claimed_at else None,
        "waiting_seconds": max(0, int((waited_until - handoff.created_at).total_seconds())),
        "visitor": {
            "language": visitor.language,
            "page_url": visitor.page_url,
            "attributes": visitor.attributes,
        },
        "last_message": _message_preview(last_message),
    }


def _message_preview(message: Message | None) -> dict | None:
    if message is None:
        return None
    return {
        "id": message.pk,
        "seq": message.seq,
        "author": message.author,
        "text": message.text[:LAST_MESSAGE_PREVIEW],
        "created_at": message.created_at.isoformat(),
    }


def note_payload(note: InternalNote) -> dict:
    return {
        "id": note.pk,
        "author": agent_name(note.author) if note.author else None,
        "text": note.text,
        "created_at": note.created_at.isoformat(),
    }


def open_queue(user) -> list[dict]:
    """Open handoffs the user may see: their teams' first, then by priority, oldest first.

    A fixed number of queries whatever the queue's length.
    """
    in_my_team = Exists(
        Team.members.through.objects.filter(team_id=OuterRef("team_id"), user_id=user.pk)
    )
    handoffs = list(
        Handoff.objects.open()
        .visible_to(user)
        .select_related(*PAYLOAD_RELATED)
        .annotate(in_my_team=in_my_team)
        .order_by("-in_my_team", "-priority", "created_at", "pk")
    )
    # Each conversation's newest message is the one at its last sequence number.
    last_messages = {
        message.conversation_id: message
        for message in Message.objects.filter(
            conversation_id__in={handoff.conversation_id for handoff in handoffs},
            seq=F("conversation__last_seq"),
        )
    }
    now = timezone.now()
    return [
        handoff_payload(handoff, now=now, last_message=last_messages.get(handoff.conversation_id))
        for handoff in handoffs
    ]


def transcript_payload(conversation_id: int, user) -> dict | None:
    """The console's `transcript` frame (without its type), or None if the user may not see it."""
    conversation = (
        Conversation.objects.select_related("site", "visitor").filter(pk=conversation_id).first()
    )
    if conversation is None or not can_see_site(user, conversation.site_id):
        return None
    messages = list(conversation.messages.order_by("seq"))
    notes = InternalNote.objects.filter(conversation=conversation).select_related(
        "author__agent_profile"
    )
    handoff = (
        Handoff.objects.filter(conversation=conversation)
        .select_related(*PAYLOAD_RELATED)
        .order_by("-created_at", "-pk")
        .first()
    )
    visitor = conversation.visitor
    return {
        "conversation": {
            "id": conversation.pk,
            "status": conversation.status,
            "site": {"id": conversation.site_id, "name": conversation.site.name},
            "visitor": {
                "id": visitor.pk,
                "language": visitor.language,
                "page_url": visitor.page_url,
                "attributes": visitor.attributes,
            },
            "contact_email": conversation.contact_email,
            "escalation_reason": conversation.escalation_reason,
        },
        "messages": [message.as_frame() for message in messages],
        "notes": [note_payload(note) for note in notes],
        "handoff": (
            handoff_payload(handoff, last_message=messages[-1] if messages else None)
            if handoff
            else None
        ),
    }


# The customer's view of the queue


def queue_info(handoff_id: int, *, now: datetime | None = None) -> QueueInfo:
    """Where a handoff stands in its site's queue, and whether anyone can come."""
    handoff = Handoff.objects.get(pk=handoff_id)
    site_settings = settings_for_site(handoff.site_id)
    position = None
    if handoff.status == Handoff.Status.WAITING:
        # Ahead: the waiting handoffs of the site that sort before it (Handoff.Meta.ordering).
        ahead = (
            Handoff.objects.waiting()
            .filter(site_id=handoff.site_id)
            .filter(
                Q(priority__gt=handoff.priority)
                | Q(priority=handoff.priority, created_at__lt=handoff.created_at)
                | Q(priority=handoff.priority, created_at=handoff.created_at, pk__lt=handoff.pk)
            )
            .count()
        )
        position = ahead + 1
    return QueueInfo(
        position=position,
        expected_wait_seconds=_expected_wait(position, median_handle_seconds(handoff.site_id)),
        agents_online=agents_online(handoff.site_id, team_id=handoff.team_id),
        open_now=is_open(site_settings.business_hours, site_settings.timezone, now),
    )


# How long after "Resolve" a reloaded widget still offers the rating.
RATING_WINDOW = timedelta(hours=24)


def conversation_to_rate(*, visitor_id: int) -> dict | None:
    """The visitor's latest conversation if it is resolved, recently, and not rated yet, as
    the widget's `ready` names a conversation; else None.

    A reload after "Resolve" has no open conversation to show: this one keeps the transcript
    and the rating prompt in view, as they were live. Writing again starts a new one.
    """
    latest = (
        Conversation.objects.filter(visitor_id=visitor_id)
        .order_by("-created_at", "-pk")
        .values("pk", "status", "last_seq", "resolved_at")
        .first()
    )
    if (
        latest is None
        or latest["status"] != Conversation.Status.RESOLVED
        or latest["resolved_at"] is None
        or latest["resolved_at"] < timezone.now() - RATING_WINDOW
        or Rating.objects.filter(conversation_id=latest["pk"]).exists()
    ):
        return None
    return {"id": latest["pk"], "status": latest["status"], "seq": latest["last_seq"]}


def widget_handoff_frames(conversation_id: int) -> list[dict]:
    """The handoff state a widget that (re)connects would have got live, as the same frames.

    Waiting: the `queue` frame (position, expected wait, availability) and the `contact`
    frame of an e-mail address already left. With an agent: the `agent` frame of whoever
    holds the conversation now. Nothing when no handoff is open.
    """
    handoff = (
        Handoff.objects.open()
        .filter(conversation_id=conversation_id)
        .select_related("agent__agent_profile", "conversation")
        .first()
    )
    if handoff is None:
        return []
    frames: list[dict]
    if handoff.status == Handoff.Status.WAITING:
        frames = [queue_info(handoff.pk).as_frame()]
        if handoff.conversation.contact_email:
            frames.append({"type": "contact", "email": handoff.conversation.contact_email})
    elif handoff.agent is not None:
        frames = [{"type": "agent", "name": agent_name(handoff.agent), "joined": True}]
    else:
        frames = []
    return [{"conversation": conversation_id, **frame} for frame in frames]


def site_queue(site_id: int, *, now: datetime | None = None) -> dict[int, QueueInfo]:
    """QueueInfo of every waiting handoff of a site, by conversation id, in a few queries."""
    waiting = list(
        Handoff.objects.waiting()
        .filter(site_id=site_id)
        .order_by("-priority", "created_at", "pk")
        .values_list("conversation_id", "team_id")
    )
    if not waiting:
        return {}
    site_settings = settings_for_site(site_id)
    open_now = is_open(site_settings.business_hours, site_settings.timezone, now)
    median = median_handle_seconds(site_id)
    online_users = set(
        AgentProfile.objects.filter(sites=site_id, is_online=True).values_list("user_id", flat=True)
    )
    online_teams = set(
        Team.members.through.objects.filter(user_id__in=online_users).values_list(
            "team_id", flat=True
        )
    )
    return {
        conversation_id: QueueInfo(
            position=position,
            expected_wait_seconds=_expected_wait(position, median),
            agents_online=team_id in online_teams if team_id else bool(online_users),
            open_now=open_now,
        )
        for position, (conversation_id, team_id) in enumerate(waiting, start=1)
    }


def _expected_wait(position: int | None, median: float | None) -> int | None:
    if position is None or median is None:
        return None
    return round(position * median)


def median_handle_seconds(site_id: int) -> float | None:
    """Median claim-to-resolution time of the site's last resolved handoffs; None without any."""
    rows = (
        Handoff.objects.filter(
            site_id=site_id,
            status=Handoff.Status.RESOLVED,
            claimed_at__isnull=False,
            resolved_at__isnull=False,
        )
        .order_by("-resolved_at")
        .values_list("claimed_at", "resolved_at")[:HANDLE_TIME_SAMPLE]
    )
    durations = [max(0.0, (resolved - claimed).total_seconds()) for claimed, resolved in rows]
    return statistics.median(durations) if durations else None


def agents_online(site_id: int, *, team_id: int | None = None) -> bool:
    """Any agent of the site online (a member of the team, when the handoff has one)."""
    profiles = AgentProfile.objects.filter(sites=site_id, is_online=True)
    if team_id is not None:
        profiles = profiles.filter(user__helpdesk_teams=team_id)
    return profiles.exists()


def is_open(business_hours: dict, timezone_name: str, now: datetime | None = None) -> bool:
    """Within business hours at `now` (default: now).

    `business_hours` maps mon..sun to ["HH:MM", "HH:MM"] (or a list of such pairs) in the
    site's time zone; a missing day is closed; no hours at all means always open. An end at
    or before the start runs past midnight into the next day; "24:00" is the end of the day.
    """
    if not business_hours:
        return True
    try:
        zone = ZoneInfo(timezone_name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        logger.warning("Unknown time zone %r in handoff settings; using UTC.", timezone_name)
        zone = ZoneInfo("UTC")
    local = (now or timezone.now()).astimezone(zone)
    minute = local.hour * 60 + local.minute
    today = WEEKDAYS[local.weekday()]
    yesterday = WEEKDAYS[(local.weekday() - 1) % 7]
    for start, end in _spans(business_hours.get(today)):
        if start < end and start <= minute < end:
            return True
        if end <= start and minute >= start:
            return True
    # Yesterday's hours that run past midnight.
    return any(
        end <= start and minute < end for start, end in _spans(business_hours.get(yesterday))
    )


def _spans(value) -> list[tuple[int, int]]:
    """["09:00", "17:00"] or [["09:00", "12:00"], ["13:00", "17:00"]] as minutes of the day."""
    if not value:
        return []
    if not isinstance(value, list | tuple):
        logger.warning("Ignoring malformed business hours %r.", value)
        return []
    pairs = [value] if isinstance(value[0], str) else value
    spans = []
    for pair in pairs:
        try:
            start, end = (_minute_of_day(text) for text in pair)
        except (TypeError, ValueError):
            logger.warning("Ignoring malformed business hours %r.", pair)
            continue
        spans.append((start, end))
    return spans


def _minute_of_day(text: str) -> int:
    hours, minutes = (int(part) for part in text.split(":"))
    if not (0 <= hours <= 24 and 0 <= minutes < 60) or (hours == 24 and minutes):
        raise ValueError(text)
    return hours * 60 + minutes
