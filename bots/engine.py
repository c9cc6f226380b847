"""The bot's side of a turn, as a stream of events the consumer relays.

`reply()` is the one entry point the websocket consumer uses; the engine can grow
(retrieval in the prompt, caching, tools, fallbacks) without the consumer changing.
"""

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.utils import translation
from django.utils.translation import gettext

from bots.llm import LLMError, Usage, llm_configured, stream_chat
from bots.offline import answer_offline
from bots.services import (
    Turn,
    finish_bot_message,
    load_turn,
    post_system_message,
    start_bot_message,
)

logger = logging.getLogger(__name__)

OFFLINE_PIECE_RE = re.compile(r"(?:\S+\s*){1,4}|\s+")


@dataclass(frozen=True)
class Delta:
    message_id: int
    seq: int
    offset: int
    text: str


@dataclass(frozen=True)
class Stored:
    """A finished bot answer (complete or interrupted), as stored."""

    message: dict


@dataclass(frozen=True)
class Notice:
    """A system message the engine stored to tell the customer something went wrong."""

    message: dict
    code: str


BotEvent = Delta | Stored | Notice


def build_llm_messages(turn: Turn) -> list[dict]:
    # Customer text only ever travels as user content, never inside the system message.
    return [{"role": "system", "content": turn.scope}] + [
        {"role": role, "content": text} for role, text in turn.history
    ]


async def _llm_pieces(turn: Turn) -> AsyncIterator[str | Usage]:
    async for piece in stream_chat(
        model=turn.model,
        messages=build_llm_messages(turn),
        temperature=turn.temperature,
        max_tokens=turn.max_tokens,
    ):
        yield piece


async def _offline_pieces(turn: Turn) -> AsyncIterator[str | Usage]:
    answer = await database_sync_to_async(answer_offline)(
        site_id=turn.site_id, question=turn.question, language=turn.language
    )
    for piece in OFFLINE_PIECE_RE.findall(answer.text):
        yield piece


class _Answer:
    """The answer being written: text so far, timing and usage."""

    def __init__(self, source: str, model: str) -> None:
        self.source = source
        self.model = model
        self.started = time.perf_counter()
        self.text = ""
        self.message: dict | None = None
        self.first_token_ms: float | None = None
        self.usage: Usage | None = None

    def elapsed_ms(self) -> float:
        return round((time.perf_counter() - self.started) * 1000, 2)

    async def finish(self, *, interrupted: bool) -> dict:
        usage = self.usage
        return await database_sync_to_async(finish_bot_message)(
            message_id=self.message["id"],
            text=self.text,
            interrupted=interrupted,
            source=self.source,
            model=self.model if self.source == "llm" else "",
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            first_token_ms=self.first_token_ms,
            total_ms=self.elapsed_ms(),
        )


async def reply(*, conversation_id: int, message_id: int) -> AsyncIterator[BotEvent]:
    """Answer the customer message `message_id`: deltas, then the stored answer."""
    turn = await database_sync_to_async(load_turn)(
        conversation_id=conversation_id, message_id=message_id
    )
    use_llm = llm_configured()
    answer = _Answer(source="llm" if use_llm else "offline", model=turn.model)
    pieces = _llm_pieces(turn) if use_llm else _offline_pieces(turn)
    try:
        async for piece in pieces:
            if isinstance(piece, Usage):
                answer.usage = piece
                continue
            if answer.message is None:
                answer.first_token_ms = answer.elapsed_ms()
                answer.message = await database_sync_to_async(start_bot_message)(
                    conversation_id=conversation_id
                )
            yield Delta(answer.message["id"], answer.message["seq"], len(answer.text), piece)
            answer.text += piece
    except LLMError as exc:
        logger.warning("LLM call failed for conversation %s: %s", conversation_id, exc.kind)
        if answer.message is not None:
            yield Stored(await answer.finish(interrupted=True))
        yield Notice(await _post_unavailable(turn), code="bot_unavailable")
        return
    except asyncio.CancelledError:
        # Shutting down mid-answer: never leave a half-written answer marked as streaming.
        if answer.message is not None:
            await asyncio.shield(answer.finish(interrupted=True))
        raise
    if answer.message is None:
        yield Notice(await _post_unavailable(turn), code="bot_unavailable")
        return
    yield Stored(await answer.finish(interrupted=False))


async def _post_unavailable(turn: Turn) -> dict:
    with translation.override(turn.language or "en"):
        text = gettext(
            "Sorry, the assistant could not answer just now. Your message is saved; "
            "please try again in a moment, or ask to talk to a person."
        )
    return await database_sync_to_async(post_system_message)(
        conversation_id=turn.conversation_id, text=text
    )
