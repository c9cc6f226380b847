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

Refreshed ahead: an entry read in the second half of its life is read again in a thread of
this module ("helpdesk-site-cache"), and the new value replaces it unless the site changed
meanwhile. A site in use is then never read on a customer's turn: when an entry expired on
the way, the turn that found it read the site in the ORM thread, 3-16 ms on the way to the
first token once every `HELPDESK_SITE_CACHE_SECONDS` (docs/performance.md, stop 21). A
value is still never served longer than the TTL after its reading began.
"""

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from time import monotonic
from typing import TypeVar

from django.conf import settings
from django.db import connections
from django.db.models.signals import post_delete, post_save

logger = logging.getLogger(__name__)

T = TypeVar("T")

# The part of an entry's life after which a read has it read again in the background.
REFRESH_AFTER = 0.5


@dataclass
class _Entry:
    expires: float
    value: object
    load: Callable[[int], object]
    refreshing: bool = False


_entries: dict[tuple[str, int], _Entry] = {}
_lock = threading.Lock()
_refresher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="helpdesk-site-cache")


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
    entry = _fresh_entry((kind, site_id), now, ttl)
    if entry is not None:
        return entry.value  # type: ignore[return-value]
    value = load(site_id)
    with _lock:
        _entries[(kind, site_id)] = _Entry(now + ttl, value, load)
    return value


def peek(site_id: int, *, kind: str = "bot") -> object | None:
    """What `get` would return from the cache, without loading: None if not cached."""
    ttl = ttl_seconds()
    if ttl <= 0:
        return None
    entry = _fresh_entry((kind, site_id), monotonic(), ttl)
    return None if entry is None else entry.value


def _fresh_entry(key: tuple[str, int], now: float, ttl: float) -> _Entry | None:
    """The entry if it has not expired, its refresh started if it is old."""
    entry = _entries.get(key)
    if entry is None or entry.expires <= now:
        return None
    if entry.expires - now < ttl * (1 - REFRESH_AFTER) and not entry.refreshing:
        with _lock:
            if entry.refreshing:
                return entry
            entry.refreshing = True
        _refresher.submit(_refresh, key, entry, ttl)
    return entry


def _refresh(key: tuple[str, int], entry: _Entry, ttl: float) -> None:
    """In the refresher's thread: the entry read again, kept unless the site changed (or
    was read again) meanwhile."""
    started = monotonic()
    try:
        value = entry.load(key[1])
    except Exception:
        # The entry expires as it would have; the next turn after that reads the site.
        logger.exception("Reading site %s again for the cache (%s) failed", key[1], key[0])
        return
    finally:
        # Back to the pool (PostgreSQL), as after any of the ORM thread's trips.
        connections.close_all()
    with _lock:
        if _entries.get(key) is entry:
            _entries[key] = _Entry(started + ttl, value, entry.load)


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
