"""The agents' pages in the admin: the live queue, the console, and the handoff admin.

The pages are read through a small HTML tree (the standard library's parser) so the tests
look for what a browser test or a screen reader finds: a control's accessible name (its
label, aria-labelledby or text), roles, and the data-* hooks the scripts rely on.
"""

from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from handoff.models import (
    AgentProfile,
    CannedResponse,
    Handoff,
    HandoffSettings,
    InternalNote,
    Team,
    Webhook,
    WebhookDelivery,
)
from helpdesk.models import Conversation, Message, Visitor
from helpdesk.services import append_message
from tests.conftest import make_site

pytestmark = pytest.mark.django_db

XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'
QUEUE_URL = "admin:handoff_queue"
CONSOLE_URL = "admin:handoff_console"


# A tiny DOM ----------------------------------------------------------------------------------

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}


class Node:
    def __init__(self, tag: str, attrs: dict, parent: "Node | None") -> None:
        self.tag, self.attrs, self.parent = tag, attrs, parent
        self.children: list[Node | str] = []

    @property
    def text(self) -> str:
        parts = [c if isinstance(c, str) else c.text for c in self.children]
        return " ".join(" ".join(parts).split())

    def iter(self):
        for child in self.children:
            if isinstance(child, Node):
                yield child
                yield from child.iter()

    def matches(self, name: str, value: str) -> bool:
        name = name.rstrip("_").replace("_", "-")  # class_ -> class, data_seq -> data-seq
        if name == "class":
            return value in self.attrs.get("class", "").split()
        return self.attrs.get(name) == value

    def find_all(self, tag: str | None = None, **attrs) -> list["Node"]:
        return [
            n
            for n in self.iter()
            if (tag is None or n.tag == tag) and all(n.matches(k, v) for k, v in attrs.items())
        ]

    def hidden(self) -> bool:
        node = self
        while node is not None:
            if "hidden" in node.attrs:
                return True
            node = node.parent
        return False


class Page(HTMLParser):
    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {}, None)
        self.current = self.root
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: (v if v is not None else "") for k, v in attrs}, self.current)
        self.current.children.append(node)
        if tag not in VOID:
            self.current = node

    def handle_endtag(self, tag):
        node = self.current
        while node is not None and node.tag != tag:
            node = node.parent
        if node is not None and node.parent is not None:
            self.current = node.parent

    def handle_data(self, data):
        self.current.children.append(data)

    def by_id(self, element_id: str) -> Node | None:
        found = self.root.find_all(id=element_id)
        return found[0] if found else None

    def name_of(self, node: Node) -> str:
        if "aria-labelledby" in node.attrs:
            return " ".join(self.by_id(i).text for i in node.attrs["aria-labelledby"].split())
        if "aria-label" in node.attrs:
            return node.attrs["aria-label"]
        if node.tag in {"textarea", "select", "input"} and node.attrs.get("id"):
            labels = self.root.find_all("label", for_=node.attrs["id"])
            if labels:
                return labels[0].text
        return node.text

    def controls(self, role: str, name: str, *, visible: bool = True) -> list[Node]:
        tags = {
            "button": {"button"},
            "textbox": {"textarea"},
            "combobox": {"select"},
            "link": {"a"},
            "checkbox": {"input"},
        }.get(role, set())

        def has_role(node: Node) -> bool:
            if "role" in node.attrs:
                return node.attrs["role"] == role
            return node.tag in tags and (role != "checkbox" or node.attrs.get("type") == role)

        return [
            node
            for node in self.root.iter()
            if has_role(node) and self.name_of(node) == name and not (visible and node.hidden())
        ]

    def control(self, role: str, name: str) -> Node:
        found = self.controls(role, name)
        assert len(found) == 1, f"{len(found)} visible {role}(s) named {name!r}"
        return found[0]


# Data ------------------------------------------------------------------------------------------


def make_user(django_user_model, username: str, *, group: str | None, sites=(), **fields):
    user = django_user_model.objects.create_user(
        username, password="pw", is_staff=fields.pop("is_staff", True), **fields
    )
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    if sites:
        profile = AgentProfile.objects.create(user=user, display_name=username.title())
        profile.sites.add(*sites)
    return user


def open_handoff(site, *, messages=(), status=Handoff.Status.WAITING, **fields) -> Handoff:
    visitor = Visitor.objects.create(
        site=site,
        language="zh-hans",
        page_url="https://shop.example/checkout?step=2",
        attributes={"plan": "Gold", "orders": 3},
    )
    conversation = Conversation.objects.create(
        site=site,
        visitor=visitor,
        status=Conversation.Status.WAITING,
        escalation_reason="customer:button",
        contact_email="kim@example.com",
    )
    for author, text in messages:
        append_message(conversation_id=conversation.pk, author=author, text=text)
    defaults = {"rule": Handoff.Rule.CUSTOMER, "reason": "customer:button", "priority": 1}
    return Handoff.objects.create(
        conversation=conversation, site=site, status=status, **{**defaults, **fields}
    )


@pytest.fixture
def shop(db):
    return make_site(name="Shop")


@pytest.fixture
def other_shop(db):
    return make_site(name="Other Shop")


@pytest.fixture
def agent(django_user_model, shop):
    return make_user(django_user_model, "alice", group="Agents", sites=[shop])


@pytest.fixture
def other_agent(django_user_model, other_shop):
    return make_user(django_user_model, "oscar", group="Agents", sites=[other_shop])


@pytest.fixture
def manager(django_user_model):
    return make_user(django_user_model, "maria", group="Managers")


@pytest.fixture
def handoff(shop):
    return open_handoff(
        shop,
        messages=[
            (Message.Author.VISITOR, "Where is my order?"),
            (Message.Author.BOT, "It ships in 3-5 days."),
            (Message.Author.VISITOR, XSS),
        ],
    )


def page_of(client, url: str) -> Page:
    response = client.get(url)
    assert response.status_code == 200, response.status_code
    return Page(response.content.decode())


def response_config(client) -> dict:
    return client.get(reverse(QUEUE_URL)).context["queue_config"]


def console_url(handoff: Handoff) -> str:
    return reverse(CONSOLE_URL, args=[handoff.conversation_id])


# Access ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [QUEUE_URL, CONSOLE_URL])
def test_anonymous_users_are_sent_to_the_admin_login(client, handoff, name):
    url = reverse(name) if name == QUEUE_URL else console_url(handoff)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


@pytest.mark.parametrize("name", [QUEUE_URL, CONSOLE_URL])
def test_staff_outside_agents_and_managers_are_refused(client, django_user_model, shop, name):
    # Even with a profile on the site: the group is what makes someone an agent.
    clerk = make_user(django_user_model, "clerk", group=None, sites=[shop])
    handoff = open_handoff(shop)
    client.force_login(clerk)
    url = reverse(name) if name == QUEUE_URL else console_url(handoff)
    assert client.get(url).status_code == 403


def test_non_staff_agents_are_sent_to_the_login(client, django_user_model, shop, handoff):
    user = make_user(django_user_model, "nostaff", group="Agents", sites=[shop], is_staff=False)
    client.force_login(user)
    response = client.get(console_url(handoff))
    assert response.status_code == 302


def test_an_agent_of_another_site_gets_404_on_the_console(client, other_agent, handoff):
    client.force_login(other_agent)
    assert client.get(console_url(handoff)).status_code == 404


def test_an_unknown_conversation_is_404(client, agent):
    client.force_login(agent)
    assert client.get(reverse(CONSOLE_URL, args=[999999])).status_code == 404


def test_an_agent_of_the_site_opens_the_console(client, agent, handoff):
    client.force_login(agent)
    page = page_of(client, console_url(handoff))
    assert page.by_id("hd-console").attrs["data-conversation"] == str(handoff.conversation_id)


@pytest.mark.parametrize("who", ["manager", "superuser"])
def test_managers_and_superusers_open_any_sites_console(
    client, django_user_model, manager, handoff, who
):
    user = manager
    if who == "superuser":
        user = django_user_model.objects.create_superuser("root", password="pw")
    client.force_login(user)
    assert client.get(console_url(handoff)).status_code == 200


def test_the_queue_shows_an_agent_only_their_sites(client, agent, handoff, other_shop):
    foreign = open_handoff(other_shop)
    client.force_login(agent)
    page = page_of(client, reverse(QUEUE_URL))
    rows = {row.attrs["data-handoff"] for row in page.root.find_all("tr", class_="hd-row")}
    assert rows == {str(handoff.pk)}
    assert str(foreign.pk) not in rows


def test_the_queue_shows_a_manager_every_site(client, manager, handoff, other_shop):
    foreign = open_handoff(other_shop)
    client.force_login(manager)
    page = page_of(client, reverse(QUEUE_URL))
    rows = {row.attrs["data-handoff"] for row in page.root.find_all("tr", class_="hd-row")}
    assert rows == {str(handoff.pk), str(foreign.pk)}


# The console -----------------------------------------------------------------------------------


def test_the_console_has_the_named_controls(client, agent, handoff):
    client.force_login(agent)
    page = page_of(client, console_url(handoff))

    assert page.control("textbox", "Reply").attrs["id"] == "hd-reply"
    assert page.control("button", "Send").attrs["type"] == "submit"
    assert page.control("button", "Claim").attrs["id"] == "hd-claim"
    assert page.control("button", "Resolve")
    assert page.control("button", "Return to bot")
    assert page.control("combobox", "Transfer to")
    assert page.control("button", "Transfer")
    assert page.control("textbox", "Internal note")
    assert page.control("button", "Add note")
    assert page.control("combobox", "Canned response")
    log = page.control("log", "Transcript")
    assert log.attrs["id"] == "hd-transcript"
    assert page.root.find_all(role="alert"), "errors need a role=alert region"
    typing = page.by_id("hd-typing")
    assert typing.hidden()
    assert "typing" in typing.text
    # The script and its data come as files and JSON, never as inline code.
    scripts = page.root.find_all("script")
    assert any(s.attrs.get("src", "").endswith("handoff/console.js") for s in scripts)
    assert all(s.attrs.get("src") or s.attrs.get("type") == "application/json" for s in scripts)


def test_claim_shows_only_while_the_handoff_waits(client, agent, shop):
    handoff = open_handoff(shop, status=Handoff.Status.ASSIGNED, agent=agent)
    client.force_login(agent)
    page = page_of(client, console_url(handoff))
    assert page.controls("button", "Claim") == []
    assert len(page.controls("button", "Claim", visible=False)) == 1
    assert page.by_id("hd-handoff").attrs["data-handoff-status"] == "assigned"


def test_a_resolved_conversation_cannot_be_answered(client, agent, handoff):
    Conversation.objects.filter(pk=handoff.conversation_id).update(status="resolved")
    client.force_login(agent)
    page = page_of(client, console_url(handoff))
    assert "disabled" in page.control("textbox", "Reply").attrs
    assert "disabled" in page.control("button", "Send").attrs


def test_the_transcript_lists_every_message_escaped(client, agent, handoff):
    client.force_login(agent)
    response = client.get(console_url(handoff))
    html = response.content.decode()
    page = Page(html)

    messages = page.control("log", "Transcript").find_all(class_="hd-msg")
    assert [(m.attrs["data-author"], m.attrs["data-seq"]) for m in messages] == [
        ("visitor", "1"),
        ("bot", "2"),
        ("visitor", "3"),
    ]
    texts = [m.find_all(class_="hd-msg-text")[0].text for m in messages]
    assert texts == ["Where is my order?", "It ships in 3-5 days.", XSS]
    # Only in the transcript: not, say, as the admin's flash messages too.
    assert html.count("Where is my order?") == 1
    assert page.root.find_all(class_="messagelist") == []
    # Escaped: the browser shows the text and runs nothing.
    assert XSS not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html


def test_the_console_shows_why_it_escalated_and_who_the_visitor_is(client, agent, handoff):
    client.force_login(agent)
    page = page_of(client, console_url(handoff))
    assert page.by_id("hd-handoff-rule").attrs["data-rule"] == "customer_request"
    assert page.by_id("hd-handoff-reason").text == "customer:button"
    visitor = page.by_id("hd-visitor").text
    for expected in ("Shop", "zh-hans", "kim@example.com", "plan", "Gold", "orders", "3"):
        assert expected in visitor
    link = page.by_id("hd-visitor").find_all("a")[0]
    assert link.attrs["href"] == "https://shop.example/checkout?step=2"
    assert "noopener" in link.attrs["rel"]


def test_a_page_url_that_is_not_http_is_not_a_link(client, agent, handoff):
    Visitor.objects.filter(conversations=handoff.conversation_id).update(
        page_url="javascript:alert(1)"
    )
    client.force_login(agent)
    page = page_of(client, console_url(handoff))
    assert page.by_id("hd-visitor").find_all("a") == []


def test_agents_see_the_internal_notes_escaped(client, agent, manager, handoff):
    InternalNote.objects.create(conversation=handoff.conversation, author=manager, text="VIP")
    InternalNote.objects.create(conversation=handoff.conversation, author=agent, text=XSS)
    client.force_login(agent)
    response = client.get(console_url(handoff))
    page = Page(response.content.decode())
    notes = page.by_id("hd-notes").find_all("li")
    assert [n.find_all(class_="hd-note-text")[0].text for n in notes] == ["VIP", XSS]
    assert "maria" in notes[0].text
    assert XSS not in response.content.decode()


def test_the_sites_canned_responses_are_offered(client, agent, handoff, other_shop):
    CannedResponse.objects.create(site=handoff.site, title="Refunds", text="Refunds take 5 days.")
    CannedResponse.objects.create(site=handoff.site, title="Hello", text='Hi <b>"there"</b>')
    CannedResponse.objects.create(site=other_shop, title="Elsewhere", text="Not this site.")
    client.force_login(agent)
    page = page_of(client, console_url(handoff))
    select = page.control("combobox", "Canned response")
    options = [(o.text, o.attrs.get("data-text")) for o in select.find_all("option")][1:]
    assert options == [("Hello", 'Hi <b>"there"</b>'), ("Refunds", "Refunds take 5 days.")]


def test_transfer_offers_the_sites_other_agents_and_the_teams(
    client, django_user_model, agent, other_agent, handoff
):
    bob = make_user(django_user_model, "bob", group="Agents", sites=[handoff.site])
    billing = Team.objects.create(name="Billing")
    client.force_login(agent)
    page = page_of(client, console_url(handoff))
    values = [o.attrs["value"] for o in page.control("combobox", "Transfer to").find_all("option")]
    assert values == ["", f"agent:{bob.pk}", f"team:{billing.pk}"]


def test_the_console_config_names_the_socket_and_the_handoff(client, agent, handoff):
    client.force_login(agent)
    response = client.get(console_url(handoff))
    config = response.context["console_config"]
    assert config["wsPath"] == "/ws/agent/"
    assert config["conversation"] == handoff.conversation_id
    assert config["handoff"]["id"] == handoff.pk
    assert config["handoff"]["status"] == "waiting"


# The queue -------------------------------------------------------------------------------------


def test_the_queue_lists_open_handoffs_with_claim_and_open(client, agent, handoff, shop):
    claimed = open_handoff(shop, status=Handoff.Status.ASSIGNED, agent=agent)
    closed = open_handoff(shop, status=Handoff.Status.RESOLVED)
    client.force_login(agent)
    page = page_of(client, reverse(QUEUE_URL))

    rows = {r.attrs["data-handoff"]: r for r in page.root.find_all("tr", class_="hd-row")}
    assert set(rows) == {str(handoff.pk), str(claimed.pk)}
    assert str(closed.pk) not in rows
    waiting = rows[str(handoff.pk)]
    assert waiting.attrs["data-status"] == "waiting"
    assert waiting.attrs["data-created-at"] == handoff.created_at.isoformat()
    assert [b.text for b in waiting.find_all("button")] == ["Claim"]
    link = waiting.find_all("a")[0]
    assert (link.text, link.attrs["href"]) == ("Open", console_url(handoff))
    assert "Customer asked for a person" in waiting.text
    assert rows[str(claimed.pk)].find_all("button") == []
    assert "Alice" in rows[str(claimed.pk)].text
    assert page.control("checkbox", "Notify me")
    assert page.root.find_all(role="alert")


def test_rows_waiting_past_the_sites_alert_are_flagged(client, agent, shop):
    HandoffSettings.objects.create(site=shop, wait_alert_seconds=60)
    late = open_handoff(shop)
    fresh = open_handoff(shop)
    Handoff.objects.filter(pk=late.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    client.force_login(agent)
    page = page_of(client, reverse(QUEUE_URL))
    rows = {r.attrs["data-handoff"]: r for r in page.root.find_all("tr", class_="hd-row")}
    assert rows[str(late.pk)].attrs["data-overdue"] == "true"
    assert "hd-overdue" in rows[str(late.pk)].attrs["class"]
    assert rows[str(late.pk)].find_all(class_="hd-wait")[0].text.startswith("5:0")
    assert rows[str(fresh.pk)].attrs["data-overdue"] == "false"
    assert response_config(client)["waitAlert"] == {str(shop.pk): 60}


def test_the_queue_filters_by_site_and_state(client, manager, shop, other_shop):
    here = open_handoff(shop)
    there = open_handoff(other_shop)
    taken = open_handoff(shop, status=Handoff.Status.ASSIGNED, agent=manager)
    client.force_login(manager)

    def rows(query: str) -> set[str]:
        page = page_of(client, reverse(QUEUE_URL) + query)
        return {r.attrs["data-handoff"] for r in page.root.find_all("tr", class_="hd-row")}

    assert rows("") == {str(here.pk), str(there.pk), str(taken.pk)}
    assert rows(f"?site={shop.pk}") == {str(here.pk), str(taken.pk)}
    assert rows("?state=assigned") == {str(taken.pk)}
    assert rows(f"?site={shop.pk}&state=waiting") == {str(here.pk)}
    # A filter the user cannot use is ignored, not an error.
    assert rows("?site=nope&state=bogus") == {str(here.pk), str(there.pk), str(taken.pk)}
    config = client.get(reverse(QUEUE_URL) + f"?site={shop.pk}&state=waiting").context
    assert config["queue_config"]["filters"] == {"site": str(shop.pk), "state": "waiting"}


def test_the_queue_escapes_the_reason(client, agent, shop):
    open_handoff(shop, reason=XSS)
    client.force_login(agent)
    html = client.get(reverse(QUEUE_URL)).content.decode()
    assert XSS not in html
    assert "&lt;script&gt;" in html


def test_the_notify_default_follows_the_agents_profile(client, agent):
    AgentProfile.objects.filter(user=agent).update(notifications=False)
    client.force_login(agent)
    assert response_config(client)["notifyDefault"] is False


@pytest.mark.parametrize("online", [True, False])
def test_the_availability_box_shows_the_agents_presence(client, agent, online):
    AgentProfile.objects.filter(user=agent).update(is_online=online)
    client.force_login(agent)
    page = page_of(client, reverse(QUEUE_URL))
    box = page.control("checkbox", "Available for chats")
    assert ("checked" in box.attrs) is online


# Query counts ----------------------------------------------------------------------------------


def count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_the_queue_page_makes_a_fixed_number_of_queries(
    client, agent, shop, django_assert_max_num_queries
):
    team = Team.objects.create(name="Billing")
    open_handoff(shop, messages=[(Message.Author.VISITOR, "hi")], team=team)
    client.force_login(agent)
    one = count_queries(client, reverse(QUEUE_URL))
    for n in range(8):
        open_handoff(
            shop,
            messages=[(Message.Author.VISITOR, f"hello {n}")],
            team=team,
            status=Handoff.Status.ASSIGNED if n % 2 else Handoff.Status.WAITING,
            agent=agent if n % 2 else None,
        )
    with django_assert_max_num_queries(one):
        client.get(reverse(QUEUE_URL))
    # session, user, groups, sites, handoffs, last messages, profile, permissions (3)
    with django_assert_max_num_queries(10):
        client.get(reverse(QUEUE_URL))


def test_the_console_page_makes_a_fixed_number_of_queries(
    client, django_user_model, agent, shop, django_assert_max_num_queries
):
    handoff = open_handoff(shop, messages=[(Message.Author.VISITOR, "hi")], agent=agent)
    client.force_login(agent)
    url = console_url(handoff)
    one = count_queries(client, url)
    for n in range(20):
        append_message(conversation_id=handoff.conversation_id, author="bot", text=f"answer {n}")
        InternalNote.objects.create(conversation=handoff.conversation, author=agent, text=f"{n}")
        CannedResponse.objects.create(site=shop, title=f"Canned {n}", text="text")
    for n in range(3):
        make_user(django_user_model, f"agent{n}", group="Agents", sites=[shop])
        Team.objects.create(name=f"Team {n}")
    with django_assert_max_num_queries(one):
        client.get(url)
    # session, user, groups, conversation, messages, handoff, notes, canned responses,
    # transfer agents, teams, permissions (2)
    with django_assert_max_num_queries(12):
        client.get(url)


# The admin -------------------------------------------------------------------------------------


def grant(user, *codenames: str) -> None:
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


def test_the_handoff_changelist_loads_with_console_links(admin_client, handoff):
    response = admin_client.get(reverse("admin:handoff_handoff_changelist"))
    assert response.status_code == 200
    assert f'href="{console_url(handoff)}"' in response.content.decode()


def test_the_handoff_changelist_shows_an_agent_only_their_sites(client, agent, handoff, other_shop):
    foreign = open_handoff(other_shop)
    grant(agent, "view_handoff")
    client.force_login(agent)
    response = client.get(reverse("admin:handoff_handoff_changelist"))
    assert response.status_code == 200
    shown = {h.pk for h in response.context["cl"].result_list}
    assert shown == {handoff.pk}
    assert foreign.pk not in shown


def test_the_handoff_changelist_makes_a_fixed_number_of_queries(
    admin_client, shop, django_assert_max_num_queries
):
    team = Team.objects.create(name="Billing")
    open_handoff(shop, team=team)
    url = reverse("admin:handoff_handoff_changelist")
    one = count_queries(admin_client, url)
    for _ in range(10):
        open_handoff(shop, team=team)
    with django_assert_max_num_queries(one):
        admin_client.get(url)


def test_the_resolve_action_goes_through_the_service(admin_client, handoff):
    response = admin_client.post(
        reverse("admin:handoff_handoff_changelist"),
        {"action": "resolve_selected", "_selected_action": [handoff.pk]},
    )
    assert response.status_code == 302
    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.RESOLVED
    # The service also closes the conversation; a bulk update of handoffs would not.
    assert Conversation.objects.get(pk=handoff.conversation_id).status == "resolved"


def test_the_claim_action_goes_through_the_service(admin_client, handoff):
    admin_client.post(
        reverse("admin:handoff_handoff_changelist"),
        {"action": "claim_selected", "_selected_action": [handoff.pk]},
    )
    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.ASSIGNED
    conversation = Conversation.objects.get(pk=handoff.conversation_id)
    assert conversation.status == "human"
    # The service announces the agent to the customer with a system message.
    assert conversation.messages.filter(author="system").exists()


def test_the_webhook_delivery_log_loads(admin_client, shop):
    webhook = Webhook.objects.create(
        site=shop, url="https://hooks.example/in", secret="s3cr3t-value-abcd"
    )
    WebhookDelivery.objects.create(
        webhook=webhook,
        event="handoff.created",
        payload={"id": 1},
        status=WebhookDelivery.Status.FAILED,
        attempts=3,
        response_status=502,
        error="Bad gateway",
    )
    response = admin_client.get(reverse("admin:handoff_webhookdelivery_changelist"))
    assert response.status_code == 200
    page = response.content.decode()
    for expected in ("handoff.created", "Failed", "502", "Bad gateway"):
        assert expected in page
    # Read-only: nobody adds deliveries by hand.
    assert reverse("admin:handoff_webhookdelivery_add") not in page


def test_webhook_secrets_are_masked_and_never_sent_back(admin_client, shop):
    webhook = Webhook.objects.create(
        site=shop, url="https://hooks.example/in", secret="s3cr3t-value-abcd"
    )
    changelist = admin_client.get(reverse("admin:handoff_webhook_changelist")).content.decode()
    assert "s3cr3t-value-abcd" not in changelist
    assert "abcd" in changelist
    change = admin_client.get(reverse("admin:handoff_webhook_change", args=[webhook.pk]))
    assert "s3cr3t-value" not in change.content.decode()

    # Saving without typing a secret keeps the old one.
    response = admin_client.post(
        reverse("admin:handoff_webhook_change", args=[webhook.pk]),
        {
            "site": shop.pk,
            "url": "https://hooks.example/new",
            "secret": "",
            "events": ["handoff.created", "rating.received"],
            "is_active": "on",
        },
    )
    assert response.status_code == 302
    webhook.refresh_from_db()
    assert (webhook.url, webhook.secret) == ("https://hooks.example/new", "s3cr3t-value-abcd")
    assert webhook.events == ["handoff.created", "rating.received"]


def test_a_webhook_may_listen_to_every_event_and_needs_a_secret(admin_client, shop):
    url = reverse("admin:handoff_webhook_add")
    fields = {"site": shop.pk, "url": "https://hooks.example/all", "is_active": "on"}
    refused = admin_client.post(url, {**fields, "secret": ""})
    assert refused.status_code == 200
    assert "secret" in refused.context["adminform"].form.errors
    assert admin_client.post(url, {**fields, "secret": "a-new-secret"}).status_code == 302
    webhook = Webhook.objects.get(url="https://hooks.example/all")
    assert (webhook.events, webhook.secret) == ([], "a-new-secret")


@pytest.mark.parametrize(
    "model",
    [
        "team",
        "agentprofile",
        "handoffsettings",
        "sensitivetopic",
        "cannedresponse",
        "internalnote",
        "rating",
        "webhook",
    ],
)
def test_the_other_changelists_load(admin_client, handoff, model):
    assert admin_client.get(reverse(f"admin:handoff_{model}_changelist")).status_code == 200


def test_the_admin_index_links_to_the_queue(admin_client):
    page = admin_client.get(reverse("admin:index")).content.decode()
    assert f'href="{reverse(QUEUE_URL)}"' in page
