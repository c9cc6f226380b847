"""The chat model behind an OpenAI-compatible API. Never touches the ORM."""

import asyncio
import urllib.parse
import urllib.request
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import httpx2
import openai
from django.conf import settings


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class ToolCallRequest:
    id: str
    name: str
    arguments: str


@dataclass
class _ToolCallParts:
    id: str = ""
    name: str = ""
    arguments: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Client:
    client: openai.AsyncOpenAI
    # For the provider's endpoints called without the SDK (`http_session`).
    session: aiohttp.ClientSession
    # Closes both when their loop shuts down (`_closed_with_its_loop`).
    keeper: AsyncIterator[None]


class LLMError(Exception):
    """The provider failed; `kind` is the error class name, safe to show and to log."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


# One client per event loop: the SDK's connection pool belongs to the loop that opened it.
_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[tuple, _Client]]"
_clients = weakref.WeakKeyDictionary()
_closing: set[asyncio.Task] = set()


def llm_configured() -> bool:
    """An API key or a base URL (a local server may need no key) turns the LLM on."""
    return bool(settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL)


def provider_key() -> str:
    """Names the provider for the circuit breaker."""
    return settings.OPENAI_BASE_URL or "https://api.openai.com/v1"


def _client_options() -> dict:
    return {
        "api_key": settings.OPENAI_API_KEY or "no-key",
        "base_url": settings.OPENAI_BASE_URL or None,
        # The read timeout bounds the wait between two streamed chunks, not the whole answer.
        "timeout": openai.Timeout(
            settings.HELPDESK_LLM_TIMEOUT, connect=settings.HELPDESK_LLM_CONNECT_TIMEOUT
        ),
        "max_retries": settings.HELPDESK_LLM_MAX_RETRIES,
    }


def get_client() -> openai.AsyncOpenAI:
    """The event loop's client, over the SDK's aiohttp transport (its `aiohttp` extra): a
    streamed call to its first chunk costs 2.0 ms of CPU here, against 3.5 ms over httpx."""
    return _loops_client().client


def http_session() -> aiohttp.ClientSession:
    """The event loop's aiohttp session, for a provider endpoint on the customer's path
    that is cheaper called directly than through the SDK (`bots.moderation`)."""
    return _loops_client().session


def _loops_client() -> _Client:
    options = _client_options()
    config = tuple(sorted((k, str(v)) for k, v in options.items()))
    loop = asyncio.get_running_loop()
    cached = _clients.get(loop)
    if cached is not None and cached[0] == config:
        return cached[1]
    if cached is not None:
        _in_background(loop, cached[1].keeper.aclose())
    client = openai.AsyncOpenAI(**options, http_client=openai.DefaultAioHttpClient())
    session = aiohttp.ClientSession(proxy=_environment_proxy(str(client.base_url)))
    keeper = _closed_with_its_loop(client, session)
    _in_background(loop, anext(keeper))
    made = _Client(client, session, keeper)
    _clients[loop] = (config, made)
    return made


def _environment_proxy(url: str) -> str | None:
    """The proxy the environment names for url (HTTPS_PROXY, NO_PROXY, ...), which the SDK's
    client honours too. Read once: aiohttp's `trust_env` reads the environment and ~/.netrc
    again for every request, 0.9 ms of CPU each here."""
    parts = urllib.parse.urlsplit(url)
    if urllib.request.proxy_bypass_environment(parts.hostname or ""):
        return None
    return urllib.request.getproxies_environment().get(parts.scheme)


def _in_background(loop: asyncio.AbstractEventLoop, work) -> None:
    task = loop.create_task(work)
    _closing.add(task)
    task.add_done_callback(_closing.discard)


async def _closed_with_its_loop(
    client: openai.AsyncOpenAI, session: aiohttp.ClientSession
) -> AsyncIterator[None]:
    """Waits at its yield until the loop shuts down its async generators (asyncio.run and
    asyncio.Runner do, before they close it), then closes the client's and the session's
    connections, which aiohttp would otherwise report as unclosed."""
    try:
        yield
    finally:
        try:
            await client.close()
        finally:
            await session.close()


def get_sync_client() -> openai.OpenAI:
    """For Celery tasks, which are synchronous."""
    return openai.OpenAI(**_client_options())


# A stream cut mid-answer may surface as the transport's own error rather than the SDK's.
PROVIDER_ERRORS = (openai.OpenAIError, httpx2.HTTPError)


def safe_detail(exc: Exception) -> str:
    # Status codes only: provider error bodies can echo the prompt, which may hold PII.
    status = getattr(exc, "status_code", None)
    return f"HTTP {status}" if status else ""


async def stream_chat(
    *,
    model: str,
    messages: list[dict],
    temperature: float,
    top_p: float,
    max_tokens: int,
    stop: list[str] | None = None,
    tools: list[dict] | None = None,
) -> AsyncIterator[str | Usage | ToolCallRequest]:
    """Yield the answer's text pieces, then any tool calls, then its Usage."""
    body: dict = {
        "model": model,
        "messages": messages,
        "temperature": temperature,
        "top_p": top_p,
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if stop:
        body["stop"] = stop
    if tools:
        body["tools"] = tools
    calls: dict[int, _ToolCallParts] = {}
    usage: Usage | None = None
    try:
        # The SDK's low-level post with the same retries, timeouts, auth and errors as
        # chat.completions.create, minus its walk of every message against the params'
        # TypedDicts (0.4 ms for one message, 4 ms for twenty, on the customer's path),
        # which leaves plain JSON like ours unchanged; chunks are read as plain JSON too.
        stream = await get_client().post(
            "/chat/completions",
            body=body,
            cast_to=object,
            options={"security": {"bearer_auth": True}},
            stream=True,
            stream_cls=openai.AsyncStream[object],
        )
        async for chunk in stream:
            if not isinstance(chunk, dict):
                continue
            counted = chunk.get("usage")
            if isinstance(counted, dict):
                usage = Usage(
                    _count(counted.get("prompt_tokens")), _count(counted.get("completion_tokens"))
                )
            for choice in _dicts(chunk.get("choices")):
                delta = choice.get("delta")
                if not isinstance(delta, dict):
                    continue
                content = delta.get("content")
                if content and isinstance(content, str):
                    yield content
                # Tool calls arrive in pieces keyed by index: id and name first, then the
                # arguments in fragments.
                for piece in _dicts(delta.get("tool_calls")):
                    index = piece.get("index")
                    parts = calls.setdefault(
                        index if isinstance(index, int) else 0, _ToolCallParts()
                    )
                    if piece.get("id"):
                        parts.id = str(piece["id"])
                    function = piece.get("function")
                    if isinstance(function, dict):
                        if function.get("name"):
                            parts.name += str(function["name"])
                        if function.get("arguments"):
                            parts.arguments.append(str(function["arguments"]))
    except PROVIDER_ERRORS as exc:
        raise LLMError(type(exc).__name__, safe_detail(exc)) from exc
    for _index, parts in sorted(calls.items()):
        yield ToolCallRequest(parts.id, parts.name, "".join(parts.arguments))
    if usage is not None:
        yield usage


def _dicts(value: object) -> list[dict]:
    """The objects in a JSON array, skipping anything else a provider may put there."""
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def _count(value: object) -> int:
    """A token count from a provider's usage; anything but a whole number counts as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
