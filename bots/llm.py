"""The chat model behind an OpenAI-compatible API. Async, and never touches the ORM."""

import asyncio
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2
import openai
from django.conf import settings


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


class LLMError(Exception):
    """The provider failed; `kind` is the error class name, safe to show and to log."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


# One client per event loop: the SDK's connection pool belongs to the loop that opened it.
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[tuple, openai.AsyncOpenAI]]"
_clients = weakref.WeakKeyDictionary()


def llm_configured() -> bool:
    """An API key or a base URL (a local server may need no key) turns the LLM on."""
    return bool(settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL)


def get_client() -> openai.AsyncOpenAI:
    config = (
        settings.OPENAI_API_KEY,
        settings.OPENAI_BASE_URL,
        settings.HELPDESK_LLM_TIMEOUT,
        settings.HELPDESK_LLM_CONNECT_TIMEOUT,
        settings.HELPDESK_LLM_MAX_RETRIES,
    )
    loop = asyncio.get_running_loop()
    cached = _clients.get(loop)
    if cached is not None and cached[0] == config:
        return cached[1]
    api_key, base_url, timeout, connect_timeout, max_retries = config
    client = openai.AsyncOpenAI(
        api_key=api_key or "no-key",
        base_url=base_url or None,
        # The read timeout bounds the wait between two streamed chunks, not the whole answer.
        timeout=openai.Timeout(timeout, connect=connect_timeout),
        max_retries=max_retries,
    )
    _clients[loop] = (config, client)
    return client


async def stream_chat(
    *, model: str, messages: list[dict], temperature: float, max_tokens: int
) -> AsyncIterator[str | Usage]:
    """Yield the answer's text pieces, then its Usage when the provider reports one."""
    try:
        stream = await get_client().chat.completions.create(
            model=model,
            messages=messages,
            temperature=temperature,
            max_tokens=max_tokens,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if chunk.usage is not None:
                yield Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
            for choice in chunk.choices:
                if choice.delta and choice.delta.content:
                    yield choice.delta.content
    # A stream cut mid-answer surfaces as the transport's own error, not the SDK's.
    except (openai.OpenAIError, httpx2.HTTPError) as exc:
        raise LLMError(type(exc).__name__, _safe_detail(exc)) from exc


def _safe_detail(exc: Exception) -> str:
    # Status codes only: provider error bodies can echo the prompt, which may hold PII.
    status = getattr(exc, "status_code", None)
    return f"HTTP {status}" if status else ""
