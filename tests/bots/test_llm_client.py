"""bots.llm.stream_chat against the fake OpenAI-compatible server: the request it sends and
how it reads the stream."""

import asyncio

import openai
import pytest

from bots import llm
from bots.engine import TOOLS
from tests.fake_llm import Reply, ToolCall

# A tool round as the engine sends it: an assistant turn with no text and a tool call, then
# the tool's result.
MESSAGES = [
    {"role": "system", "content": "You are the assistant of Acme. Only discuss the shop."},
    {"role": "user", "content": "Where is my order? 你好"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "search_knowledge_base", "arguments": '{"query": "order"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "[#3] Orders ship in 2 days."},
]
PARAMETERS = {"temperature": 0.3, "top_p": 0.9, "max_tokens": 200, "stop": ["###"]}


async def read_all(**arguments) -> list:
    return [piece async for piece in llm.stream_chat(**arguments)]


async def test_the_request_is_the_one_the_sdk_create_method_sends(fake_llm):
    fake_llm.script(Reply(text="One."), Reply(text="Two."))
    await read_all(model="gpt-4o-mini", messages=MESSAGES, tools=TOOLS, **PARAMETERS)
    stream = await llm.get_client().chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        tools=TOOLS,
        stream=True,
        stream_options={"include_usage": True},
        **PARAMETERS,
    )
    async for _chunk in stream:
        pass

    ours, sdk = [r for r in fake_llm.requests if r.path == "/v1/chat/completions"][-2:]
    assert ours.body == sdk.body
    assert ours.body["messages"] == MESSAGES
    assert ours.body["tools"] == TOOLS
    assert ours.headers["authorization"] == sdk.headers["authorization"] == "Bearer test-key"


async def test_text_tool_calls_in_pieces_and_usage_are_read_from_the_stream(fake_llm):
    fake_llm.script(
        Reply(
            chunks=["Let me ", "check."],
            tool_calls=[ToolCall("handoff_to_human", '{"reason": "asked for a person"}')],
            prompt_tokens=50,
            completion_tokens=7,
        )
    )
    pieces = await read_all(model="gpt-4o-mini", messages=MESSAGES[:2], tools=TOOLS, **PARAMETERS)
    assert pieces[:2] == ["Let me ", "check."]
    (call,) = [p for p in pieces if isinstance(p, llm.ToolCallRequest)]
    assert (call.name, call.arguments) == ("handoff_to_human", '{"reason": "asked for a person"}')
    assert call.id
    assert pieces[-1] == llm.Usage(prompt_tokens=50, completion_tokens=7)


async def test_a_provider_error_is_raised_as_its_class_name_with_the_status_only(fake_llm):
    fake_llm.script(Reply(status=429, error_message="slow down, user@example.com"))
    with pytest.raises(llm.LLMError) as raised:
        await read_all(model="gpt-4o-mini", messages=MESSAGES[:2], **PARAMETERS)
    assert raised.value.kind == "RateLimitError"
    assert str(raised.value) == "RateLimitError: HTTP 429"


async def test_calls_go_through_the_sdks_aiohttp_transport(fake_llm):
    fake_llm.script(Reply(text="One."))
    client = llm.get_client()
    assert isinstance(client._client, openai.DefaultAioHttpClient)
    assert [p async for p in llm.stream_chat(model="m", messages=MESSAGES[:2], **PARAMETERS)]


def test_a_loops_client_is_closed_when_the_loop_shuts_down(fake_llm):
    fake_llm.script(Reply(text="One."))

    async def ask() -> tuple:
        await read_all(model="m", messages=MESSAGES[:2], **PARAMETERS)
        return llm.get_client(), llm.http_session()

    client, session = asyncio.run(ask())
    # Else aiohttp reports the sessions and their connections as unclosed when collected.
    assert client.is_closed()
    assert session.closed
