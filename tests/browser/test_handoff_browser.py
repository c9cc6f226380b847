"""A customer asks for a person on a third-party page; an agent answers from the admin."""

import re
import time
import uuid

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse
from playwright.sync_api import expect

from handoff import services
from handoff.models import AgentProfile, Rating
from helpdesk.models import Conversation, Site
from tests.browser.conftest import HeldScript, in_thread

pytestmark = pytest.mark.browser

AGENT_PASSWORD = "correct-horse-battery-9"


@pytest.fixture
def agent(host_page):
    site = Site.objects.get(name="Acme Outfitters")
    user = get_user_model().objects.create_user(
        "ann", password=AGENT_PASSWORD, is_staff=True, first_name="Ann"
    )
    user.groups.add(Group.objects.get_or_create(name="Agents")[0])
    profile = AgentProfile.objects.create(user=user, display_name="Ann", is_online=True)
    profile.sites.add(site)
    return user


def customer_asks_for_a_person(chromium, host_page, told="A person will be with you"):
    """A new customer on the business's page presses "Talk to a person"; their chat frame."""
    context = chromium.new_context(locale="en-US")
    context.set_default_timeout(15000)
    customer = context.new_page()
    customer.goto(host_page)
    customer.get_by_role("button", name="Open chat").click()
    chat = customer.frame_locator('iframe[title="Chat"]')
    chat.locator("header").get_by_role("button", name="Talk to a person").click()
    expect(chat.locator("#helpdesk-queue")).to_be_visible()
    expect(chat.locator(".hd-queue-title")).to_contain_text(told)
    return context, chat


def agent_on_the_queue(chromium, helpdesk_server, init_script: str = ""):
    """Ann logged into the admin, on the live queue page."""
    context = chromium.new_context(locale="en-US")
    context.set_default_timeout(15000)
    if init_script:
        context.add_init_script(init_script)
    page = context.new_page()
    page.goto(f"{helpdesk_server.url}/admin/login/?next={reverse('admin:handoff_queue')}")
    page.get_by_label("Username").fill("ann")
    page.get_by_label("Password").fill(AGENT_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    return context, page


def reload_chat(context):
    """The customer reloads the business's page and opens the chat again."""
    page = context.pages[0]
    page.reload()
    page.get_by_role("button", name="Open chat").click()
    chat = page.frame_locator('iframe[title="Chat"]')
    expect(chat.locator("#helpdesk")).to_have_attribute("data-connection", "ready")
    return chat


def open_and_claim(console) -> Conversation:
    """The agent opens the one conversation from the queue and claims it."""
    conversation = in_thread(lambda: Conversation.objects.get())
    row = console.locator(f'[data-conversation="{conversation.pk}"]')
    expect(row).to_be_visible()
    row.get_by_role("link", name="Open").click()
    console.get_by_role("button", name="Claim").click()
    return conversation


def test_the_agent_pages_controls_wait_for_their_scripts(
    agent, host_page, helpdesk_server, chromium
):
    customer_context, chat = customer_asks_for_a_person(chromium, host_page)
    agent_context, queue = agent_on_the_queue(chromium, helpdesk_server)
    expect(queue.locator("#hd-queue")).to_have_attribute("data-connection", "live")

    queue_js = HeldScript(agent_context, "handoff/queue.js")
    queue.reload(wait_until="commit")
    claim = queue.locator("tr.hd-row").get_by_role("button", name="Claim")
    switches = [queue.get_by_label("Available for chats"), queue.get_by_label("Notify me")]
    for control in [claim, *switches]:
        expect(control).to_be_disabled()
    queue_js.release(queue)
    for control in [claim, *switches]:
        expect(control).to_be_enabled()

    console_js = HeldScript(agent_context, "handoff/console.js")
    queue.locator("tr.hd-row").get_by_role("link", name="Open").click()
    actions = [
        queue.get_by_role("button", name=name, exact=True)
        for name in ("Claim", "Send", "Resolve", "Return to bot", "Transfer", "Add note")
    ]
    expect(queue.get_by_role("log", name="Transcript")).to_be_visible()
    for control in actions:
        expect(control).to_be_disabled()
    console_js.release(queue)
    for control in actions:
        expect(control).to_be_enabled()
    queue.get_by_role("button", name="Claim").click()
    expect(chat.locator("#helpdesk-subtitle")).to_have_text("Ann")
    customer_context.close()
    agent_context.close()


def test_customer_to_agent_and_back(agent, host_page, helpdesk_server, chromium):
    customer_context, chat = customer_asks_for_a_person(chromium, host_page)
    agent_context, console = agent_on_the_queue(chromium, helpdesk_server)
    open_and_claim(console)
    expect(chat.locator("#helpdesk-subtitle")).to_have_text("Ann")

    console.get_by_role("textbox", name="Reply").fill("Hi, I'm Ann. How can I help?")
    console.get_by_role("button", name="Send", exact=True).click()
    expect(chat.locator('[data-author="agent"] .hd-text')).to_have_text(
        "Hi, I'm Ann. How can I help?"
    )

    chat.get_by_role("textbox", name="Message").fill("My tent pole snapped")
    chat.get_by_role("button", name="Send", exact=True).click()
    expect(console.get_by_role("log", name="Transcript")).to_contain_text("My tent pole snapped")

    console.get_by_role("button", name="Resolve").click()
    rating = chat.get_by_role("group", name="Rating")
    expect(rating).to_be_visible()
    rating.get_by_role("button", name="5 stars").click()
    chat.get_by_role("textbox", name="Comment").fill("Quick and kind")
    chat.get_by_role("button", name="Submit rating").click()
    expect(chat.locator('.hd-line[data-notice="rated"]')).to_contain_text(
        re.compile("Thanks for your feedback")
    )
    stored = in_thread(lambda: Rating.objects.get())
    assert (stored.score, stored.comment) == (5, "Quick and kind")
    assert in_thread(lambda: Conversation.objects.get().status) == "resolved"
    customer_context.close()
    agent_context.close()


def test_a_reload_keeps_the_queue_place_and_the_agents_name(
    agent, host_page, helpdesk_server, chromium
):
    customer_context, chat = customer_asks_for_a_person(chromium, host_page)
    expect(chat.locator(".hd-queue-position")).to_have_text("You are number 1 in the queue")
    chat = reload_chat(customer_context)
    expect(chat.locator(".hd-queue-title")).to_contain_text("A person will be with you")
    expect(chat.locator(".hd-queue-position")).to_have_text("You are number 1 in the queue")

    agent_context, console = agent_on_the_queue(chromium, helpdesk_server)
    open_and_claim(console)
    expect(chat.locator("#helpdesk-subtitle")).to_have_text("Ann")
    # The agent's name again, without a second "joined" line (the history has the message).
    chat = reload_chat(customer_context)
    expect(chat.locator("#helpdesk-subtitle")).to_have_text("Ann")
    expect(chat.locator("#helpdesk-queue")).to_be_hidden()
    expect(chat.locator('[data-author="system"]').last).to_contain_text("Ann joined")
    customer_context.pages[0].wait_for_timeout(2000)  # past the delay of such a line
    expect(chat.locator('.hd-line[data-notice="agent-joined"]')).to_have_count(0)
    customer_context.close()
    agent_context.close()


def test_after_a_transfer_and_a_reload_each_reply_keeps_its_agents_name(
    agent, host_page, helpdesk_server, chromium
):
    customer_context, chat = customer_asks_for_a_person(chromium, host_page)
    agent_context, console = agent_on_the_queue(chromium, helpdesk_server)
    conversation = open_and_claim(console)
    console.get_by_role("textbox", name="Reply").fill("Ann here, one moment")
    console.get_by_role("button", name="Send", exact=True).click()
    expect(chat.locator('[data-author="agent"] .hd-text')).to_have_text("Ann here, one moment")

    def transfer_to_bob():
        bob = get_user_model().objects.create_user("bob", is_staff=True)
        bob.groups.add(Group.objects.get_or_create(name="Agents")[0])
        AgentProfile.objects.create(user=bob, display_name="Bob", is_online=True).sites.add(
            conversation.site
        )
        services.transfer_handoff(conversation_id=conversation.pk, agent=agent, to_agent_id=bob.pk)
        services.record_agent_message(
            conversation_id=conversation.pk, agent=bob, client_id=uuid.uuid4(), text="Bob now"
        )

    in_thread(transfer_to_bob)
    expect(chat.locator("#helpdesk-subtitle")).to_have_text("Bob")
    chat = reload_chat(customer_context)
    authors = chat.locator('[data-author="agent"] .hd-author')
    expect(authors).to_have_text(["Ann", "Bob"])
    customer_context.close()
    agent_context.close()


# Browser notifications as queue.js sees them, granted, and recorded instead of shown.
FAKE_NOTIFICATIONS = """
window.shownNotifications = [];
window.Notification = function (title, options) {
  window.shownNotifications.push({ title: title, body: (options || {}).body });
  this.close = function () {};
};
window.Notification.permission = 'granted';
window.Notification.requestPermission = function (done) {
  if (done) done('granted');
  return Promise.resolve('granted');
};
"""


def wait_for_profile(user, **expected) -> None:
    """The profile reaches `expected` (written by the socket, not by the page's request)."""
    deadline = time.monotonic() + 10
    query = AgentProfile.objects.filter(user=user, **expected).exists
    while not in_thread(query):
        assert time.monotonic() < deadline, f"the profile never got {expected}"
        time.sleep(0.05)


def test_the_notification_switch_is_saved_and_respected(
    agent, host_page, helpdesk_server, chromium
):
    agent_context, queue = agent_on_the_queue(chromium, helpdesk_server, FAKE_NOTIFICATIONS)
    notify = queue.get_by_label("Notify me")
    expect(queue.locator("#hd-queue")).to_have_attribute("data-connection", "live")
    expect(notify).to_be_checked()

    # Switched off: saved on the profile, so a reload (or another browser) keeps it off...
    notify.uncheck()
    wait_for_profile(agent, notifications=False)
    queue.reload()
    expect(queue.locator("#hd-queue")).to_have_attribute("data-connection", "live")
    expect(notify).not_to_be_checked()
    # ...and a new handoff shows up without a notification.
    first, _ = customer_asks_for_a_person(chromium, host_page)
    expect(queue.locator("tr.hd-row")).to_have_count(1)
    assert queue.evaluate("window.shownNotifications") == []

    # Switched on again: the next handoff notifies.
    notify.check()
    wait_for_profile(agent, notifications=True)
    second, _ = customer_asks_for_a_person(chromium, host_page)
    expect(queue.locator("tr.hd-row")).to_have_count(2)
    shown = queue.evaluate("window.shownNotifications")
    assert [n["title"] for n in shown] == ["New handoff"]
    assert "Acme Outfitters" in shown[0]["body"]
    first.close()
    second.close()
    agent_context.close()


def test_with_nobody_online_the_customer_leaves_an_address_the_server_checks(host_page, chromium):
    context, chat = customer_asks_for_a_person(
        chromium, host_page, told="Sorry, nobody is available right now."
    )
    email = chat.get_by_label("Email")
    expect(email).to_be_visible()
    # Passes the widget's own check, not the server's (a one-letter top-level domain): the
    # server's error, which names the `contact` frame it answers, reaches the form.
    email.fill("ann@example.c")
    chat.get_by_role("button", name="Leave email").click()
    expect(chat.locator(".hd-field-error")).to_have_text("Please enter a valid email address.")
    email.fill("ann@example.com")
    chat.get_by_role("button", name="Leave email").click()
    expect(chat.locator("#helpdesk-queue")).to_contain_text("We'll reply to ann@example.com")
    expect(chat.locator(".hd-field-error")).to_have_text("")
    assert in_thread(lambda: Conversation.objects.get().contact_email) == "ann@example.com"
    context.close()
