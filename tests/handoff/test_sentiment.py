"""The optional LLM sentiment check, over the real widget consumer and the fake LLM server."""

import time

import pytest
from channels.db import database_sync_to_async

from bots.models import LLMCall
from handoff import sentiment
from handoff.models import Handoff, HandoffSettings
from helpdesk.models import Conversation
from tests.fake_llm import Reply
from tests.widget_client import WidgetClient

pytestmark = pytest.mark.django_db(transaction=True)

# No word of the lexicon: it lets this through, so only the LLM can call a person.
CALM_WORDS = "Three weeks and no refund. Write to kim@example.com about it."


def sentiment_requests(fake_llm) -> list[dict]:
    return [
        body
        for body in fake_llm.chat_requests()
        if body["messages"][0]["content"] == sentiment.INSTRUCTIONS
    ]


async def frames_until_quiet(client, quiet: float = 0.5) -> list[dict]:
    frames = []
    while not await client.communicator.receive_nothing(timeout=quiet):
        frames.append(await client.receive())
    return frames


async def customer_says(site, text: str, until: str) -> list[dict]:
    """The frames the customer gets after saying `text`: up to an `until` frame, then quiet."""
    visitor = await WidgetClient.opened(site.key)
    await visitor.say(text)
    frames = await visitor.receive_until(until, timeout=10)
    frames += await frames_until_quiet(visitor)
    await visitor.close()
    return frames


async def test_an_angry_customer_the_lexicon_missed_goes_to_a_person(site, fake_llm):
    await database_sync_to_async(HandoffSettings.objects.create)(site=site, sentiment_llm=True)
    fake_llm.script(Reply(text='```json\n{"score": 4, "reason": "furious about a refund"}\n```'))

    frames = await customer_says(site, CALM_WORDS, until="status")

    assert "waiting" in [f["status"] for f in frames if f["type"] == "status"]
    handoff = await database_sync_to_async(Handoff.objects.get)()
    assert (handoff.rule, handoff.priority) == ("sentiment", 2)
    assert handoff.reason == "Angry or distressed customer (LLM, score 4): furious about a refund"
    # The model saw the message with its PII redacted, and the call is in the audit log.
    [request] = sentiment_requests(fake_llm)
    assert request["messages"][1]["content"] == (
        "Three weeks and no refund. Write to [EMAIL] about it."
    )
    call = await database_sync_to_async(LLMCall.objects.get)(parameters__purpose="sentiment")
    assert (call.kind, call.outcome, call.pii_redacted) == ("chat", "ok", 1)
    assert call.prompt_tokens > 0
    assert call.conversation_id == handoff.conversation_id


@pytest.mark.parametrize(
    ("reply", "outcome"),
    [
        (Reply(status=500), "InternalServerError"),
        (Reply(text="They sound upset to me."), "invalid_answer"),
        (Reply(text='{"score": "high", "reason": "?"}'), "invalid_answer"),
        (Reply(text='{"score": 1, "reason": "mildly annoyed"}'), "ok"),
    ],
)
async def test_without_a_verdict_of_anger_the_bot_keeps_the_conversation(
    site, fake_llm, reply, outcome
):
    await database_sync_to_async(HandoffSettings.objects.create)(site=site, sentiment_llm=True)
    fake_llm.script(reply)

    frames = await customer_says(site, CALM_WORDS, until="done")

    # The lexicon's verdict stands, and the bot answers as usual.
    assert [f for f in frames if f["type"] == "done"][-1]["answer_source"] == "llm"
    assert not [f for f in frames if f["type"] == "status"]
    assert not await database_sync_to_async(Handoff.objects.exists)()
    conversation = await database_sync_to_async(Conversation.objects.get)()
    assert conversation.status == "bot"
    call = await database_sync_to_async(LLMCall.objects.get)(parameters__purpose="sentiment")
    assert call.outcome == outcome


async def test_the_llm_is_not_asked_unless_the_site_wants_it(site, fake_llm):
    await database_sync_to_async(HandoffSettings.objects.create)(site=site)
    fake_llm.script(Reply(text='{"score": 5, "reason": "furious"}'))

    await customer_says(site, CALM_WORDS, until="done")

    assert sentiment_requests(fake_llm) == []
    assert not await database_sync_to_async(Handoff.objects.exists)()


async def test_nor_when_the_sentiment_check_is_off(site, fake_llm):
    await database_sync_to_async(HandoffSettings.objects.create)(
        site=site, sentiment_check=False, sentiment_llm=True
    )
    await customer_says(site, CALM_WORDS, until="done")
    assert sentiment_requests(fake_llm) == []


async def test_nor_without_an_llm(site):
    await database_sync_to_async(HandoffSettings.objects.create)(site=site, sentiment_llm=True)
    await customer_says(site, CALM_WORDS, until="done")
    assert not await database_sync_to_async(LLMCall.objects.exists)()


async def test_the_lexicon_decides_first_and_alone(site, fake_llm):
    await database_sync_to_async(HandoffSettings.objects.create)(site=site, sentiment_llm=True)

    await customer_says(site, "This is ridiculous, I'm going to sue you", until="status")

    handoff = await database_sync_to_async(Handoff.objects.get)()
    assert handoff.rule == "sentiment"
    assert "LLM" not in handoff.reason
    assert sentiment_requests(fake_llm) == []


@pytest.mark.parametrize(
    ("content", "verdict"),
    [
        ('{"score": 3, "reason": "angry"}', sentiment.Verdict(3, "angry")),
        (
            'Here you go: {"score": 4.6, "reason": "very   upset"} ',
            sentiment.Verdict(5, "very upset"),
        ),
        ('{"score": 0}', sentiment.Verdict(0, "")),
    ],
)
def test_parsing_the_models_answer(content, verdict):
    assert sentiment._parse(content) == verdict


@pytest.mark.parametrize("content", ["", "angry", "[3]", '{"score": 9}', '{"score": true}'])
def test_answers_that_are_not_a_verdict(content):
    with pytest.raises(ValueError):  # noqa: PT011 - _InvalidAnswer, private
        sentiment._parse(content)


def is_sentiment_request(body: dict) -> bool:
    return body["messages"][0]["content"] == sentiment.INSTRUCTIONS


async def test_in_process_the_check_does_not_hold_up_the_bots_answer(site, fake_llm, settings):
    # The embedded default: tasks run in this process, on threads of their own.
    settings.HELPDESK_EAGER_TASKS_IN_BACKGROUND = True
    await database_sync_to_async(HandoffSettings.objects.create)(site=site, sentiment_llm=True)
    slow = 1.5
    fake_llm.script_for(
        is_sentiment_request, Reply(text='{"score": 4, "reason": "furious"}', delay=slow)
    )
    visitor = await WidgetClient.opened(site.key)
    started = time.monotonic()
    await visitor.say(CALM_WORDS)

    frames = await visitor.receive_until("done", timeout=10)
    answered_after = time.monotonic() - started
    frames += await visitor.receive_until("status", timeout=10)
    await visitor.close()

    # The bot answered while the model still weighed the customer's mood; then a person.
    assert answered_after < slow
    assert [f for f in frames if f["type"] == "done"][-1]["answer_source"] == "llm"
    assert [f["status"] for f in frames if f["type"] == "status"] == ["waiting"]
    handoff = await database_sync_to_async(Handoff.objects.get)()
    assert handoff.rule == "sentiment"
