"""A customer asks for a person on a third-party page; an agent answers from the admin."""

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.urls import reverse
from playwright.sync_api import expect

from handoff.models import AgentProfile, Rating
from helpdesk.models import Conversation, Site

pytestmark = pytest.mark.browser

AGENT_PASSWORD = "correct-horse-battery-9"


def in_thread(query):
    """ORM reads from the test body: Playwright's loop owns this thread, so use another."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(query).result()


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


def test_customer_to_agent_and_back(agent, host_page, helpdesk_server, chromium):
    customer_context = chromium.new_context(locale="en-US")
    customer_context.set_default_timeout(15000)
    customer = customer_context.new_page()
    customer.goto(host_page)
    customer.get_by_role("button", name="Open chat").click()
    chat = customer.frame_locator('iframe[title="Chat"]')
    chat.locator("header").get_by_role("button", name="Talk to a person").click()
    expect(chat.locator("#helpdesk-queue")).to_be_visible()
    expect(chat.locator(".hd-queue-title")).to_contain_text("A person will be with you")

    agent_context = chromium.new_context(locale="en-US")
    agent_context.set_default_timeout(15000)
    console = agent_context.new_page()
    console.goto(f"{helpdesk_server.url}/admin/login/?next={reverse('admin:handoff_queue')}")
    console.get_by_label("Username").fill("ann")
    console.get_by_label("Password").fill(AGENT_PASSWORD)
    console.get_by_role("button", name="Log in").click()
    conversation = in_thread(lambda: Conversation.objects.get())
    row = console.locator(f'[data-conversation="{conversation.pk}"]')
    expect(row).to_be_visible()
    row.get_by_role("link", name="Open").click()
    console.get_by_role("button", name="Claim").click()
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
