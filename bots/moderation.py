"""Moderation of customer messages: a site's banned words, and the provider's moderation API."""

import asyncio
import json
import logging
import re
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from time import monotonic, perf_counter

import ahocorasick
import aiohttp
import openai
from django.conf import settings

from bots.llm import http_session

__all__ = ["BannedWords", "ProviderModeration", "banned_words_for", "moderate_with_provider"]

logger = logging.getLogger(__name__)

# Han, kana, Hangul and the CJK compatibility blocks: scripts written without spaces.
_CJK = re.compile(
    "[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f]"
)


def _normalize(text: str) -> str:
    """Case-fold and collapse whitespace, so "Kill   You" matches the phrase "kill you"."""
    return " ".join(text.casefold().split())


def _is_word_char(char: str) -> bool:
    # A CJK neighbour does not glue a Latin word: "你是idiot吗" still contains "idiot".
    return char.isalnum() and not _CJK.match(char)


class BannedWords:
    """Fast multi-pattern match (Aho-Corasick, pyahocorasick) of a site's banned words/phrases."""

    def __init__(self, words: Iterable[str]) -> None:
        self._automaton: ahocorasick.Automaton | None = None
        automaton = ahocorasick.Automaton()
        for word in words:
            key = _normalize(word)
            if key and key not in automaton:
                # Latin words match whole words only; CJK has no spaces to delimit words.
                automaton.add_word(key, (word.strip(), len(key), bool(_CJK.search(key))))
        if len(automaton):
            automaton.make_automaton()
            self._automaton = automaton

    def find(self, text: str) -> str | None:
        """The first banned word found in text (as configured), or None."""
        if self._automaton is None or not text:
            return None
        haystack = _normalize(text)
        for end, (word, length, anywhere) in self._automaton.iter(haystack):
            if anywhere:
                return word
            start = end - length + 1
            before_ok = start == 0 or not _is_word_char(haystack[start - 1])
            after_ok = end + 1 == len(haystack) or not _is_word_char(haystack[end + 1])
            if before_ok and after_ok:
                return word
        return None


@lru_cache(maxsize=256)
def banned_words_for(words: tuple[str, ...]) -> BannedWords:
    """The matcher for a site's word list, built once per distinct list."""
    return BannedWords(words)


@dataclass(frozen=True)
class ProviderModeration:
    """The provider's verdict on one text; `outcome` is "ok" or the error class name."""

    flagged: bool
    categories: tuple[str, ...]
    model: str
    total_ms: float
    outcome: str


_MODERATION_TIMEOUT = 5.0
_UNSUPPORTED_TTL = 3600.0
# str(client.base_url) -> monotonic() time until which the provider is assumed to offer
# no moderation endpoint, so each message does not pay for a doomed request.
_unsupported_until: dict[str, float] = {}
# The SDK's names for a failed status, so the audit log names a failed moderation as it
# names a failed chat call.
_STATUS_ERRORS = {
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    409: "ConflictError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
}
# client -> what its every moderation request carries: its URL, headers and timeout. A
# client is replaced, not changed, when its settings change (`bots.llm.get_client`).
_requests_of: "weakref.WeakKeyDictionary[openai.AsyncOpenAI, dict]"
_requests_of = weakref.WeakKeyDictionary()


class _Unsupported(Exception):
    """The provider answered 400 or 404: it has no moderation endpoint."""


class _StatusError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


async def moderate_with_provider(
    client: openai.AsyncOpenAI, text: str
) -> ProviderModeration | None:
    """Ask the provider's moderation endpoint about text; None if it has no such endpoint.

    Fails open: any other error gives an unflagged verdict whose `outcome` names the error.

    The request goes to the client's provider with the client's headers (its key,
    organization and project), over aiohttp without the SDK's request pipeline: on the
    customer's path, before the chat call, that pipeline cost 1.1 ms of CPU per message, more
    than the HTTP itself (docs/performance.md, stop 17). Nothing is retried, as the answer
    waits for the verdict, except once a kept-alive connection the provider had closed.
    """
    provider = str(client.base_url)
    until = _unsupported_until.get(provider)
    if until is not None:
        if monotonic() < until:
            return None
        del _unsupported_until[provider]
    started = perf_counter()
    try:
        response = await _post(client, {"input": text})
    except _Unsupported as exc:
        _unsupported_until[provider] = monotonic() + _UNSUPPORTED_TTL
        logger.info(
            "Moderation unavailable at %s (%s); not asking again for an hour", provider, exc
        )
        return None
    # Moderation must never block a customer: every failure gives an unflagged verdict.
    except Exception as exc:
        total_ms = (perf_counter() - started) * 1000
        outcome = _outcome_of(exc)
        logger.warning("Moderation failed at %s: %s", provider, outcome)
        return ProviderModeration(
            flagged=False, categories=(), model="", total_ms=total_ms, outcome=outcome
        )
    total_ms = (perf_counter() - started) * 1000
    if not isinstance(response, dict):
        response = {}
    model = str(response.get("model") or "")
    results = response.get("results") or []
    result = results[0] if isinstance(results, list) and results else None
    if not isinstance(result, dict):
        return ProviderModeration(False, (), model, total_ms, "ok")
    flags = result.get("categories")
    if not isinstance(flags, dict):
        flags = {}
    categories = tuple(name for name, is_flagged in flags.items() if is_flagged is True)
    return ProviderModeration(
        flagged=bool(result.get("flagged")),
        categories=categories,
        model=model,
        total_ms=total_ms,
        outcome="ok",
    )


async def _post(client: openai.AsyncOpenAI, body: dict) -> object:
    """POST body to the provider's /moderations; its JSON answer."""
    session = http_session()
    data = json.dumps(body, ensure_ascii=False).encode()
    try:
        return await _post_once(session, client, data)
    except aiohttp.ServerDisconnectedError:
        # A kept-alive connection the provider had closed: once more, on a new one.
        return await _post_once(session, client, data)


async def _post_once(session: aiohttp.ClientSession, client: openai.AsyncOpenAI, data: bytes):
    async with session.post(data=data, **_request_of(client)) as response:
        if response.status in (400, 404):
            raise _Unsupported(f"HTTP {response.status}")
        if response.status >= 300:
            raise _StatusError(response.status)
        return json.loads(await response.read())


def _outcome_of(exc: Exception) -> str:
    """The error's name as the SDK would give it (the audit log's outcome)."""
    if isinstance(exc, _StatusError):
        if exc.status >= 500:
            return "InternalServerError"
        return _STATUS_ERRORS.get(exc.status, "APIStatusError")
    if isinstance(exc, asyncio.TimeoutError):
        return "APITimeoutError"
    if isinstance(exc, aiohttp.ClientError | OSError):
        return "APIConnectionError"
    if isinstance(exc, ValueError):
        return "ValueError"  # a body that is not JSON
    return type(exc).__name__


def _request_of(client: openai.AsyncOpenAI) -> dict:
    """The URL, the headers the SDK sends with the client's requests (its key included) and
    the timeout of the client's moderation requests."""
    request = _requests_of.get(client)
    if request is None:
        headers = {
            name: value for name, value in client.default_headers.items() if isinstance(value, str)
        }
        headers["Authorization"] = f"Bearer {client.api_key}"
        request = {
            "url": str(client.base_url).rstrip("/") + "/moderations",
            "headers": headers,
            "timeout": aiohttp.ClientTimeout(
                total=_MODERATION_TIMEOUT, sock_connect=settings.HELPDESK_LLM_CONNECT_TIMEOUT
            ),
        }
        _requests_of[client] = request
    return request
