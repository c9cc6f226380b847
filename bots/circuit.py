"""A circuit breaker per LLM provider: stop calling one that keeps failing, probe it later.

The state lives in the process: each ASGI worker learns on its own that a provider is down,
after HELPDESK_CIRCUIT_FAILURES failures in a row, which is cheap and needs no shared store.
"""

import threading
import time
from dataclasses import dataclass

from django.conf import settings


@dataclass
class _State:
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False


class CircuitBreaker:
    def __init__(self) -> None:
        self._states: dict[str, _State] = {}
        self._lock = threading.Lock()

    def allow(self, key: str) -> bool:
        """May a call go to this provider now? After the cool-down, one probe may."""
        with self._lock:
            state = self._states.setdefault(key, _State())
            if state.opened_at is None:
                return True
            if time.monotonic() - state.opened_at < settings.HELPDESK_CIRCUIT_COOLDOWN:
                return False
            if state.probing:
                return False
            state.probing = True
            return True

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._states[key] = _State()

    def failed(self, key: str) -> None:
        with self._lock:
            state = self._states.setdefault(key, _State())
            state.failures += 1
            if state.probing or state.failures >= settings.HELPDESK_CIRCUIT_FAILURES:
                state.opened_at = time.monotonic()
            state.probing = False

    def is_open(self, key: str) -> bool:
        with self._lock:
            state = self._states.get(key)
            return state is not None and state.opened_at is not None

    def reset(self) -> None:
        with self._lock:
            self._states.clear()


breaker = CircuitBreaker()
