"""The agents' pages in the admin: the live queue and the console of one conversation.

Both pages render their first state on the server, so they read well before the websocket
opens (and without JavaScript); static/handoff/queue.js and console.js then keep them live
over /ws/agent/ (docs/agent-protocol.md). Every piece of customer text goes through the
template engine's escaping here and through textContent in the scripts.
"""

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from handoff import selectors
from handoff.models import (
    AgentProfile,
    CannedResponse,
    Handoff,
    HandoffSettings,
    InternalNote,
    Team,
)
from helpdesk.models import Conversation, Message, Site

AGENT_GROUPS = ("Agents", "Managers")
RULE_LABELS = dict(Handoff.Rule.choices)
STATUS_LABELS = dict(Handoff.Status.choices)
AGENT_SOCKET_PATH = "/ws/agent/"
DEFAULT_WAIT_ALERT_SECONDS = HandoffSettings._meta.get_field("wait_alert_seconds").default
# handoff.consumers refuses longer replies and notes.
REPLY_MAX_CHARS = 4000
QUEUE_STATES = (Handoff.Status.WAITING, Handoff.Status.ASSIGNED)
# Message.Author values -> what the console calls them.
AUTHOR_LABELS = {
    Message.Author.VISITOR: gettext_lazy("Customer"),
    Message.Author.BOT: gettext_lazy("Bot"),
    Message.Author.AGENT: gettext_lazy("Agent"),
    Message.Author.SYSTEM: gettext_lazy("System"),
}


def _queue_role(user) -> str | None:
    """`supervisor` (every site), `agent` (their sites) or None, in one query at most.

    The same rule as the agent socket's handshake (handoff.consumers), so a page never
    opens for someone whose socket would be refused.
    """
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return None
    if user.is_superuser:
        return "supervisor"
    groups = set(user.groups.filter(name__in=AGENT_GROUPS).values_list("name", flat=True))
    if "Managers" in groups:
        return "supervisor"
    return "agent" if groups else None


def _visible_sites(user, *, every_site: bool):
    sites = Site.objects.all()
    return sites if every_site else sites.filter(agents__user=user)


def _require_agent(request: HttpRequest) -> bool:
    """PermissionDenied unless the user works the queue; whether they see every site."""
    role = _queue_role(request.user)
    if role is None:
        raise PermissionDenied
    return role == "supervisor"


def _labels() -> dict[str, object]:
    """The words queue.js and console.js show, translated with the page."""
    return {
        "connecting": _("Connecting…"),
        "live": _("Live"),
        "reconnecting": _("Reconnecting…"),
        "sending": _("Sending…"),
        "notSent": _("Not sent"),
        "customer": _("Customer"),
        "bot": _("Bot"),
        "agent": _("Agent"),
        "system": _("System"),
        "unassigned": _("Unassigned"),
        "none": "—",
        "claim": _("Claim"),
        "open": _("Open"),
        "noHandoff": _("No open handoff"),
        "notHelpful": _("Marked not helpful"),
        "helpful": _("Marked helpful"),
        "tooLong": _("The reply is too long."),
        "pickTransfer": _("Choose an agent or a team to transfer to."),
        "newHandoff": _("New handoff"),
        "rules": {value: str(label) for value, label in Handoff.Rule.choices},
        "handoffStatuses": {value: str(label) for value, label in Handoff.Status.choices},
        "statuses": {value: str(label) for value, label in Conversation.Status.choices},
    }


# The queue -----------------------------------------------------------------------------------


def queue_view(request: HttpRequest) -> HttpResponse:
    every_site = _require_agent(request)
    sites = list(
        _visible_sites(request.user, every_site=every_site)
        .select_related("handoff_settings")
        .order_by("name")
    )
    site_filter = request.GET.get("site", "")
    state_filter = request.GET.get("state", "")
    if state_filter not in QUEUE_STATES:
        state_filter = ""
    if site_filter not in {str(site.pk) for site in sites}:
        site_filter = ""

    # The same payloads as the socket's `queue` frame, so the first paint and queue.js agree
    # on every field and on the order; the filters are applied the way queue.js applies them.
    wait_alert = {site.pk: _wait_alert(site) for site in sites}
    rows = [
        _queue_row(handoff, wait_alert)
        for handoff in selectors.open_queue(request.user)
        if (not site_filter or str(handoff["site"]["id"]) == site_filter)
        and (not state_filter or handoff["status"] == state_filter)
    ]
    notify, online = _profile_flags(request.user)
    config = {
        "wsPath": AGENT_SOCKET_PATH,
        "now": timezone.now().isoformat(),
        "consoleUrl": reverse("admin:handoff_console", args=[0]),
        "filters": {"site": site_filter, "state": state_filter},
        "waitAlert": {str(site_id): seconds for site_id, seconds in wait_alert.items()},
        "defaultWaitAlert": DEFAULT_WAIT_ALERT_SECONDS,
        "notifyDefault": notify,
        "labels": _labels(),
    }
    context = {
        **admin.site.each_context(request),
        "title": _("Handoff queue"),
        "opts": Handoff._meta,
        "rows": rows,
        "sites": sites,
        "states": [(s.value, s.label) for s in QUEUE_STATES],
        "site_filter": site_filter,
        "state_filter": state_filter,
        "online": online,
        "notify": notify,
        "queue_config": config,
    }
    return TemplateResponse(request, "admin/handoff/queue.html", context)


def _wait_alert(site: Site) -> int:
    try:
        return site.handoff_settings.wait_alert_seconds
    except HandoffSettings.DoesNotExist:
        return DEFAULT_WAIT_ALERT_SECONDS


def _profile_flags(user) -> tuple[bool, bool]:
    """(notifications, online) of the user's agent profile, with the model's defaults."""
    profile = AgentProfile.objects.filter(user=user).only("notifications", "is_online").first()
    return (profile.notifications, profile.is_online) if profile else (True, False)


def _format_duration(seconds: int) -> str:
    """1:05, 12:00, 1:02:03: the same format as queue.js."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _queue_row(handoff: dict, wait_alert: dict[int, int]) -> dict:
    waited = handoff["waiting_seconds"]
    limit = wait_alert.get(handoff["site"]["id"], DEFAULT_WAIT_ALERT_SECONDS)
    # Only waiting handoffs alert; a claimed one stopped waiting when it was claimed.
    overdue = handoff["status"] == Handoff.Status.WAITING and waited > limit
    return {
        "h": handoff,
        "waited_display": _format_duration(waited),
        "overdue": overdue,
        "rule_label": RULE_LABELS.get(handoff["rule"], handoff["rule"]),
        "status_label": STATUS_LABELS.get(handoff["status"], handoff["status"]),
    }


# The console ---------------------------------------------------------------------------------


def console_view(request: HttpRequest, conversation_id: int) -> HttpResponse:
    every_site = _require_agent(request)
    conversations = Conversation.objects.select_related("site", "visitor")
    if not every_site:
        conversations = conversations.filter(site__agents__user=request.user)
    conversation = get_object_or_404(conversations, pk=conversation_id)

    messages = list(
        conversation.messages.order_by("seq").only(
            "id", "conversation_id", "seq", "author", "text", "state", "created_at", "feedback"
        )
    )
    handoff = (
        # A conversation has at most one open handoff and a new one opens only after the last
        # closed, so the newest is the open one when there is one.
        conversation.handoffs.select_related(*selectors.PAYLOAD_RELATED)
        .order_by("-created_at", "-pk")
        .first()
    )
    notes = list(
        InternalNote.objects.filter(conversation=conversation).select_related(
            "author__agent_profile"
        )
    )
    canned = list(CannedResponse.objects.filter(site=conversation.site).order_by("title"))
    transfer_agents = list(
        AgentProfile.objects.filter(sites=conversation.site, user__is_active=True)
        .exclude(user=request.user)
        .select_related("user")
        .order_by("display_name", "user__username")
    )
    teams = list(Team.objects.order_by("name"))

    visitor = conversation.visitor
    page_url = visitor.page_url if visitor.page_url.startswith(("http://", "https://")) else ""
    config = {
        "wsPath": AGENT_SOCKET_PATH,
        "conversation": conversation.pk,
        "status": conversation.status,
        "user": request.user.pk,
        # The handoff object of the protocol, as later `handoff` frames bring it.
        "handoff": (
            selectors.handoff_payload(handoff, last_message=messages[-1] if messages else None)
            if handoff
            else None
        ),
        "maxReplyChars": REPLY_MAX_CHARS,
        "labels": _labels(),
    }
    context = {
        **admin.site.each_context(request),
        "title": _("Conversation %(id)s") % {"id": conversation.pk},
        "opts": Handoff._meta,
        "conversation": conversation,
        "visitor": visitor,
        "page_url": page_url,
        "attributes": sorted((visitor.attributes or {}).items()),
        # Not "messages": the admin's base template shows that name as flash messages.
        "transcript": [(message, AUTHOR_LABELS.get(message.author, "")) for message in messages],
        "handoff": handoff,
        "handoff_agent_name": _agent_name(handoff.agent) if handoff else "",
        "notes": [(note, _agent_name(note.author)) for note in notes],
        "canned_responses": canned,
        "transfer_agents": transfer_agents,
        "teams": teams,
        "is_resolved": conversation.status == Conversation.Status.RESOLVED,
        "console_config": config,
    }
    return TemplateResponse(request, "admin/handoff/console.html", context)


def _agent_name(user) -> str:
    return selectors.agent_name(user) if user is not None else ""
