"""Database work of a bot turn, called from the async engine through database_sync_to_async."""

import functools
import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, OuterRef, Subquery, Sum
from django.utils import timezone

from bots import curated, retrieval, site_cache
from bots.curated import CuratedMatch
from bots.models import Article, BotConfig, ConversationSummary, CuratedAnswer, LLMCall
from bots.pii import Redaction, redact
from bots.retrieval import Snippet
from helpdesk.message_sql import SnapshotRead
from helpdesk.models import Conversation, Message, Site, Visitor
from helpdesk.prepared import prepared_cursor
from helpdesk.services import append_message


@dataclass(frozen=True)
class BotSettings:
    """A site's BotConfig, copied out of the ORM for async code."""

    model: str
    temperature: float
    top_p: float
    max_tokens: int
    stop: tuple[str, ...]
    few_shot: tuple[tuple[str, str], ...]
    languages: tuple[str, ...]
    banned_words: tuple[str, ...]
    cache_enabled: bool
    cache_ttl: int
    curated_threshold: float
    monthly_token_budget: int | None
    store_prompts: bool

    @classmethod
    def of(cls, config: BotConfig) -> "BotSettings":
        return cls(
            model=config.chat_model,
            temperature=config.temperature,
            top_p=config.top_p,
            max_tokens=config.max_tokens,
            stop=tuple(config.stop_sequences),
            few_shot=tuple((e["user"], e["assistant"]) for e in config.few_shot),
            languages=tuple(config.languages),
            banned_words=tuple(config.banned_word_list()),
            cache_enabled=config.cache_enabled,
            cache_ttl=config.cache_ttl,
            curated_threshold=config.curated_threshold,
            monthly_token_budget=config.monthly_token_budget,
            store_prompts=config.store_prompts,
        )


@dataclass(frozen=True)
class Turn:
    """Everything the engine needs to answer one customer message, read in one go."""

    site_id: int
    site_name: str
    conversation_id: int
    message_id: int
    question: str
    # The question with PII replaced: what retrieval, moderation and the model see.
    redacted: Redaction
    language: str
    scope: str
    bot: BotSettings
    history: tuple[tuple[str, str], ...]
    summary: str
    # No earlier customer message in the conversation: the answer depends on nothing but
    # the question, so it may be cached.
    context_free: bool
    # Changes whenever the articles, the bot settings or the scope change.
    knowledge_version: str
    tokens_this_month: int
    snippets: tuple[Snippet, ...]
    curated: CuratedMatch | None
    # The response cache's answer to the question, looked up with the turn
    # (`bots.engine.read_turn`) when the turn may be answered from the cache.
    cached_answer: dict | None = None

    @property
    def over_budget(self) -> bool:
        budget = self.bot.monthly_token_budget
        return budget is not None and self.tokens_this_month >= budget


ROLE_OF_AUTHOR = {
    Message.Author.VISITOR: "user",
    Message.Author.BOT: "assistant",
    Message.Author.AGENT: "assistant",
}


def month_start(now: datetime) -> datetime:
    return now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def tokens_used_this_month(site_id: int) -> int:
    totals = LLMCall.objects.filter(site_id=site_id, created_at__gte=month_start(timezone.now()))
    used = totals.aggregate(total=Sum(F("prompt_tokens") + F("completion_tokens")))["total"]
    return used or 0


def _newest(model, site, **filters) -> Subquery:
    rows = model.objects.filter(site_id=site, **filters).order_by("-updated_at")
    return Subquery(rows.values("updated_at")[:1])


def _count(model, site, **filters) -> Subquery:
    rows = model.objects.filter(site_id=site, **filters).order_by()
    return Subquery(rows.values("site_id").annotate(n=Count("id")).values("n")[:1])


KNOWLEDGE_STATE_FIELDS = ("articles_count", "articles_newest", "curated_count", "curated_newest")


def knowledge_state_annotations(site) -> dict:
    """Versions of a site's articles and curated answers, as annotations for one query.

    `site` is a site id or an OuterRef to one.
    """
    return {
        "articles_count": _count(Article, site, is_published=True),
        "articles_newest": _newest(Article, site, is_published=True),
        "curated_count": _count(CuratedAnswer, site, is_active=True),
        "curated_newest": _newest(CuratedAnswer, site, is_active=True),
    }


@dataclass(frozen=True)
class SiteBundle:
    """What a turn reads about its site; cached briefly per process (bots.site_cache)."""

    site_id: int
    name: str
    scope: str
    default_language: str
    bot: BotSettings
    config_updated_at: datetime
    state: dict


def load_site_bundle(site_id: int) -> SiteBundle:
    site = (
        Site.objects.select_related("bot_config")
        .annotate(**knowledge_state_annotations(OuterRef("pk")))
        .get(pk=site_id)
    )
    try:
        config = site.bot_config
    except BotConfig.DoesNotExist:
        config, _ = BotConfig.objects.get_or_create(site=site)
    return SiteBundle(
        site_id=site.pk,
        name=site.name,
        scope=site.scope,
        default_language=site.default_language,
        bot=BotSettings.of(config),
        config_updated_at=config.updated_at,
        state={name: getattr(site, name) for name in KNOWLEDGE_STATE_FIELDS},
    )


def _tables() -> tuple[str, str, str, str]:
    """The quoted tables of messages, conversations, visitors and summaries."""
    quote = connection.ops.quote_name
    models = (Message, Conversation, Visitor, ConversationSummary)
    return tuple(quote(model._meta.db_table) for model in models)


_AUTHORS = tuple(ROLE_OF_AUTHOR)
_AUTHOR_PLACEHOLDERS = ", ".join(["%s"] * len(_AUTHORS))


def _turn_rows(*, conversation_id: int, message_id: int, limit: int) -> tuple[tuple, list]:
    """The message with its conversation's languages and summary, and the recent turns
    (newest first, up to the message, after the summary).

    Hand-written SQL: it runs for every customer message before the bot answers, and
    building these two queries through the ORM costs about 4 ms here against 0.3 ms to run.
    Prepared, as the same two statements run for every message.
    """
    messages, conversations, visitors, summaries = _tables()
    with prepared_cursor() as cursor:
        cursor.execute(
            f"SELECT m.seq, m.text, c.site_id, c.language, v.language, s.text, s.upto_seq "  # noqa: S608
            f"FROM {messages} m JOIN {conversations} c ON c.id = m.conversation_id "
            f"JOIN {visitors} v ON v.id = c.visitor_id "
            f"LEFT JOIN {summaries} s ON s.conversation_id = c.id "
            "WHERE m.id = %s AND m.conversation_id = %s",
            [message_id, conversation_id],
        )
        row = cursor.fetchone()
        if row is None:
            raise Message.DoesNotExist(f"No message {message_id} in {conversation_id}.")
        seq, summarized_upto = row[0], row[6]
        if seq == 1:
            # The conversation's first message: nothing before it to read.
            return row, [(Message.Author.VISITOR, row[1])]
        cursor.execute(
            f"SELECT author, text FROM {messages} "  # noqa: S608
            "WHERE conversation_id = %s AND seq > %s AND seq <= %s "
            f"AND author IN ({_AUTHOR_PLACEHOLDERS}) AND text <> '' "
            "ORDER BY seq DESC LIMIT %s",
            [conversation_id, summarized_upto or 0, seq, *_AUTHORS, limit],
        )
        recent = cursor.fetchall()
    return row, recent


def turn_reads(*, conversation_id: int) -> tuple[SnapshotRead, SnapshotRead]:
    """What `prepare_turn` reads, as reads of the statement that stores the customer's next
    message (helpdesk.message_sql): the conversation's languages and summary, and the turns
    before that message. `turn_rows_of_reads` makes `prepare_turn`'s rows of them."""
    conversation_sql, earlier_sql = _turn_reads_sql()
    return (
        SnapshotRead(conversation_sql, (conversation_id,)),
        SnapshotRead(
            earlier_sql,
            (conversation_id, conversation_id, *_AUTHORS, settings.HELPDESK_HISTORY_TURNS - 1),
        ),
    )


@functools.cache
def _turn_reads_sql() -> tuple[str, str]:
    messages, conversations, visitors, summaries = _tables()
    conversation = (
        "SELECT json_build_array(c.site_id, c.language, v.language, s.text, s.upto_seq) "  # noqa: S608
        f"FROM {conversations} c JOIN {visitors} v ON v.id = c.visitor_id "
        f"LEFT JOIN {summaries} s ON s.conversation_id = c.id WHERE c.id = %s"
    )
    earlier = (
        "SELECT json_agg(json_build_array(r.author, r.text) ORDER BY r.seq DESC) FROM ("  # noqa: S608
        f"SELECT seq, author, text FROM {messages} WHERE conversation_id = %s "
        f"AND seq > COALESCE((SELECT upto_seq FROM {summaries} WHERE conversation_id = %s), 0) "
        f"AND author IN ({_AUTHOR_PLACEHOLDERS}) AND text <> '' "
        "ORDER BY seq DESC LIMIT %s) r"
    )
    return conversation, earlier


def opening_turn_reads(*, site_id: int, language: str) -> tuple[list, None]:
    """The values of `turn_reads` for the message that opened its conversation, known with
    no query: the conversation took the visitor's language, and has no summary and no
    earlier turns."""
    return [site_id, language, language, None, None], None


def turn_rows_of_reads(
    *, seq: int, text: str, conversation: list, earlier: list | None
) -> tuple[tuple, list]:
    """`_turn_rows`' result, from the values of `turn_reads` and the message they preceded."""
    recent = [(Message.Author.VISITOR, text), *(tuple(turn) for turn in earlier or ())]
    return (seq, text, *conversation), recent


@dataclass(frozen=True)
class Lookups:
    """What a turn finds from its question and its site's settings alone: the question
    redacted, the knowledge snippets and the curated answer it matches."""

    site: SiteBundle
    question: str
    redacted: Redaction
    snippets: tuple[Snippet, ...]
    curated: CuratedMatch | None


def _articles_version(site: SiteBundle) -> tuple:
    return (site.state["articles_count"] or 0, site.state["articles_newest"])


def _curated_version(site: SiteBundle) -> tuple:
    return (site.state["curated_count"] or 0, site.state["curated_newest"])


def _look_up(
    site: SiteBundle,
    question: str,
    snippet_limit: int,
    articles: retrieval.KnowledgeIndex,
    answers: curated.CuratedIndex,
) -> Lookups:
    redacted = redact(question)
    return Lookups(
        site=site,
        question=question,
        redacted=redacted,
        snippets=tuple(articles.search(redacted.text, limit=snippet_limit)),
        curated=answers.match(question, site.bot.curated_threshold),
    )


def cached_lookups(*, site_id: int, question: str, snippet_limit: int) -> Lookups | None:
    """The lookups of a turn asking `question`, if this process holds the site's settings
    and indexes in its caches; else None. Runs no query, so it can run while the message
    is being stored; `prepare_turn(lookups=...)` takes them."""
    site = site_cache.peek(site_id)
    if not isinstance(site, SiteBundle):
        return None
    articles = retrieval.cached_index(site_id, _articles_version(site))
    answers = curated.cached_index(site_id, _curated_version(site))
    if articles is None or answers is None:
        return None
    return _look_up(site, question, snippet_limit, articles, answers)


def prepare_turn(
    *,
    conversation_id: int,
    message_id: int,
    snippet_limit: int,
    rows: tuple[tuple, list] | None = None,
    lookups: Lookups | None = None,
    cached_only: bool = False,
) -> Turn | None:
    """Read the turn and do its lookups (curated answers, retrieval) in one trip; `rows`
    when the caller read them already (`turn_reads`), `lookups` when it made them already
    (`cached_lookups`; made again if the site's settings have changed since).

    With `cached_only` (and `rows`), no I/O at all: None where the turn would need some
    (the site's settings not cached, the lookups not made or out of date, a monthly token
    budget to check)."""
    limit = settings.HELPDESK_HISTORY_TURNS
    if rows is None:
        rows = _turn_rows(conversation_id=conversation_id, message_id=message_id, limit=limit)
    row, recent = rows
    (
        _seq,
        text,
        site_id,
        conversation_language,
        visitor_language,
        summary_text,
        summarized_upto,
    ) = row
    has_summary = summarized_upto is not None
    history = tuple((ROLE_OF_AUTHOR[author], text) for author, text in reversed(recent))
    asked_before = (
        has_summary
        or len(recent) == limit
        or any(author == Message.Author.VISITOR for author, _text in recent[1:])
    )
    if cached_only:
        site = site_cache.peek(site_id)
        if not isinstance(site, SiteBundle) or site.bot.monthly_token_budget is not None:
            return None
    else:
        site = site_cache.get(site_id, load_site_bundle)
    state = site.state
    bot = site.bot
    language = conversation_language or visitor_language or site.default_language
    if bot.languages and language not in bot.languages:
        # The site answers only in its listed languages; the first is its fallback.
        language = bot.languages[0]
    if lookups is None or lookups.site is not site or lookups.question != text:
        if cached_only:
            return None
        lookups = _look_up(
            site,
            text,
            snippet_limit,
            retrieval.index_for_site(site_id, _articles_version(site)),
            curated.index_for_site(site_id, _curated_version(site)),
        )
    raw_version = f"{state}|{site.config_updated_at}|{site.scope}"
    return Turn(
        site_id=site_id,
        site_name=site.name,
        conversation_id=conversation_id,
        message_id=message_id,
        question=text,
        redacted=lookups.redacted,
        language=language,
        scope=site.scope,
        bot=bot,
        history=history,
        summary=summary_text if has_summary else "",
        context_free=not asked_before,
        knowledge_version=hashlib.sha256(raw_version.encode()).hexdigest()[:16],
        tokens_this_month=(
            tokens_used_this_month(site_id) if bot.monthly_token_budget is not None else 0
        ),
        snippets=lookups.snippets,
        curated=lookups.curated,
    )


def start_bot_message(*, conversation_id: int) -> dict:
    message = append_message(
        conversation_id=conversation_id,
        author=Message.Author.BOT,
        text="",
        state=Message.State.STREAMING,
    )
    return message.as_frame()


@dataclass(frozen=True)
class CallRecord:
    """One provider call of a turn, stored as an LLMCall row when the turn is stored."""

    kind: str
    model: str
    parameters: dict
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = Decimal(0)
    first_token_ms: float | None = None
    total_ms: float | None = None
    outcome: str = "ok"
    pii_redacted: int = 0
    prompt_text: str = ""


def finish_bot_message(
    *,
    message_id: int,
    text: str,
    interrupted: bool,
    source: str,
    sources: list[dict],
    model: str = "",
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    cost: Decimal | None = None,
    first_token_ms: float | None = None,
    total_ms: float | None = None,
) -> dict:
    message = Message.objects.get(pk=message_id)
    message.text = text
    message.state = Message.State.INTERRUPTED if interrupted else Message.State.COMPLETE
    message.completed_at = timezone.now()
    message.answer_source = source
    message.sources = sources
    message.llm_model = model
    message.prompt_tokens = prompt_tokens
    message.completion_tokens = completion_tokens
    message.cost = cost
    message.first_token_ms = first_token_ms
    message.total_ms = total_ms
    message.save()
    return message.as_frame()


def record_llm_calls(
    *, site_id: int, conversation_id: int | None, message_id: int | None, calls: list[CallRecord]
) -> None:
    LLMCall.objects.bulk_create(
        LLMCall(
            site_id=site_id,
            conversation_id=conversation_id,
            message_id=message_id,
            kind=call.kind,
            model=call.model,
            parameters=call.parameters,
            prompt_tokens=call.prompt_tokens,
            completion_tokens=call.completion_tokens,
            cost=call.cost,
            first_token_ms=call.first_token_ms,
            total_ms=call.total_ms,
            outcome=call.outcome[:100],
            pii_redacted=call.pii_redacted,
            prompt_text=call.prompt_text,
        )
        for call in calls
    )


def post_system_message(*, conversation_id: int, text: str) -> dict:
    return append_message(
        conversation_id=conversation_id, author=Message.Author.SYSTEM, text=text
    ).as_frame()


def flag_for_review(*, message_id: int, reason: str) -> None:
    Message.objects.filter(pk=message_id).update(needs_review=True, review_reason=reason[:200])


def article_links(article_ids: list[int]) -> list[dict]:
    """The sources shown under an answer, in the order given."""
    found = {
        a["id"]: a for a in Article.objects.filter(pk__in=article_ids).values("id", "title", "url")
    }
    return [found[i] for i in article_ids if i in found]


@transaction.atomic
def save_summary(*, conversation_id: int, text: str, upto_seq: int) -> None:
    ConversationSummary.objects.update_or_create(
        conversation_id=conversation_id, defaults={"text": text, "upto_seq": upto_seq}
    )
