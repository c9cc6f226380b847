"""Aggregate messages, conversations, handoffs, ratings and LLM calls into the report tables.

`aggregate()` is incremental and idempotent:

1. Take `now` once, at the start, and lock the `AggregationState` row (two workers running the
   job at once take turns).
2. Find the (site, day) keys touched since the watermark: any source row created or changed
   since then (Conversation created/updated/resolved, Message created/completed/feedback,
   Handoff created/claimed/first reply/resolved, Rating created, LLMCall created). A row is
   mapped to the day its fact is counted on (below), not the day it changed: a late rating
   recomputes the day its conversation started. Also touched: conversations that crossed the
   24 h idle line since the last run, and the recent conversations of a visitor who started a
   new one (they may now count as reopened).
3. Recompute those keys completely from the source tables, in the database (GROUP BY site and
   day through the ORM, conditional counts, sums), and upsert the rows; rows of touched keys
   that no longer have any fact are deleted. All of it in one `transaction.atomic` together
   with moving the watermark.
4. Set the watermark to `now` minus `OVERLAP`, so a transaction that was in flight at `now`
   and commits later with an older timestamp is seen by the next run.

Recomputing whole days, never adding deltas, is what makes a re-run (or a run killed midway
and re-run: the transaction rolls back and the watermark stays) give the same tables and
never double count. `full=True` recomputes every day there is data for.

Percentiles: on PostgreSQL `percentile_cont(p) WITHIN GROUP (ORDER BY ...)` per group. SQLite
has no ordered-set aggregates; there the values of the touched days are read (one float per
bot answer or handoff) and the same linear interpolation is done in Python. That is fine for
the embedded single-machine default; production runs PostgreSQL.

Definitions (a conversation's outcome facts count on the day it started; message facts on
the day the message was stored; handoff facts on the day the handoff was created; LLM facts
on the day of the call; all days are UTC):

- conversations: conversations started.
- customer_messages / bot_answers: messages by the visitor / by the bot.
- escalated: conversations with at least one handoff (escalation rate = escalated /
  conversations).
- bot-only finished: no handoff, at least one bot answer, and either resolved or idle (no
  activity, `updated_at`) for more than 24 h at `now`.
- reopened_24h: a bot-only finished conversation whose visitor started another conversation
  within 24 h after it ended (resolved_at, or its last activity when idle).
- autonomous: bot-only finished and not reopened within 24 h.
- assisted: resolved, and an agent took at least one of its handoffs (claimed).
- handoffs / abandoned: handoffs created; the conversations with one of those handoffs
  abandoned (the customer left before an agent claimed), each counted once however often
  it was handed off.
- human wait: handoff created -> claimed; first reply: created -> first agent reply;
  resolution: conversation started -> resolved (seconds).
- bot first token: `first_token_ms` of bot answers.
- CSAT: ratings of the day's conversations; bot CSAT = ratings of conversations without a
  handoff, human CSAT = with one.
- llm_calls / llm_errors: calls, and calls whose outcome is not "ok"; tokens and cost are the
  calls' (every kind: chat, summary, moderation, embedding).
- cache_hits / curated_hits: bot answers served from the cache / a curated answer.
- thumbs_up / thumbs_down: feedback on bot answers, on the answer's day.

Hourly rows (a smaller set) are kept for today and yesterday only; older ones are pruned.
"""

import math
import time as clock
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import (
    Aggregate,
    Count,
    DateTimeField,
    Exists,
    ExpressionWrapper,
    F,
    FloatField,
    Func,
    OuterRef,
    Q,
    QuerySet,
    Sum,
)
from django.db.models.functions import Coalesce, TruncDate, TruncHour
from django.utils import timezone

from analytics.models import AggregationState, DailySiteStats, HandoffReasonStats, HourlySiteStats
from bots.models import LLMCall
from handoff.models import Handoff, Rating
from helpdesk.models import Conversation, Message

STATE_NAME = "daily-site-stats"
# Transactions still open at `now` may commit rows stamped a little earlier.
OVERLAP = timedelta(minutes=5)
IDLE_AFTER = timedelta(hours=24)
REOPEN_WITHIN = timedelta(hours=24)

Key = tuple[int, date]


class PercentileCont(Aggregate):
    """PostgreSQL's `percentile_cont(p) WITHIN GROUP (ORDER BY expr)`."""

    function = "percentile_cont"
    template = "%(function)s(%(percentile)s) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()

    def __init__(self, expression, percentile: float, **extra):
        # A literal, not a parameter: it is part of the aggregate's signature.
        super().__init__(expression, percentile=repr(float(percentile)), **extra)


class EpochSeconds(Func):
    """Seconds between two timestamps, on PostgreSQL."""

    template = "EXTRACT(EPOCH FROM (%(expressions)s))"
    arg_joiner = " - "
    output_field = FloatField()


@dataclass
class AggregationReport:
    full: bool
    since: datetime | None
    watermark: datetime
    keys: int
    daily_rows: int
    hourly_rows: int
    reason_rows: int
    deleted_rows: int
    seconds: float

    def __str__(self) -> str:
        mode = "full" if self.full else f"incremental since {self.since:%Y-%m-%d %H:%M:%S}"
        return (
            f"{mode}: {self.keys} site-days recomputed, {self.daily_rows} daily, "
            f"{self.hourly_rows} hourly and {self.reason_rows} handoff-reason rows written, "
            f"{self.deleted_rows} stale rows deleted, in {self.seconds:.2f} s; "
            f"watermark {self.watermark:%Y-%m-%d %H:%M:%S}"
        )


def aggregate(*, now: datetime | None = None, full: bool = False) -> AggregationReport:
    started = clock.monotonic()
    now = now or timezone.now()
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # The per-conversation EXISTS subqueries inflate the planner's cost estimates past
            # jit_above_cost, and compiling them then costs more than running them: 0.9 s of
            # 1.0 s for a day of 11,000 conversations. For this transaction only.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL jit = off")
        state, _created = AggregationState.objects.get_or_create(name=STATE_NAME)
        state = AggregationState.objects.select_for_update().get(pk=state.pk)
        since = None if full else state.watermark
        keys = None if since is None else touched_keys(since=since, now=now)
        written = _recompute(keys, now=now)
        state.watermark = now - OVERLAP
        state.save(update_fields=["watermark", "updated_at"])
    return AggregationReport(
        full=since is None,
        since=since,
        watermark=state.watermark,
        keys=written["keys"],
        daily_rows=written["daily"],
        hourly_rows=written["hourly"],
        reason_rows=written["reasons"],
        deleted_rows=written["deleted"],
        seconds=clock.monotonic() - started,
    )


# Which (site, day) keys changed.


def _keys(qs: QuerySet, site: str, *days: str) -> set[Key]:
    """The distinct (site, day) of each row, for each of `days` (one scan of the table)."""
    rows = qs.order_by().values_list(site, *(TruncDate(day) for day in days)).distinct()
    return {(row[0], day) for row in rows for day in row[1:]}


def touched_keys(*, since: datetime, now: datetime) -> set[Key]:
    conversations = Conversation.objects.filter(
        Q(created_at__gte=since)
        | Q(updated_at__gte=since)
        | Q(resolved_at__gte=since)
        # Became idle (and so bot-only finished) between the last run and this one.
        | Q(updated_at__gte=since - IDLE_AFTER, updated_at__lt=now - IDLE_AFTER)
    )
    returning = Conversation.objects.filter(
        updated_at__gte=since - REOPEN_WITHIN,
        visitor__in=Conversation.objects.filter(created_at__gte=since).values("visitor_id"),
    )
    messages = Message.objects.filter(
        Q(created_at__gte=since) | Q(completed_at__gte=since) | Q(feedback_at__gte=since)
    )
    handoffs = Handoff.objects.filter(
        Q(created_at__gte=since)
        | Q(claimed_at__gte=since)
        | Q(first_reply_at__gte=since)
        | Q(resolved_at__gte=since)
    )
    ratings = Rating.objects.filter(created_at__gte=since)
    return (
        _keys(conversations, "site_id", "created_at")
        | _keys(returning, "site_id", "created_at")
        # A new answer can change its conversation's outcome (at least one bot answer).
        | _keys(messages, "conversation__site_id", "created_at", "conversation__created_at")
        | _keys(handoffs, "site_id", "created_at", "conversation__created_at")
        | _keys(ratings, "conversation__site_id", "conversation__created_at")
        | _keys(LLMCall.objects.filter(created_at__gte=since), "site_id", "created_at")
    )


# Recomputing.


def _day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def _scoped(qs: QuerySet, keys: set[Key] | None, *, site: str, day: str) -> QuerySet:
    """Only the rows of the touched sites and days (a superset of the keys; callers trim)."""
    if keys is None:
        return qs
    if not keys:
        return qs.none()
    days = Q()
    for d in sorted({d for _s, d in keys}):
        days |= Q(**{f"{day}__gte": _day_start(d), f"{day}__lt": _day_start(d + timedelta(1))})
    return qs.filter(days, **{f"{site}__in": {s for s, _d in keys}})


def _grouped(qs: QuerySet, keys, *, site: str, day: str, **aggregates) -> dict[Key, dict]:
    rows = (
        _scoped(qs, keys, site=site, day=day)
        .order_by()
        .values(sid=F(site), day=TruncDate(day))
        .annotate(**aggregates)
    )
    out = {}
    for row in rows:
        key = (row.pop("sid"), row.pop("day"))
        if keys is None or key in keys:
            out[key] = row
    return out


def _interpolate(values: list[float], p: float) -> float:
    """`percentile_cont`: linear interpolation between the closest ranks."""
    position = p * (len(values) - 1)
    lo, hi = math.floor(position), math.ceil(position)
    return values[lo] + (values[hi] - values[lo]) * (position - lo)


def _percentiles(
    qs: QuerySet, keys, *, site: str, day: str, value, **percentiles: float
) -> dict[Key, dict]:
    """Percentiles of `value` (a field, or a (start, end) pair: seconds between) per key."""
    if isinstance(value, tuple):
        start, end = value
        qs = qs.filter(**{f"{start}__isnull": False, f"{end}__isnull": False})
    else:
        qs = qs.filter(**{f"{value}__isnull": False})
    if connection.vendor == "postgresql":
        expr = EpochSeconds(F(value[1]), F(value[0])) if isinstance(value, tuple) else F(value)
        return _grouped(
            qs,
            keys,
            site=site,
            day=day,
            **{name: PercentileCont(expr, p) for name, p in percentiles.items()},
        )
    # SQLite: no ordered-set aggregate; read this day's values (few) and interpolate here.
    samples: dict[Key, list[float]] = defaultdict(list)
    columns = value if isinstance(value, tuple) else (value,)
    rows = _scoped(qs, keys, site=site, day=day).order_by().values_list(site, day, *columns)
    for sid, moment, *vals in rows:
        key = (sid, timezone.localtime(moment).date())
        if keys is not None and key not in keys:
            continue
        sample = (vals[1] - vals[0]).total_seconds() if isinstance(value, tuple) else vals[0]
        samples[key].append(sample)
    out = {}
    for key, vals in samples.items():
        vals.sort()
        out[key] = {name: _interpolate(vals, p) for name, p in percentiles.items()}
    return out


def _count_if(**conditions) -> Count:
    return Count("pk", filter=Q(**conditions))


def with_outcome_fields(conversations: QuerySet) -> QuerySet:
    """Annotate what `outcome_conditions()` refers to."""
    return conversations.annotate(
        reopen_deadline=ExpressionWrapper(
            Coalesce("resolved_at", "updated_at") + REOPEN_WITHIN, output_field=DateTimeField()
        )
    )


def outcome_conditions(*, now: datetime) -> dict[str, Q]:
    """Conditions on a conversation (annotated by `with_outcome_fields`) for each outcome."""
    with_handoff = Exists(Handoff.objects.filter(conversation=OuterRef("pk")))
    claimed = Exists(Handoff.objects.filter(conversation=OuterRef("pk"), claimed_at__isnull=False))
    bot_answered = Exists(
        Message.objects.filter(conversation=OuterRef("pk"), author=Message.Author.BOT)
    )
    came_back = Exists(
        Conversation.objects.filter(
            visitor=OuterRef("visitor"),
            created_at__gt=OuterRef("created_at"),
            created_at__lte=OuterRef("reopen_deadline"),
        ).exclude(pk=OuterRef("pk"))
    )
    bot_only_done = (
        ~Q(with_handoff)
        & Q(bot_answered)
        & (Q(status=Conversation.Status.RESOLVED) | Q(updated_at__lt=now - IDLE_AFTER))
    )
    return {
        "escalated": Q(with_handoff),
        "autonomous": bot_only_done & ~Q(came_back),
        "reopened_24h": bot_only_done & Q(came_back),
        "assisted": Q(claimed, status=Conversation.Status.RESOLVED),
    }


def _daily_facts(keys: set[Key] | None, *, now: datetime) -> dict[Key, dict]:
    facts: dict[Key, dict] = defaultdict(dict)

    def merge(part: dict[Key, dict]) -> None:
        for key, values in part.items():
            facts[key].update(values)

    # Conversations and their outcomes.
    outcome = outcome_conditions(now=now)
    conv_scope = {"site": "site_id", "day": "created_at"}
    merge(
        _grouped(
            with_outcome_fields(Conversation.objects.all()),
            keys,
            **conv_scope,
            conversations=Count("pk"),
            **{name: Count("pk", filter=condition) for name, condition in outcome.items()},
        )
    )
    merge(
        _percentiles(
            Conversation.objects.all(),
            keys,
            **conv_scope,
            value=("created_at", "resolved_at"),
            resolution_p50_s=0.5,
        )
    )

    # Ratings, on their conversation's day.
    rated_with_handoff = Exists(Handoff.objects.filter(conversation=OuterRef("conversation_id")))
    merge(
        _grouped(
            Rating.objects.all(),
            keys,
            site="conversation__site_id",
            day="conversation__created_at",
            csat_count=Count("pk"),
            csat_sum=Sum("score"),
            **{f"csat_{n}": _count_if(score=n) for n in range(1, 6)},
            bot_csat_count=Count("pk", filter=~Q(rated_with_handoff)),
            bot_csat_sum=Sum("score", filter=~Q(rated_with_handoff)),
            human_csat_count=Count("pk", filter=Q(rated_with_handoff)),
            human_csat_sum=Sum("score", filter=Q(rated_with_handoff)),
        )
    )

    # Messages.
    bot = Message.Author.BOT
    msg_scope = {"site": "conversation__site_id", "day": "created_at"}
    # On PostgreSQL the first-token percentiles come with the counts, in one scan.
    first_token = {"bot_first_token_p50_ms": 0.5, "bot_first_token_p95_ms": 0.95}
    answered = Q(author=bot, first_token_ms__isnull=False)
    in_one_scan = connection.vendor == "postgresql"
    merge(
        _grouped(
            Message.objects.all(),
            keys,
            **msg_scope,
            customer_messages=_count_if(author=Message.Author.VISITOR),
            bot_answers=_count_if(author=bot),
            cache_hits=_count_if(author=bot, answer_source="cache"),
            curated_hits=_count_if(author=bot, answer_source="curated"),
            thumbs_up=_count_if(author=bot, feedback=Message.Feedback.UP),
            thumbs_down=_count_if(author=bot, feedback=Message.Feedback.DOWN),
            **{
                name: PercentileCont(F("first_token_ms"), p, filter=answered)
                for name, p in first_token.items()
                if in_one_scan
            },
        )
    )
    if not in_one_scan:
        merge(
            _percentiles(
                Message.objects.filter(author=bot),
                keys,
                **msg_scope,
                value="first_token_ms",
                **first_token,
            )
        )

    # Handoffs.
    handoff_scope = {"site": "site_id", "day": "created_at"}
    merge(
        _grouped(
            Handoff.objects.all(),
            keys,
            **handoff_scope,
            handoffs=Count("pk"),
            abandoned=Count(
                "conversation", distinct=True, filter=Q(status=Handoff.Status.ABANDONED)
            ),
        )
    )
    merge(
        _percentiles(
            Handoff.objects.all(),
            keys,
            **handoff_scope,
            value=("created_at", "claimed_at"),
            human_wait_p50_s=0.5,
            human_wait_p95_s=0.95,
        )
    )
    merge(
        _percentiles(
            Handoff.objects.all(),
            keys,
            **handoff_scope,
            value=("created_at", "first_reply_at"),
            first_reply_p50_s=0.5,
            first_reply_p95_s=0.95,
        )
    )

    # LLM calls.
    merge(
        _grouped(
            LLMCall.objects.all(),
            keys,
            site="site_id",
            day="created_at",
            llm_calls=Count("pk"),
            llm_errors=Count("pk", filter=~Q(outcome="ok")),
            prompt_tokens=Sum("prompt_tokens"),
            completion_tokens=Sum("completion_tokens"),
            cost=Sum("cost"),
        )
    )
    return facts


def _hourly_facts(keys: set[Key] | None, *, since_day: date) -> dict[tuple, dict]:
    facts: dict[tuple, dict] = defaultdict(dict)
    if keys is None:
        keys_recent = None
        start = _day_start(since_day)
    else:
        keys_recent = {k for k in keys if k[1] >= since_day}
        if not keys_recent:
            return facts
        start = None

    def grouped(qs, *, site: str, moment: str, **aggregates) -> None:
        qs = _scoped(qs, keys_recent, site=site, day=moment)
        if start is not None:
            qs = qs.filter(**{f"{moment}__gte": start})
        rows = qs.order_by().values(sid=F(site), hour=TruncHour(moment)).annotate(**aggregates)
        for row in rows:
            sid, hour = row.pop("sid"), row.pop("hour")
            if keys_recent is None or (sid, timezone.localtime(hour).date()) in keys_recent:
                facts[(sid, hour)].update(row)

    grouped(
        Conversation.objects.all(), site="site_id", moment="created_at", conversations=Count("pk")
    )
    grouped(
        Message.objects.all(),
        site="conversation__site_id",
        moment="created_at",
        customer_messages=_count_if(author=Message.Author.VISITOR),
        bot_answers=_count_if(author=Message.Author.BOT),
    )
    grouped(Handoff.objects.all(), site="site_id", moment="created_at", handoffs=Count("pk"))
    grouped(
        LLMCall.objects.all(),
        site="site_id",
        moment="created_at",
        llm_calls=Count("pk"),
        prompt_tokens=Sum("prompt_tokens"),
        completion_tokens=Sum("completion_tokens"),
        cost=Sum("cost"),
    )
    return facts


def _rows(model, key_fields: tuple[str, ...], facts: dict[tuple, dict]) -> list:
    rows = []
    for key, values in facts.items():
        fields = dict(zip(key_fields, key, strict=True))
        fields["site_id"] = fields.pop("site")
        # Sums over no rows are NULL; a count of nothing is 0.
        clean = {name: value for name, value in values.items() if value is not None}
        if "cost" in clean:
            clean["cost"] = Decimal(clean["cost"])
        rows.append(model(**fields, **clean))
    return rows


def _upsert(model, rows: list, unique_fields: list[str]) -> int:
    """Insert or overwrite every field of rows by their natural key."""
    if not rows:
        return 0
    update_fields = [
        f.name
        for f in model._meta.concrete_fields
        if not f.primary_key and f.name not in unique_fields
    ]
    model.objects.bulk_create(
        rows,
        batch_size=1000,
        update_conflicts=True,
        unique_fields=unique_fields,
        update_fields=update_fields,
    )
    return len(rows)


def _delete_stale(model, keys: set[Key] | None, kept: set[tuple], key_of, moment: str) -> int:
    """Delete rows of the recomputed keys that the recomputation did not produce."""
    qs = model.objects.all()
    if keys is not None:
        qs = (
            _scoped(qs, keys, site="site_id", day=moment)
            if moment == "hour"
            else qs.filter(site_id__in={s for s, _d in keys}, day__in={d for _s, d in keys})
        )
    stale = [
        pk
        for pk, *key in qs.values_list("pk", *key_of)
        if (keys is None or _key_of_row(key, moment) in keys) and tuple(key) not in kept
    ]
    deleted = 0
    for start in range(0, len(stale), 1000):
        deleted += model.objects.filter(pk__in=stale[start : start + 1000]).delete()[0]
    return deleted


def _key_of_row(key: list, moment: str) -> Key:
    site_id, when = key[0], key[1]
    return (site_id, timezone.localtime(when).date() if moment == "hour" else when)


def _recompute(keys: set[Key] | None, *, now: datetime) -> dict[str, int]:
    daily = _daily_facts(keys, now=now)
    # An empty key set on an incremental run writes and deletes nothing.
    since_day = timezone.localtime(now).date() - timedelta(days=1)
    hourly = _hourly_facts(keys, since_day=since_day)

    reasons_qs = _scoped(Handoff.objects.all(), keys, site="site_id", day="created_at")
    reasons = {}
    for row in (
        reasons_qs.order_by()
        .values("site_id", "rule", day=TruncDate("created_at"))
        .annotate(count=Count("pk"))
    ):
        if keys is None or (row["site_id"], row["day"]) in keys:
            reasons[(row["site_id"], row["day"], row["rule"])] = {"count": row["count"]}

    written = {
        "keys": len(daily) if keys is None else len(keys),
        "daily": _upsert(
            DailySiteStats, _rows(DailySiteStats, ("site", "day"), daily), ["site", "day"]
        ),
        "hourly": _upsert(
            HourlySiteStats, _rows(HourlySiteStats, ("site", "hour"), hourly), ["site", "hour"]
        ),
        "reasons": _upsert(
            HandoffReasonStats,
            _rows(HandoffReasonStats, ("site", "day", "rule"), reasons),
            ["site", "day", "rule"],
        ),
    }
    deleted = _delete_stale(DailySiteStats, keys, set(daily), ("site_id", "day"), "day")
    deleted += _delete_stale(
        HandoffReasonStats, keys, set(reasons), ("site_id", "day", "rule"), "day"
    )
    recent = None if keys is None else {k for k in keys if k[1] >= since_day}
    if recent is None or recent:
        deleted += _delete_stale(HourlySiteStats, recent, set(hourly), ("site_id", "hour"), "hour")
    deleted += HourlySiteStats.objects.filter(hour__lt=_day_start(since_day)).delete()[0]
    written["deleted"] = deleted
    return written
