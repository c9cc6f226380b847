"""One client of the default cache for the whole process.

`django.core.cache.cache` keeps a backend instance per thread and per asyncio context
(asgiref's `Local`), and every websocket connection runs in a context of its own: each
connection would build its own Redis client and connection pool, and pay a new TCP
connection on its first cache call, on the path to the first token (2-7 ms measured
here). The Redis and local-memory backends are thread-safe (redis-py's pool, LocMemCache's
lock), so the process shares one instance of the configured backend; a local-memory one
shares its storage with `django.core.cache.cache` too.
"""

import threading

from django.core.cache import BaseCache, caches
from django.core.signals import setting_changed
from django.dispatch import receiver

_lock = threading.Lock()
_shared: dict[str, BaseCache] = {}


def shared_cache(alias: str = "default") -> BaseCache:
    """The process's instance of the cache `alias`."""
    backend = _shared.get(alias)
    if backend is None:
        with _lock:
            backend = _shared.setdefault(alias, caches.create_connection(alias))
    return backend


@receiver(setting_changed)
def _forget_on_new_settings(*, setting: str, **kwargs) -> None:
    if setting == "CACHES":
        _shared.clear()
