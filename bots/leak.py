"""Catch answers that leak the system prompt.

An answer leaks when it contains `run_tokens` consecutive tokens of the protected text
(the site's scope and the rules; not the knowledge-base articles, which the bot is meant
to quote). Tokens are lowercased Latin (or other alphabetic) words and digits, and single
CJK characters; punctuation, whitespace, case and zero-width characters are ignored, so
re-spacing or re-punctuating a leak does not hide it.

The protected text is indexed once as a set of rolling hashes of its run_tokens-grams;
checking a text is one pass over its tokens. `feed()` checks a streamed answer delta by
delta, keeping only the last run_tokens - 1 token hashes and a trailing partial word.
"""

from __future__ import annotations

import re
import unicodedata
from collections import deque
from functools import lru_cache

_CJK = (
    "\u2e80-\u2fdf\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\U00020000-\U0003134f"
)
# A CJK character alone, or a run of other letters/digits (\w without "_" and CJK).
TOKEN_RE = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+")
_CJK_RE = re.compile(rf"[{_CJK}]")
# Zero-width and soft-hyphen characters, which would otherwise split a word in two.
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"))

_MOD = (1 << 61) - 1  # a Mersenne prime: rolling hashes modulo it
_BASE = 1_000_003


def _normalize(text: str) -> str:
    # NFKC folds full-width Latin letters to ASCII; then drop invisible characters.
    return unicodedata.normalize("NFKC", text).translate(_INVISIBLE)


def _token_hash(token: str) -> int:
    return hash(token.lower()) % _MOD


class _Window:
    """The rolling hash of the last `size` tokens seen."""

    __slots__ = ("drop_factor", "hash", "size", "tokens")

    def __init__(self, size: int) -> None:
        self.size = size
        self.tokens: deque[int] = deque()
        self.hash = 0
        self.drop_factor = pow(_BASE, size - 1, _MOD)  # weight of the oldest token

    def push(self, token_hash: int) -> None:
        if self.size == 0:
            return
        if len(self.tokens) == self.size:
            self.hash = (self.hash - self.tokens.popleft() * self.drop_factor) % _MOD
        self.tokens.append(token_hash)
        self.hash = (self.hash * _BASE + token_hash) % _MOD

    @property
    def full(self) -> bool:
        return len(self.tokens) == self.size

    def extended(self, token_hash: int) -> int:
        """The hash of the window's tokens followed by `token_hash`."""
        return (self.hash * _BASE + token_hash) % _MOD


@lru_cache(maxsize=256)
def _shingles_of(protected_text: str, run_tokens: int) -> frozenset[int]:
    """Hashes of every run of `run_tokens` tokens; cached, as a site's prompts repeat."""
    shingles = set()
    window = _Window(run_tokens - 1)
    for match in TOKEN_RE.finditer(_normalize(protected_text)):
        token_hash = _token_hash(match.group())
        if window.full:
            shingles.add(window.extended(token_hash))
        window.push(token_hash)
    return frozenset(shingles)


class LeakGuard:
    def __init__(self, protected_text: str, *, run_tokens: int = 12) -> None:
        if run_tokens < 1:
            raise ValueError("run_tokens must be at least 1")
        self.run_tokens = run_tokens
        self._shingles = _shingles_of(protected_text, run_tokens)
        self.reset()

    def leaked(self, text: str) -> bool:
        """True if `text` holds run_tokens consecutive tokens of the protected text."""
        if not self._shingles:
            return False
        shingles = self._shingles
        window = _Window(self.run_tokens - 1)
        for match in TOKEN_RE.finditer(_normalize(text)):
            token_hash = _token_hash(match.group())
            if window.full and window.extended(token_hash) in shingles:
                return True
            window.push(token_hash)
        return False

    def reset(self) -> None:
        """Forget the streamed text, to check a new answer with feed()."""
        self._window = _Window(self.run_tokens - 1)
        self._partial = ""  # a word at the end of the text so far that may still grow
        self._leaked = False

    def feed(self, delta: str) -> bool:
        """Add the next piece of a streamed answer; True once the answer so far leaks."""
        if self._leaked or not self._shingles:
            return self._leaked
        shingles = self._shingles
        window = self._window
        text = self._partial + _normalize(delta)
        self._partial = ""
        for match in TOKEN_RE.finditer(text):
            token = match.group()
            token_hash = _token_hash(token)
            if window.full and window.extended(token_hash) in shingles:
                self._leaked = True
                return True
            if match.end() == len(text) and not _CJK_RE.match(token):
                # The word may continue in the next delta: hold it back. It was checked
                # above as if complete, which is what the text so far says.
                self._partial = token
                break
            window.push(token_hash)
        return False
