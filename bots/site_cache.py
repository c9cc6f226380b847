"""A short-lived, per-process cache of what a bot turn reads about its site.

Every turn needs the site's BotConfig, name, scope and default language, and the versions of
its articles and curated answers. They change rarely, so a worker keeps them for a couple of
seconds instead of compiling and running the big query on every message.

Staleness: within one process, saving an Article, CuratedAnswer, BotConfig or Site drops
that site's entry at once (signals below). Other processes (more uvicorn workers, the admin
on another host) may keep answering from the old settings and knowledge version for up to
`HELPDESK_SITE_CACHE_SECONDS` -- including response-cache keys and the retrieval index. Set it
to 0 to read everything on every turn (the tests do).
"""

import os
import threading
from collections.abc import Callable
from time import monotonic
from typing import TypeVar

from django.conf import settings
from django.db.models.signals import post_delete, post_save

T = TypeVar("T")

_entries: dict[int, tuple[float, object]] = {}
_lock = threading.Lock()


def ttl_seconds() -> float:
    """HELPDESK_SITE_CACHE_SECONDS from settings, else the environment, else 0 (off)."""
    value = getattr(settings, "HELPDESK_SITE_CACHE_SECONDS", None)
    if value is None:
        value = os.environ.get("HELPDESK_SITE_CACHE_SECONDS") or 0
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        return 0.0


def get(site_id: int, load: Callable[[int], T]) -> T:
    """The site's bundle: cached if younger than the TTL, else `load(site_id)`."""
    ttl = ttl_seconds()
    if ttl <= 0:
        return load(site_id)
    now = monotonic()
    entry = _entries.get(site_id)
    if entry is not None and entry[0] > now:
        return entry[1]  # type: ignore[return-value]
    value = load(site_id)
    with _lock:
        _entries[site_id] = (now + ttl, value)
    return value


def invalidate(site_id: int | None = None) -> None:
    """Drop one site's entry, or all of them."""
    with _lock:
        if site_id is None:
            _entries.clear()
        else:
            _entries.pop(site_id, None)


def _on_change(sender, instance, **kwargs) -> None:
    site_id = getattr(instance, "site_id", None)
    if site_id is None and sender.__name__ == "Site":
        site_id = instance.pk
    invalidate(site_id)


def _connect() -> None:
    from bots.models import Article, BotConfig, CuratedAnswer
    from helpdesk.models import Site

    for model in (Article, BotConfig, CuratedAnswer, Site):
        for signal in (post_save, post_delete):
            signal.connect(
                _on_change,
                sender=model,
                weak=False,
                dispatch_uid=f"bots.site_cache.{model.__name__}.{signal is post_save}",
            )


_connect()
