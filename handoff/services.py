"""Writes of the human handoff: escalate, claim, reply, resolve, return, transfer, rate.

Each service is one atomic change that sends its own channel-layer events (handoff.events)
and queues its webhooks when it commits; callers publish nothing more about it. Errors a
person can cause raise HandoffError, whose `code` is the error frame's code.

Locks are taken in one order, the handoff row before the conversation row, so two services
never wait on each other in a cycle (escalation locks the conversation, but only creates
handoff rows, which nobody else can hold yet).
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, Max, OuterRef, Q, Subquery
from django.utils import timezone, translation
from django.utils.translation import gettext

from handoff import events, selectors
from handoff.models import AgentProfile, Handoff, HandoffSettings, InternalNote, Rating, Team
from handoff.selectors import QueueInfo
from helpdesk.models import Conversation, Message
from helpdesk.services import RecordedMessage, StatusChange, append_message, request_human
from helpdesk.shared_cache import shared_cache

RATING_COMMENT_MAX = 2000
EMAIL_MAX = 254


class HandoffError(Exception):
    """A refused handoff action; `code` is one of CODES (the consumers add protocol codes)."""

    CODES = {
        "not_found": "No such conversation or handoff.",
        "already_claimed": "Another agent has already claimed this conversation.",
        "not_yours": "This conversation is assigned to someone else.",
        "resolved": "This conversation is resolved.",
        "forbidden": "You cannot work on this site's conversations.",
        "already_rated": "This conversation has already been rated.",
        "invalid": "Invalid request.",
    }

    def __init__(self, code: str, message: str = "") -> None:
        self.code = code
        super().__init__(message or self.CODES.get(code, code))


@dataclass(frozen=True)
class Escalation:
    handoff: dict
    created: bool
    # Already sent by escalate_conversation(), so `changed` is always False and a caller's
    # publish_status_change() sends nothing twice. `status` is the conversation's status
    # after the escalation (`human` when it was auto-assigned); `notice` is the stored
    # notice when this escalation moved the conversation to the queue, else None.
    status_change: StatusChange
    queue: QueueInfo


_OPEN = (Handoff.Status.WAITING, Handoff.Status.ASSIGNED)

# The prefixes helpdesk and bots write into Conversation.escalation_reason.
_RULE_PREFIXES = (
    ("customer:", Handoff.Rule.CUSTOMER),
    ("tool:", Handoff.Rule.TOOL),
    ("moderation", Handoff.Rule.MODERATION),
    ("failures", Handoff.Rule.FAILURES),
    ("sentiment", Handoff.Rule.SENTIMENT),
    ("keyword", Handoff.Rule.KEYWORD),
    ("provider_down", Handoff.Rule.PROVIDER_DOWN),
)


def escalation_rule_for_reason(reason: str) -> str:
    """The Handoff.Rule of an escalation_reason ("customer:button", "tool: …", "moderation")."""
    reason = (reason or "").strip().lower()
    for prefix, rule in _RULE_PREFIXES:
        if reason.startswith(prefix):
            return rule
    # Anything else was asked for by the system, not the customer.
    return Handoff.Rule.TOOL


# Escalation and assignment


def escalate_conversation(
    *,
    conversation_id: int,
    rule: str,
    reason: str,
    notice: str,
    priority: int = 0,
    team_id: int | None = None,
) -> Escalation:
    """Put the conversation in the human queue, once, and tell the customer and the agents.

    The conversation goes to `waiting` with `notice` as a system message (request_human; a
    no-op when it already waits or a human has it). A handoff is created unless one is open.
    Sent on commit, in this order: to the conversation, `status` waiting and the notice (when
    this call moved it); `created` to the agents; then either the claim's events, when the
    site auto-assigns, or `queue` frames to the site's waiting customers. The caller publishes
    nothing: a status change it published after the claim would put the customer back to
    `waiting`. A conversation whose first message is the notice (the widget's "Talk to a
    person" button on a new chat) starts here, so `conversation.started` goes out first.
    """
    if rule not in Handoff.Rule.values:
        raise HandoffError("invalid", f"Unknown escalation rule {rule!r}.")
    with transaction.atomic():
        # Locks the conversation until commit: concurrent escalations of it run one by one.
        change = request_human(conversation_id=conversation_id, reason=reason, notice=notice)
        conversation = Conversation.objects.get(pk=conversation_id)
        if conversation.status == Conversation.Status.RESOLVED:
            raise HandoffError("resolved")
        site_id = conversation.site_id
        if change.changed:
            events.send_to_conversation(
                conversation_id, {"type": "status", "status": change.status}
            )
            events.send_to_conversation(
                conversation_id, {"type": "message", "message": change.notice}
            )
            # Exactly one message has seq 1: a first customer message announces it instead.
            if change.notice["seq"] == 1:
                announce_conversation_started(conversation_id=conversation_id, site_id=site_id)
        handoff = _open_handoff(conversation_id)
        created = handoff is None
        if created:
            site_settings = selectors.settings_for_site(site_id)
            try:
                with transaction.atomic():
                    handoff = Handoff.objects.create(
                        conversation_id=conversation_id,
                        site_id=site_id,
                        rule=rule,
                        reason=reason[:300],
                        priority=max(0, priority),
                        team_id=team_id or site_settings.default_team_id,
                    )
            except IntegrityError:
                # handoff_one_open_per_conversation: a concurrent escalation created it.
                handoff = Handoff.objects.open().get(conversation_id=conversation_id)
                created = False
        queue = None
        assigned = False
        if created:
            payload = selectors.handoff_payload(selectors.load_handoff(handoff.pk))
            events.send_to_agents(site_id, "created", payload)
            _emit_webhook(site_id=site_id, event="handoff.created", payload=payload)
            assigned = _auto_assign(handoff, site_settings)
            if not assigned:
                # The claim publishes the site's queue itself.
                queue = _publish_site_queue(site_id).get(conversation_id)
        elif handoff.status == Handoff.Status.WAITING:
            # Asked again while waiting: tell this customer where they stand.
            queue = selectors.queue_info(handoff.pk)
            events.send_to_conversation(conversation_id, queue.as_frame())
        payload = selectors.handoff_payload(selectors.load_handoff(handoff.pk))
        return Escalation(
            handoff=payload,
            created=created,
            status_change=StatusChange(
                conversation_id,
                Conversation.Status.HUMAN if assigned else change.status,
                changed=False,
                notice=change.notice,
            ),
            queue=queue or selectors.queue_info(handoff.pk),
        )


def _open_handoff(conversation_id: int) -> Handoff | None:
    return Handoff.objects.open().filter(conversation_id=conversation_id).first()


def _auto_assign(handoff: Handoff, site_settings: HandoffSettings) -> bool:
    """Claim a new handoff for an online agent with room, per the site's policy."""
    if site_settings.auto_assign == HandoffSettings.AutoAssign.OFF:
        return False
    candidates = AgentProfile.objects.filter(
        sites=handoff.site_id, is_online=True, user__is_active=True
    )
    if handoff.team_id is not None:
        candidates = candidates.filter(user__helpdesk_teams=handoff.team_id)
    candidates = candidates.annotate(
        load=Count(
            "user__handoffs",
            filter=Q(user__handoffs__status=Handoff.Status.ASSIGNED),
            distinct=True,
        ),
        last_claim=Max("user__handoffs__claimed_at"),
    ).filter(load__lt=F("capacity"))
    # Round robin without stored state: whoever was assigned longest ago (or never) is next.
    turn = (F("last_claim").asc(nulls_first=True), "user_id")
    if site_settings.auto_assign == HandoffSettings.AutoAssign.LEAST_BUSY:
        turn = ("load", *turn)
    profile = candidates.order_by(*turn).select_related("user").first()
    if profile is None:
        return False
    # Two escalations at once may both pick the same agent and take them one over capacity;
    # capacity is a guide for assignment, not a hard limit (agents may claim more).
    try:
        claim_handoff(handoff_id=handoff.pk, agent=profile.user)
    except HandoffError:
        return False
    return True


def claim_handoff(*, handoff_id: int, agent) -> dict:
    """Assign a waiting handoff to `agent`; exactly one of concurrent claimers wins.

    The winner's claim is sent on commit: `claimed` to the agents; `status` human, `agent`
    joined and the system message to the conversation. A repeated claim by the winner returns
    the handoff again and sends nothing.
    """
    # Read before the transaction: see _take_waiting() for why the claim's first statement
    # in it must be the write on SQLite.
    handoff = Handoff.objects.filter(pk=handoff_id).only("site_id").first()
    if handoff is None:
        raise HandoffError("not_found")
    if not selectors.can_see_site(agent, handoff.site_id):
        raise HandoffError("forbidden")
    now = timezone.now()
    with transaction.atomic():
        if not _take_waiting(handoff_id, agent=agent, now=now):
            status, agent_id = (
                Handoff.objects.filter(pk=handoff_id).values_list("status", "agent_id").get()
            )
            if status == Handoff.Status.ASSIGNED and agent_id == agent.pk:
                return selectors.handoff_payload(selectors.load_handoff(handoff_id))
            if status in (Handoff.Status.RESOLVED, Handoff.Status.ABANDONED):
                raise HandoffError("resolved")
            raise HandoffError("already_claimed")
        handoff = selectors.load_handoff(handoff_id)
        conversation = handoff.conversation
        Conversation.objects.filter(pk=conversation.pk).update(
            status=Conversation.Status.HUMAN, updated_at=now
        )
        name = selectors.agent_name(agent)
        with _conversation_language(conversation, handoff.site):
            text = gettext("%(name)s joined the conversation.") % {"name": name}
        message = append_message(
            conversation_id=conversation.pk, author=Message.Author.SYSTEM, text=text
        )
        payload = selectors.handoff_payload(handoff, now=now, last_message=message)
        events.send_to_agents(handoff.site_id, "claimed", payload)
        events.send_to_conversation(
            conversation.pk, {"type": "status", "status": Conversation.Status.HUMAN}
        )
        events.send_to_conversation(
            conversation.pk, {"type": "agent", "name": name, "joined": True}
        )
        events.send_to_conversation(
            conversation.pk, {"type": "message", "message": message.as_frame()}
        )
        _emit_webhook(site_id=handoff.site_id, event="handoff.claimed", payload=payload)
        _publish_site_queue(handoff.site_id)
    return payload


def _take_waiting(handoff_id: int, *, agent, now: datetime) -> bool:
    """Assign the handoff if it is still waiting; False when someone else got there first."""
    waiting = Handoff.objects.filter(pk=handoff_id, status=Handoff.Status.WAITING)
    # PostgreSQL: a concurrent claimer holds the row lock until it commits; skipping the
    # locked row answers `already_claimed` at once instead of queueing behind it.
    if connection.features.has_select_for_update_skip_locked and not list(
        waiting.select_for_update(skip_locked=True).values_list("pk", flat=True)
    ):
        return False
    # The conditional UPDATE is the guard on every backend. SQLite has no row locks; there it
    # must be the transaction's first statement, so SQLite waits for the other writer and
    # then evaluates the condition on the committed row (a read first would pin an older
    # snapshot and fail with "database is locked" instead).
    return waiting.update(status=Handoff.Status.ASSIGNED, agent=agent, claimed_at=now) == 1


# The conversation with a human


def record_agent_message(
    *, conversation_id: int, agent, client_id: uuid.UUID, text: str
) -> RecordedMessage:
    """Store the assigned agent's reply once per client id; a resend returns the stored one."""
    if not text.strip():
        raise HandoffError("invalid", "The message is empty.")
    try:
        with transaction.atomic():
            # The common case in one read: the agent holds the conversation's handoff. A
            # resend then fails on message_client_id_unique and is answered below.
            handoff = (
                Handoff.objects.filter(
                    conversation_id=conversation_id, status=Handoff.Status.ASSIGNED, agent=agent
                )
                .exclude(conversation__status=Conversation.Status.RESOLVED)
                .values_list("pk", "first_reply_at", "conversation__status")
                .first()
            )
            if handoff is None:
                return _refused_or_resent(conversation_id, agent, client_id)
            handoff_id, first_reply_at, status = handoff
            message = append_message(
                conversation_id=conversation_id,
                author=Message.Author.AGENT,
                text=text,
                client_id=client_id,
                agent=agent,
                author_name=selectors.agent_name(agent)[:100],
            )
            if first_reply_at is None:
                Handoff.objects.filter(pk=handoff_id, first_reply_at__isnull=True).update(
                    first_reply_at=message.created_at
                )
            frame = message.as_frame()
            events.send_to_conversation(conversation_id, {"type": "message", "message": frame})
            return RecordedMessage(
                message=frame,
                conversation_id=conversation_id,
                conversation_status=status,
                created=True,
            )
    except IntegrityError:
        # message_client_id_unique: the same reply, sent again or twice at once.
        existing = Message.objects.get(conversation_id=conversation_id, client_id=client_id)
        return _recorded_reply(existing, agent)


def _refused_or_resent(conversation_id: int, agent, client_id: uuid.UUID) -> RecordedMessage:
    """Why an agent who does not hold the conversation may not reply, unless this is a
    resend of a reply already stored (answered with it, even once the chat is closed)."""
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None:
        raise HandoffError("not_found")
    existing = Message.objects.filter(conversation_id=conversation_id, client_id=client_id).first()
    if existing is not None:
        return _recorded_reply(existing, agent)
    if conversation.status == Conversation.Status.RESOLVED:
        raise HandoffError("resolved")
    raise HandoffError("not_yours")


def _recorded_reply(message: Message, agent) -> RecordedMessage:
    if message.author != Message.Author.AGENT or message.agent_id != agent.pk:
        raise HandoffError("invalid", "This id belongs to another message.")
    return RecordedMessage(
        message=message.as_frame(),
        conversation_id=message.conversation_id,
        conversation_status=message.conversation.status,
        created=False,
    )


def resolve_conversation(*, conversation_id: int, agent) -> StatusChange:
    """Close the conversation and its handoff; the widget then asks for a rating.

    The assigned agent may, and a manager may for any open conversation. Resolving a
    resolved conversation changes nothing.
    """
    with transaction.atomic():
        conversation, handoff = _for_agent(conversation_id, agent)
        if conversation.status == Conversation.Status.RESOLVED:
            return StatusChange(conversation_id, conversation.status, changed=False, notice=None)
        _check_owner(handoff, agent)
        now = timezone.now()
        if handoff is not None:
            Handoff.objects.filter(pk=handoff.pk).update(
                status=Handoff.Status.RESOLVED, resolved_at=now
            )
        Conversation.objects.filter(pk=conversation_id).update(
            status=Conversation.Status.RESOLVED, resolved_at=now, updated_at=now
        )
        events.send_to_conversation(
            conversation_id, {"type": "status", "status": Conversation.Status.RESOLVED}
        )
        payload = None
        if handoff is not None:
            payload = selectors.handoff_payload(selectors.load_handoff(handoff.pk), now=now)
            events.send_to_agents(conversation.site_id, "resolved", payload)
            if handoff.status == Handoff.Status.WAITING:
                _publish_site_queue(conversation.site_id)
        _emit_webhook(
            site_id=conversation.site_id,
            event="conversation.resolved",
            payload={
                "conversation": conversation_id,
                "resolved_at": now.isoformat(),
                "resolved_by": {"id": agent.pk, "name": selectors.agent_name(agent)},
                "handoff": payload,
            },
        )
    return StatusChange(conversation_id, Conversation.Status.RESOLVED, changed=True, notice=None)


def return_to_bot(*, conversation_id: int, agent) -> StatusChange:
    """Hand the conversation back to the bot: the handoff is resolved with an internal note."""
    with transaction.atomic():
        conversation, handoff = _for_agent(conversation_id, agent)
        if conversation.status == Conversation.Status.RESOLVED:
            raise HandoffError("resolved")
        if handoff is None and conversation.status == Conversation.Status.BOT:
            return StatusChange(conversation_id, conversation.status, changed=False, notice=None)
        _check_owner(handoff, agent)
        now = timezone.now()
        leaving = handoff.agent if handoff is not None and handoff.agent_id else None
        if handoff is not None:
            Handoff.objects.filter(pk=handoff.pk).update(
                status=Handoff.Status.RESOLVED, resolved_at=now
            )
        note = InternalNote.objects.create(
            conversation_id=conversation_id,
            author=agent,
            text=gettext("Returned to the bot by %(name)s.")
            % {"name": selectors.agent_name(agent)},
        )
        Conversation.objects.filter(pk=conversation_id).update(
            status=Conversation.Status.BOT, updated_at=now
        )
        with _conversation_language(conversation):
            if leaving is not None:
                text = gettext(
                    "%(name)s left the conversation. The assistant will answer again."
                ) % {"name": selectors.agent_name(leaving)}
            else:
                text = gettext("The assistant will answer again.")
        message = append_message(
            conversation_id=conversation_id, author=Message.Author.SYSTEM, text=text
        )
        notice = message.as_frame()
        events.send_to_conversation(
            conversation_id, {"type": "status", "status": Conversation.Status.BOT}
        )
        if leaving is not None:
            events.send_to_conversation(
                conversation_id,
                {"type": "agent", "name": selectors.agent_name(leaving), "joined": False},
            )
        events.send_to_conversation(conversation_id, {"type": "message", "message": notice})
        events.send_to_conversation(
            conversation_id,
            {"type": "note", "note": selectors.note_payload(note)},
            agents_only=True,
        )
        if handoff is not None:
            payload = selectors.handoff_payload(selectors.load_handoff(handoff.pk), now=now)
            events.send_to_agents(conversation.site_id, "returned", payload)
            if handoff.status == Handoff.Status.WAITING:
                _publish_site_queue(conversation.site_id)
    return StatusChange(conversation_id, Conversation.Status.BOT, changed=True, notice=notice)


def transfer_handoff(
    *,
    conversation_id: int,
    agent,
    to_agent_id: int | None = None,
    to_team_id: int | None = None,
) -> dict:
    """Hand the conversation to another agent (assigned to them at once) or to a team's queue.

    To a team, the handoff waits again (agent and claim cleared) at its old place in the
    queue, since it keeps its creation time.
    """
    if (to_agent_id is None) == (to_team_id is None):
        raise HandoffError("invalid", "Transfer to either an agent or a team.")
    with transaction.atomic():
        conversation, handoff = _for_agent(conversation_id, agent)
        if conversation.status == Conversation.Status.RESOLVED:
            raise HandoffError("resolved")
        if handoff is None:
            raise HandoffError("invalid", "This conversation is not with a person.")
        _check_owner(handoff, agent)
        now = timezone.now()
        site_id = conversation.site_id
        leaving = handoff.agent if handoff.agent_id else None
        frames: list[dict] = []
        if to_agent_id is not None:
            target = get_user_model().objects.filter(pk=to_agent_id, is_active=True).first()
            if target is None:
                raise HandoffError("not_found", "No such agent.")
            if target.pk == handoff.agent_id:
                raise HandoffError("invalid", "The conversation is already theirs.")
            if not selectors.can_see_site(target, site_id):
                raise HandoffError("invalid", "That agent does not work on this site.")
            Handoff.objects.filter(pk=handoff.pk).update(
                status=Handoff.Status.ASSIGNED, agent=target, claimed_at=now
            )
            new_status = Conversation.Status.HUMAN
            new_name = selectors.agent_name(target)
            with _conversation_language(conversation):
                if leaving is not None:
                    text = gettext("%(old)s transferred the conversation to %(new)s.") % {
                        "old": selectors.agent_name(leaving),
                        "new": new_name,
                    }
                else:
                    text = gettext("%(name)s joined the conversation.") % {"name": new_name}
        else:
            team = Team.objects.filter(pk=to_team_id).first()
            if team is None:
                raise HandoffError("not_found", "No such team.")
            Handoff.objects.filter(pk=handoff.pk).update(
                status=Handoff.Status.WAITING, agent=None, claimed_at=None, team=team
            )
            new_status = Conversation.Status.WAITING
            new_name = None
            with _conversation_language(conversation):
                text = gettext(
                    "You are being transferred to the %(team)s team. Please stay in this chat."
                ) % {"team": team.name}
        if conversation.status != new_status:
            Conversation.objects.filter(pk=conversation_id).update(
                status=new_status, updated_at=now
            )
            frames.append({"type": "status", "status": new_status})
        if leaving is not None:
            frames.append({"type": "agent", "name": selectors.agent_name(leaving), "joined": False})
        if new_name is not None:
            frames.append({"type": "agent", "name": new_name, "joined": True})
        message = append_message(
            conversation_id=conversation_id, author=Message.Author.SYSTEM, text=text
        )
        frames.append({"type": "message", "message": message.as_frame()})
        for frame in frames:
            events.send_to_conversation(conversation_id, frame)
        payload = selectors.handoff_payload(
            selectors.load_handoff(handoff.pk), now=now, last_message=message
        )
        events.send_to_agents(site_id, "transferred", payload)
        if handoff.status == Handoff.Status.WAITING or to_team_id is not None:
            _publish_site_queue(site_id)
    return payload


def add_internal_note(*, conversation_id: int, author, text: str) -> dict:
    """A note for the agents only; it goes to the consoles, never to the customer."""
    if not text.strip():
        raise HandoffError("invalid", "The note is empty.")
    with transaction.atomic():
        conversation = Conversation.objects.filter(pk=conversation_id).first()
        if conversation is None:
            raise HandoffError("not_found")
        if not selectors.can_see_site(author, conversation.site_id):
            raise HandoffError("forbidden")
        note = InternalNote.objects.create(conversation=conversation, author=author, text=text)
        payload = selectors.note_payload(note)
        events.send_to_conversation(
            conversation_id, {"type": "note", "note": payload}, agents_only=True
        )
    return payload


def _for_agent(conversation_id: int, agent) -> tuple[Conversation, Handoff | None]:
    """The conversation (not_found / forbidden checked) and its open handoff, locked."""
    conversation = Conversation.objects.filter(pk=conversation_id).only("site_id").first()
    if conversation is None:
        raise HandoffError("not_found")
    if not selectors.can_see_site(agent, conversation.site_id):
        raise HandoffError("forbidden")
    # The handoff first, then the conversation: the order claim_handoff() takes them in.
    handoff = (
        Handoff.objects.select_for_update()
        .filter(conversation_id=conversation_id, status__in=_OPEN)
        .first()
    )
    conversation = Conversation.objects.select_related("site").get(pk=conversation_id)
    return conversation, handoff


def _check_owner(handoff: Handoff | None, agent) -> None:
    """The assigned agent, or a manager, may act on the conversation."""
    if handoff is not None and handoff.agent_id == agent.pk:
        return
    if selectors.is_supervisor(agent):
        return
    raise HandoffError("not_yours")


# The customer


def set_contact_email(*, visitor_id: int, email: str) -> str:
    """Keep the customer's e-mail address on their latest conversation for a follow-up.

    The consoles following the conversation get a `contact` frame on commit; the customer's
    own socket does not (agents only): the widget consumer answers the `contact` frame itself.
    """
    email = (email or "").strip()
    try:
        if len(email) > EMAIL_MAX:
            raise ValidationError("too long")
        EmailValidator()(email)
    except ValidationError:
        raise HandoffError("invalid", "That does not look like an e-mail address.") from None
    with transaction.atomic():
        conversation = _latest_conversation(visitor_id)
        if conversation is None:
            raise HandoffError("invalid", "There is no conversation to follow up on.")
        conversation.contact_email = email
        conversation.save(update_fields=["contact_email", "updated_at"])
        events.send_to_conversation(
            conversation.pk, {"type": "contact", "email": email}, agents_only=True
        )
    return email


def rate_conversation(*, visitor_id: int, score: int, comment: str = "") -> dict:
    """The customer's rating (1-5) of their latest conversation, once it is resolved; once.

    Queues the `rating.received` webhook; the widget consumer answers the `rating` frame.
    """
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise HandoffError("invalid", "The score must be a whole number from 1 to 5.")
    comment = (comment or "").strip()
    if len(comment) > RATING_COMMENT_MAX:
        raise HandoffError("invalid", f"The comment is over {RATING_COMMENT_MAX} characters.")
    with transaction.atomic():
        conversation = _latest_conversation(visitor_id)
        if conversation is None or conversation.status != Conversation.Status.RESOLVED:
            raise HandoffError("invalid", "A conversation can be rated once it is resolved.")
        if Rating.objects.filter(conversation=conversation).exists():
            raise HandoffError("already_rated")
        try:
            with transaction.atomic():
                rating = Rating.objects.create(
                    conversation=conversation, score=score, comment=comment
                )
        except IntegrityError:
            raise HandoffError("already_rated") from None
        _emit_webhook(
            site_id=conversation.site_id,
            event="rating.received",
            payload={
                "conversation": conversation.pk,
                "score": score,
                "comment": comment,
                "created_at": rating.created_at.isoformat(),
            },
        )
    return {"conversation": conversation.pk, "score": score}


def _latest_conversation(visitor_id: int) -> Conversation | None:
    return Conversation.objects.filter(visitor_id=visitor_id).order_by("-created_at", "-pk").first()


# Agents and the queue's upkeep


def set_agent_online(*, user, online: bool) -> None:
    """The agent is (not) taking conversations; waiting customers of their sites are told."""
    with transaction.atomic():
        profile, _ = AgentProfile.objects.get_or_create(user=user)
        changed = profile.is_online != online
        AgentProfile.objects.filter(pk=profile.pk).update(
            is_online=online, last_seen_at=timezone.now()
        )
        if changed:
            for site_id in profile.sites.values_list("id", flat=True):
                _publish_site_queue(site_id)


# How many /ws/agent/ sockets each agent has open, across every ASGI worker: the cache is
# shared (Redis) in production and incr/decr are atomic there. An agent may work in several
# tabs; only the last one closing takes them offline. No expiry, since a socket may live for
# days; the cost is that a worker killed with sockets open leaves its count too high until
# the cache is cleared, so such an agent stays online until they switch "Available" off.
_SOCKETS_KEY = "handoff:agent-sockets:{}"


def agent_socket_opened(*, user) -> int:
    """Count one more open agent socket of `user`; returns how many are open."""
    key = _SOCKETS_KEY.format(user.pk)
    shared_cache().add(key, 0, timeout=None)
    try:
        return shared_cache().incr(key)
    except ValueError:
        # Cleared between add and incr.
        shared_cache().add(key, 1, timeout=None)
        return 1


def agent_socket_closed(*, user) -> int:
    """Count one socket fewer; the last one closing marks the agent offline (so
    auto-assignment skips them and waiting customers hear how many agents are left)."""
    key = _SOCKETS_KEY.format(user.pk)
    try:
        left = shared_cache().decr(key)
    except ValueError:
        left = 0
    if left <= 0:
        shared_cache().delete(key)
        set_agent_online(user=user, online=False)
    return max(0, left)


def set_agent_notifications(*, user, enabled: bool) -> bool:
    """The agent's own switch for the browser notification and sound on new handoffs."""
    profile, _ = AgentProfile.objects.get_or_create(user=user)
    AgentProfile.objects.filter(pk=profile.pk).update(notifications=enabled)
    return enabled


def mark_abandoned_handoffs(*, now: datetime | None = None) -> int:
    """Abandon waiting handoffs whose customer left longer ago than the site allows.

    "Left" is the later of the visitor's last connection (Visitor.last_seen_at) and their
    last message in the conversation. The conversation is resolved with a system message,
    so a customer who comes back starts a new one (and the agents stop seeing this one);
    no `conversation.resolved` webhook is sent, since nobody resolved it. Returns how many.
    """
    now = now or timezone.now()
    last_visitor_message = Subquery(
        Message.objects.filter(
            conversation_id=OuterRef("conversation_id"), author=Message.Author.VISITOR
        )
        .order_by("-seq")
        .values("created_at")[:1]
    )
    waiting = list(
        Handoff.objects.waiting()
        .annotate(last_visitor_message_at=last_visitor_message)
        .values_list(
            "pk", "site_id", "conversation__visitor__last_seen_at", "last_visitor_message_at"
        )
    )
    limits = dict(
        HandoffSettings.objects.filter(
            site_id__in={site_id for _, site_id, _, _ in waiting}
        ).values_list("site_id", "abandon_after_seconds")
    )
    default_limit = HandoffSettings._meta.get_field("abandon_after_seconds").default
    abandoned = 0
    for handoff_id, site_id, last_seen_at, last_message_at in waiting:
        left_at = max(filter(None, (last_seen_at, last_message_at)))
        if now - left_at > timedelta(seconds=limits.get(site_id, default_limit)):
            abandoned += _abandon(handoff_id, now=now)
    return abandoned


def _abandon(handoff_id: int, *, now: datetime) -> bool:
    with transaction.atomic():
        # Conditional, like a claim: a handoff claimed meanwhile is left alone.
        taken = Handoff.objects.filter(pk=handoff_id, status=Handoff.Status.WAITING).update(
            status=Handoff.Status.ABANDONED, resolved_at=now
        )
        if not taken:
            return False
        handoff = selectors.load_handoff(handoff_id)
        conversation = handoff.conversation
        Conversation.objects.filter(pk=conversation.pk).update(
            status=Conversation.Status.RESOLVED, resolved_at=now, updated_at=now
        )
        with _conversation_language(conversation, handoff.site):
            text = gettext(
                "Nobody could join before you left, so this conversation was closed. "
                "Send a message to start a new one."
            )
        message = append_message(
            conversation_id=conversation.pk, author=Message.Author.SYSTEM, text=text
        )
        events.send_to_conversation(
            conversation.pk, {"type": "status", "status": Conversation.Status.RESOLVED}
        )
        events.send_to_conversation(
            conversation.pk, {"type": "message", "message": message.as_frame()}
        )
        payload = selectors.handoff_payload(handoff, now=now, last_message=message)
        events.send_to_agents(handoff.site_id, "abandoned", payload)
        _publish_site_queue(handoff.site_id)
    return True


# Shared steps


def _publish_site_queue(site_id: int) -> dict[int, QueueInfo]:
    """A `queue` frame to every waiting customer of the site: their places just changed."""
    infos = selectors.site_queue(site_id)
    for conversation_id, info in infos.items():
        events.send_to_conversation(conversation_id, info.as_frame())
    return infos


def _conversation_language(conversation: Conversation, site=None):
    """System messages speak the conversation's language (the site's default without one)."""
    site = site or conversation.site
    return translation.override(
        conversation.language or site.default_language or settings.LANGUAGE_CODE
    )


def _emit_webhook(*, site_id: int, event: str, payload: dict) -> None:
    # Imported here so that webhooks (and the Celery tasks it loads) stay out of the import of
    # the services, and a broken webhooks module fails only the calls that use it.
    from handoff.webhooks import emit_event

    emit_event(site_id=site_id, event=event, payload=payload)


def announce_conversation_started(*, conversation_id: int, site_id: int) -> int:
    """Tell the site's webhooks that a customer started a conversation."""
    from handoff.webhooks import emit_event

    def payload() -> dict:
        conversation = Conversation.objects.select_related("visitor").get(pk=conversation_id)
        return {
            "conversation": conversation.pk,
            "language": conversation.language,
            "page_url": conversation.visitor.page_url,
            "started_at": conversation.created_at.isoformat(),
        }

    return emit_event(site_id=site_id, event="conversation.started", payload=payload)
