"""The short-lived per-process cache of a site's bot settings and knowledge state."""

import threading

import pytest

from bots import services, site_cache
from bots.models import Article, BotConfig


@pytest.fixture(autouse=True)
def _empty_cache():
    site_cache.invalidate()
    yield
    site_cache.invalidate()


def counting_loader(second_reading=None):
    """A loader that counts its readings; `second_reading(site_id)`, if given, runs during
    the second."""
    calls = []

    def load(site_id):
        calls.append(site_id)
        if len(calls) == 2 and second_reading is not None:
            second_reading(site_id)
        return f"bundle {site_id} #{len(calls)}"

    return load, calls


def test_a_ttl_of_zero_reads_on_every_call(settings):
    settings.HELPDESK_SITE_CACHE_SECONDS = 0
    load, calls = counting_loader()
    assert site_cache.get(1, load) == "bundle 1 #1"
    assert site_cache.get(1, load) == "bundle 1 #2"
    assert calls == [1, 1]


def test_without_the_setting_the_cache_is_off(settings, monkeypatch):
    del settings.HELPDESK_SITE_CACHE_SECONDS
    monkeypatch.delenv("HELPDESK_SITE_CACHE_SECONDS", raising=False)
    assert site_cache.ttl_seconds() == 0


def test_within_the_ttl_a_site_is_read_once(settings):
    settings.HELPDESK_SITE_CACHE_SECONDS = 60
    load, calls = counting_loader()
    assert site_cache.get(1, load) == "bundle 1 #1"
    assert site_cache.get(1, load) == "bundle 1 #1"
    assert site_cache.get(2, load) == "bundle 2 #2"
    assert calls == [1, 2]


def test_an_expired_entry_is_read_again(settings, monkeypatch):
    settings.HELPDESK_SITE_CACHE_SECONDS = 2
    load, calls = counting_loader()
    site_cache.get(1, load)
    assert calls == [1]
    later = site_cache.monotonic() + 3
    monkeypatch.setattr(site_cache, "monotonic", lambda: later)
    assert site_cache.get(1, load) == "bundle 1 #2"


class Clock:
    """site_cache's clock, set by the test (the refresher's thread reads it too)."""

    def __init__(self, monkeypatch):
        self.now = site_cache.monotonic()
        monkeypatch.setattr(site_cache, "monotonic", lambda: self.now)


def refreshes_done() -> None:
    site_cache._refresher.submit(lambda: None).result(timeout=5)


def read_when_old(clock) -> None:
    """Site 1's entry (two seconds' life) peeked at when old, and its refresh waited for."""
    clock.now += 1.5
    site_cache.peek(1)
    refreshes_done()


def test_an_entry_read_in_the_second_half_of_its_life_is_read_again_in_the_background(
    settings, monkeypatch
):
    settings.HELPDESK_SITE_CACHE_SECONDS = 2
    clock = Clock(monkeypatch)
    threads = []
    load, calls = counting_loader()

    def remembered_load(site_id):
        threads.append(threading.current_thread().name)
        return load(site_id)

    site_cache.get(1, remembered_load)
    clock.now += 0.9
    assert site_cache.get(1, remembered_load) == "bundle 1 #1"
    refreshes_done()
    assert calls == [1]  # still young
    clock.now += 0.3
    assert site_cache.get(1, remembered_load) == "bundle 1 #1"  # old: read again meanwhile
    refreshes_done()
    assert calls == [1, 1]
    assert threads[1].startswith("helpdesk-site-cache")
    clock.now += 1.5  # past the first reading's two seconds
    assert site_cache.peek(1) == "bundle 1 #2"
    assert calls == [1, 1]


def test_peeking_at_an_old_entry_reads_it_again_too(settings, monkeypatch):
    settings.HELPDESK_SITE_CACHE_SECONDS = 2
    clock = Clock(monkeypatch)
    load, _calls = counting_loader()
    site_cache.get(1, load)
    clock.now += 1.5
    assert site_cache.peek(1) == "bundle 1 #1"
    refreshes_done()
    assert site_cache.peek(1) == "bundle 1 #2"


def test_a_refreshed_value_is_served_no_longer_than_the_ttl_after_its_reading_began(
    settings, monkeypatch
):
    settings.HELPDESK_SITE_CACHE_SECONDS = 2
    clock = Clock(monkeypatch)
    load, _calls = counting_loader()
    site_cache.get(1, load)
    read_when_old(clock)
    clock.now += 2.0
    assert site_cache.peek(1) is None
    assert site_cache.get(1, load) == "bundle 1 #3"


def test_a_site_changed_while_it_was_read_again_keeps_no_value_of_that_reading(
    settings, monkeypatch
):
    settings.HELPDESK_SITE_CACHE_SECONDS = 2
    clock = Clock(monkeypatch)
    # The site saved while the refresher reads it.
    load, _calls = counting_loader(second_reading=site_cache.invalidate)
    site_cache.get(1, load)
    read_when_old(clock)
    assert site_cache.peek(1) is None
    assert site_cache.get(1, load) == "bundle 1 #3"


def test_a_failed_refresh_leaves_the_entry_to_expire(settings, monkeypatch, caplog):
    settings.HELPDESK_SITE_CACHE_SECONDS = 2
    clock = Clock(monkeypatch)

    def database_gone(site_id):
        raise RuntimeError("database gone")

    load, calls = counting_loader(second_reading=database_gone)
    site_cache.get(1, load)
    read_when_old(clock)
    assert "Reading site 1 again" in caplog.text
    assert site_cache.peek(1) == "bundle 1 #1"
    assert calls == [1, 1]  # one refresh at a time, not one per read
    clock.now += 0.6
    assert site_cache.get(1, load) == "bundle 1 #3"


@pytest.mark.django_db
def test_the_bundle_carries_settings_and_knowledge_state(site):
    BotConfig.objects.filter(site=site).delete()
    bundle = services.load_site_bundle(site.pk)
    assert BotConfig.objects.filter(site=site).exists()
    assert (bundle.site_id, bundle.name, bundle.scope) == (site.pk, site.name, site.scope)
    published = Article.objects.filter(site=site, is_published=True)
    assert bundle.state["articles_count"] == published.count()
    assert bundle.state["articles_newest"] == published.latest("updated_at").updated_at


@pytest.mark.django_db
def test_saving_an_article_drops_the_sites_entry_in_this_process(site, settings):
    settings.HELPDESK_SITE_CACHE_SECONDS = 60
    before = site_cache.get(site.pk, services.load_site_bundle)
    assert site_cache.get(site.pk, services.load_site_bundle) is before
    Article.objects.create(site=site, title="New", body="Something new.", tags=[])
    after = site_cache.get(site.pk, services.load_site_bundle)
    assert after is not before
    assert after.state["articles_count"] == before.state["articles_count"] + 1
