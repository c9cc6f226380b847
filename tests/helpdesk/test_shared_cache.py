"""One cache client per process, whatever thread or websocket connection asks."""

import contextvars
import threading

from django.core.cache import cache, caches

from helpdesk.shared_cache import shared_cache


def test_every_thread_gets_the_same_instance():
    seen = []
    thread = threading.Thread(target=lambda: seen.append(shared_cache()))
    thread.start()
    thread.join()
    assert seen == [shared_cache()]


def test_every_connections_context_gets_the_same_instance():
    # Each websocket connection runs in a context of its own, and Django's cache handler
    # makes one backend (with its own Redis pool) per thread and context.
    seen = []

    def in_two_contexts():
        for _ in range(2):
            seen.append(contextvars.Context().run(lambda: (shared_cache(), caches["default"])))

    thread = threading.Thread(target=in_two_contexts)
    thread.start()
    thread.join()
    (shared_a, django_a), (shared_b, django_b) = seen
    assert shared_a is shared_b
    assert django_a is not django_b


def test_it_reads_what_djangos_cache_wrote():
    cache.set("shared-cache-test", {"text": "Hello"}, 30)
    assert shared_cache().get("shared-cache-test") == {"text": "Hello"}


def test_new_cache_settings_give_a_new_instance(settings):
    before = shared_cache()
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "shared-cache-test",
        }
    }
    after = shared_cache()
    assert after is not before
    after.set("shared-cache-location", 1, 30)
    assert before.get("shared-cache-location") is None
