"""Stored question topics and knowledge-base gaps: the database side of `analytics.clustering`.

`recompute_topics(site_id=...)` reads a site's customer questions of the last
`TOPIC_WINDOW` (newest `MAX_QUESTIONS`), redacts PII, records what happened to each question,
clusters them, ranks the gaps and replaces the site's `QuestionTopic` rows in one
transaction. Running it twice gives the same topics (the clustering is seeded), so the Celery
task is safe to retry.

Vectors: with `HELPDESK_EMBEDDING_MODEL` set (and the LLM configured: `OPENAI_API_KEY` or
`OPENAI_BASE_URL`), questions are embedded through the OpenAI-compatible `/embeddings`
endpoint and clustered by cosine similarity; otherwise, or when that call fails, by TF-IDF
on character n-grams (see analytics.clustering).

What happened to a question (the outcome that `rank_gaps` scores):

- answered_by_bot: a bot message follows it before the customer's next question;
- no_article: that bot answer cited no knowledge-base article and was not a curated answer
  (or there was no bot answer at all);
- escalated: a handoff of the conversation was created after it, before the next question;
- rating: the conversation's CSAT score, if any.

Topic keys: a new topic inherits the `key` of the old topic of the same site it shares the
most questions with (at least `KEEP_KEY_OVERLAP` of the smaller of the two), otherwise gets a
fresh one. `TopicFix.topic_key` follows a topic through recomputes that way.
"""

import logging
import time as clock
import uuid
from bisect import bisect_right
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from analytics.clustering import QuestionOutcome, cluster_questions, rank_gaps
from analytics.models import QuestionTopic, TopicFix, TopicQuestion
from bots.models import LLMCall
from bots.pii import redact
from bots.pricing import cost_of
from bots.services import CallRecord, record_llm_calls
from handoff.models import Handoff, Rating
from helpdesk.models import Message

logger = logging.getLogger(__name__)

TOPIC_WINDOW = timedelta(days=30)
MAX_QUESTIONS = 100_000
KEEP_KEY_OVERLAP = 0.5
EMBEDDING_BATCH = 256
# Answers made without the knowledge base that still count as "an article matched".
CURATED_SOURCES = ("curated",)


@dataclass
class Question:
    message_id: int
    conversation_id: int
    asked_at: datetime
    text: str
    outcome: QuestionOutcome


def _questions(site_id: int, start: datetime, end: datetime) -> list[Question]:
    """The site's customer questions in [start, end), newest MAX_QUESTIONS, with outcomes."""
    rows = list(
        Message.objects.filter(
            conversation__site_id=site_id,
            author=Message.Author.VISITOR,
            created_at__gte=start,
            created_at__lt=end,
        )
        .exclude(text="")
        .order_by("-created_at", "-pk")
        .values_list("pk", "conversation_id", "seq", "created_at", "text")[:MAX_QUESTIONS]
    )
    rows.reverse()
    conversation_ids = {row[1] for row in rows}
    # One query per table for the whole window, merged per conversation below.
    visitor_seqs: dict[int, list[tuple[int, datetime]]] = defaultdict(list)
    for conv_id, seq, created in (
        Message.objects.filter(conversation_id__in=conversation_ids, author=Message.Author.VISITOR)
        .order_by("conversation_id", "seq")
        .values_list("conversation_id", "seq", "created_at")
        .iterator(chunk_size=5000)
    ):
        visitor_seqs[conv_id].append((seq, created))
    answers: dict[int, list[tuple[int, bool]]] = defaultdict(list)
    for conv_id, seq, source, sources in (
        Message.objects.filter(conversation_id__in=conversation_ids, author=Message.Author.BOT)
        .order_by("conversation_id", "seq")
        .values_list("conversation_id", "seq", "answer_source", "sources")
        .iterator(chunk_size=5000)
    ):
        answers[conv_id].append((seq, bool(sources) or source in CURATED_SOURCES))
    handoffs: dict[int, list[datetime]] = defaultdict(list)
    for conv_id, created in (
        Handoff.objects.filter(conversation_id__in=conversation_ids)
        .order_by("conversation_id", "created_at")
        .values_list("conversation_id", "created_at")
        .iterator(chunk_size=5000)
    ):
        handoffs[conv_id].append(created)
    ratings = dict(
        Rating.objects.filter(conversation_id__in=conversation_ids).values_list(
            "conversation_id", "score"
        )
    )

    questions = []
    for pk, conv_id, seq, created, text in rows:
        turns = visitor_seqs[conv_id]
        position = bisect_right(turns, (seq, created))
        next_seq, next_at = turns[position] if position < len(turns) else (None, None)
        reply = next(
            (
                matched
                for answer_seq, matched in answers[conv_id]
                if answer_seq > seq and (next_seq is None or answer_seq < next_seq)
            ),
            None,
        )
        escalated = any(
            moment >= created and (next_at is None or moment < next_at)
            for moment in handoffs[conv_id]
        )
        questions.append(
            Question(
                message_id=pk,
                conversation_id=conv_id,
                asked_at=created,
                text=redact(text).text,
                outcome=QuestionOutcome(
                    answered_by_bot=reply is not None,
                    escalated=escalated,
                    no_article_matched=reply is not True,
                    rating=ratings.get(conv_id),
                ),
            )
        )
    return questions


def embeddings_configured() -> bool:
    from bots.llm import llm_configured

    return bool(getattr(settings, "HELPDESK_EMBEDDING_MODEL", "")) and llm_configured()


def _embedding_call(model: str, started: float, *, tokens: int = 0, outcome="ok") -> CallRecord:
    tokens = tokens or 0
    return CallRecord(
        kind=LLMCall.Kind.EMBEDDING,
        model=model,
        parameters={},
        prompt_tokens=tokens,
        cost=cost_of(model, tokens, 0),
        total_ms=(clock.monotonic() - started) * 1000,
        outcome=outcome,
    )


def embed_texts(texts: list[str], *, calls: list[CallRecord]) -> np.ndarray:
    """Vectors from the configured embeddings endpoint, in batches, in input order.

    Appends one CallRecord per request to `calls` (a failed one too, before raising), so
    the embeddings' tokens and cost reach the LLM call log and the reports.
    """
    from bots.llm import get_sync_client

    client = get_sync_client()
    model = settings.HELPDESK_EMBEDDING_MODEL
    vectors: list[list[float]] = []
    for start in range(0, len(texts), EMBEDDING_BATCH):
        started = clock.monotonic()
        try:
            response = client.embeddings.create(
                model=model, input=texts[start : start + EMBEDDING_BATCH]
            )
        except Exception as exc:
            calls.append(_embedding_call(model, started, outcome=type(exc).__name__))
            raise
        usage = getattr(response, "usage", None)
        calls.append(_embedding_call(model, started, tokens=getattr(usage, "prompt_tokens", 0)))
        vectors.extend(item.embedding for item in sorted(response.data, key=lambda d: d.index))
    return np.asarray(vectors, dtype=np.float32)


def _vectors(site_id: int, texts: list[str]) -> np.ndarray | None:
    """Embeddings when configured; None (TF-IDF) otherwise or when the endpoint fails.

    Every embeddings request is written to the LLM call log of the site, failed ones too.
    """
    if not texts or not embeddings_configured():
        return None
    from bots.llm import PROVIDER_ERRORS

    calls: list[CallRecord] = []
    try:
        return embed_texts(texts, calls=calls)
    except PROVIDER_ERRORS as exc:
        # The texts are redacted, but provider errors may echo them: log the class only.
        logger.warning("Embeddings failed (%s); clustering by TF-IDF.", type(exc).__name__)
        return None
    finally:
        record_llm_calls(site_id=site_id, conversation_id=None, message_id=None, calls=calls)


def _inherit_keys(site_id: int, member_sets: list[set[int]]) -> list[uuid.UUID]:
    """The key of the old topic each new one overlaps most (by question), or a new key."""
    old_members: dict[uuid.UUID, set[int]] = defaultdict(set)
    for key, message_id in TopicQuestion.objects.filter(topic__site_id=site_id).values_list(
        "topic__key", "message_id"
    ):
        old_members[key].add(message_id)
    owner = {m: key for key, members in old_members.items() for m in members}
    keys: list[uuid.UUID] = []
    taken: set[uuid.UUID] = set()
    for members in member_sets:
        counts: dict[uuid.UUID, int] = defaultdict(int)
        for message_id in members:
            if message_id in owner:
                counts[owner[message_id]] += 1
        best = None
        for key, shared in sorted(counts.items(), key=lambda item: -item[1]):
            smaller = min(len(members), len(old_members[key]))
            if key not in taken and shared >= KEEP_KEY_OVERLAP * smaller:
                best = key
                break
        key = best or uuid.uuid4()
        taken.add(key)
        keys.append(key)
    return keys


def recompute_topics(*, site_id: int, now: datetime | None = None) -> int:
    """Replace the site's topics with those of the last TOPIC_WINDOW; return how many."""
    now = now or timezone.now()
    start = now - TOPIC_WINDOW
    questions = _questions(site_id, start, now)
    texts = [q.text for q in questions]
    clusters = cluster_questions(texts, embeddings=_vectors(site_id, texts))
    gaps = {id(gap.cluster): gap for gap in rank_gaps(clusters, [q.outcome for q in questions])}
    with transaction.atomic():
        keys = _inherit_keys(
            site_id, [{questions[i].message_id for i in c.members} for c in clusters]
        )
        QuestionTopic.objects.filter(site_id=site_id).delete()
        topics = []
        for cluster, key in zip(clusters, keys, strict=True):
            outcomes = [questions[i].outcome for i in cluster.members]
            ratings = [o.rating for o in outcomes if o.rating is not None]
            size = len(outcomes)
            gap = gaps.get(id(cluster))
            topics.append(
                QuestionTopic(
                    site_id=site_id,
                    key=key,
                    label=cluster.label[:200],
                    size=size,
                    examples=list(cluster.examples),
                    answered_by_bot_share=sum(o.answered_by_bot for o in outcomes) / size,
                    escalated_share=sum(o.escalated for o in outcomes) / size,
                    no_article_share=sum(o.no_article_matched for o in outcomes) / size,
                    low_rating_share=gap.low_rating_share if gap else 0.0,
                    average_rating=sum(ratings) / len(ratings) if ratings else None,
                    gap_score=gap.score if gap else 0.0,
                    window_start=start,
                    window_end=now,
                    computed_at=now,
                )
            )
        QuestionTopic.objects.bulk_create(topics, batch_size=500)
        TopicQuestion.objects.bulk_create(
            (
                TopicQuestion(
                    topic=topic,
                    message_id=questions[i].message_id,
                    conversation_id=questions[i].conversation_id,
                    asked_at=questions[i].asked_at,
                    answered_by_bot=questions[i].outcome.answered_by_bot,
                    escalated=questions[i].outcome.escalated,
                    no_article=questions[i].outcome.no_article_matched,
                    rating=questions[i].outcome.rating,
                )
                for topic, cluster in zip(topics, clusters, strict=True)
                for i in cluster.members
            ),
            batch_size=2000,
        )
        mark_fixes_live(site_id=site_id, now=now)
    return len(topics)


def mark_fixes_live(*, site_id: int | None = None, now: datetime | None = None) -> int:
    """Stamp `fixed_at` on fixes whose article is now published or curated answer active.

    The article's (or answer's) last change stands for the moment it went live; a fix found
    live without one is stamped `now`.
    """
    now = now or timezone.now()
    pending = TopicFix.objects.filter(fixed_at__isnull=True).filter(
        Q(article__is_published=True) | Q(curated_answer__is_active=True)
    )
    if site_id is not None:
        pending = pending.filter(site_id=site_id)
    stamped = 0
    for fix in pending.select_related("article", "curated_answer"):
        live = fix.article if fix.article and fix.article.is_published else fix.curated_answer
        fix.fixed_at = getattr(live, "updated_at", None) or now
        fix.save(update_fields=["fixed_at"])
        stamped += 1
    return stamped
