"""Moderation of customer messages: a site's banned words, and the provider's moderation API."""

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from time import monotonic, perf_counter

import ahocorasick
import httpx2
import openai

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


async def moderate_with_provider(
    client: openai.AsyncOpenAI, text: str
) -> ProviderModeration | None:
    """Ask the provider's moderation endpoint about text; None if it has no such endpoint.

    Fails open: any other error gives an unflagged verdict whose `outcome` names the error.
    """
    provider = str(client.base_url)
    until = _unsupported_until.get(provider)
    if until is not None:
        if monotonic() < until:
            return None
        del _unsupported_until[provider]
    started = perf_counter()
    try:
        # The SDK's low-level post, read as plain JSON: the same request, status handling and
        # errors as client.moderations.create, without building the pydantic models.
        response = await client.post(
            "/moderations",
            body={"input": text},
            cast_to=dict,
            options={"timeout": _MODERATION_TIMEOUT},
        )
    except (openai.NotFoundError, openai.BadRequestError) as exc:
        _unsupported_until[provider] = monotonic() + _UNSUPPORTED_TTL
        logger.info(
            "Moderation unavailable at %s (%s); not asking again for an hour",
            provider,
            type(exc).__name__,
        )
        return None
    # Transport errors can escape the SDK unwrapped, and a body that is not JSON raises
    # ValueError; moderation must never block a customer.
    except (openai.OpenAIError, httpx2.HTTPError, ValueError) as exc:
        total_ms = (perf_counter() - started) * 1000
        logger.warning("Moderation failed at %s: %s", provider, type(exc).__name__)
        return ProviderModeration(
            flagged=False, categories=(), model="", total_ms=total_ms, outcome=type(exc).__name__
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
