"""A short-lived, per-process cache of what a turn reads about its site.

Every turn needs the site's BotConfig, name, scope and default language, the versions of
its articles and curated answers, and its escalation policy. They change rarely, so a worker
keeps them for a couple of seconds instead of running their queries on every message. Each
reader caches under its own `kind`.

Staleness: within one process, saving a watched model (Article, CuratedAnswer, BotConfig,
Site, and what other apps `watch()`) drops every entry of that site at once. Other processes
(more uvicorn workers, the admin on another host) may keep answering from the old settings,
policy and knowledge version for up to `HELPDESK_SITE_CACHE_SECONDS` -- including
response-cache keys and the retrieval index. Set it to 0 to read everything on every turn
(the tests do).
"""

import os
import threading
from collections.abc import Callable
from time import monotonic
from typing import TypeVar

from django.conf import settings
from django.db.models.signals import post_delete, post_save

T = TypeVar("T")

_entries: dict[tuple[str, int], tuple[float, object]] = {}
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


def get(site_id: int, load: Callable[[int], T], *, kind: str = "bot") -> T:
    """What `load(site_id)` returns, cached under `kind` if younger than the TTL."""
    ttl = ttl_seconds()
    if ttl <= 0:
        return load(site_id)
    now = monotonic()
    entry = _fresh_entry(kind, site_id, now)
    if entry is not None:
        return entry[1]  # type: ignore[return-value]
    value = load(site_id)
    with _lock:
        _entries[(kind, site_id)] = (now + ttl, value)
    return value


def peek(site_id: int, *, kind: str = "bot") -> object | None:
    """What `get` would return from the cache, without loading: None if not cached."""
    if ttl_seconds() <= 0:
        return None
    entry = _fresh_entry(kind, site_id, monotonic())
    return None if entry is None else entry[1]


def _fresh_entry(kind: str, site_id: int, now: float) -> tuple[float, object] | None:
    entry = _entries.get((kind, site_id))
    return entry if entry is not None and entry[0] > now else None


def invalidate(site_id: int | None = None) -> None:
    """Drop one site's entries, or all of them."""
    with _lock:
        if site_id is None:
            _entries.clear()
        else:
            for key in [key for key in _entries if key[1] == site_id]:
                del _entries[key]


def _on_change(sender, instance, **kwargs) -> None:
    site_id = getattr(instance, "site_id", None)
    if site_id is None and sender.__name__ == "Site":
        site_id = instance.pk
    invalidate(site_id)


def watch(*models) -> None:
    """Saving or deleting a row of these models (each with a `site_id`) drops its site."""
    for model in models:
        for signal in (post_save, post_delete):
            signal.connect(
                _on_change,
                sender=model,
                weak=False,
                dispatch_uid=f"site_cache.{model._meta.label}.{signal is post_save}",
            )


def _connect() -> None:
    from bots.models import Article, BotConfig, CuratedAnswer
    from helpdesk.models import Site

    watch(Article, BotConfig, CuratedAnswer, Site)


_connect()
