"""The fake LLM server, driven through the real openai SDK over loopback HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import math
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx2
import openai
import pytest

from tests.fake_llm import EMBEDDING_DIMENSIONS, FakeLLMServer, Reply, ToolCall

USER_MESSAGES = [{"role": "user", "content": "Where is my order?"}]


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture
async def llm_client(server: FakeLLMServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        api_key="test", base_url=server.base_url, max_retries=0
    ) as async_client:
        yield async_client


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_streamed_text_reassembles_and_usage_chunk_arrives(
    server: FakeLLMServer, llm_client: openai.AsyncOpenAI
) -> None:
    text = "Your order shipped yesterday and should arrive\non Friday, tracking 1Z999."
    server.script(Reply(text=text, prompt_tokens=11, completion_tokens=7))

    stream = await llm_client.chat.completions.create(
        model="gpt-4o-mini",
        messages=USER_MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    pieces = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert "".join(pieces) == text
    assert len(pieces) > 2
    assert chunks[0].choices[0].delta.role == "assistant"
    assert {c.model for c in chunks} == {"gpt-4o-mini"}
    finish_reasons = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finish_reasons[-1] == "stop"
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert (usage_chunk.usage.prompt_tokens, usage_chunk.usage.completion_tokens) == (11, 7)
    assert usage_chunk.usage.total_tokens == 18


async def test_usage_chunk_only_when_requested_and_explicit_chunks_kept(
    server: FakeLLMServer, llm_client: openai.AsyncOpenAI
) -> None:
    server.script(Reply(chunks=["Hel", "lo ", "wor", "ld"]))

    stream = await llm_client.chat.completions.create(
        model="gpt-4o-mini", messages=USER_MESSAGES, stream=True
    )
    chunks = [chunk async for chunk in stream]

    pieces = [c.choices[0].delta.content for c in chunks if c.choices[0].delta.content]
    assert pieces == ["Hel", "lo ", "wor", "ld"]
    assert all(c.choices and c.usage is None for c in chunks)


async def test_chunk_delay_spaces_out_stream_chunks(
    server: FakeLLMServer, llm_client: openai.AsyncOpenAI
) -> None:
    server.script(Reply(chunks=["a", "b", "c"], chunk_delay=0.05))

    stream = await llm_client.chat.completions.create(
        model="gpt-4o-mini", messages=USER_MESSAGES, stream=True
    )
    arrivals = [time.perf_counter() async for chunk in stream if chunk.choices[0].delta.content]

    assert len(arrivals) == 3
    assert arrivals[-1] - arrivals[0] >= 0.09


async def test_default_reply_echoes_last_user_message(
    server: FakeLLMServer, llm_client: openai.AsyncOpenAI
) -> None:
    messages = [
        {"role": "system", "content": "You are a support bot."},
        {"role": "user", "content": "First question"},
        {"role": "assistant", "content": "First answer"},
        {"role": "user", "content": "Can I get a refund?"},
    ]

    completion = await llm_client.chat.completions.create(model="gpt-4o-mini", messages=messages)
    stream = await llm_client.chat.completions.create(
        model="gpt-4o-mini", messages=messages, stream=True
    )
    streamed = "".join([c.choices[0].delta.content or "" async for c in stream])

    assert completion.choices[0].message.content == "Fake answer: Can I get a refund?"
    assert streamed == "Fake answer: Can I get a refund?"


async def test_default_reply_override(
    server: FakeLLMServer, llm_client: openai.AsyncOpenAI
) -> None:
    server.default_reply = Reply(text="Always this")

    for _ in range(2):
        completion = await llm_client.chat.completions.create(
            model="gpt-4o-mini", messages=USER_MESSAGES
        )
        assert completion.choices[0].message.content == "Always this"


async def test_streamed_tool_calls_reassemble_by_index(
    server: FakeLLMServer, llm_client: openai.AsyncOpenAI
) -> None:
    calls = [
        ToolCall(name="lookup_order", arguments='{"order_id": "A-1001"}'),
        ToolCall(name="search_kb", arguments='{"query": "refund policy", "limit": 3}', id="call_x"),
    ]
    server.script(Reply(tool_calls=calls))

    stream = await llm_client.chat.completions.create(
        model="gpt-4o-mini",
        messages=USER_MESSAGES,
        tools=[
            {"type": "function", "function": {"name": "lookup_order", "parameters": {}}},
            {"type": "function", "function": {"name": "search_kb", "parameters": {}}},
        ],
        stream=True,
    )
    assembled: dict[int, dict[str, str]] = {}
    fragments: dict[int, int] = {}
    finish_reason = None
    async for chunk in stream:
        choice = chunk.choices[0]
        finish_reason = choice.finish_reason or finish_reason
        for delta in choice.delta.tool_calls or []:
            call = assembled.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            if delta.id:
                call["id"] = delta.id
            if delta.function and delta.function.name:
                call["name"] = delta.function.name
            if delta.function and delta.function.arguments is not None:
                call["arguments"] += delta.function.arguments
                fragments[delta.index] = fragments.get(delta.index, 0) + 1

    assert assembled == {
        0: {"id": calls[0].id, "name": "lookup_order", "arguments": calls[0].arguments},
        1: {"id": "call_x", "name": "search_kb", "arguments": calls[1].arguments},
    }
    assert calls[0].id.startswith("call_")
    assert min(fragments.values()) >= 2
    assert finish_reason == "tool_calls"


def test_non_streaming_completion_with_sync_client(server: FakeLLMServer) -> None:
    server.script(
        Reply(text="Plain answer", completion_tokens=3),
        Reply(tool_calls=[ToolCall(name="handoff", arguments='{"reason": "angry"}')]),
    )

    with openai.OpenAI(api_key="test", base_url=server.base_url, max_retries=0) as sync_client:
        plain = sync_client.chat.completions.create(model="gpt-4o", messages=USER_MESSAGES)
        tool = sync_client.chat.completions.create(model="gpt-4o", messages=USER_MESSAGES)

    assert plain.object == "chat.completion"
    assert plain.model == "gpt-4o"
    assert plain.choices[0].message.content == "Plain answer"
    assert plain.choices[0].finish_reason == "stop"
    assert plain.usage is not None
    assert plain.usage.completion_tokens == 3
    assert plain.usage.total_tokens == plain.usage.prompt_tokens + 3
    tool_call = (tool.choices[0].message.tool_calls or [])[0]
    assert tool.choices[0].finish_reason == "tool_calls"
    assert (tool_call.function.name, tool_call.function.arguments) == (
        "handoff",
        '{"reason": "angry"}',
    )


async def test_rate_limit_is_retried_by_the_sdk(server: FakeLLMServer) -> None:
    server.script(
        Reply(status=429, error_message="Slow down", headers={"retry-after": "0"}),
        Reply(text="Recovered"),
    )

    async with openai.AsyncOpenAI(
        api_key="test", base_url=server.base_url, max_retries=2
    ) as retrying_client:
        completion = await retrying_client.chat.completions.create(
            model="gpt-4o-mini", messages=USER_MESSAGES
        )

    assert completion.choices[0].message.content == "Recovered"
    assert len(server.chat_requests()) == 2
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "1"]


async def test_rate_limit_error_body_and_headers(
    server: FakeLLMServer, llm_client: openai.AsyncOpenAI
) -> None:
    server.script(Reply(status=429, error_message="Slow down", headers={"retry-after": "7"}))

    with pytest.raises(openai.RateLimitError) as caught:
        await llm_client.chat.completions.create(model="gpt-4o-mini", messages=USER_MESSAGES)

    assert caught.value.message.endswith("Slow down")
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "7"


async def test_server_error_without_retries_raises(
    server: FakeLLMServer, llm_client: openai.AsyncOpenAI
) -> None:
    server.script(Reply(status=500, error_message="Upstream exploded"))

    with pytest.raises(openai.InternalServerError) as caught:
        await llm_client.chat.completions.create(model="gpt-4o-mini", messages=USER_MESSAGES)

    assert caught.value.status_code == 500
    assert caught.value.type == "server_error"
    assert "Upstream exploded" in caught.value.message
    assert len(server.requests) == 1


async def test_stream_that_dies_midway_raises_connection_error(
    server: FakeLLMServer, llm_client: openai.AsyncOpenAI
) -> None:
    server.script(Reply(chunks=["one ", "two ", "three ", "four"], die_after_chunks=2))

    stream = await llm_client.chat.completions.create(
        model="gpt-4o-mini", messages=USER_MESSAGES, stream=True
    )
    received: list[str] = []

    async def consume() -> None:
        async for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")

    with pytest.raises(openai.APIConnectionError) as caught:
        await consume()

    # The SDK wraps httpx2's truncated-chunked-body error; it is not a timeout.
    assert type(caught.value) is openai.APIConnectionError
    assert isinstance(caught.value.__cause__, httpx2.RemoteProtocolError)
    assert "".join(received) == "one two "


async def test_delay_beyond_client_timeout_raises_timeout(
    server: FakeLLMServer, llm_client: openai.AsyncOpenAI
) -> None:
    server.script(Reply(text="too late", delay=5))

    started = time.perf_counter()
    with pytest.raises(openai.APITimeoutError):
        await llm_client.chat.completions.create(
            model="gpt-4o-mini", messages=USER_MESSAGES, timeout=0.2
        )

    assert time.perf_counter() - started < 2


async def test_delayed_reply_does_not_block_other_requests(
    server: FakeLLMServer, llm_client: openai.AsyncOpenAI
) -> None:
    server.script(Reply(text="slow", delay=5))
    slow = asyncio.create_task(
        llm_client.chat.completions.create(model="gpt-4o-mini", messages=USER_MESSAGES)
    )
    async with asyncio.timeout(2):
        while not server.requests:  # noqa: ASYNC110 - the server thread can't set an asyncio.Event
            await asyncio.sleep(0.005)

    fast = await asyncio.wait_for(
        llm_client.chat.completions.create(model="gpt-4o-mini", messages=USER_MESSAGES), timeout=1
    )

    assert fast.choices[0].message.content == "Fake answer: Where is my order?"
    assert not slow.done()
    slow.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await slow


async def test_embeddings_base64_and_float(
    server: FakeLLMServer, llm_client: openai.AsyncOpenAI
) -> None:
    texts = [
        "How do I reset my password?",
        "How can I reset my password",
        "Shipping to Canada takes five business days",
    ]

    default = await llm_client.embeddings.create(model="text-embedding-3-small", input=texts)
    floats = await llm_client.embeddings.create(
        model="text-embedding-3-small", input=texts, encoding_format="float"
    )
    single = await llm_client.embeddings.create(model="text-embedding-3-small", input=texts[0])

    assert [r.body["encoding_format"] for r in server.requests] == ["base64", "float", "base64"]
    vectors = [item.embedding for item in default.data]
    assert [len(v) for v in vectors] == [EMBEDDING_DIMENSIONS] * 3
    for decoded, plain in zip(vectors, (item.embedding for item in floats.data), strict=True):
        assert decoded == pytest.approx(plain, abs=1e-6)
    assert single.data[0].embedding == vectors[0]
    assert all(math.isclose(cosine(v, v), 1.0, rel_tol=1e-5) for v in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    assert default.usage.prompt_tokens > 0


async def test_moderation_flags_configured_words(
    server: FakeLLMServer, llm_client: openai.AsyncOpenAI
) -> None:
    server.flag_words.add("burn your store")

    response = await llm_client.moderations.create(
        input=["I will BURN YOUR STORE down", "Just kill yourself", "Where is my parcel?"]
    )

    threat, self_harm, clean = response.results
    assert threat.flagged
    assert threat.categories.violence
    assert threat.category_scores.violence > 0.5
    assert self_harm.flagged
    assert self_harm.categories.self_harm_intent
    assert not clean.flagged
    assert not any(clean.categories.model_dump().values())


async def test_requests_are_recorded_with_json_bodies(
    server: FakeLLMServer, llm_client: openai.AsyncOpenAI
) -> None:
    await llm_client.chat.completions.create(
        model="gpt-4o", messages=USER_MESSAGES, temperature=0.2
    )
    await llm_client.embeddings.create(model="text-embedding-3-small", input="hello")

    chat, embedding = server.requests
    assert (chat.method, chat.path) == ("POST", "/v1/chat/completions")
    assert chat.body == {"model": "gpt-4o", "messages": USER_MESSAGES, "temperature": 0.2}
    assert chat.headers["authorization"] == "Bearer test"
    assert chat.headers["content-type"] == "application/json"
    assert embedding.path == "/v1/embeddings"
    assert server.chat_requests() == [chat.body]

    server.script(Reply(text="queued"))
    server.reset()
    assert server.requests == []
    completion = await llm_client.chat.completions.create(model="gpt-4o", messages=USER_MESSAGES)
    assert completion.choices[0].message.content == "Fake answer: Where is my order?"


async def test_models_are_listed(llm_client: openai.AsyncOpenAI) -> None:
    page = await llm_client.models.list()

    ids = [model.id async for model in page]
    assert "gpt-4o-mini" in ids
    assert len(ids) >= 2


def test_unknown_path_is_404_and_malformed_json_is_400(server: FakeLLMServer) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        connection.request("GET", "/v1/nope")
        not_found = connection.getresponse()
        not_found_body = json.loads(not_found.read())
        connection.request(
            "POST", "/v1/chat/completions", body=b"{not json", headers={"Content-Type": "x"}
        )
        bad = connection.getresponse()
        bad_body = json.loads(bad.read())
    finally:
        connection.close()

    assert not_found.status == 404
    assert not_found_body["error"]["message"]
    assert bad.status == 400
    assert bad_body["error"]["type"] == "invalid_request_error"
    assert server.requests[-1].body is None


def test_stop_is_prompt_while_keepalive_connection_is_open() -> None:
    server = FakeLLMServer().start()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    connection.request("GET", "/v1/models")
    connection.getresponse().read()
    kept_alive_socket = connection.sock
    connection.request("GET", "/v1/models")
    connection.getresponse().read()
    assert connection.sock is kept_alive_socket is not None

    stopper = threading.Thread(target=server.stop, daemon=True)
    started = time.perf_counter()
    stopper.start()
    stopper.join(timeout=2)

    assert not stopper.is_alive()
    assert time.perf_counter() - started < 2
    # The handler thread closed its end, so the idle client socket sees EOF.
    assert kept_alive_socket.recv(1) == b""
    connection.close()
