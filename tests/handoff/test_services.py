"""The handoff services and selectors against a real database and the in-memory channel layer."""

import asyncio
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.utils import timezone

from handoff import selectors, services
from handoff.events import agents_group, conversation_group
from handoff.models import (
    AgentProfile,
    Handoff,
    HandoffSettings,
    InternalNote,
    Rating,
    Team,
)
from handoff.services import HandoffError
from helpdesk.models import Conversation, Message, Visitor
from helpdesk.services import append_message, messages_after, request_human
from tests.conftest import make_site

pytestmark = pytest.mark.django_db

NOTICE = "Thanks, we're connecting you to a person."


# Fixtures and helpers


@pytest.fixture(autouse=True)
def webhooks(monkeypatch):
    """Webhook events the services emitted, as (site id, event, payload)."""
    emitted = []

    def emit_event(*, site_id: int, event: str, payload) -> int:
        emitted.append((site_id, event, payload() if callable(payload) else payload))
        return 0

    monkeypatch.setattr("handoff.webhooks.emit_event", emit_event)
    return emitted


@pytest.fixture
def layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    return get_channel_layer()


class Listener:
    """A channel in one group: what a socket there would get."""

    def __init__(self, layer, group: str) -> None:
        self.layer = layer
        self.channel = async_to_sync(layer.new_channel)()
        async_to_sync(layer.group_add)(group, self.channel)

    def events(self) -> list[dict]:
        async def drain() -> list[dict]:
            received = []
            while True:
                try:
                    received.append(await asyncio.wait_for(self.layer.receive(self.channel), 0.05))
                except TimeoutError:
                    return received

        return async_to_sync(drain)()

    def frames(self) -> list[dict]:
        return [event["frame"] for event in self.events()]


@pytest.fixture
def listen(layer):
    return lambda group: Listener(layer, group)


@pytest.fixture
def make_agent(db, django_user_model):
    def make(username, *sites, online=False, capacity=5, teams=(), display_name=None):
        user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
        user.groups.add(Group.objects.get_or_create(name="Agents")[0])
        profile = AgentProfile.objects.create(
            user=user,
            display_name=username.title() if display_name is None else display_name,
            is_online=online,
            capacity=capacity,
        )
        profile.sites.set(sites)
        for team in teams:
            team.members.add(user)
        return user

    return make


@pytest.fixture
def manager(db, django_user_model):
    user = django_user_model.objects.create_user("boss", password="pw", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="Managers")[0])
    return user


@pytest.fixture
def other_site(db):
    return make_site(name="Other shop")


def make_conversation(site, *, language="en", text="My order never arrived") -> Conversation:
    visitor = Visitor.objects.create(site=site, language=language)
    conversation = Conversation.objects.create(site=site, visitor=visitor, language=language)
    append_message(conversation_id=conversation.pk, author=Message.Author.VISITOR, text=text)
    return conversation


def escalate(conversation, **fields) -> services.Escalation:
    return services.escalate_conversation(
        conversation_id=conversation.pk,
        rule=fields.pop("rule", Handoff.Rule.CUSTOMER),
        reason=fields.pop("reason", "customer:button"),
        notice=NOTICE,
        **fields,
    )


def claimed(site, agent, **fields) -> Conversation:
    """A conversation escalated and claimed by `agent`."""
    conversation = make_conversation(site, **fields)
    services.claim_handoff(handoff_id=escalate(conversation).handoff["id"], agent=agent)
    conversation.refresh_from_db()
    return conversation


def texts(conversation, author=Message.Author.SYSTEM) -> list[str]:
    return list(
        conversation.messages.filter(author=author).order_by("seq").values_list("text", flat=True)
    )


# Escalation


def test_escalation_creates_one_handoff_however_often_it_is_asked(site, webhooks):
    conversation = make_conversation(site)
    first = escalate(conversation, reason="customer:button")
    second = escalate(conversation, rule=Handoff.Rule.SENTIMENT, reason="sentiment")

    assert first.created
    assert not second.created
    assert Handoff.objects.count() == 1
    assert second.handoff["id"] == first.handoff["id"]
    assert first.status_change.notice["text"] == NOTICE
    assert second.status_change.notice is None
    handoff = Handoff.objects.get()
    assert (handoff.status, handoff.rule, handoff.reason) == (
        "waiting",
        "customer_request",
        "customer:button",
    )
    conversation.refresh_from_db()
    assert conversation.status == "waiting"
    assert texts(conversation) == [NOTICE]
    assert [event for _, event, _ in webhooks] == ["handoff.created"]


def test_the_handoff_payload_has_the_documented_shape(site):
    conversation = make_conversation(site, text="Where is my parcel?")
    Visitor.objects.filter(pk=conversation.visitor_id).update(
        page_url="https://shop.example/orders", attributes={"plan": "gold"}
    )
    payload = escalate(conversation, priority=2).handoff

    assert set(payload) == {
        "id", "conversation", "site", "status", "priority", "rule", "reason", "team", "agent",
        "created_at", "claimed_at", "waiting_seconds", "visitor", "last_message",
    }  # fmt: skip
    assert payload["site"] == {"id": site.pk, "name": site.name}
    assert (payload["status"], payload["priority"], payload["agent"]) == ("waiting", 2, None)
    assert payload["visitor"] == {
        "language": "en",
        "page_url": "https://shop.example/orders",
        "attributes": {"plan": "gold"},
    }
    # The newest message is the customer's notice of the escalation.
    assert payload["last_message"]["text"] == NOTICE
    assert payload["waiting_seconds"] >= 0


def test_a_conversation_already_waiting_without_a_handoff_gets_one(site):
    """The widget or the bot may have asked for a person through helpdesk alone."""
    conversation = make_conversation(site)
    request_human(conversation_id=conversation.pk, reason="tool: refund", notice=NOTICE)

    escalation = escalate(conversation, rule=Handoff.Rule.TOOL, reason="tool: refund")

    assert escalation.created
    assert not escalation.status_change.changed
    assert texts(conversation) == [NOTICE]
    assert Handoff.objects.get().rule == "tool"


def test_a_conversation_that_begins_with_the_escalation_is_announced_as_started(site, webhooks):
    """The widget's "Talk to a person" button on a new chat: the notice is message 1."""
    visitor = Visitor.objects.create(site=site, language="en", page_url="https://shop.example/")
    conversation = Conversation.objects.create(site=site, visitor=visitor, language="en")

    escalate(conversation)
    escalate(conversation)

    assert [event for _, event, _ in webhooks] == ["conversation.started", "handoff.created"]
    started = webhooks[0][2]
    assert (started["conversation"], started["page_url"]) == (
        conversation.pk,
        "https://shop.example/",
    )


def test_a_concurrent_escalation_that_lost_the_race_returns_the_open_handoff(site, monkeypatch):
    conversation = make_conversation(site)
    existing = escalate(conversation).handoff
    # As if another escalation inserted its handoff after this one looked.
    monkeypatch.setattr(services, "_open_handoff", lambda conversation_id: None)

    escalation = escalate(conversation)

    assert not escalation.created
    assert escalation.handoff["id"] == existing["id"]
    assert Handoff.objects.count() == 1


def test_a_resolved_conversation_cannot_be_escalated(site):
    conversation = make_conversation(site)
    Conversation.objects.filter(pk=conversation.pk).update(status="resolved")
    with pytest.raises(HandoffError) as error:
        escalate(conversation)
    assert error.value.code == "resolved"
    assert not Handoff.objects.exists()


def test_an_unknown_rule_is_refused(site):
    with pytest.raises(HandoffError) as error:
        escalate(make_conversation(site), rule="whim")
    assert error.value.code == "invalid"


def test_the_team_defaults_to_the_sites_default_team(site):
    billing = Team.objects.create(name="Billing")
    returns = Team.objects.create(name="Returns")
    HandoffSettings.objects.create(site=site, default_team=billing)

    default = escalate(make_conversation(site)).handoff
    chosen = escalate(make_conversation(site), team_id=returns.pk).handoff

    assert default["team"] == {"id": billing.pk, "name": "Billing"}
    assert chosen["team"] == {"id": returns.pk, "name": "Returns"}


@pytest.mark.parametrize(
    ("reason", "rule"),
    [
        ("customer:button", "customer_request"),
        ("customer:words", "customer_request"),
        ("tool: the customer wants a refund", "tool"),
        ("moderation", "moderation"),
        ("moderation: threats", "moderation"),
        ("sentiment", "sentiment"),
        ("", "tool"),
    ],
)
def test_escalation_rule_for_reason(reason, rule):
    assert services.escalation_rule_for_reason(reason) == rule


def test_escalation_events_go_out_on_commit(
    site, listen, django_capture_on_commit_callbacks, webhooks
):
    conversation = make_conversation(site)
    customer = listen(conversation_group(conversation.pk))
    agents = listen(agents_group(site.pk))

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        escalation = escalate(conversation)
        assert customer.events() == []  # nothing before the commit
    assert callbacks

    # The service sends the status change and the notice itself, before the queue; the
    # caller has nothing left to publish.
    assert escalation.status_change.status == "waiting"
    assert escalation.status_change.notice["text"] == NOTICE
    assert not escalation.status_change.changed
    status, notice, event = customer.events()
    assert status["frame"] == {
        "type": "status",
        "conversation": conversation.pk,
        "status": "waiting",
    }
    assert notice["frame"]["message"]["text"] == NOTICE
    assert (event["type"], event["audience"], event["skip"]) == ("conversation.frame", "all", None)
    assert event["frame"] == {
        "type": "queue",
        "conversation": conversation.pk,
        "position": 1,
        "expected_wait_seconds": None,
        "agents_online": False,
        "open_now": True,
    }
    [queue_event] = agents.events()
    assert (queue_event["type"], queue_event["event"]) == ("queue.event", "created")
    assert queue_event["handoff"]["id"] == escalation.handoff["id"]
    assert queue_event["handoff"]["status"] == "waiting"


def test_nothing_is_sent_for_a_rolled_back_escalation(
    site, listen, django_capture_on_commit_callbacks
):
    conversation = make_conversation(site)
    customer = listen(conversation_group(conversation.pk))

    def escalate_then_fail() -> None:
        with transaction.atomic():
            escalate(conversation)
            raise RuntimeError("rolled back")

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with pytest.raises(RuntimeError):
            escalate_then_fail()
        escalate(make_conversation(site))  # a committed one, for contrast
    assert len(callbacks) > 0
    assert customer.events() == []
    assert not Handoff.objects.filter(conversation=conversation).exists()


# The queue the customer sees


def test_queue_positions_follow_priority_then_age(site):
    first = escalate(make_conversation(site)).handoff
    second = escalate(make_conversation(site)).handoff
    urgent = escalate(make_conversation(site), priority=3).handoff
    elsewhere = escalate(make_conversation(make_site(name="Elsewhere"))).handoff

    positions = {
        name: selectors.queue_info(handoff["id"]).position
        for name, handoff in [
            ("first", first),
            ("second", second),
            ("urgent", urgent),
            ("elsewhere", elsewhere),
        ]
    }
    assert positions == {"first": 2, "second": 3, "urgent": 1, "elsewhere": 1}
    # The site-wide computation agrees with the one-handoff one.
    by_conversation = selectors.site_queue(site.pk)
    assert [info.position for info in by_conversation.values()] == [1, 2, 3]
    assert by_conversation[urgent["conversation"]].position == 1


def test_a_claimed_handoff_has_no_position(site, make_agent):
    ann = make_agent("ann", site)
    first = escalate(make_conversation(site)).handoff
    second = escalate(make_conversation(site)).handoff
    services.claim_handoff(handoff_id=first["id"], agent=ann)
    assert selectors.queue_info(first["id"]).position is None
    assert selectors.queue_info(second["id"]).position == 1


def test_expected_wait_is_position_times_the_median_handle_time(site):
    assert escalate(make_conversation(site)).queue.expected_wait_seconds is None

    now = timezone.now()
    for minutes in (1, 2, 10):
        Handoff.objects.create(
            conversation=make_conversation(site),
            site=site,
            rule="customer_request",
            status="resolved",
            claimed_at=now - timedelta(hours=1),
            resolved_at=now - timedelta(hours=1) + timedelta(minutes=minutes),
        )
    # Other sites' history does not count.
    elsewhere = make_site(name="Elsewhere")
    Handoff.objects.create(
        conversation=make_conversation(elsewhere),
        site=elsewhere,
        rule="customer_request",
        status="resolved",
        claimed_at=now - timedelta(hours=3),
        resolved_at=now,
    )

    second = escalate(make_conversation(site))
    assert second.queue.position == 2
    assert selectors.median_handle_seconds(site.pk) == 120
    assert second.queue.expected_wait_seconds == 240


def test_agents_online_counts_the_sites_agents_of_the_handoffs_team(site, other_site, make_agent):
    billing = Team.objects.create(name="Billing")
    general = escalate(make_conversation(site)).handoff["id"]
    for_billing = escalate(make_conversation(site), team_id=billing.pk).handoff["id"]
    assert not selectors.queue_info(general).agents_online

    make_agent("ann", other_site, online=True, teams=[billing])  # another site
    make_agent("bob", site, online=False, teams=[billing])  # offline
    make_agent("cy", site, online=True)  # not in Billing
    assert selectors.queue_info(general).agents_online
    assert not selectors.queue_info(for_billing).agents_online

    make_agent("dee", site, online=True, teams=[billing])
    assert selectors.queue_info(for_billing).agents_online
    assert all(info.agents_online for info in selectors.site_queue(site.pk).values())


# Monday 2 February 2026; Paris is UTC+1 in winter.
MONDAY_0830_UTC = datetime(2026, 2, 2, 8, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("hours", "zone", "now", "expected"),
    [
        ({}, "UTC", MONDAY_0830_UTC, True),
        ({"mon": ["09:00", "17:00"]}, "UTC", MONDAY_0830_UTC, False),
        ({"mon": ["09:00", "17:00"]}, "Europe/Paris", MONDAY_0830_UTC, True),
        ({"mon": ["09:00", "17:00"]}, "Europe/Paris", MONDAY_0830_UTC + timedelta(hours=8), False),
        ({"mon": ["09:00", "17:00"]}, "Europe/Paris", MONDAY_0830_UTC + timedelta(days=1), False),
        ({"mon": ["09:00", "24:00"]}, "UTC", MONDAY_0830_UTC + timedelta(hours=15), True),
        ({"mon": [["07:00", "08:00"], ["13:00", "17:00"]]}, "UTC", MONDAY_0830_UTC, False),
        ({"mon": [["07:00", "09:00"], ["13:00", "17:00"]]}, "UTC", MONDAY_0830_UTC, True),
        # Past midnight: Sunday 22:00 to Monday 02:00.
        ({"sun": ["22:00", "02:00"]}, "UTC", MONDAY_0830_UTC - timedelta(hours=7), True),
        ({"sun": ["22:00", "02:00"]}, "UTC", MONDAY_0830_UTC, False),
        ({"mon": ["nine", "five"]}, "UTC", MONDAY_0830_UTC, False),
        ({"mon": ["08:00", "17:00"]}, "Not/AZone", MONDAY_0830_UTC, True),
    ],
)
def test_business_hours(hours, zone, now, expected):
    assert selectors.is_open(hours, zone, now) is expected


def test_queue_info_uses_the_sites_business_hours(site):
    HandoffSettings.objects.create(
        site=site, business_hours={"mon": ["09:00", "17:00"]}, timezone="Europe/Paris"
    )
    handoff_id = escalate(make_conversation(site)).handoff["id"]
    assert selectors.queue_info(handoff_id, now=MONDAY_0830_UTC).open_now
    assert not selectors.queue_info(handoff_id, now=MONDAY_0830_UTC - timedelta(hours=1)).open_now


# Claiming


def test_claim_assigns_the_agent_and_tells_everyone(
    site, make_agent, listen, django_capture_on_commit_callbacks, webhooks
):
    ann = make_agent("ann", site)
    conversation = make_conversation(site)
    handoff_id = escalate(conversation).handoff["id"]
    customer = listen(conversation_group(conversation.pk))
    agents = listen(agents_group(site.pk))

    with django_capture_on_commit_callbacks(execute=True):
        payload = services.claim_handoff(handoff_id=handoff_id, agent=ann)

    handoff = Handoff.objects.get()
    assert (handoff.status, handoff.agent, handoff.claimed_at is not None) == (
        "assigned",
        ann,
        True,
    )
    assert payload["agent"] == {"id": ann.pk, "name": "Ann"}
    assert payload["status"] == "assigned"
    conversation.refresh_from_db()
    assert conversation.status == "human"
    assert texts(conversation)[-1] == "Ann joined the conversation."
    frames = customer.frames()
    assert [frame["type"] for frame in frames] == ["status", "agent", "message"]
    assert frames[0]["status"] == "human"
    assert (frames[1]["name"], frames[1]["joined"]) == ("Ann", True)
    assert frames[2]["message"]["text"] == "Ann joined the conversation."
    assert [(e["event"], e["handoff"]["id"]) for e in agents.events()] == [("claimed", handoff_id)]
    assert webhooks[-1][1:] == ("handoff.claimed", payload)


def test_agent_names_fall_back_to_full_name_then_username(site, make_agent):
    named = make_agent("ann", site, display_name="")
    named.first_name, named.last_name = "Ann", "Lee"
    named.save()
    plain = make_agent("bob", site, display_name="")
    assert selectors.agent_name(named) == "Ann Lee"
    assert selectors.agent_name(plain) == "bob"


def test_an_agent_of_another_site_may_not_claim(site, other_site, make_agent):
    stranger = make_agent("zed", other_site)
    handoff_id = escalate(make_conversation(site)).handoff["id"]
    with pytest.raises(HandoffError) as error:
        services.claim_handoff(handoff_id=handoff_id, agent=stranger)
    assert error.value.code == "forbidden"
    assert Handoff.objects.get().status == "waiting"


def test_a_claimed_handoff_cannot_be_claimed_again(site, make_agent, manager):
    ann, bob = make_agent("ann", site), make_agent("bob", site)
    handoff_id = escalate(make_conversation(site)).handoff["id"]
    services.claim_handoff(handoff_id=handoff_id, agent=ann)

    for other in (bob, manager):
        with pytest.raises(HandoffError) as error:
            services.claim_handoff(handoff_id=handoff_id, agent=other)
        assert error.value.code == "already_claimed"
    # The winner's repeated claim (a double click) is answered, not refused.
    assert services.claim_handoff(handoff_id=handoff_id, agent=ann)["agent"]["id"] == ann.pk
    assert Handoff.objects.get().agent == ann
    assert len(texts(Conversation.objects.get())) == 2  # the notice and one "joined"


def test_claiming_a_missing_or_closed_handoff(site, make_agent):
    ann = make_agent("ann", site)
    with pytest.raises(HandoffError) as missing:
        services.claim_handoff(handoff_id=12345, agent=ann)
    assert missing.value.code == "not_found"
    handoff_id = escalate(make_conversation(site)).handoff["id"]
    Handoff.objects.filter(pk=handoff_id).update(status="abandoned")
    with pytest.raises(HandoffError) as closed:
        services.claim_handoff(handoff_id=handoff_id, agent=ann)
    assert closed.value.code == "resolved"


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_have_exactly_one_winner(make_agent, monkeypatch):
    """Each thread has its own connection; all claim at once. Holds on SQLite and PostgreSQL."""
    site = make_site()
    agents = [make_agent(f"agent{i}", site) for i in range(4)]
    original = services.append_message

    def slow_append_message(**fields):
        # The winner holds its transaction open a while, so the others surely meet it.
        threading.Event().wait(0.2)
        return original(**fields)

    monkeypatch.setattr(services, "append_message", slow_append_message)

    for _ in range(3):
        conversation = make_conversation(site)
        handoff_id = escalate(conversation).handoff["id"]
        barrier = threading.Barrier(len(agents))
        outcomes: dict[str, object] = {}

        def claim(agent, handoff_id=handoff_id, barrier=barrier, outcomes=outcomes):
            try:
                barrier.wait(timeout=10)
                services.claim_handoff(handoff_id=handoff_id, agent=agent)
                outcomes[agent.username] = "won"
            except HandoffError as error:
                outcomes[agent.username] = error.code
            except Exception as error:  # reported by the assertion below
                outcomes[agent.username] = repr(error)
            finally:
                connection.close()

        threads = [threading.Thread(target=claim, args=(agent,)) for agent in agents]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        assert sorted(outcomes.values()) == ["already_claimed"] * 3 + ["won"], outcomes
        winner = next(name for name, outcome in outcomes.items() if outcome == "won")
        handoff = Handoff.objects.select_related("agent").get(pk=handoff_id)
        assert (handoff.status, handoff.agent.username) == ("assigned", winner)
        assert texts(conversation) == [NOTICE, f"{winner.title()} joined the conversation."]


# Auto-assignment


def test_round_robin_takes_turns_among_online_agents_with_room(site, make_agent):
    HandoffSettings.objects.create(site=site, auto_assign="round_robin")
    ann = make_agent("ann", site, online=True, capacity=2)
    bob = make_agent("bob", site, online=True, capacity=1)
    make_agent("cy", site, online=False)  # offline: never picked
    make_agent("dee", make_site(name="Elsewhere"), online=True)  # another site

    assigned = []
    for _ in range(4):
        escalation = escalate(make_conversation(site))
        agent = escalation.handoff["agent"]
        assigned.append(agent["id"] if agent else None)

    # ann, bob, ann; then both are at capacity and the fourth waits.
    assert assigned == [ann.pk, bob.pk, ann.pk, None]
    assert escalation.queue.position == 1
    assert Conversation.objects.filter(status="human").count() == 3


def test_least_busy_picks_the_agent_with_fewest_assigned(site, make_agent):
    ann = make_agent("ann", site, online=True, capacity=3)
    bob = make_agent("bob", site, online=True, capacity=3)
    for agent in (ann, ann, bob):
        claimed(site, agent)
    HandoffSettings.objects.create(site=site, auto_assign="least_busy")

    first = escalate(make_conversation(site)).handoff["agent"]["id"]
    # Now both hold two: the one whose last assignment is older goes next.
    second = escalate(make_conversation(site)).handoff["agent"]["id"]
    third = escalate(make_conversation(site)).handoff["agent"]["id"]
    fourth = escalate(make_conversation(site)).handoff["agent"]

    assert (first, second, third, fourth) == (bob.pk, ann.pk, bob.pk, None)


def test_auto_assignment_keeps_to_the_handoffs_team(site, make_agent):
    billing = Team.objects.create(name="Billing")
    HandoffSettings.objects.create(site=site, auto_assign="least_busy", default_team=billing)
    make_agent("ann", site, online=True)
    bob = make_agent("bob", site, online=True, teams=[billing])
    assert escalate(make_conversation(site)).handoff["agent"]["id"] == bob.pk


def test_an_auto_assigned_escalation_tells_the_customer_in_order(
    site, make_agent, listen, django_capture_on_commit_callbacks
):
    HandoffSettings.objects.create(site=site, auto_assign="round_robin")
    make_agent("ann", site, online=True)
    conversation = make_conversation(site)
    customer = listen(conversation_group(conversation.pk))

    with django_capture_on_commit_callbacks(execute=True):
        escalation = escalate(conversation)

    frames = customer.frames()
    assert [(f["type"], f.get("status")) for f in frames] == [
        ("status", "waiting"),
        ("message", None),
        ("status", "human"),
        ("agent", None),
        ("message", None),
    ]
    assert [f["message"]["text"] for f in frames if f["type"] == "message"] == [
        NOTICE,
        "Ann joined the conversation.",
    ]
    # Nothing left for the caller to publish after the claim.
    assert (escalation.status_change.status, escalation.status_change.changed) == ("human", False)


def test_resolved_handoffs_free_capacity(site, make_agent):
    HandoffSettings.objects.create(site=site, auto_assign="round_robin")
    ann = make_agent("ann", site, online=True, capacity=1)
    conversation = make_conversation(site)
    assert escalate(conversation).handoff["agent"]["id"] == ann.pk
    assert escalate(make_conversation(site)).handoff["agent"] is None
    services.resolve_conversation(conversation_id=conversation.pk, agent=ann)
    assert escalate(make_conversation(site)).handoff["agent"]["id"] == ann.pk


# Agent replies


def test_the_assigned_agent_replies_once_per_client_id(
    site, make_agent, listen, django_capture_on_commit_callbacks
):
    ann = make_agent("ann", site)
    conversation = claimed(site, ann)
    customer = listen(conversation_group(conversation.pk))
    client_id = uuid.uuid4()

    with django_capture_on_commit_callbacks(execute=True):
        first = services.record_agent_message(
            conversation_id=conversation.pk, agent=ann, client_id=client_id, text="On it!"
        )
        again = services.record_agent_message(
            conversation_id=conversation.pk, agent=ann, client_id=client_id, text="On it!"
        )

    assert first.created
    assert not again.created
    assert again.message == first.message
    message = Message.objects.get(pk=first.message["id"])
    assert (message.author, message.agent, message.text) == ("agent", ann, "On it!")
    assert texts(conversation, author="agent") == ["On it!"]
    [frame] = customer.frames()
    assert (frame["type"], frame["message"]["id"]) == ("message", message.pk)


def test_first_reply_time_is_set_once(site, make_agent):
    ann = make_agent("ann", site)
    conversation = claimed(site, ann)
    for text in ("Hi", "Let me check"):
        services.record_agent_message(
            conversation_id=conversation.pk, agent=ann, client_id=uuid.uuid4(), text=text
        )
    first_reply = conversation.messages.filter(author="agent").order_by("seq").first()
    assert Handoff.objects.get().first_reply_at == first_reply.created_at


def test_an_agent_may_not_reply_to_someone_elses_conversation(site, make_agent):
    ann, bob = make_agent("ann", site), make_agent("bob", site)
    conversation = claimed(site, ann)
    waiting = make_conversation(site)
    escalate(waiting)
    for target in (conversation, waiting):
        with pytest.raises(HandoffError) as error:
            services.record_agent_message(
                conversation_id=target.pk, agent=bob, client_id=uuid.uuid4(), text="Hi"
            )
        assert error.value.code == "not_yours"
    assert not Message.objects.filter(author="agent").exists()


def test_nobody_replies_to_a_resolved_conversation(site, make_agent):
    ann = make_agent("ann", site)
    conversation = claimed(site, ann)
    services.resolve_conversation(conversation_id=conversation.pk, agent=ann)
    with pytest.raises(HandoffError) as error:
        services.record_agent_message(
            conversation_id=conversation.pk, agent=ann, client_id=uuid.uuid4(), text="Hi"
        )
    assert error.value.code == "resolved"


def test_a_reply_to_a_missing_conversation_or_empty(site, make_agent):
    ann = make_agent("ann", site)
    with pytest.raises(HandoffError) as missing:
        services.record_agent_message(
            conversation_id=999, agent=ann, client_id=uuid.uuid4(), text="Hi"
        )
    assert missing.value.code == "not_found"
    with pytest.raises(HandoffError) as empty:
        services.record_agent_message(
            conversation_id=claimed(site, ann).pk, agent=ann, client_id=uuid.uuid4(), text="  "
        )
    assert empty.value.code == "invalid"


# Resolve, return to the bot, transfer


def test_resolve_closes_the_handoff_and_the_conversation(
    site, make_agent, listen, django_capture_on_commit_callbacks, webhooks
):
    ann = make_agent("ann", site)
    conversation = claimed(site, ann)
    customer = listen(conversation_group(conversation.pk))
    agents = listen(agents_group(site.pk))

    with django_capture_on_commit_callbacks(execute=True):
        change = services.resolve_conversation(conversation_id=conversation.pk, agent=ann)

    assert (change.status, change.changed) == ("resolved", True)
    handoff = Handoff.objects.get()
    conversation.refresh_from_db()
    assert (handoff.status, conversation.status) == ("resolved", "resolved")
    assert handoff.resolved_at == conversation.resolved_at is not None
    assert [(f["type"], f["status"]) for f in customer.frames()] == [("status", "resolved")]
    assert [e["event"] for e in agents.events()] == ["resolved"]
    assert webhooks[-1][1] == "conversation.resolved"
    assert webhooks[-1][2]["conversation"] == conversation.pk
    # Resolving again changes nothing.
    assert not services.resolve_conversation(conversation_id=conversation.pk, agent=ann).changed


def test_only_the_assigned_agent_or_a_manager_resolves(site, make_agent, manager):
    ann, bob = make_agent("ann", site), make_agent("bob", site)
    conversation = claimed(site, ann)
    with pytest.raises(HandoffError) as error:
        services.resolve_conversation(conversation_id=conversation.pk, agent=bob)
    assert error.value.code == "not_yours"
    assert services.resolve_conversation(conversation_id=conversation.pk, agent=manager).changed


def test_an_agent_of_another_site_is_forbidden(site, other_site, make_agent):
    conversation = claimed(site, make_agent("ann", site))
    stranger = make_agent("zed", other_site)
    for service, extra in [
        (services.resolve_conversation, {}),
        (services.return_to_bot, {}),
        (services.add_internal_note, {"text": "hm"}),
    ]:
        who = "author" if service is services.add_internal_note else "agent"
        with pytest.raises(HandoffError) as error:
            service(conversation_id=conversation.pk, **{who: stranger}, **extra)
        assert error.value.code == "forbidden"


def test_return_to_bot(site, make_agent, listen, django_capture_on_commit_callbacks):
    ann = make_agent("ann", site)
    conversation = claimed(site, ann)
    customer = listen(conversation_group(conversation.pk))
    agents = listen(agents_group(site.pk))

    with django_capture_on_commit_callbacks(execute=True):
        change = services.return_to_bot(conversation_id=conversation.pk, agent=ann)

    conversation.refresh_from_db()
    handoff = Handoff.objects.get()
    assert conversation.status == "bot"
    assert (handoff.status, handoff.resolved_at is not None) == ("resolved", True)
    expected = "Ann left the conversation. The assistant will answer again."
    assert texts(conversation)[-1] == expected
    assert change.notice["text"] == expected
    assert InternalNote.objects.get().text == "Returned to the bot by Ann."
    events = customer.events()
    frames = [event["frame"] for event in events]
    assert [f["type"] for f in frames] == ["status", "agent", "message", "note"]
    assert frames[0]["status"] == "bot"
    assert (frames[1]["name"], frames[1]["joined"]) == ("Ann", False)
    assert [event["audience"] for event in events] == ["all", "all", "all", "agents"]
    assert [e["event"] for e in agents.events()] == ["returned"]
    # The customer can ask for a person again.
    assert escalate(conversation).created


def test_transfer_to_another_agent(site, make_agent, listen, django_capture_on_commit_callbacks):
    ann, bob = make_agent("ann", site), make_agent("bob", site)
    conversation = claimed(site, ann)
    customer = listen(conversation_group(conversation.pk))
    agents = listen(agents_group(site.pk))

    with django_capture_on_commit_callbacks(execute=True):
        payload = services.transfer_handoff(
            conversation_id=conversation.pk, agent=ann, to_agent_id=bob.pk
        )

    handoff = Handoff.objects.get()
    assert (handoff.status, handoff.agent) == ("assigned", bob)
    assert payload["agent"] == {"id": bob.pk, "name": "Bob"}
    assert texts(conversation)[-1] == "Ann transferred the conversation to Bob."
    frames = customer.frames()
    assert [(f["type"], f.get("name"), f.get("joined")) for f in frames] == [
        ("agent", "Ann", False),
        ("agent", "Bob", True),
        ("message", None, None),
    ]
    assert [e["event"] for e in agents.events()] == ["transferred"]
    # Bob replies now; Ann may not.
    services.record_agent_message(
        conversation_id=conversation.pk, agent=bob, client_id=uuid.uuid4(), text="Hi, Bob here"
    )
    with pytest.raises(HandoffError) as error:
        services.record_agent_message(
            conversation_id=conversation.pk, agent=ann, client_id=uuid.uuid4(), text="Hi"
        )
    assert error.value.code == "not_yours"


def test_transfer_to_a_team_puts_it_back_in_the_queue(
    site, make_agent, listen, django_capture_on_commit_callbacks
):
    billing = Team.objects.create(name="Billing")
    ann = make_agent("ann", site)
    conversation = claimed(site, ann)
    customer = listen(conversation_group(conversation.pk))

    with django_capture_on_commit_callbacks(execute=True):
        payload = services.transfer_handoff(
            conversation_id=conversation.pk, agent=ann, to_team_id=billing.pk
        )

    handoff = Handoff.objects.get()
    conversation.refresh_from_db()
    assert (handoff.status, handoff.agent, handoff.team, handoff.claimed_at) == (
        "waiting",
        None,
        billing,
        None,
    )
    assert conversation.status == "waiting"
    assert payload["team"] == {"id": billing.pk, "name": "Billing"}
    assert "Billing" in texts(conversation)[-1]
    frames = customer.frames()
    assert [f["type"] for f in frames] == ["status", "agent", "message", "queue"]
    assert frames[-1]["position"] == 1


def test_transfer_refusals(site, other_site, make_agent):
    ann, bob = make_agent("ann", site), make_agent("bob", site)
    stranger = make_agent("zed", other_site)
    team = Team.objects.create(name="Billing")
    conversation = claimed(site, ann)

    def refused(**fields) -> str:
        with pytest.raises(HandoffError) as error:
            services.transfer_handoff(conversation_id=conversation.pk, **fields)
        return error.value.code

    assert refused(agent=ann) == "invalid"
    assert refused(agent=ann, to_agent_id=bob.pk, to_team_id=team.pk) == "invalid"
    assert refused(agent=ann, to_agent_id=stranger.pk) == "invalid"
    assert refused(agent=ann, to_agent_id=ann.pk) == "invalid"
    assert refused(agent=ann, to_agent_id=98765) == "not_found"
    assert refused(agent=ann, to_team_id=98765) == "not_found"
    assert refused(agent=bob, to_agent_id=bob.pk) == "not_yours"
    assert Handoff.objects.get().agent == ann


# Notes


def test_notes_go_to_agents_only_and_never_to_the_customers_messages(
    site, make_agent, listen, django_capture_on_commit_callbacks
):
    ann, bob = make_agent("ann", site), make_agent("bob", site)
    conversation = claimed(site, ann)
    customer = listen(conversation_group(conversation.pk))
    messages_before = Message.objects.count()

    with django_capture_on_commit_callbacks(execute=True):
        note = services.add_internal_note(
            conversation_id=conversation.pk, author=bob, text="VIP customer"
        )

    assert (note["author"], note["text"]) == ("Bob", "VIP customer")
    [event] = customer.events()
    assert event["audience"] == "agents"
    assert event["frame"] == {"type": "note", "conversation": conversation.pk, "note": note}
    assert Message.objects.count() == messages_before
    visible = messages_after(
        visitor_id=conversation.visitor_id, conversation_id=conversation.pk, after=0
    )
    assert all("VIP" not in message["text"] for message in visible)
    transcript = selectors.transcript_payload(conversation.pk, ann)
    assert transcript["notes"] == [note]
    assert all("VIP" not in message["text"] for message in transcript["messages"])


def test_an_empty_note_is_refused(site, make_agent):
    ann = make_agent("ann", site)
    with pytest.raises(HandoffError) as error:
        services.add_internal_note(conversation_id=make_conversation(site).pk, author=ann, text=" ")
    assert error.value.code == "invalid"


# The customer: contact e-mail and rating


def test_contact_email_is_validated_and_stored(site, listen, django_capture_on_commit_callbacks):
    conversation = make_conversation(site)
    escalate(conversation)
    customer = listen(conversation_group(conversation.pk))

    for bad in ("", "not an address", "a@b", "x" * 250 + "@example.com"):
        with pytest.raises(HandoffError) as error:
            services.set_contact_email(visitor_id=conversation.visitor_id, email=bad)
        assert error.value.code == "invalid"
    with django_capture_on_commit_callbacks(execute=True):
        stored = services.set_contact_email(
            visitor_id=conversation.visitor_id, email=" ann@example.com "
        )

    assert stored == "ann@example.com"
    conversation.refresh_from_db()
    assert conversation.contact_email == "ann@example.com"
    # The consoles hear of it live; the consumer answers the visitor itself.
    [event] = customer.events()
    assert event["audience"] == "agents"
    assert event["frame"] == {
        "type": "contact",
        "conversation": conversation.pk,
        "email": "ann@example.com",
    }


def test_a_visitor_without_a_conversation_cannot_leave_an_address(site):
    visitor = Visitor.objects.create(site=site)
    with pytest.raises(HandoffError) as error:
        services.set_contact_email(visitor_id=visitor.pk, email="ann@example.com")
    assert error.value.code == "invalid"


def test_rating_only_after_resolution_and_only_once(
    site, make_agent, listen, django_capture_on_commit_callbacks, webhooks
):
    ann = make_agent("ann", site)
    conversation = claimed(site, ann)
    visitor_id = conversation.visitor_id

    with pytest.raises(HandoffError) as early:
        services.rate_conversation(visitor_id=visitor_id, score=5)
    assert early.value.code == "invalid"

    services.resolve_conversation(conversation_id=conversation.pk, agent=ann)
    for score in (0, 6, "5", True, 4.5):
        with pytest.raises(HandoffError) as bad:
            services.rate_conversation(visitor_id=visitor_id, score=score)
        assert bad.value.code == "invalid"
    with pytest.raises(HandoffError) as long_comment:
        services.rate_conversation(visitor_id=visitor_id, score=3, comment="x" * 2001)
    assert long_comment.value.code == "invalid"

    customer = listen(conversation_group(conversation.pk))
    with django_capture_on_commit_callbacks(execute=True):
        rated = services.rate_conversation(visitor_id=visitor_id, score=5, comment="Great help")
    assert rated == {"conversation": conversation.pk, "score": 5}
    rating = Rating.objects.get()
    assert (rating.conversation_id, rating.score, rating.comment) == (
        conversation.pk,
        5,
        "Great help",
    )
    assert customer.frames() == []  # the consumer answers the visitor itself
    assert webhooks[-1][1] == "rating.received"
    assert webhooks[-1][2]["score"] == 5

    with pytest.raises(HandoffError) as twice:
        services.rate_conversation(visitor_id=visitor_id, score=1)
    assert twice.value.code == "already_rated"
    assert Rating.objects.get().score == 5


# Presence and abandoned handoffs


def test_presence_updates_the_profile_and_tells_waiting_customers(
    site, make_agent, listen, django_capture_on_commit_callbacks
):
    ann = make_agent("ann", site)
    conversation = make_conversation(site)
    escalate(conversation)
    customer = listen(conversation_group(conversation.pk))

    with django_capture_on_commit_callbacks(execute=True):
        services.set_agent_online(user=ann, online=True)

    profile = AgentProfile.objects.get(user=ann)
    assert profile.is_online
    assert profile.last_seen_at is not None
    [frame] = customer.frames()
    assert (frame["type"], frame["agents_online"]) == ("queue", True)

    services.set_agent_online(user=ann, online=False)
    assert not AgentProfile.objects.get(user=ann).is_online


def test_waiting_handoffs_of_customers_who_left_are_abandoned(
    site, make_agent, listen, django_capture_on_commit_callbacks
):
    HandoffSettings.objects.create(site=site, abandon_after_seconds=600)
    now = timezone.now()
    long_ago = now - timedelta(minutes=20)

    gone = make_conversation(site)
    quiet_but_typing = make_conversation(site)
    present = make_conversation(site)
    ann = make_agent("ann", site)
    claimed_long_ago = claimed(site, ann)
    for conversation in (gone, quiet_but_typing, present):
        escalate(conversation)
    for conversation in (gone, quiet_but_typing, claimed_long_ago):
        Visitor.objects.filter(pk=conversation.visitor_id).update(last_seen_at=long_ago)
    Message.objects.filter(conversation__in=[gone, claimed_long_ago]).update(created_at=long_ago)
    customer = listen(conversation_group(gone.pk))

    with django_capture_on_commit_callbacks(execute=True):
        count = services.mark_abandoned_handoffs(now=now)

    assert count == 1
    statuses = dict(Handoff.objects.values_list("conversation_id", "status"))
    assert statuses == {
        gone.pk: "abandoned",
        quiet_but_typing.pk: "waiting",
        present.pk: "waiting",
        claimed_long_ago.pk: "assigned",
    }
    gone.refresh_from_db()
    assert gone.status == "resolved"
    assert gone.resolved_at == now
    assert texts(gone)[-1].startswith("Nobody could join before you left")
    assert [f["type"] for f in customer.frames()] == ["status", "message"]
    # Running it again finds nothing more.
    assert services.mark_abandoned_handoffs(now=now) == 0


# The agents' queue and transcript


def test_the_open_queue_puts_the_agents_teams_first(site, other_site, make_agent, manager):
    billing = Team.objects.create(name="Billing")
    ann = make_agent("ann", site, teams=[billing])
    oldest = escalate(make_conversation(site)).handoff["id"]
    mine = escalate(make_conversation(site), team_id=billing.pk).handoff["id"]
    urgent = escalate(make_conversation(site), priority=2).handoff["id"]
    elsewhere = escalate(make_conversation(other_site)).handoff["id"]
    Handoff.objects.filter(pk=elsewhere).update(priority=5)

    assert [h["id"] for h in selectors.open_queue(ann)] == [mine, urgent, oldest]
    assert [h["id"] for h in selectors.open_queue(manager)] == [elsewhere, urgent, oldest, mine]
    assert selectors.open_queue(make_agent("zed", make_site(name="Third"))) == []


def test_the_open_queue_takes_a_fixed_number_of_queries(
    site, make_agent, django_assert_max_num_queries
):
    ann = make_agent("ann", site)
    escalate(make_conversation(site))
    with django_assert_max_num_queries(3):
        assert len(selectors.open_queue(ann)) == 1

    for _ in range(5):
        escalate(make_conversation(site))
    services.claim_handoff(handoff_id=Handoff.objects.first().pk, agent=ann)
    with django_assert_max_num_queries(3):
        queue = selectors.open_queue(ann)
    assert len(queue) == 6
    assert all(handoff["last_message"] is not None for handoff in queue)
    assert sum(1 for handoff in queue if handoff["agent"]) == 1


def test_the_transcript_shows_everything_to_agents_of_the_site(site, other_site, make_agent):
    ann = make_agent("ann", site)
    conversation = claimed(site, ann)
    services.record_agent_message(
        conversation_id=conversation.pk, agent=ann, client_id=uuid.uuid4(), text="Hello"
    )
    services.add_internal_note(conversation_id=conversation.pk, author=ann, text="Check refund")

    transcript = selectors.transcript_payload(conversation.pk, ann)

    assert transcript["conversation"]["id"] == conversation.pk
    assert transcript["conversation"]["status"] == "human"
    assert transcript["conversation"]["escalation_reason"] == "customer:button"
    assert [m["author"] for m in transcript["messages"]] == ["visitor", "system", "system", "agent"]
    assert [n["text"] for n in transcript["notes"]] == ["Check refund"]
    assert transcript["handoff"]["agent"]["id"] == ann.pk
    assert transcript["handoff"]["last_message"]["text"] == "Hello"
    assert selectors.transcript_payload(conversation.pk, make_agent("zed", other_site)) is None
    assert selectors.transcript_payload(424242, ann) is None


def test_a_reply_in_the_agents_own_conversation_takes_one_read_and_one_write(
    site, make_agent, django_assert_max_num_queries
):
    ann = make_agent("ann", site)
    conversation = claimed(site, ann)
    services.record_agent_message(
        conversation_id=conversation.pk, agent=ann, client_id=uuid.uuid4(), text="Hi"
    )
    # The handoff check, then the sequence number and the row (one statement on
    # PostgreSQL); the first reply time is already set.
    with django_assert_max_num_queries(5) as queries:
        services.record_agent_message(
            conversation_id=conversation.pk, agent=ann, client_id=uuid.uuid4(), text="More"
        )
    statements = [q["sql"].split()[0] for q in queries.captured_queries]
    writes = ["WITH"] if connection.vendor == "postgresql" else ["UPDATE", "INSERT"]
    assert [s for s in statements if s not in {"BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"}] == [
        "SELECT",
        *writes,
    ]


def test_each_agent_message_keeps_the_name_its_writer_had(site, make_agent):
    ann = make_agent("ann", site, display_name="Ann from Support")
    bob = make_agent("bob", site)
    conversation = claimed(site, ann)
    first = services.record_agent_message(
        conversation_id=conversation.pk, agent=ann, client_id=uuid.uuid4(), text="Hi, Ann here"
    )
    services.transfer_handoff(conversation_id=conversation.pk, agent=ann, to_agent_id=bob.pk)
    second = services.record_agent_message(
        conversation_id=conversation.pk, agent=bob, client_id=uuid.uuid4(), text="Bob now"
    )
    assert (first.message["author_name"], second.message["author_name"]) == (
        "Ann from Support",
        "Bob",
    )
    # A reload replays them with the names they were sent under.
    replayed = {
        m["text"]: m["author_name"]
        for m in messages_after(
            visitor_id=conversation.visitor_id, conversation_id=conversation.pk, after=0
        )
    }
    assert replayed["Hi, Ann here"] == "Ann from Support"
    assert replayed["Bob now"] == "Bob"
    assert replayed["My order never arrived"] is None


# The policy on the customer's path


def test_the_policy_reads_no_bot_outcomes_for_a_conversations_first_message(site, monkeypatch):
    from handoff import escalation

    conversation = Conversation.objects.create(site=site, visitor=Visitor.objects.create(site=site))
    read = []
    monkeypatch.setattr(escalation, "_recent_outcomes", lambda *args: read.append(args) or ())

    def policy_on(seq: int, text: str):
        message = append_message(conversation_id=conversation.pk, author="visitor", text=text)
        assert message.seq == seq
        return escalation.maybe_escalate(
            message_id=message.pk,
            conversation_id=conversation.pk,
            site_id=site.id,
            seq=seq,
            text=text,
        )

    assert policy_on(1, "How long does shipping take?") is None
    assert read == []
    append_message(conversation_id=conversation.pk, author="bot", text="3 to 5 days.")
    assert policy_on(3, "And to Norway?") is None
    assert len(read) == 1
