"""The bot's side of a turn, as a stream of events the consumer relays.

`reply()` is the one entry point the websocket consumer uses. A turn goes:
banned words -> provider moderation -> curated answer -> response cache -> retrieval ->
LLM (prompt within budget, tools, leak guard, circuit breaker) or the offline answerer ->
stored answer with sources, tokens, cost and one audit row per provider call.
"""

import asyncio
import hashlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from dataclasses import dataclass, field, replace

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext

from bots import services, summary
from bots.circuit import breaker
from bots.curated import record_curated_hit
from bots.leak import LeakGuard
from bots.llm import (
    LLMError,
    ToolCallRequest,
    Usage,
    get_client,
    llm_configured,
    provider_key,
    stream_chat,
)
from bots.moderation import ProviderModeration, banned_words_for, moderate_with_provider
from bots.offline import answer_offline
from bots.pii import redact
from bots.pricing import cost_of
from bots.prompt import KnowledgeSnippet, PromptParts, PromptTooLarge, build_prompt
from bots.retrieval import Snippet, search_articles
from helpdesk.message_sql import SnapshotRead
from helpdesk.services import StatusChange, release_answer, request_human
from helpdesk.shared_cache import shared_cache

logger = logging.getLogger(__name__)

PIECE_RE = re.compile(r"(?:\S+\s*){1,4}|\s+")
CITATION_RE = re.compile(r"\[#(\d+)\]")
SNIPPETS_PER_PROMPT = 4
MAX_TOOL_ROUNDS = 2

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "handoff_to_human",
            "description": (
                "Hand the conversation to a human agent: the customer asks for a person, is "
                "upset, or needs something you cannot do or answer from the knowledge base."
            ),
            "parameters": {
                "type": "object",
                "properties": {"reason": {"type": "string", "description": "Why, in a few words."}},
                "required": ["reason"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_knowledge_base",
            "description": "Search the business's knowledge base for articles about a topic.",
            "parameters": {
                "type": "object",
                "properties": {"query": {"type": "string", "description": "What to look for."}},
                "required": ["query"],
            },
        },
    },
]


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
    """A system message the engine stored to tell the customer something."""

    message: dict
    code: str


@dataclass(frozen=True)
class StatusChanged:
    change: StatusChange


BotEvent = Delta | Stored | Notice | StatusChanged


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


@dataclass
class _Answer:
    """The answer being written: text so far, where it came from, what it cost."""

    turn: services.Turn
    started: float = field(default_factory=time.perf_counter)
    text: str = ""
    source: str = ""
    message: dict | None = None
    first_token_ms: float | None = None
    sources: list[int] = field(default_factory=list)
    calls: list[services.CallRecord] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    used_tools: bool = False
    handed_off: bool = False
    reserved: "asyncio.Task | None" = None
    before_llm_call: Callable[[], None] | None = None

    def reserve(self) -> None:
        """Store the answer's row while moderation and the model run, off the path to the
        first token."""
        if self.message is None and self.reserved is None:
            self.reserved = asyncio.create_task(
                database_sync_to_async(services.start_bot_message)(
                    conversation_id=self.turn.conversation_id
                )
            )

    async def claim(self) -> dict:
        if self.message is None:
            if self.reserved is None:
                self.reserve()
            self.message = await self.reserved
        return self.message

    async def emit(self, piece: str) -> Delta:
        if self.first_token_ms is None:
            self.first_token_ms = _ms(self.started)
        if self.message is None:
            await self.claim()
        delta = Delta(self.message["id"], self.message["seq"], len(self.text), piece)
        self.text += piece
        return delta

    async def finish(self, *, interrupted: bool = False) -> dict:
        await self.claim()
        llm = self.source in {"llm", "guard"} and self.prompt_tokens > 0
        model = self.turn.bot.model if llm else ""
        stored = await database_sync_to_async(_store_answer)(
            answer=self, interrupted=interrupted, model=model, llm=llm
        )
        return stored


def _store_answer(*, answer: _Answer, interrupted: bool, model: str, llm: bool) -> dict:
    turn = answer.turn
    stored = services.finish_bot_message(
        message_id=answer.message["id"],
        text=answer.text,
        interrupted=interrupted,
        source=answer.source,
        sources=services.article_links(answer.sources),
        model=model,
        prompt_tokens=answer.prompt_tokens if llm else None,
        completion_tokens=answer.completion_tokens if llm else None,
        cost=cost_of(model, answer.prompt_tokens, answer.completion_tokens) if llm else None,
        first_token_ms=answer.first_token_ms,
        total_ms=_ms(answer.started),
    )
    services.record_llm_calls(
        site_id=turn.site_id,
        conversation_id=turn.conversation_id,
        message_id=answer.message["id"],
        calls=answer.calls,
    )
    answer.calls = []
    return stored


def _translated(language: str, text: str, **params) -> str:
    with translation.override(language or "en"):
        return gettext(text) % params if params else gettext(text)


async def _say(answer: _Answer, text: str, source: str) -> AsyncIterator[BotEvent]:
    """Stream a ready-made answer (curated, cached, offline, refusal) like a generated one."""
    answer.source = source
    for piece in PIECE_RE.findall(text):
        yield await answer.emit(piece)


def _cache_key(turn: services.Turn) -> str | None:
    if not (turn.bot.cache_enabled and turn.context_free):
        return None
    normalized = " ".join(re.sub(r"[^\w\s]", " ", turn.question.casefold()).split())
    digest = hashlib.sha256(f"{turn.language}|{normalized}".encode()).hexdigest()[:32]
    return f"bots:answer:{turn.site_id}:{turn.knowledge_version}:{digest}"


def turn_reads(*, conversation_id: int) -> tuple[SnapshotRead, ...]:
    """What `read_turn` reads from the database, as reads for the statement that stores the
    customer's next message (`helpdesk.services.record_visitor_message(reads=...)`)."""
    return services.turn_reads(conversation_id=conversation_id)


def opening_turn_reads(*, site_id: int, language: str) -> tuple:
    """What `turn_reads` would give for the message that opened its conversation (see
    `helpdesk.services.RecordedMessage.opened_in`), to pass to `read_turn(reads=...)`."""
    return services.opening_turn_reads(site_id=site_id, language=language)


def read_turn(
    *,
    conversation_id: int,
    message_id: int,
    reads: tuple | None = None,
    message: dict | None = None,
    lookups: services.Lookups | None = None,
) -> services.Turn:
    """What answering the message needs from the database; sync, for the ORM thread.

    The consumer reads it in the same trip that stores the message, then passes it to
    `reply(turn=...)`. `reads` are the values of `turn_reads` stored with `message`: then
    only the lookups (curated answers, retrieval) are left to do, unless `lookups_ahead`
    made them already. A turn the response cache may answer comes with its cached answer.
    """
    turn = services.prepare_turn(
        conversation_id=conversation_id,
        message_id=message_id,
        snippet_limit=SNIPPETS_PER_PROMPT,
        rows=None if reads is None else _rows_of_reads(reads, message),
        lookups=lookups,
    )
    cache_key = _cache_key(turn) if turn.curated is None else None
    if cache_key is None:
        return turn
    # Here rather than on the event loop: the cache's async API would come back to this
    # thread for it, behind whatever the ORM does meanwhile.
    return replace(turn, cached_answer=shared_cache().get(cache_key))


def read_turn_from_caches(
    *,
    conversation_id: int,
    message_id: int,
    reads: tuple,
    message: dict,
    lookups: services.Lookups | None,
) -> services.Turn | None:
    """`read_turn` with no I/O, for the event loop: None where it would need some (the
    site's settings or the lookups not cached, a monthly budget to check, the response
    cache to ask); then `read_turn` reads it in the ORM thread."""
    if lookups is None:
        return None
    turn = services.prepare_turn(
        conversation_id=conversation_id,
        message_id=message_id,
        snippet_limit=SNIPPETS_PER_PROMPT,
        rows=_rows_of_reads(reads, message),
        lookups=lookups,
        cached_only=True,
    )
    if turn is None or (turn.curated is None and _cache_key(turn) is not None):
        return None
    return turn


def _rows_of_reads(reads: tuple, message: dict) -> tuple[tuple, list]:
    conversation, earlier = reads
    return services.turn_rows_of_reads(
        seq=message["seq"], text=message["text"], conversation=conversation, earlier=earlier
    )


def lookups_ahead(*, site_id: int, question: str) -> services.Lookups | None:
    """A turn's lookups from the question alone, made with no query while the message is
    being stored (None when the site's settings or indexes are not cached); pass them to
    `read_turn(lookups=...)`."""
    return services.cached_lookups(
        site_id=site_id, question=question, snippet_limit=SNIPPETS_PER_PROMPT
    )


def start_moderation(question: str) -> "asyncio.Task | None":
    """The provider's moderation of a customer message, started as soon as its text is known.

    Pass the task to `reply(moderation=...)`; None when moderation is off or unavailable.
    """
    if not _moderation_wanted():
        return None
    return asyncio.create_task(_moderate(redact(question).text))


async def reply(
    *,
    conversation_id: int,
    message_id: int,
    turn: services.Turn | None = None,
    moderation: "asyncio.Task | None" = None,
    reserved: dict | None = None,
    before_llm_call: Callable[[], None] | None = None,
) -> AsyncIterator[BotEvent]:
    """Answer the customer message `message_id`: deltas, then the stored answer, written
    into `reserved` (the answer's empty row, stored with the message) when given.
    `before_llm_call` is called as each request to the LLM is about to be sent."""
    try:
        if turn is None:
            turn = await database_sync_to_async(read_turn)(
                conversation_id=conversation_id, message_id=message_id
            )
    except BaseException:
        if moderation is not None:
            moderation.cancel()
        if reserved is not None:
            await asyncio.shield(database_sync_to_async(release_answer)(reserved))
        raise
    answer = _Answer(turn=turn, message=reserved, before_llm_call=before_llm_call)
    if reserved is None:
        answer.reserve()
        # Hands the row to the ORM thread before the moderation verdict and the prompt hold
        # the event loop.
        await asyncio.sleep(0)
    try:
        async for event in _answer(turn, answer, moderation):
            yield event
    except BaseException:
        # Shutting down or failing mid-answer: never leave an answer marked as streaming.
        if answer.message is not None or answer.reserved is not None:
            await asyncio.shield(_finish_cancelled(answer))
        raise
    await database_sync_to_async(summary.schedule_summary_if_due)(conversation_id=conversation_id)


async def _finish_cancelled(answer: _Answer) -> None:
    await answer.claim()
    await answer.finish(interrupted=True)


def _moderation_wanted() -> bool:
    return (
        llm_configured()
        and settings.HELPDESK_MODERATION != "off"
        and not breaker.is_open(provider_key())
    )


async def _moderate(text: str) -> ProviderModeration | None:
    return await moderate_with_provider(get_client(), text)


async def _answer(
    turn: services.Turn, answer: _Answer, moderation: "asyncio.Task | None"
) -> AsyncIterator[BotEvent]:
    banned = banned_words_for(turn.bot.banned_words).find(turn.question)
    if banned is not None:
        if moderation is not None:
            moderation.cancel()
        async for event in _refuse_flagged(turn, answer, review="banned word"):
            yield event
        return

    llm_allowed = llm_configured() and not turn.over_budget
    if moderation is None and llm_allowed and _moderation_wanted():
        moderation = asyncio.create_task(_moderate(turn.redacted.text))
    if moderation is not None:
        # Kept even over the token budget: moderation is free and the check still protects.
        result = await moderation
        if result is not None:
            answer.calls.append(
                services.CallRecord(
                    kind="moderation",
                    model=result.model,
                    parameters={},
                    total_ms=result.total_ms,
                    outcome=result.outcome,
                    pii_redacted=turn.redacted.total,
                )
            )
            if result.flagged:
                categories = ", ".join(result.categories)
                async for event in _refuse_flagged(
                    turn, answer, review=f"moderation: {categories}"
                ):
                    yield event
                return

    if turn.curated is not None:
        await database_sync_to_async(record_curated_hit)(turn.curated.curated_id)
        async for event in _say(answer, turn.curated.answer, "curated"):
            yield event
        yield Stored(await answer.finish())
        return

    cache_key = _cache_key(turn)
    if cache_key is not None:
        cached = turn.cached_answer
        if cached is not None:
            answer.sources = cached["sources"]
            async for event in _say(answer, cached["text"], "cache"):
                yield event
            yield Stored(await answer.finish())
            return

    if llm_allowed and breaker.allow(provider_key()):
        try:
            async for event in _llm_answer(turn, answer, list(turn.snippets)):
                yield event
        except PromptTooLarge:
            # The site's settings cannot fit a prompt; that is no fault of the provider.
            logger.warning("Prompt too large for site %s", turn.site_id)
            breaker.succeeded(provider_key())
            async for event in _after_llm_failure(turn, answer):
                yield event
            return
        except LLMError as exc:
            breaker.failed(provider_key())
            logger.warning(
                "LLM call failed for conversation %s: %s", turn.conversation_id, exc.kind
            )
            async for event in _after_llm_failure(turn, answer):
                yield event
            return
        except (Exception, asyncio.CancelledError):
            # Never leave a half-open probe hanging: this call's fate is unknown.
            breaker.failed(provider_key())
            raise
        breaker.succeeded(provider_key())
        if not answer.text:
            if not answer.handed_off:
                # An empty reply: answer from the knowledge base instead.
                async for event in _offline(turn, answer):
                    yield event
                yield Stored(await answer.finish())
                return
            # The model only handed off: say what happens next.
            async for event in _say(answer, _connecting_text(turn), "llm"):
                yield event
        stored = await answer.finish()
        # Cached before the customer hears it is done, so the next asker finds it.
        if cache_key and answer.source == "llm" and not answer.used_tools:
            await shared_cache().aset(
                cache_key, {"text": answer.text, "sources": answer.sources}, turn.bot.cache_ttl
            )
        yield Stored(stored)
        return

    async for event in _offline(turn, answer):
        yield event
    yield Stored(await answer.finish())


async def _offline(turn: services.Turn, answer: _Answer) -> AsyncIterator[BotEvent]:
    offline = await database_sync_to_async(answer_offline)(
        site_id=turn.site_id, question=turn.question, language=turn.language
    )
    answer.sources = list(offline.article_ids)
    async for event in _say(answer, offline.text, "offline"):
        yield event


def _connecting_text(turn: services.Turn) -> str:
    return _translated(turn.language, "I'm connecting you with a member of our team.")


async def _after_llm_failure(turn: services.Turn, answer: _Answer) -> AsyncIterator[BotEvent]:
    """The fallback chain: keep what was shown, else the offline answer; then offer a human."""
    if answer.text:
        yield Stored(await answer.finish(interrupted=True))
    else:
        async for event in _offline(turn, answer):
            yield event
        yield Stored(await answer.finish())
    text = _translated(
        turn.language,
        "Sorry, the assistant could not answer just now. Your message is saved; "
        "please try again in a moment, or ask to talk to a person.",
    )
    notice = await database_sync_to_async(services.post_system_message)(
        conversation_id=turn.conversation_id, text=text
    )
    yield Notice(notice, code="bot_unavailable")


async def _refuse_flagged(
    turn: services.Turn, answer: _Answer, *, review: str
) -> AsyncIterator[BotEvent]:
    """A flagged message gets a safe reply, goes to a human, and never reaches the model."""
    await database_sync_to_async(services.flag_for_review)(
        message_id=turn.message_id, reason=review
    )
    text = _translated(
        turn.language,
        "I can't help with that here. I've asked a member of our team to take a look; "
        "they will reply in this chat.",
    )
    async for event in _say(answer, text, "guard"):
        yield event
    yield Stored(await answer.finish())
    notice = _translated(turn.language, "A member of our team will join this chat shortly.")
    change = await database_sync_to_async(request_human)(
        conversation_id=turn.conversation_id, reason="moderation", notice=notice
    )
    yield StatusChanged(change)


def _prompt_parts(turn: services.Turn, snippets: list[Snippet]) -> tuple[PromptParts, int]:
    redacted_history = []
    pii = 0
    for role, text in turn.history:
        cleaned = redact(text)
        pii += cleaned.total
        redacted_history.append((role, cleaned.text))
    parts = PromptParts(
        site_name=turn.site_name,
        scope=turn.scope,
        language=turn.language,
        snippets=tuple(KnowledgeSnippet(s.article_id, s.title, s.body) for s in snippets),
        few_shot=turn.bot.few_shot,
        summary=turn.summary,
        history=tuple(redacted_history),
        model=turn.bot.model,
        max_tokens=turn.bot.max_tokens,
        tools_enabled=True,
    )
    return parts, pii


async def _llm_answer(
    turn: services.Turn, answer: _Answer, snippets: list[Snippet]
) -> AsyncIterator[BotEvent]:
    parts, pii = _prompt_parts(turn, snippets)
    built = build_prompt(parts)
    answer.source = "llm"
    guard = LeakGuard(built.protected_text)
    messages = built.messages
    included = list(built.snippet_ids)
    bot = turn.bot
    parameters = {
        "temperature": bot.temperature,
        "top_p": bot.top_p,
        "max_tokens": bot.max_tokens,
        "stop": list(bot.stop),
    }
    for _round in range(MAX_TOOL_ROUNDS + 1):
        tool_calls: list[ToolCallRequest] = []
        if answer.before_llm_call is not None:
            answer.before_llm_call()
        call_started = time.perf_counter()
        call = {"first": None, "usage": None}
        leaked = False
        try:
            async with aclosing(
                stream_chat(
                    model=bot.model,
                    messages=messages,
                    temperature=bot.temperature,
                    top_p=bot.top_p,
                    max_tokens=bot.max_tokens,
                    stop=list(bot.stop),
                    tools=TOOLS if _round < MAX_TOOL_ROUNDS else None,
                )
            ) as stream:
                async for piece in stream:
                    if isinstance(piece, Usage):
                        call["usage"] = piece
                    elif isinstance(piece, ToolCallRequest):
                        tool_calls.append(piece)
                    else:
                        if call["first"] is None:
                            call["first"] = _ms(call_started)
                        if guard.feed(piece):
                            leaked = True
                            break
                        yield await answer.emit(piece)
        except LLMError as exc:
            answer.calls.append(
                _call_record(turn, call, call_started, parameters, messages, pii, exc.kind)
            )
            raise
        answer.calls.append(_call_record(turn, call, call_started, parameters, messages, pii, "ok"))
        usage = call["usage"]
        if usage is not None:
            answer.prompt_tokens += usage.prompt_tokens
            answer.completion_tokens += usage.completion_tokens
        if leaked:
            await _replace_with_refusal(turn, answer)
            return
        if not tool_calls:
            break
        answer.used_tools = True
        messages = [
            *messages,
            {
                "role": "assistant",
                "content": answer.text or None,
                "tool_calls": [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments},
                    }
                    for c in tool_calls
                ],
            },
        ]
        for tool_call in tool_calls:
            result, change = await _run_tool(turn, tool_call, included)
            messages.append({"role": "tool", "tool_call_id": tool_call.id, "content": result})
            if change is not None:
                answer.handed_off = True
                yield StatusChanged(change)
        if answer.handed_off:
            break
    answer.sources = _cited(answer.text, included)


def _call_record(turn, call, started, parameters, messages, pii, outcome) -> services.CallRecord:
    usage = call["usage"]
    prompt_tokens = usage.prompt_tokens if usage else 0
    completion_tokens = usage.completion_tokens if usage else 0
    return services.CallRecord(
        kind="chat",
        model=turn.bot.model,
        parameters=parameters,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost=cost_of(turn.bot.model, prompt_tokens, completion_tokens),
        first_token_ms=call["first"],
        total_ms=_ms(started),
        outcome=outcome,
        pii_redacted=pii,
        prompt_text=json.dumps(messages, ensure_ascii=False) if turn.bot.store_prompts else "",
    )


def _cited(text: str, included: list[int]) -> list[int]:
    """The articles an answer used: those it cites, else the best one it was given."""
    cited = [int(i) for i in CITATION_RE.findall(text) if int(i) in included]
    unique = list(dict.fromkeys(cited))
    return unique or included[:1]


async def _replace_with_refusal(turn: services.Turn, answer: _Answer) -> None:
    answer.text = _translated(
        turn.language,
        "Sorry, I can't share that. I can help with questions about %(site)s: orders, "
        "shipping, returns, products and our policies.",
        site=turn.site_name,
    )
    answer.source = "guard"
    answer.sources = []
    await answer.claim()


async def _run_tool(
    turn: services.Turn, call: ToolCallRequest, included: list[int]
) -> tuple[str, StatusChange | None]:
    try:
        arguments = json.loads(call.arguments or "{}")
        if not isinstance(arguments, dict):
            raise ValueError
    except ValueError:
        return json.dumps({"error": "arguments must be a JSON object"}), None
    if call.name == "handoff_to_human":
        reason = str(arguments.get("reason") or "requested by the assistant")[:150]
        notice = _translated(turn.language, "A member of our team will join this chat shortly.")
        change = await database_sync_to_async(request_human)(
            conversation_id=turn.conversation_id, reason=f"tool: {reason}", notice=notice
        )
        return json.dumps({"ok": True, "status": change.status}), change
    if call.name == "search_knowledge_base":
        query = redact(str(arguments.get("query") or "")).text
        found = await database_sync_to_async(search_articles)(
            site_id=turn.site_id, query=query, limit=3
        )
        for snippet in found:
            if snippet.article_id not in included:
                included.append(snippet.article_id)
        return json.dumps(
            [{"id": s.article_id, "title": s.title, "body": s.body} for s in found],
            ensure_ascii=False,
        ), None
    return json.dumps({"error": f"unknown tool {call.name[:50]}"}), None
