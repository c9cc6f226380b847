"""Reads for the reports.

Figures (`site_summary`, `daily_series`, `handoff_reasons`) read the aggregate tables only, so
a report page costs a few queries whatever the data volume. The drill-down
(`conversations_for`) and the conversation export read the source tables, one page or one
batch at a time.

`site_ids=None` means every site; `start` and `end` are dates, both included (UTC days).
"""

from collections.abc import Iterable, Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.core.paginator import Page, Paginator
from django.db.models import (
    Avg,
    BooleanField,
    Case,
    CharField,
    Count,
    DecimalField,
    Exists,
    ExpressionWrapper,
    FloatField,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from analytics.aggregation import outcome_conditions, with_outcome_fields
from analytics.models import (
    DailySiteStats,
    HandoffReasonStats,
    QuestionTopic,
    TopicFix,
    TopicQuestion,
)
from bots.models import LLMCall
from handoff.models import Handoff
from helpdesk.models import Conversation, Message

SUMMED = [
    "conversations",
    "customer_messages",
    "bot_answers",
    "autonomous",
    "assisted",
    "reopened_24h",
    "escalated",
    "handoffs",
    "abandoned",
    "csat_count",
    "csat_sum",
    "csat_1",
    "csat_2",
    "csat_3",
    "csat_4",
    "csat_5",
    "bot_csat_count",
    "bot_csat_sum",
    "human_csat_count",
    "human_csat_sum",
    "llm_calls",
    "llm_errors",
    "prompt_tokens",
    "completion_tokens",
    "cost",
    "cache_hits",
    "curated_hits",
    "thumbs_up",
    "thumbs_down",
]
# Percentiles do not add up across days; over a range the report shows the mean of the daily
# values, which is close enough for a trend and keeps the page on the aggregate tables.
AVERAGED = [
    "bot_first_token_p50_ms",
    "bot_first_token_p95_ms",
    "human_wait_p50_s",
    "human_wait_p95_s",
    "first_reply_p50_s",
    "first_reply_p95_s",
    "resolution_p50_s",
]

# The figures a report can drill down into: conversations started in the range that...
DRILL_DOWNS = (
    "conversations",
    "autonomous",
    "assisted",
    "reopened_24h",
    "escalated",
    "rated",
    "bot_rated",
    "human_rated",
    "low_rating",
    # ...or that had, in the range, one of these:
    "customer_messages",
    "bot_answers",
    "llm_calls",
    "handoffs",
    "abandoned",
    "thumbs_up",
    "thumbs_down",
    "cache_hits",
    "curated_hits",
    "llm_errors",
    # ...or, whatever the range, whose customer asked a question of the `topic` (a topic key),
    # after the fix went live when `fix` is given (before it was made, with `before_fix`);
    # `outcome` narrows to the questions that
    # were escalated, answered by the bot, or got no article.
    "topic",
)
TOPIC_OUTCOMES = ("answered_by_bot", "escalated", "no_article")


def _ratio(part, whole) -> float | None:
    return float(part) / float(whole) if whole else None


def _with_rates(row: dict) -> dict:
    tokens = (row.get("prompt_tokens") or 0) + (row.get("completion_tokens") or 0)
    cost = row.get("cost") or Decimal(0)
    row["total_tokens"] = tokens
    row["escalation_rate"] = _ratio(row["escalated"], row["conversations"])
    row["autonomous_rate"] = _ratio(row["autonomous"], row["conversations"])
    row["assisted_rate"] = _ratio(row["assisted"], row["conversations"])
    row["error_rate"] = _ratio(row["llm_errors"], row["llm_calls"])
    row["success_rate"] = None if row["error_rate"] is None else 1 - row["error_rate"]
    row["cache_hit_rate"] = _ratio(row["cache_hits"], row["bot_answers"])
    row["curated_rate"] = _ratio(row["curated_hits"], row["bot_answers"])
    row["cost_per_1k_tokens"] = cost * 1000 / tokens if tokens else None
    row["csat_avg"] = _ratio(row["csat_sum"], row["csat_count"])
    row["bot_csat_avg"] = _ratio(row["bot_csat_sum"], row["bot_csat_count"])
    row["human_csat_avg"] = _ratio(row["human_csat_sum"], row["human_csat_count"])
    row["thumbs_up_rate"] = _ratio(row["thumbs_up"], row["thumbs_up"] + row["thumbs_down"])
    return row


def _stats(site_ids: Iterable[int] | None, start: date, end: date) -> QuerySet:
    qs = DailySiteStats.objects.filter(day__gte=start, day__lte=end)
    if site_ids is not None:
        qs = qs.filter(site_id__in=list(site_ids))
    return qs


# The number of site-days with a sample behind each AVERAGED figure of `daily_series`.
SAMPLES = {name: f"{name}_samples" for name in AVERAGED}


def daily_series(site_ids: Iterable[int] | None, start: date, end: date) -> list[dict]:
    """One row per day with data (the selected sites together), oldest first.

    Each AVERAGED figure comes with its number of samples (SAMPLES), so that days add up to
    the exact mean of a longer range (`summarize`, `by_period`).
    """
    # A day's group has rows, and the counts are not null: no Coalesce to compile. The
    # samples first: once annotated, `name` is the average, not the column.
    totals = {
        **{SAMPLES[name]: Count(name) for name in AVERAGED},
        **{name: Sum(name) for name in SUMMED},
        **{name: Avg(name) for name in AVERAGED},
    }
    rows = _stats(site_ids, start, end).order_by("day").values("day").annotate(**totals)
    return [_with_rates(row) for row in rows]


def _combine(rows: list[dict]) -> dict:
    """The totals and rates of daily rows: the counts summed, each percentile the mean over
    its site-day samples, as AVG over the stored rows would give."""
    # One pass over the rows, adding in place: a year of days is summed twice per page, and
    # a generator or tuple per row and figure cost more than the additions.
    total = dict.fromkeys(SUMMED, 0)
    total["cost"] = Decimal(0)
    weighted = dict.fromkeys(AVERAGED, 0.0)
    samples = dict.fromkeys(AVERAGED, 0)
    for row in rows:
        for name in SUMMED:
            total[name] += row[name]
        for name in AVERAGED:
            if n := row[SAMPLES[name]]:
                weighted[name] += row[name] * n
                samples[name] += n
    for name in AVERAGED:
        total[name] = weighted[name] / samples[name] if samples[name] else None
        total[SAMPLES[name]] = samples[name]
    return _with_rates(total)


def summarize(daily: list[dict]) -> dict:
    """Totals and rates over the range of `daily_series` rows, and `csat_distribution`.

    The dashboard has read the days for its charts already: summing them in Python spares
    a second aggregate query over the same rows.
    """
    row = _combine(daily)
    row["csat_distribution"] = {n: row[f"csat_{n}"] for n in range(1, 6)}
    return row


def site_summary(site_ids: Iterable[int] | None, start: date, end: date) -> dict:
    """Totals and rates over the range, in one query."""
    return summarize(daily_series(site_ids, start, end))


# The dashboard's table of figures by period: the finest period that keeps it to TABLE_ROWS
# rows. A year of 365 linked rows cost most of the page's time and nobody reads it; the
# charts and the daily CSV keep every day.
PERIODS = ("day", "week", "month")
TABLE_ROWS = 92


def period_start(day: date, period: str) -> date:
    """The first day of the period (weeks start on Monday) that holds `day`."""
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return day


def period_end(first: date, period: str) -> date:
    """The last day of the period that starts on `first`."""
    if period == "week":
        return first + timedelta(days=6)
    if period == "month":
        return (first + timedelta(days=31)).replace(day=1) - timedelta(days=1)
    return first


def table_period(start: date, end: date) -> str:
    """The finest of PERIODS whose rows over the range fit in TABLE_ROWS."""
    if (end - start).days + 1 <= TABLE_ROWS:
        return "day"
    weeks = (period_start(end, "week") - period_start(start, "week")).days // 7 + 1
    return "week" if weeks <= TABLE_ROWS else "month"


def by_period(daily: Iterable[dict], start: date, end: date, period: str) -> list[dict]:
    """The rows of `daily_series` over the range summed by period, oldest first.

    One row per period with data, with the figures of `daily_series` plus `start` and `end`,
    the period's first and last day within the range. In Python from the daily rows the
    page has already read: no second query.
    """
    groups: dict[date, list[dict]] = {}
    for row in daily:
        groups.setdefault(period_start(row["day"], period), []).append(row)
    out = []
    for first, rows in groups.items():
        total = _combine(rows)
        total["start"] = max(first, start)
        total["end"] = min(period_end(first, period), end)
        out.append(total)
    return out


def handoff_reasons(site_ids: Iterable[int] | None, start: date, end: date) -> list[dict]:
    """Handoffs per escalation rule, most frequent first: [{"rule", "label", "count"}]."""
    qs = HandoffReasonStats.objects.filter(day__gte=start, day__lte=end)
    if site_ids is not None:
        qs = qs.filter(site_id__in=list(site_ids))
    labels = dict(Handoff.Rule.choices)
    rows = qs.order_by().values("rule").annotate(count=Sum("count")).order_by("-count", "rule")
    return [{**row, "label": str(labels.get(row["rule"], row["rule"]))} for row in rows]


def _bounds(start: date, end: date) -> tuple[datetime, datetime]:
    return (
        timezone.make_aware(datetime.combine(start, time.min)),
        timezone.make_aware(datetime.combine(end + timedelta(days=1), time.min)),
    )


def _drill_down(
    site_ids: Iterable[int] | None,
    start: date,
    end: date,
    metric: str | None,
    *,
    rule: str | None = None,
    score: int | None = None,
    topic: str | None = None,
    outcome: str | None = None,
    fix: TopicFix | None = None,
    before_fix: bool = False,
) -> QuerySet:
    metric = metric or "conversations"
    if metric not in DRILL_DOWNS:
        raise ValueError(f"Unknown metric {metric!r}; one of: {', '.join(DRILL_DOWNS)}")
    lo, hi = _bounds(start, end)
    qs = Conversation.objects.all()
    if site_ids is not None:
        qs = qs.filter(site_id__in=list(site_ids))
    if metric == "topic":
        # Topics cover their own window (the last 30 days when computed), not the range.
        asked = TopicQuestion.objects.filter(topic__key=topic, conversation=OuterRef("pk"))
        if fix is not None and before_fix:
            asked = asked.filter(asked_at__lt=fix.created_at)
        elif fix is not None:
            asked = asked.filter(asked_at__gte=fix.fixed_at) if fix.fixed_at else asked.none()
        if outcome is not None:
            if outcome not in TOPIC_OUTCOMES:
                raise ValueError(f"Unknown outcome {outcome!r}; one of: {TOPIC_OUTCOMES}")
            asked = asked.filter(**{outcome: True})
        return qs.filter(Exists(asked))
    started = Q(created_at__gte=lo, created_at__lt=hi)
    in_range = {"created_at__gte": lo, "created_at__lt": hi}
    bot = Message.Author.BOT
    had = {
        "customer_messages": Message.objects.filter(author=Message.Author.VISITOR, **in_range),
        "bot_answers": Message.objects.filter(author=bot, **in_range),
        "llm_calls": LLMCall.objects.filter(**in_range),
        "handoffs": Handoff.objects.filter(**in_range),
        "abandoned": Handoff.objects.filter(status=Handoff.Status.ABANDONED, **in_range),
        "thumbs_up": Message.objects.filter(author=bot, feedback="up", **in_range),
        "thumbs_down": Message.objects.filter(author=bot, feedback="down", **in_range),
        "cache_hits": Message.objects.filter(author=bot, answer_source="cache", **in_range),
        "curated_hits": Message.objects.filter(author=bot, answer_source="curated", **in_range),
        "llm_errors": LLMCall.objects.filter(**in_range).exclude(outcome="ok"),
    }
    if rule:
        # The escalation-reasons table: handoffs in the range caused by one rule.
        had["handoffs"] = had["handoffs"].filter(rule=rule)
    if metric in had:
        return qs.filter(Exists(had[metric].filter(conversation=OuterRef("pk"))))
    qs = qs.filter(started)
    if metric in ("rated", "bot_rated", "human_rated"):
        # The CSAT figures: bot CSAT is conversations without a handoff, human with one.
        qs = qs.filter(rating__isnull=False)
        if score is not None:
            qs = qs.filter(rating__score=score)
        with_handoff = Exists(Handoff.objects.filter(conversation=OuterRef("pk")))
        if metric == "bot_rated":
            return qs.filter(~Q(with_handoff))
        if metric == "human_rated":
            return qs.filter(with_handoff)
        return qs
    if metric == "low_rating":
        return qs.filter(rating__score__lte=2)
    if metric == "conversations":
        return qs
    return with_outcome_fields(qs).filter(outcome_conditions(now=timezone.now())[metric])


def conversations_for(
    site_ids: Iterable[int] | None,
    start: date,
    end: date,
    *,
    metric: str | None = None,
    rule: str | None = None,
    score: int | None = None,
    topic: str | None = None,
    outcome: str | None = None,
    fix: TopicFix | None = None,
    before_fix: bool = False,
    page: int = 1,
    per_page: int = 50,
) -> Page:
    """The conversations behind a figure, newest first; each has `site` and `rating` loaded.

    `rule` narrows "handoffs" to one escalation rule, `score` the rated ones to one score;
    "topic" needs `topic` (a topic key) and takes an `outcome` (TOPIC_OUTCOMES), and a `fix`
    for the questions after it went live (`before_fix`: asked before it was made).
    """
    qs = (
        _drill_down(
            site_ids,
            start,
            end,
            metric,
            rule=rule,
            score=score,
            topic=topic,
            outcome=outcome,
            fix=fix,
            before_fix=before_fix,
        )
        .select_related("site", "visitor", "rating")
        .order_by("-created_at", "-pk")
    )
    return Paginator(qs, per_page).get_page(page)


EXPORT_COLUMNS = [
    "conversation",
    "site",
    "started",
    "resolved",
    "status",
    "outcome",
    "handoff_reason",
    "rating",
    "prompt_tokens",
    "completion_tokens",
    "cost",
]


def conversation_export_rows(
    site_ids: Iterable[int] | None, start: date, end: date, *, batch_size: int = 2000
) -> Iterator[dict]:
    """One dict per conversation started in the range (keys: EXPORT_COLUMNS), oldest first.

    Read in batches by primary key, so a year of conversations streams into a CSV without
    holding it in memory or paying for OFFSET.
    """
    lo, hi = _bounds(start, end)
    qs = Conversation.objects.filter(created_at__gte=lo, created_at__lt=hi)
    if site_ids is not None:
        qs = qs.filter(site_id__in=list(site_ids))
    outcome = outcome_conditions(now=timezone.now())
    calls = LLMCall.objects.filter(conversation=OuterRef("pk")).order_by().values("conversation")

    def call_sum(field: str, output) -> Subquery:
        return Subquery(calls.annotate(total=Sum(field)).values("total"), output_field=output)

    first_rule = Subquery(
        Handoff.objects.filter(conversation=OuterRef("pk"))
        .order_by("created_at")
        .values("rule")[:1]
    )
    abandoned_only = Exists(Handoff.objects.filter(conversation=OuterRef("pk"))) & ~Exists(
        Handoff.objects.filter(conversation=OuterRef("pk")).exclude(status=Handoff.Status.ABANDONED)
    )
    qs = with_outcome_fields(qs).annotate(
        outcome=Case(
            When(outcome["autonomous"], then=Value("autonomous")),
            When(outcome["reopened_24h"], then=Value("reopened")),
            When(outcome["assisted"], then=Value("assisted")),
            When(
                ExpressionWrapper(abandoned_only, output_field=BooleanField()),
                then=Value("abandoned"),
            ),
            When(outcome["escalated"], then=Value("escalated")),
            default=Value("open"),
            output_field=CharField(),
        ),
        handoff_reason=Coalesce(first_rule, Value("")),
        call_prompt_tokens=Coalesce(call_sum("prompt_tokens", IntegerField()), 0),
        call_completion_tokens=Coalesce(call_sum("completion_tokens", IntegerField()), 0),
        call_cost=call_sum("cost", DecimalField(max_digits=14, decimal_places=6)),
    )
    fields = [
        "pk",
        "site__name",
        "created_at",
        "resolved_at",
        "status",
        "outcome",
        "handoff_reason",
        "rating__score",
        "call_prompt_tokens",
        "call_completion_tokens",
        "call_cost",
    ]
    last_pk = 0
    while True:
        batch = list(qs.filter(pk__gt=last_pk).order_by("pk").values_list(*fields)[:batch_size])
        for row in batch:
            out = dict(zip(EXPORT_COLUMNS, row, strict=True))
            out["cost"] = out["cost"] or Decimal(0)
            yield out
        if len(batch) < batch_size:
            return
        last_pk = batch[-1][0]


# Topics, gaps and fixes: stored by analytics.topics, read here.


def _topics(site_ids: Iterable[int] | None) -> QuerySet:
    qs = QuestionTopic.objects.select_related("site")
    if site_ids is not None:
        qs = qs.filter(site_id__in=list(site_ids))
    return qs


def top_topics(site_ids: Iterable[int] | None, *, limit: int = 10) -> list[QuestionTopic]:
    """The most asked topics of the selected sites (each site's latest computation)."""
    return list(_topics(site_ids).order_by("-size", "label", "pk")[:limit])


def knowledge_gaps(site_ids: Iterable[int] | None, *, limit: int = 10) -> list[QuestionTopic]:
    """Topics that are frequent and poorly served, worst first (see clustering.gap_score)."""
    return list(
        _topics(site_ids).filter(gap_score__gt=0).order_by("-gap_score", "-size", "pk")[:limit]
    )


def _share(flag: str) -> Avg:
    # Not Cast(flag, FloatField()): PostgreSQL cannot cast a boolean to double precision.
    return Avg(Case(When(**{flag: True}, then=Value(1.0)), default=Value(0.0)))


def fix_results(site_ids: Iterable[int] | None, *, limit: int = 20) -> list[TopicFix]:
    """Recent fixes with the topic's figures before (as stored when the fix was made) and
    after (its questions asked since `fixed_at`): `after_size`, `after_escalated_share`,
    `after_no_article_share`, `after_average_rating`. One query."""
    after = (
        TopicQuestion.objects.filter(
            topic__key=OuterRef("topic_key"), asked_at__gte=OuterRef("fixed_at")
        )
        .order_by()
        .values("topic__key")
    )

    def measured(aggregate, output) -> Subquery:
        return Subquery(after.annotate(v=aggregate).values("v"), output_field=output)

    # The table shows an article's title only: not its body, possibly many kilobytes each.
    qs = TopicFix.objects.select_related("site", "article", "curated_answer").defer(
        "article__body", "curated_answer__question", "curated_answer__answer"
    )
    if site_ids is not None:
        qs = qs.filter(site_id__in=list(site_ids))
    return list(
        qs.annotate(
            after_size=Coalesce(measured(Count("pk"), IntegerField()), 0),
            after_escalated_share=measured(_share("escalated"), FloatField()),
            after_no_article_share=measured(_share("no_article"), FloatField()),
            after_average_rating=measured(Avg("rating"), FloatField()),
        ).order_by("-created_at", "-pk")[:limit]
    )
