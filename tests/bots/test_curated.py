"""Curated answers: matching a customer question in English and Chinese, hits, and creation."""

import pytest

from bots import curated
from bots.curated import (
    create_curated_from_message,
    find_curated_answer,
    normalize_question,
    record_curated_hit,
    similarity,
)
from bots.models import CuratedAnswer
from helpdesk.models import Conversation, Message, Visitor
from helpdesk.services import append_message
from tests.conftest import make_site

pytestmark = pytest.mark.django_db

SHIPPING_Q = "How long does shipping take?"
SHIPPING_A = "Standard shipping takes 3-5 business days."
RETURNS_Q = "退货需要多长时间？"
RETURNS_A = "退款会在收到退货后5个工作日内处理。"


@pytest.fixture(autouse=True)
def empty_cache():
    curated._cache.clear()
    yield
    curated._cache.clear()


@pytest.fixture
def shop():
    site = make_site()
    CuratedAnswer.objects.create(site=site, question=SHIPPING_Q, answer=SHIPPING_A)
    CuratedAnswer.objects.create(site=site, question=RETURNS_Q, answer=RETURNS_A)
    CuratedAnswer.objects.create(
        site=site, question="Do you ship to Canada?", answer="Yes, in 7-10 days."
    )
    return site


def find(site, question, threshold=0.85):
    return find_curated_answer(site_id=site.pk, question=question, threshold=threshold)


def test_normalize_question_folds_case_punctuation_and_spaces():
    assert normalize_question("  Don't   SHIP it, please!!  ") == "dont ship it please"
    assert normalize_question("退货，需要多长时间？「快递」。") == "退货 需要多长时间 快递"
    assert normalize_question("Straße\tＡＢＣ…") == "strasse abc"


def test_similarity_is_one_for_the_same_question_and_zero_for_nothing_shared():
    assert similarity(SHIPPING_Q, "how long does SHIPPING take") == pytest.approx(1.0)
    assert similarity(SHIPPING_Q, "退货") == 0.0
    assert similarity("", SHIPPING_Q) == 0.0


@pytest.mark.parametrize(
    "paraphrase",
    [
        "how long does the shipping take",
        "How long does shiping take??",
        "HOW LONG DOES SHIPPING TAKE",
    ],
)
def test_an_english_paraphrase_with_small_edits_matches(shop, paraphrase):
    match = find(shop, paraphrase)
    assert match is not None
    assert match.answer == SHIPPING_A
    assert match.score > 0.85
    assert match.curated_id == CuratedAnswer.objects.get(question=SHIPPING_Q).pk


@pytest.mark.parametrize(
    "paraphrase", ["退货要多长时间", "退货需要多长的时间?", "退货需要多长时间"]
)
def test_a_chinese_paraphrase_with_small_edits_matches(shop, paraphrase):
    match = find(shop, paraphrase)
    assert match is not None
    assert match.answer == RETURNS_A
    assert match.score > 0.85


@pytest.mark.parametrize(
    "question",
    ["Can I pay with PayPal?", "Do you ship to Mexico?", "你们的营业时间是什么", "运费是多少"],
)
def test_an_unrelated_question_scores_below_the_bar(shop, question):
    assert find(shop, question) is None
    best = curated.index_for_site(shop.pk).best(question)
    assert best is None or best.score < 0.85


def test_the_threshold_is_respected(shop):
    question = "How long will shipping take?"
    score = similarity(SHIPPING_Q, question)
    assert 0.5 < score < 0.95
    assert find(shop, question, threshold=score - 0.01).answer == SHIPPING_A
    assert find(shop, question, threshold=score + 0.01) is None


def test_inactive_curated_answers_are_ignored(shop):
    CuratedAnswer.objects.filter(question=SHIPPING_Q).update(is_active=False)
    assert find(shop, SHIPPING_Q) is None


def test_curated_answers_of_another_site_are_ignored(shop):
    other = make_site(name="Other")
    assert find(other, SHIPPING_Q) is None


def test_the_index_is_cached_until_a_curated_answer_changes(shop, django_assert_num_queries):
    assert find(shop, SHIPPING_Q).answer == SHIPPING_A
    # Only the version query: the index itself comes from the cache.
    with django_assert_num_queries(1):
        assert find(shop, SHIPPING_Q).answer == SHIPPING_A

    entry = CuratedAnswer.objects.get(question=SHIPPING_Q)
    entry.answer = "Shipping now takes 1-2 days."
    entry.save()
    assert find(shop, SHIPPING_Q).answer == "Shipping now takes 1-2 days."

    entry.question = "Which payment methods do you accept?"
    entry.save()
    assert find(shop, SHIPPING_Q) is None
    assert find(shop, "which payment methods do you accept").curated_id == entry.pk


def test_a_new_curated_answer_is_found_without_a_restart(shop):
    assert find(shop, "Can I pay with PayPal?") is None
    CuratedAnswer.objects.create(site=shop, question="Can I pay with PayPal?", answer="Yes.")
    assert find(shop, "can i pay with paypal").answer == "Yes."


def test_hits_are_counted(shop):
    entry = CuratedAnswer.objects.get(question=SHIPPING_Q)
    updated_at = entry.updated_at

    record_curated_hit(entry.pk)
    record_curated_hit(entry.pk)

    entry.refresh_from_db()
    assert entry.hits == 2
    assert entry.last_hit_at is not None
    # A hit is not an edit: it must not force the index to be rebuilt.
    assert entry.updated_at == updated_at


@pytest.fixture
def conversation():
    site = make_site()
    visitor = Visitor.objects.create(site=site)
    conversation = Conversation.objects.create(site=site, visitor=visitor)
    return conversation


def say(conversation, author, text):
    return append_message(conversation_id=conversation.pk, author=author, text=text)


def test_create_curated_from_an_agent_message_takes_the_preceding_visitor_question(
    conversation, admin_user
):
    say(conversation, Message.Author.VISITOR, "Do you sell boots?")
    say(conversation, Message.Author.BOT, "Yes, we sell boots.")
    say(conversation, Message.Author.VISITOR, "Can I return worn boots?")
    say(conversation, Message.Author.SYSTEM, "An agent joined.")
    answer = say(conversation, Message.Author.AGENT, "Only unworn boots can be returned.")

    entry = create_curated_from_message(message_id=answer.pk, user=admin_user)

    entry.refresh_from_db()
    assert entry.site_id == conversation.site_id
    assert entry.question == "Can I return worn boots?"
    assert entry.answer == "Only unworn boots can be returned."
    assert entry.source_message_id == answer.pk
    assert entry.created_by == admin_user
    assert entry.is_active


def test_create_curated_from_a_bot_message_ignores_later_questions(conversation):
    say(conversation, Message.Author.VISITOR, "Do you sell boots?")
    answer = say(conversation, Message.Author.BOT, "Yes, we sell boots.")
    say(conversation, Message.Author.VISITOR, "Can I return worn boots?")

    entry = create_curated_from_message(message_id=answer.pk, user=None)

    assert (entry.question, entry.answer) == ("Do you sell boots?", "Yes, we sell boots.")


@pytest.mark.parametrize("author", [Message.Author.VISITOR, Message.Author.SYSTEM])
def test_create_curated_refuses_messages_that_are_not_answers(conversation, author):
    say(conversation, Message.Author.VISITOR, "Do you sell boots?")
    message = say(conversation, author, "Some text")

    with pytest.raises(ValueError, match="only a bot or agent answer"):
        create_curated_from_message(message_id=message.pk, user=None)
    assert not CuratedAnswer.objects.exists()


def test_create_curated_refuses_an_answer_without_a_question_before_it(conversation):
    greeting = say(conversation, Message.Author.BOT, "Hi! How can I help?")
    say(conversation, Message.Author.VISITOR, "Do you sell boots?")

    with pytest.raises(ValueError, match="No visitor question"):
        create_curated_from_message(message_id=greeting.pk, user=None)
    assert not CuratedAnswer.objects.exists()
