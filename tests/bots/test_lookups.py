"""A turn's lookups made from the question and the caches alone (bots.services.cached_lookups),
so that they can be made while the message is being stored."""

import uuid

import pytest

from bots import services, site_cache
from bots.models import Article
from helpdesk.models import Visitor
from helpdesk.services import record_visitor_message

pytestmark = pytest.mark.django_db

QUESTION = "How long does shipping take? Write to ana@example.com"


@pytest.fixture(autouse=True)
def cached_sites(settings):
    settings.HELPDESK_SITE_CACHE_SECONDS = 60
    site_cache.invalidate()
    yield
    site_cache.invalidate()


def asked(site, text: str = QUESTION) -> tuple[int, int]:
    visitor = Visitor.objects.create(site=site)
    recorded = record_visitor_message(visitor_id=visitor.pk, client_id=uuid.uuid4(), text=text)
    return recorded.conversation_id, recorded.message["id"]


def prepared_turn(message: tuple[int, int], **options) -> services.Turn:
    conversation_id, message_id = message
    return services.prepare_turn(
        conversation_id=conversation_id,
        message_id=message_id,
        snippet_limit=3,
        **options,
    )


def lookups_of(site, question: str = QUESTION) -> services.Lookups | None:
    return services.cached_lookups(site_id=site.pk, question=question, snippet_limit=3)


def test_nothing_is_looked_up_before_the_site_is_cached(site, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert lookups_of(site) is None


def test_nothing_is_looked_up_while_the_cache_is_off(site, settings):
    prepared_turn(asked(site))
    settings.HELPDESK_SITE_CACHE_SECONDS = 0
    assert lookups_of(site) is None


def test_lookups_come_from_the_caches_with_no_query(site, django_assert_num_queries):
    message = asked(site)
    prepared_turn(asked(site))
    with django_assert_num_queries(0):
        lookups = lookups_of(site)
    assert lookups.snippets[0].title == "Shipping times and costs"
    assert "ana@example.com" not in lookups.redacted.text
    turn = prepared_turn(message, lookups=lookups)
    assert turn.snippets == lookups.snippets
    assert turn.redacted is lookups.redacted
    assert turn.curated is lookups.curated


def test_lookups_made_before_the_sites_knowledge_changed_are_made_again(site):
    message = asked(site)
    prepared_turn(asked(site))
    lookups = lookups_of(site)
    Article.objects.create(
        site=site,
        title="Express shipping",
        body="Express shipping takes one business day and costs $15.",
        tags=["shipping"],
    )
    turn = prepared_turn(message, lookups=lookups)
    assert "Express shipping" in [snippet.title for snippet in turn.snippets]
    assert "Express shipping" not in [snippet.title for snippet in lookups.snippets]


def test_lookups_of_another_question_are_not_used(site):
    message = asked(site, "Can I return my boots?")
    prepared_turn(asked(site))
    turn = prepared_turn(message, lookups=lookups_of(site))
    assert turn.snippets[0].title == "Returns policy"


# -- the turn from the caches alone, for the event loop -----------------------------------


def rows_of(site, text: str = QUESTION) -> tuple[tuple, list]:
    """What the statement that stored a conversation's first message read for its turn."""
    return services.turn_rows_of_reads(
        seq=1, text=text, conversation=[site.pk, "en", "en", None, None], earlier=None
    )


def cached_turn(site, message: tuple[int, int], **options) -> services.Turn | None:
    return prepared_turn(
        message, rows=rows_of(site), lookups=lookups_of(site), cached_only=True, **options
    )


def test_a_turn_from_the_caches_alone_runs_no_query(site, django_assert_num_queries):
    read = prepared_turn(asked(site))
    message = asked(site)
    with django_assert_num_queries(0):
        turn = cached_turn(site, message)
    assert turn.snippets == read.snippets
    assert turn.message_id == message[1]
    assert turn.knowledge_version == read.knowledge_version


def test_no_turn_from_the_caches_before_the_site_is_cached(site):
    message = asked(site)
    assert cached_turn(site, message) is None
    lookups = lookups_of(site)
    assert lookups is None
    assert prepared_turn(message, rows=rows_of(site), lookups=None, cached_only=True) is None


def test_no_turn_from_the_caches_when_a_monthly_budget_must_be_summed(site):
    from bots.models import BotConfig

    BotConfig.objects.create(site=site, monthly_token_budget=100_000)
    prepared_turn(asked(site))
    assert lookups_of(site) is not None
    assert cached_turn(site, asked(site)) is None


def test_no_turn_from_the_caches_for_a_question_the_response_cache_may_answer(site):
    from bots import engine

    prepared_turn(asked(site))
    message = asked(site)
    turn = engine.read_turn_from_caches(
        conversation_id=message[0],
        message_id=message[1],
        reads=([site.pk, "en", "en", None, None], None),
        message={"seq": 1, "text": QUESTION},
        lookups=lookups_of(site),
    )
    # A first question is context-free: the response cache is asked, in the ORM thread.
    assert turn is None
