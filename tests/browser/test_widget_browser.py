"""The widget in a real browser, embedded by a page on another origin."""

import re

import pytest
from playwright.sync_api import expect

from helpdesk.models import Conversation, Message
from tests.browser.conftest import HeldScript, in_thread
from tests.fake_llm import Reply

pytestmark = pytest.mark.browser


def open_chat(page, url: str):
    page.goto(url)
    page.get_by_role("button", name="Open chat").click()
    expect(page.get_by_role("button", name="Close chat").first).to_be_visible()
    return page.frame_locator('iframe[title="Chat"]')


def ask(frame, text: str, send_label: str = "Send", box_label: str = "Message") -> None:
    frame.get_by_role("textbox", name=box_label).fill(text)
    frame.get_by_role("button", name=send_label, exact=True).click()


def test_a_customer_asks_and_sees_the_answer_from_the_knowledge_base(host_page, browser_page):
    frame = open_chat(browser_page, host_page)
    ask(frame, "How long does shipping take?")
    log = frame.get_by_role("log")
    expect(log.locator('[data-author="visitor"]')).to_have_text(
        re.compile("How long does shipping take")
    )
    expect(log.locator('[data-author="bot"]').last).to_contain_text(
        "Standard shipping takes 3-5 business days"
    )


def test_the_streamed_llm_answer_appears_in_the_log(host_page, browser_page, fake_llm):
    fake_llm.script(Reply(chunks=["Our boots ", "run true ", "to size."], chunk_delay=0.15))
    frame = open_chat(browser_page, host_page)
    ask(frame, "Do your boots run small?")
    answer = frame.get_by_role("log").locator('[data-author="bot"]').last
    expect(answer).to_contain_text("Our boots run true to size.")
    seen = fake_llm.chat_requests()[-1]["messages"]
    assert seen[-1] == {"role": "user", "content": "Do your boots run small?"}


def test_a_reload_resumes_the_same_conversation_without_duplicates(host_page, browser_page):
    frame = open_chat(browser_page, host_page)
    ask(frame, "How long does shipping take?")
    log = frame.get_by_role("log")
    expect(log.locator('[data-author="bot"]').last).to_contain_text("Standard shipping")
    browser_page.reload()
    frame = open_chat(browser_page, host_page)
    log = frame.get_by_role("log")
    expect(log.locator('[data-author="visitor"]')).to_have_count(1)
    expect(log.locator('[data-author="bot"][data-seq]')).to_have_count(1)


def test_a_chinese_browser_gets_a_chinese_widget(host_page, chromium):
    context = chromium.new_context(locale="zh-CN")
    context.set_default_timeout(15000)
    page = context.new_page()
    page.goto(host_page)
    page.get_by_role("button", name="打开聊天").click()
    frame = page.frame_locator('iframe[title="Chat"]')
    ask(frame, "退货政策是什么？", send_label="发送", box_label="消息")
    expect(frame.get_by_role("log").locator('[data-author="bot"]').last).to_contain_text(
        "30天内退货"
    )
    context.close()


def test_the_host_page_api_opens_the_chat_and_hears_messages(host_page, browser_page):
    page = browser_page
    page.goto(host_page)
    page.wait_for_function("window.helpdeskEvents.some(e => e[0] === 'ready')")
    page.evaluate("window.Helpdesk('open')")
    expect(page.get_by_role("button", name="Close chat").first).to_be_visible()
    frame = page.frame_locator('iframe[title="Chat"]')
    ask(frame, "How long does shipping take?")
    page.wait_for_function(
        "window.helpdeskEvents.some(e => e[0] === 'message' && e[1].author === 'bot')"
    )
    page.evaluate("window.Helpdesk('close')")
    expect(page.get_by_role("button", name="Open chat")).to_be_visible()


def test_the_chat_buttons_wait_for_the_frame_script_so_no_click_is_lost(host_page, browser_page):
    frame_js = HeldScript(browser_page.context, "helpdesk/frame.js")
    browser_page.goto(host_page)
    browser_page.get_by_role("button", name="Open chat").click()
    frame = browser_page.frame_locator('iframe[title="Chat"]')
    handoff = frame.locator("header").get_by_role("button", name="Talk to a person")
    send = frame.get_by_role("button", name="Send", exact=True)
    expect(handoff).to_be_visible()
    expect(handoff).to_be_disabled()
    expect(send).to_be_disabled()

    frame_js.release(browser_page)
    expect(send).to_be_enabled()
    handoff.click()
    expect(frame.locator('.hd-line[data-notice="waiting"]')).to_be_visible()
    conversation = in_thread(lambda: Conversation.objects.get())
    assert (conversation.status, conversation.escalation_reason) == ("waiting", "customer:button")


def test_customer_text_is_shown_as_text_not_markup(host_page, browser_page):
    frame = open_chat(browser_page, host_page)
    ask(frame, "<img src=x onerror=alert(1)><b>bold?</b>")
    visitor = frame.get_by_role("log").locator('[data-author="visitor"]')
    expect(visitor).to_contain_text("<b>bold?</b>")
    expect(frame.get_by_role("log").locator("img")).to_have_count(0)


def test_feedback_on_an_answer_and_talk_to_a_person(host_page, browser_page):
    frame = open_chat(browser_page, host_page)
    ask(frame, "How long does shipping take?")
    answer = frame.get_by_role("log").locator('[data-author="bot"][data-seq]').last
    expect(answer.locator(".hd-sources")).to_contain_text("Shipping times and costs")
    not_helpful = answer.get_by_role("button", name="Not helpful", exact=True)
    not_helpful.click()
    expect(not_helpful).to_have_attribute("aria-pressed", "true")
    expect(answer).to_have_attribute("data-feedback", "down")
    assert in_thread(lambda: Message.objects.get(author="bot").feedback) == "down"

    helpful = answer.get_by_role("button", name="Helpful", exact=True)
    helpful.click()
    expect(helpful).to_have_attribute("aria-pressed", "true")
    expect(not_helpful).to_have_attribute("aria-pressed", "false")

    not_helpful.click()
    answer.get_by_role("button", name="Talk to a person").click()
    expect(frame.locator('.hd-line[data-notice="waiting"]')).to_be_visible()
    conversation = in_thread(lambda: Conversation.objects.get())
    assert (conversation.status, conversation.escalation_reason) == ("waiting", "customer:feedback")
