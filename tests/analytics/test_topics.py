"""Stored topics and gaps (analytics.topics, the cluster_topics task), the dashboard tables and
their drill-down, fixes made from a gap and the before/after measurement."""

import csv
import io
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from analytics.models import QuestionTopic, TopicFix, TopicQuestion
from analytics.tasks import cluster_topics
from analytics.topics import recompute_topics
from bots.models import Article, CuratedAnswer, LLMCall
from handoff.models import Handoff, Rating
from helpdesk.models import Conversation, Message, Visitor
from tests.analytics.test_reports import make_user
from tests.conftest import make_site

pytestmark = pytest.mark.django_db

SHIPPING = [
    "Where is my parcel? Shipping status please",
    "where is my parcel, what is the shipping status",
    "Shipping status of my parcel?",
    "what's the shipping status of my parcel",
]
REFUND = [
    "I want a refund for my broken blender",
    "refund please, my blender arrived broken",
    "Can I get a refund, the blender is broken",
    "broken blender, I want my refund",
]


def ask(site, text, when, *, answer_sources=None, handoff=False, score=None):
    """A conversation: one question at `when`; a bot answer citing `answer_sources` (None: no
    bot answer), or a handoff; and a rating."""
    conv = Conversation.objects.create(site=site, visitor=Visitor.objects.create(site=site))
    Conversation.objects.filter(pk=conv.pk).update(created_at=when, updated_at=when)
    question = Message.objects.create(conversation=conv, seq=1, author="visitor", text=text)
    Message.objects.filter(pk=question.pk).update(created_at=when)
    if answer_sources is not None:
        answer = Message.objects.create(
            conversation=conv,
            seq=2,
            author="bot",
            text="Here you go.",
            answer_source="llm",
            sources=answer_sources,
        )
        Message.objects.filter(pk=answer.pk).update(created_at=when + timedelta(seconds=2))
    if handoff:
        created = Handoff.objects.create(conversation=conv, site=site, rule="customer_request")
        Handoff.objects.filter(pk=created.pk).update(created_at=when + timedelta(seconds=5))
    if score is not None:
        Rating.objects.create(conversation=conv, score=score)
    return conv


@pytest.fixture
def shop():
    site = make_site(name="Shop")
    now = timezone.now()
    for n, text in enumerate(SHIPPING):
        ask(site, text, now - timedelta(days=3, hours=n), answer_sources=[{"id": 1}], score=5)
    for n, text in enumerate(REFUND):
        ask(site, text, now - timedelta(days=2, hours=n), handoff=True, score=1 + n % 2)
    return site


def topic_of(site, text):
    return QuestionTopic.objects.get(site=site, questions__message__text=text)


def test_topics_are_stored_with_outcomes_and_ranked_as_gaps(shop):
    other = make_site(name="Other")
    ask(other, "Where is my parcel? Shipping status please", timezone.now(), answer_sources=[])

    assert cluster_topics(shop.pk) == "2 topics for 1 sites"

    shipping, refund = topic_of(shop, SHIPPING[0]), topic_of(shop, REFUND[0])
    assert shipping != refund
    assert set(shipping.questions.values_list("message__text", flat=True)) == set(SHIPPING)
    assert (shipping.size, shipping.answered_by_bot_share, shipping.escalated_share) == (4, 1, 0)
    assert (shipping.no_article_share, shipping.average_rating, shipping.gap_score) == (0, 5, 0)
    assert (refund.size, refund.answered_by_bot_share, refund.escalated_share) == (4, 0, 1)
    assert refund.no_article_share == 1
    assert refund.average_rating == 1.5
    assert refund.low_rating_share == 1
    assert refund.gap_score == pytest.approx(2 * (0.5 + 0.3 + 0.2))
    assert set(refund.examples) == set(REFUND)
    assert not QuestionTopic.objects.filter(site=other).exists()


def test_rerun_replaces_topics_and_keeps_their_keys(shop):
    recompute_topics(site_id=shop.pk)
    first = {t.label: (t.key, t.size, t.gap_score) for t in QuestionTopic.objects.all()}
    ids = set(QuestionTopic.objects.values_list("pk", flat=True))

    recompute_topics(site_id=shop.pk)

    assert {t.label: (t.key, t.size, t.gap_score) for t in QuestionTopic.objects.all()} == first
    assert ids.isdisjoint(QuestionTopic.objects.values_list("pk", flat=True))
    assert TopicQuestion.objects.count() == len(SHIPPING) + len(REFUND)

    # A topic that gains questions is still the same topic.
    refund_key = topic_of(shop, REFUND[0]).key
    ask(shop, "my blender is broken, refund", timezone.now(), handoff=True)
    recompute_topics(site_id=shop.pk)
    assert topic_of(shop, REFUND[0]).key == refund_key
    assert topic_of(shop, REFUND[0]).size == 5


def test_questions_are_redacted_and_old_ones_left_out(shop):
    ask(shop, "refund to jane@example.com, blender broken", timezone.now(), handoff=True)
    ask(shop, "refund my broken blender", timezone.now() - timedelta(days=40), handoff=True)
    recompute_topics(site_id=shop.pk)
    refund = topic_of(shop, REFUND[0])
    assert refund.size == 5
    assert any("[EMAIL]" in example for example in refund.examples)
    assert "jane@example.com" not in str(list(QuestionTopic.objects.values("label", "examples")))


def test_embeddings_path(shop, fake_llm, settings):
    settings.HELPDESK_EMBEDDING_MODEL = "text-embedding-3-small"
    recompute_topics(site_id=shop.pk)
    embedded = [r for r in fake_llm.requests if r.path.endswith("/embeddings")]
    assert embedded
    assert sorted(embedded[0].body["input"]) == sorted(SHIPPING + REFUND)
    assert QuestionTopic.objects.filter(site=shop).exists()
    # The embeddings request is in the site's LLM call log, so its tokens reach the reports.
    [call] = LLMCall.objects.filter(site=shop, kind="embedding")
    assert (call.model, call.outcome, call.conversation) == ("text-embedding-3-small", "ok", None)
    assert call.prompt_tokens > 0


def test_embeddings_failure_falls_back_to_text_and_is_logged(shop, settings):
    # A real refused connection: nothing listens on the discard port.
    settings.OPENAI_BASE_URL = "http://127.0.0.1:9/v1"
    settings.OPENAI_API_KEY = "test-key"
    settings.HELPDESK_LLM_MAX_RETRIES = 0
    settings.HELPDESK_EMBEDDING_MODEL = "text-embedding-3-small"

    assert recompute_topics(site_id=shop.pk) == 2  # the TF-IDF topics

    [call] = LLMCall.objects.filter(site=shop, kind="embedding")
    assert (call.outcome, call.prompt_tokens) == ("APIConnectionError", 0)


def test_management_command_runs_topics(shop):
    out = StringIO()
    call_command("aggregate", "--topics", stdout=out)
    assert "topics for" in out.getvalue()
    assert QuestionTopic.objects.filter(site=shop).count() == 2


# The dashboard.


@pytest.fixture
def manager_client(client, django_user_model):
    manager = make_user(django_user_model, "maria", group="Managers")
    manager.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_article", "add_curatedanswer"])
    )
    client.force_login(manager)
    return client


def test_dashboard_shows_topics_and_gaps_with_drill_down(shop, manager_client):
    ask(shop, "<script>alert(1)</script> refund broken blender", timezone.now(), handoff=True)
    recompute_topics(site_id=shop.pk)
    refund = topic_of(shop, REFUND[0])

    response = manager_client.get(reverse("admin:analytics_dashboard"))

    assert [row["topic"].pk for row in response.context["gaps"]] == [refund.pk]
    assert {row["topic"].pk for row in response.context["topics"]} == set(
        QuestionTopic.objects.values_list("pk", flat=True)
    )
    html = response.content.decode()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    drill = f"metric=topic&amp;topic={refund.key}"
    assert drill in html
    assert reverse("admin:analytics_topic_fix", args=[refund.pk]) in html

    listed = manager_client.get(
        reverse("admin:analytics_conversations"), {"metric": "topic", "topic": str(refund.key)}
    )
    expected = set(refund.questions.values_list("conversation_id", flat=True))
    assert {c.pk for c in listed.context["page_obj"]} == expected
    assert len(expected) == 5
    bad = manager_client.get(reverse("admin:analytics_conversations"), {"metric": "topic"})
    assert bad.status_code == 400

    # The shares drill down too: the topic's escalated questions only.
    shipping = topic_of(shop, SHIPPING[0])
    assert f"topic={shipping.key}&amp;outcome=answered_by_bot" in html
    assert f"topic={refund.key}&amp;outcome=no_article" in html
    url = reverse("admin:analytics_conversations")
    answered = manager_client.get(
        url, {"metric": "topic", "topic": str(shipping.key), "outcome": "answered_by_bot"}
    )
    assert answered.context["page_obj"].paginator.count == 4
    escalated = manager_client.get(
        url, {"metric": "topic", "topic": str(shipping.key), "outcome": "escalated"}
    )
    assert escalated.context["page_obj"].paginator.count == 0
    nope = manager_client.get(url, {"metric": "topic", "topic": str(shipping.key), "outcome": "x"})
    assert nope.status_code == 400

    export = manager_client.get(reverse("admin:analytics_export", args=["gaps"]))
    body = b"".join(export.streaming_content).decode("utf-8")
    assert body.count("\n") == 2  # header and the one gap
    assert refund.label in body


# Fixes from a gap.


def test_draft_article_from_a_gap(shop, manager_client):
    recompute_topics(site_id=shop.pk)
    refund = topic_of(shop, REFUND[0])

    response = manager_client.post(
        reverse("admin:analytics_topic_fix", args=[refund.pk]), {"kind": "article"}
    )

    article = Article.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:bots_article_change", args=[article.pk])
    assert (article.site, article.is_published, article.title) == (shop, False, refund.label)
    assert all(example in article.body for example in refund.examples)
    fix = TopicFix.objects.get()
    assert (fix.article, fix.topic_key, fix.fixed_at) == (article, refund.key, None)
    assert (fix.before_size, fix.before_escalated_share, fix.before_no_article_share) == (4, 1, 1)
    assert fix.before_average_rating == 1.5


def test_curated_answer_from_a_gap(shop, manager_client):
    recompute_topics(site_id=shop.pk)
    refund = topic_of(shop, REFUND[0])
    response = manager_client.post(
        reverse("admin:analytics_topic_fix", args=[refund.pk]), {"kind": "curated"}
    )
    answer = CuratedAnswer.objects.get()
    assert response["Location"] == reverse("admin:bots_curatedanswer_change", args=[answer.pk])
    assert (answer.site, answer.is_active, answer.question) == (shop, False, refund.examples[0])
    assert TopicFix.objects.get().curated_answer == answer


def test_fix_needs_a_manager_allowed_to_add_articles(shop, client, django_user_model):
    recompute_topics(site_id=shop.pk)
    url = reverse("admin:analytics_topic_fix", args=[topic_of(shop, REFUND[0]).pk])
    client.force_login(make_user(django_user_model, "alex", group="Agents"))
    assert client.post(url, {"kind": "article"}).status_code == 403
    client.force_login(make_user(django_user_model, "mo", group="Managers"))
    assert client.post(url, {"kind": "article"}).status_code == 403  # no bots.add_article
    assert client.get(url).status_code == 405
    assert not Article.objects.exists()
    assert not TopicFix.objects.exists()


def test_fix_is_measured_again_after_it_goes_live(shop, manager_client):
    recompute_topics(site_id=shop.pk)
    refund = topic_of(shop, REFUND[0])
    manager_client.post(reverse("admin:analytics_topic_fix", args=[refund.pk]), {"kind": "article"})
    fix = TopicFix.objects.get()

    # Not live yet: the next run does not stamp it and the report shows nothing after.
    recompute_topics(site_id=shop.pk)
    fix.refresh_from_db()
    assert fix.fixed_at is None

    article = Article.objects.get()
    article.body = "Refunds: send the broken item back within 30 days."
    article.is_published = True
    article.save()
    later = timezone.now() + timedelta(hours=1)
    for n, text in enumerate(["refund for a broken blender?", "blender broken, refund"]):
        ask(shop, text, later + timedelta(minutes=n), answer_sources=[{"id": article.pk}], score=4)
    recompute_topics(site_id=shop.pk, now=later + timedelta(hours=1))

    fix.refresh_from_db()
    assert fix.fixed_at == article.updated_at
    response = manager_client.get(reverse("admin:analytics_dashboard"))
    [row] = response.context["fixes"]
    measured = row["fix"]
    assert (measured.before_size, measured.after_size) == (4, 2)
    assert (measured.before_escalated_share, measured.after_escalated_share) == (1, 0)
    assert (measured.before_no_article_share, measured.after_no_article_share) == (1, 0)
    assert (measured.before_average_rating, measured.after_average_rating) == (1.5, 4)
    # Formatted by the view, as the table shows them.
    assert (row["escalated"], row["no_article"], row["rating"]) == (
        "100% / 0%",
        "100% / 0%",
        "1.50 / 4.00",
    )
    assert row["live_since"] == timezone.localtime(fix.fixed_at).strftime("%Y-%m-%d %H:%M")
    html = response.content.decode()
    topic_url = f"metric=topic&amp;topic={fix.topic_key}&amp;fix={fix.pk}"
    assert f'{topic_url}">2</a>' in html
    # Every figure on both sides drills down: before the fix was made, and since it is live.
    assert f'{topic_url}&amp;side=before">4</a>' in html
    assert f'{topic_url}&amp;side=before&amp;outcome=escalated">100%</a>' in html
    assert f'{topic_url}&amp;outcome=escalated">0%</a>' in html
    assert f'{topic_url}&amp;side=before&amp;outcome=no_article">100%</a>' in html
    assert f'href="{reverse("admin:bots_article_change", args=[article.pk])}"' in html

    after = manager_client.get(
        reverse("admin:analytics_conversations"),
        {"metric": "topic", "topic": str(fix.topic_key), "fix": fix.pk},
    )
    texts = {c.messages.get(seq=1).text for c in after.context["page_obj"]}
    assert texts == {"refund for a broken blender?", "blender broken, refund"}
    before = manager_client.get(
        reverse("admin:analytics_conversations"),
        {"metric": "topic", "topic": str(fix.topic_key), "fix": fix.pk, "side": "before"},
    )
    before_texts = {c.messages.get(seq=1).text for c in before.context["page_obj"]}
    assert len(before_texts) == 4
    assert before_texts.isdisjoint(texts)
    assert before_texts <= set(REFUND)
    wrong_side = manager_client.get(
        reverse("admin:analytics_conversations"),
        {"metric": "topic", "topic": str(fix.topic_key), "fix": fix.pk, "side": "during"},
    )
    assert wrong_side.status_code == 400

    export = manager_client.get(reverse("admin:analytics_export", args=["fixes"]))
    rows = list(csv.DictReader(io.StringIO(b"".join(export.streaming_content).decode()[1:])))
    assert len(rows) == 1
    row = rows[0]
    assert (row["site"], row["kind"], row["live_since"]) == (
        "Shop",
        "article",
        fix.fixed_at.isoformat(),
    )
    assert (row["questions_before"], row["questions_after"]) == ("4", "2")
    assert (float(row["escalated_share_before"]), float(row["escalated_share_after"])) == (1, 0)
    assert (float(row["average_rating_before"]), float(row["average_rating_after"])) == (1.5, 4)
