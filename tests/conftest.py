"""Shared fixtures: the fake LLM server and a site with a small knowledge base."""

import pytest
from django.conf import settings as django_settings

from bots.models import Article
from helpdesk.models import Site
from tests.fake_llm import FakeLLMServer
from tests.widget_client import SHOP_ORIGIN

ON_POSTGRESQL = django_settings.DATABASES["default"]["ENGINE"].endswith("postgresql")


def pytest_report_header(config):
    database = django_settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
    layer = django_settings.CHANNEL_LAYERS["default"]["BACKEND"].rsplit(".", 1)[-1]
    embedded = "embedded defaults" if database == "sqlite3" else "external services"
    return f"helpdesk: {embedded}: database={database}, channel layer={layer}"


@pytest.fixture(autouse=True)
def _fresh_process_state():
    """The response cache and the circuit breaker outlive a test; start each one clean."""
    from django.core.cache import cache

    from bots.circuit import breaker

    cache.clear()
    breaker.reset()
    yield
    breaker.reset()


@pytest.fixture(autouse=True)
def _fresh_channel_layer():
    """A channel-layer instance per test.

    The Redis layer keeps one receive lock per instance, bound to the event loop that made
    it, and answers outlive their socket by design: one still running when a test's loop
    closes would leave that lock to the next test's loop. In production each process has a
    single loop, so this is a test-only concern.
    """
    from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers

    channel_layers.backends.pop(DEFAULT_CHANNEL_LAYER, None)


@pytest.fixture(autouse=True)
def _loop_connections_closed():
    """The event loop's own PostgreSQL connections (helpdesk.loop_db) closed after each
    test: one a test broke or left mid-statement is not the next test's."""
    from helpdesk import loop_db

    yield
    loop_db.close_all()


@pytest.fixture(scope="session", autouse=True)
def _loop_connections_closed_before_teardown(django_db_setup, django_db_blocker):
    """The event loop's own PostgreSQL connections (helpdesk.loop_db) closed before the
    test database is dropped."""
    from helpdesk import loop_db

    yield
    loop_db.close_all()


@pytest.fixture(scope="session")
def fake_llm_server():
    with FakeLLMServer() as server:
        yield server


@pytest.fixture
def fake_llm(fake_llm_server, settings):
    """The fake OpenAI-compatible server, wired in as the bot's LLM for this test."""
    fake_llm_server.reset()
    settings.OPENAI_BASE_URL = fake_llm_server.base_url
    settings.OPENAI_API_KEY = "test-key"
    yield fake_llm_server
    fake_llm_server.reset()


def make_site(**fields) -> Site:
    defaults = {
        "name": "Acme Test",
        "allowed_origins": [SHOP_ORIGIN],
        "scope": "You are the assistant of Acme Test, an outdoor shop. Only discuss the shop.",
        "greeting": "Hi! Ask me about shipping or returns.",
    }
    return Site.objects.create(**{**defaults, **fields})


@pytest.fixture
def site(db) -> Site:
    site = make_site()
    Article.objects.create(
        site=site,
        title="Shipping times and costs",
        body="Standard shipping takes 3-5 business days and costs $5; free over $75.",
        tags=["shipping", "delivery"],
    )
    Article.objects.create(
        site=site,
        title="Returns policy",
        body="Return unused items within 30 days for a full refund.",
        tags=["returns", "refund"],
    )
    Article.objects.create(
        site=site,
        title="退货政策",
        body="未使用的商品可在30天内退货并全额退款。",
        tags=["退货"],
        language="zh-hans",
    )
    return site
