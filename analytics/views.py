"""The managers' report pages in the admin: the dashboard, its drill-downs, CSV exports and
the per-site cost view.

Figures come from the aggregate tables through analytics.selectors, so the dashboard costs
the same handful of queries for a week of one site or a year of ten. Only the drill-down and
the conversation export read the source tables, a page or a batch at a time.
"""

import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from urllib.parse import urlencode

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from analytics import selectors
from analytics.exports import csv_response
from analytics.models import DailySiteStats, QuestionTopic, TopicFix
from analytics.services import create_fix, month_to_date_tokens
from handoff.models import Handoff
from helpdesk.models import Site

DEFAULT_DAYS = 30
RATED_METRICS = ("rated", "bot_rated", "human_rated")
# Budget thresholds of the cost view: a warning at 80 %, an alert at 100 %.
BUDGET_WARNING = Decimal("0.8")
BUDGET_OVER = Decimal(1)


def is_manager(user) -> bool:
    """Superusers and the Managers group see reports; agents do not.

    Remembered on the user object: the admin's app list asks once per report table.
    """
    cached = getattr(user, "_analytics_is_manager", None)
    if cached is None:
        cached = user.is_active and (
            user.is_superuser or user.groups.filter(name="Managers").exists()
        )
        user._analytics_is_manager = cached
    return cached


def _require_manager(request: HttpRequest) -> None:
    # admin_view has already sent anonymous and non-staff users to the login page.
    if not is_manager(request.user):
        raise PermissionDenied


@dataclass(frozen=True)
class Filters:
    start: date
    end: date
    site_ids: list[int] | None  # None: every site

    def query(self, **extra) -> str:
        params = {"start": self.start.isoformat(), "end": self.end.isoformat(), **extra}
        if self.site_ids:
            params["site"] = self.site_ids
        return urlencode(params, doseq=True)


def _filters(request: HttpRequest) -> Filters:
    """Date range (default: the last 30 days, today included) and sites from the query."""
    today = timezone.now().date()
    end = _date(request.GET.get("end")) or today
    start = _date(request.GET.get("start")) or end - timedelta(days=DEFAULT_DAYS - 1)
    if start > end:
        start, end = end, start
    site_ids = sorted({int(v) for v in request.GET.getlist("site") if v.isdigit()})
    return Filters(start=start, end=end, site_ids=site_ids or None)


def _date(value: str | None) -> date | None:
    try:
        return parse_date(value or "")
    except ValueError:
        return None


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1%}"


def _score(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f} / 5"


def _number(value, digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}"


def _whole_percent(value: float | None) -> str:
    # round() like the {% widthratio share 1 100 %} it replaces.
    return "—" if value is None else f"{round(value * 100)}%"


def _tiles(summary: dict) -> list[dict]:
    """The monitoring tiles: label, shown value, raw value, and the drill-down metric."""
    s = summary
    csat_note = _("%(count)s ratings") % {"count": s["csat_count"]}
    specs = [
        (
            "conversations",
            _("Conversations"),
            _number(s["conversations"]),
            s["conversations"],
            "conversations",
            "",
        ),
        (
            "customer_messages",
            _("Customer messages"),
            _number(s["customer_messages"]),
            s["customer_messages"],
            "customer_messages",
            _("%(n)s bot answers") % {"n": s["bot_answers"]},
        ),
        (
            "autonomous_rate",
            _("Resolved by the bot"),
            _percent(s["autonomous_rate"]),
            s["autonomous_rate"],
            "autonomous",
            _("%(n)s conversations") % {"n": s["autonomous"]},
        ),
        (
            "assisted_rate",
            _("Resolved with a human"),
            _percent(s["assisted_rate"]),
            s["assisted_rate"],
            "assisted",
            _("%(n)s conversations") % {"n": s["assisted"]},
        ),
        (
            "reopened_24h",
            _("Reopened within 24 h"),
            _number(s["reopened_24h"]),
            s["reopened_24h"],
            "reopened_24h",
            _("bot 'resolutions' the customer came back to"),
        ),
        (
            "escalation_rate",
            _("Escalation rate"),
            _percent(s["escalation_rate"]),
            s["escalation_rate"],
            "escalated",
            _("%(n)s conversations") % {"n": s["escalated"]},
        ),
        (
            "success_rate",
            _("Request success rate"),
            _percent(s["success_rate"]),
            s["success_rate"],
            "llm_errors",
            _("%(errors)s errors in %(calls)s LLM calls")
            % {"errors": s["llm_errors"], "calls": s["llm_calls"]},
        ),
        (
            "response_time_ms",
            _("Average response time"),
            "—"
            if s["bot_first_token_p50_ms"] is None
            else f"{s['bot_first_token_p50_ms']:,.0f} ms",
            s["bot_first_token_p50_ms"],
            "bot_answers",
            _("median time to first token"),
        ),
        (
            "human_wait_s",
            _("Human wait"),
            "—" if s["human_wait_p50_s"] is None else f"{s['human_wait_p50_s']:,.0f} s",
            s["human_wait_p50_s"],
            "handoffs",
            _("median, handoff to claim"),
        ),
        (
            "first_reply_s",
            _("First agent reply"),
            "—" if s["first_reply_p50_s"] is None else f"{s['first_reply_p50_s']:,.0f} s",
            s["first_reply_p50_s"],
            "handoffs",
            _("median, handoff to the agent's first message"),
        ),
        (
            "csat_avg",
            _("Satisfaction"),
            _score(s["csat_avg"]),
            s["csat_avg"],
            "rated",
            csat_note,
        ),
        (
            "bot_csat_avg",
            _("Bot satisfaction"),
            _score(s["bot_csat_avg"]),
            s["bot_csat_avg"],
            "bot_rated",
            _("conversations without a handoff, %(n)s ratings") % {"n": s["bot_csat_count"]},
        ),
        (
            "human_csat_avg",
            _("Human baseline satisfaction"),
            _score(s["human_csat_avg"]),
            s["human_csat_avg"],
            "human_rated",
            _("conversations with a handoff, %(n)s ratings") % {"n": s["human_csat_count"]},
        ),
        (
            "total_tokens",
            _("Tokens"),
            _number(s["total_tokens"]),
            s["total_tokens"],
            "llm_calls",
            _("%(n)s LLM calls") % {"n": s["llm_calls"]},
        ),
        ("cost", _("Cost"), f"{s['cost']:,.2f}", s["cost"], "llm_calls", ""),
        (
            "cost_per_1k_tokens",
            _("Cost per 1,000 tokens"),
            _number(s["cost_per_1k_tokens"], 4),
            s["cost_per_1k_tokens"],
            "llm_calls",
            "",
        ),
        (
            "cache_hit_rate",
            _("Cache hit rate"),
            _percent(s["cache_hit_rate"]),
            s["cache_hit_rate"],
            "cache_hits",
            _("%(n)s answers from the cache") % {"n": s["cache_hits"]},
        ),
        (
            "curated_hits",
            _("Curated answers"),
            _number(s["curated_hits"]),
            s["curated_hits"],
            "curated_hits",
            "",
        ),
        (
            "abandoned",
            _("Abandoned conversations"),
            _number(s["abandoned"]),
            s["abandoned"],
            "abandoned",
            "",
        ),
        (
            "thumbs_up",
            _("Thumbs up"),
            _number(s["thumbs_up"]),
            s["thumbs_up"],
            "thumbs_up",
            _("%(rate)s of the answers rated") % {"rate": _percent(s["thumbs_up_rate"])},
        ),
        (
            "thumbs_down",
            _("Thumbs down"),
            _number(s["thumbs_down"]),
            s["thumbs_down"],
            "thumbs_down",
            "",
        ),
    ]
    return [
        {
            "key": key,
            "label": label,
            "display": display,
            "value": value,
            "metric": metric,
            "note": note,
        }
        for key, label, display, value, metric, note in specs
    ]


def _chart_data(daily: list[dict], filters: Filters) -> dict:
    """Every day of the range as compact JSON for the charts; a day without data is null.

    Drill-down links are built by dashboard.js from `drilldown` and `sites`, not per point.
    """
    by_day = {row["day"]: row for row in daily}
    count = (filters.end - filters.start).days + 1
    days = [filters.start + timedelta(days=i) for i in range(count)]
    rows = [by_day.get(day) for day in days]

    def column(key, scale=1):
        # Three decimals are more than a chart shows, and keep a year of points compact.
        values = (row[key] if row else None for row in rows)
        return [None if value is None else round(float(value) * scale, 3) for value in values]

    return {
        "labels": [day.isoformat() for day in days],
        "drilldown": reverse("admin:analytics_conversations"),
        "sites": filters.site_ids or [],
        "charts": {
            "volume": {
                "metric": "conversations",
                "series": {
                    _("Conversations"): column("conversations"),
                    _("Customer messages"): column("customer_messages"),
                },
            },
            "resolution": {
                "metric": "escalated",
                "percent": True,
                "series": {
                    _("Resolved by the bot"): column("autonomous_rate", 100),
                    _("Escalation rate"): column("escalation_rate", 100),
                },
            },
            "times": {
                "metric": "handoffs",
                "series": {
                    _("Bot first token p50 (s)"): column("bot_first_token_p50_ms", 0.001),
                    _("Human wait p50 (s)"): column("human_wait_p50_s"),
                    _("First agent reply p50 (s)"): column("first_reply_p50_s"),
                },
            },
            "csat": {
                "metric": "rated",
                "series": {
                    _("Satisfaction (all)"): column("csat_avg"),
                    _("Bot only"): column("bot_csat_avg"),
                    _("With a human"): column("human_csat_avg"),
                },
            },
            "tokens": {
                "metric": "conversations",
                "series": {
                    _("Tokens"): column("total_tokens"),
                    _("Cost"): column("cost"),
                },
                "second_axis": _("Cost"),
            },
        },
    }


def _table(daily: list[dict], filters: Filters) -> dict:
    """The dashboard's table of figures by day, or by week or month over long ranges
    (selectors.table_period), newest first.

    Cells come formatted, with each row's drill-down filters: the template only prints them,
    which costs a fraction of formatting and localizing each one there.
    """
    period = selectors.table_period(filters.start, filters.end)
    drill = reverse("admin:analytics_conversations")
    rows = []
    for row in reversed(selectors.by_period(daily, filters.start, filters.end, period)):
        first, last = row["start"], row["end"]
        query = Filters(start=first, end=last, site_ids=filters.site_ids).query()
        rows.append(
            {
                "label": first.isoformat() if first == last else f"{first} – {last}",
                # The row's drill-down; each cell adds its metric.
                "url": f"{drill}?{query}",
                "conversations": _number(row["conversations"]),
                "customer_messages": _number(row["customer_messages"]),
                "autonomous": _number(row["autonomous"]),
                "escalated": _number(row["escalated"]),
                "csat_avg": _number(row["csat_avg"], 2),
                "total_tokens": _number(row["total_tokens"]),
                "cost": _number(row["cost"], 2),
            }
        )
    titles = {"day": _("By day"), "week": _("By week"), "month": _("By month")}
    columns = {"day": _("Day"), "week": _("Week"), "month": _("Month")}
    return {
        "period": period,
        "title": titles[period],
        "column": columns[period],
        # The CSV of the table as shown; the Trends CSV has every day.
        "export_query": filters.query() if period == "day" else filters.query(period=period),
        "max_days": selectors.TABLE_ROWS,
        "rows": rows,
    }


def _topic_rows(topics: list[QuestionTopic], filters: Filters) -> list[dict]:
    """Rows of the topic and gap tables: the topic, its shares formatted, its drill-down."""
    drill = reverse("admin:analytics_conversations")
    query = filters.query()
    return [
        {
            "topic": topic,
            "examples": " | ".join(topic.examples),
            # The topic's questions; a share's link adds its `outcome`.
            "url": f"{drill}?{query}&metric=topic&topic={topic.key}",
            "fix_url": reverse("admin:analytics_topic_fix", args=[topic.pk]),
            "size": str(topic.size),
            "answered_by_bot": _whole_percent(topic.answered_by_bot_share),
            "escalated": _whole_percent(topic.escalated_share),
            "no_article": _whole_percent(topic.no_article_share),
            "rating": _number(topic.average_rating, 2),
            "gap_score": _number(topic.gap_score, 2),
        }
        for topic in topics
    ]


def _fix_rows(fixes: list[TopicFix], filters: Filters) -> list[dict]:
    """Rows of the before-and-after table: each figure of a fix as "before / after"."""
    drill = reverse("admin:analytics_conversations")
    query = filters.query()
    rows = []
    for fix in fixes:
        measured = bool(fix.after_size)  # no share of no questions
        topic_url = f"{drill}?{query}&metric=topic&topic={fix.topic_key}&fix={fix.pk}"
        escalated = (
            _whole_percent(fix.before_escalated_share),
            _whole_percent(fix.after_escalated_share if measured else None),
        )
        no_article = (
            _whole_percent(fix.before_no_article_share),
            _whole_percent(fix.after_no_article_share if measured else None),
        )
        if fix.article_id:
            edit_url = reverse("admin:bots_article_change", args=[fix.article_id])
        elif fix.curated_answer_id:
            edit_url = reverse("admin:bots_curatedanswer_change", args=[fix.curated_answer_id])
        else:
            edit_url = ""
        rows.append(
            {
                "fix": fix,
                "edit_url": edit_url,
                "live_since": (
                    timezone.localtime(fix.fixed_at).strftime("%Y-%m-%d %H:%M")
                    if fix.fixed_at
                    else ""
                ),
                # The topic's questions asked before the fix was made, and since it went live.
                "before_url": f"{topic_url}&side=before",
                "after_url": topic_url if fix.fixed_at else "",
                "escalated": " / ".join(escalated),
                "escalated_before": escalated[0],
                "escalated_after": escalated[1],
                "no_article": " / ".join(no_article),
                "no_article_before": no_article[0],
                "no_article_after": no_article[1],
                "rating": " / ".join(
                    (
                        _number(fix.before_average_rating, 2),
                        _number(fix.after_average_rating, 2),
                    )
                ),
            }
        )
    return rows


def _admin_context(request: HttpRequest, title: str, filters: Filters | None, **extra) -> dict:
    context = {
        **admin.site.each_context(request),
        "opts": DailySiteStats._meta,
        "title": title,
    }
    if filters is not None:
        context.update(
            filters=filters,
            query=filters.query(),
            sites=Site.objects.order_by("name").only("pk", "name"),
            selected_sites=set(filters.site_ids or []),
        )
    return {**context, **extra}


def dashboard_view(request: HttpRequest) -> HttpResponse:
    _require_manager(request)
    filters = _filters(request)
    daily = selectors.daily_series(filters.site_ids, filters.start, filters.end)
    summary = selectors.summarize(daily)
    reasons = selectors.handoff_reasons(filters.site_ids, filters.start, filters.end)
    tiles = _tiles(summary)
    for tile in tiles:
        tile["url"] = f"{reverse('admin:analytics_conversations')}?" + filters.query(
            metric=tile["metric"]
        )
    for reason in reasons:
        reason["share"] = _percent(
            reason["count"] / summary["handoffs"] if summary["handoffs"] else None
        )
        reason["query"] = filters.query(metric="handoffs", rule=reason["rule"])
    user = request.user
    return TemplateResponse(
        request,
        "admin/analytics/dashboard.html",
        _admin_context(
            request,
            _("Reports"),
            filters,
            is_dashboard=True,
            summary=summary,
            tiles=tiles,
            table=_table(daily, filters),
            reasons=reasons,
            chart_data=_chart_data(daily, filters),
            csat_distribution=[
                {
                    "score": score,
                    "count": count,
                    "query": filters.query(metric="rated", score=score),
                }
                for score, count in sorted(summary["csat_distribution"].items())
            ],
            topics=_topic_rows(selectors.top_topics(filters.site_ids), filters),
            gaps=_topic_rows(selectors.knowledge_gaps(filters.site_ids), filters),
            fixes=_fix_rows(selectors.fix_results(filters.site_ids), filters),
            can_draft_article=user.has_perm("bots.add_article"),
            can_draft_curated=user.has_perm("bots.add_curatedanswer"),
        ),
    )


def conversations_view(request: HttpRequest) -> HttpResponse:
    _require_manager(request)
    filters = _filters(request)
    metric = request.GET.get("metric") or "conversations"
    if metric not in selectors.DRILL_DOWNS:
        return HttpResponseBadRequest(_("Unknown metric."))
    narrow = {}
    rule = request.GET.get("rule") or ""
    if rule:
        if rule not in Handoff.Rule.values:
            return HttpResponseBadRequest(_("Unknown escalation rule."))
        narrow["rule"] = rule
    score = request.GET.get("score") or ""
    if score:
        if metric not in ("rated", "bot_rated", "human_rated") or score not in {
            "1",
            "2",
            "3",
            "4",
            "5",
        }:
            return HttpResponseBadRequest(_("Unknown score."))
        narrow["score"] = score
    topic = request.GET.get("topic") or ""
    outcome = request.GET.get("outcome") or ""
    fix = None
    if metric == "topic":
        if outcome:
            if outcome not in selectors.TOPIC_OUTCOMES:
                return HttpResponseBadRequest(_("Unknown outcome."))
            narrow["outcome"] = outcome
        try:
            topic = str(uuid.UUID(topic))
        except ValueError:
            return HttpResponseBadRequest(_("Unknown topic."))
        if request.GET.get("fix", "").isdigit():
            fix = get_object_or_404(TopicFix, pk=request.GET["fix"], topic_key=topic)
            narrow["fix"] = fix.pk
            side = request.GET.get("side") or "after"
            if side not in ("before", "after"):
                return HttpResponseBadRequest(_("Unknown side of a fix."))
            if side == "before":
                narrow["side"] = side
        narrow["topic"] = topic
    page = selectors.conversations_for(
        filters.site_ids,
        filters.start,
        filters.end,
        metric=metric,
        rule=rule or None,
        score=int(score) if score else None,
        topic=topic or None,
        outcome=outcome or None,
        fix=fix,
        before_fix=narrow.get("side") == "before",
        page=request.GET.get("page") or 1,
    )
    return TemplateResponse(
        request,
        "admin/analytics/conversations.html",
        _admin_context(
            request,
            _("Conversations behind “%(metric)s”") % {"metric": metric},
            filters,
            metric=metric,
            narrow=narrow,
            page_obj=page,
            page_query=filters.query(metric=metric, **narrow),
            metrics=selectors.DRILL_DOWNS,
        ),
    )


EXPORT_TABLES = (
    "tiles",
    "daily",
    "reasons",
    "csat",
    "topics",
    "gaps",
    "fixes",
    "costs",
    "conversations",
)
FIX_COLUMNS = [
    "site",
    "topic",
    "kind",
    "created_at",
    "live_since",
    "questions_before",
    "questions_after",
    "escalated_share_before",
    "escalated_share_after",
    "no_article_share_before",
    "no_article_share_after",
    "average_rating_before",
    "average_rating_after",
]
COST_COLUMNS = ["site", "month", "tokens", "cost", "monthly_token_budget", "budget_used", "level"]
TOPIC_COLUMNS = [
    "site",
    "label",
    "size",
    "answered_by_bot_share",
    "escalated_share",
    "no_article_share",
    "low_rating_share",
    "average_rating",
    "gap_score",
    "examples",
    "computed_at",
]
DAILY_COLUMNS = [
    "day",
    *selectors.SUMMED,
    *selectors.AVERAGED,
    "total_tokens",
    "escalation_rate",
    "autonomous_rate",
    "success_rate",
    "cost_per_1k_tokens",
    "csat_avg",
]


def export_view(request: HttpRequest, table: str) -> StreamingHttpResponse | HttpResponse:
    _require_manager(request)
    if table not in EXPORT_TABLES:
        return HttpResponseBadRequest(_("Unknown table."))
    f = _filters(request)
    name = f"{table}_{f.start.isoformat()}_{f.end.isoformat()}.csv"
    if table == "tiles":
        summary = selectors.site_summary(f.site_ids, f.start, f.end)
        rows = ((t["key"], t["label"], t["value"]) for t in _tiles(summary))
        return csv_response(name, ["figure", "label", "value"], rows)
    if table == "daily":
        # `period=week` or `month`: the dashboard's table over long ranges, as shown there.
        period = request.GET.get("period") or "day"
        if period not in selectors.PERIODS:
            return HttpResponseBadRequest(_("Unknown period."))
        series = selectors.daily_series(f.site_ids, f.start, f.end)
        figures = DAILY_COLUMNS[1:]
        if period == "day":
            rows = ([row["day"].isoformat(), *[row[c] for c in figures]] for row in series)
            return csv_response(name, DAILY_COLUMNS, rows)
        rows = (
            [row["start"].isoformat(), row["end"].isoformat(), *[row[c] for c in figures]]
            for row in selectors.by_period(series, f.start, f.end, period)
        )
        name = f"{period}ly_{f.start.isoformat()}_{f.end.isoformat()}.csv"
        return csv_response(name, ["start", "end", *figures], rows)
    if table == "reasons":
        reasons = selectors.handoff_reasons(f.site_ids, f.start, f.end)
        return csv_response(
            name, ["rule", "label", "count"], ((r["rule"], r["label"], r["count"]) for r in reasons)
        )
    if table == "csat":
        distribution = selectors.site_summary(f.site_ids, f.start, f.end)["csat_distribution"]
        return csv_response(name, ["score", "ratings"], sorted(distribution.items()))
    if table == "fixes":
        fixes = selectors.fix_results(f.site_ids, limit=TopicFix.objects.count())
        rows = (
            [
                fix.site.name,
                fix.label,
                "article" if fix.article_id else "curated" if fix.curated_answer_id else "",
                fix.created_at.isoformat(),
                fix.fixed_at.isoformat() if fix.fixed_at else "",
                fix.before_size,
                fix.after_size if fix.fixed_at else "",
                fix.before_escalated_share,
                fix.after_escalated_share,
                fix.before_no_article_share,
                fix.after_no_article_share,
                fix.before_average_rating,
                fix.after_average_rating,
            ]
            for fix in fixes
        )
        return csv_response(name, FIX_COLUMNS, rows)
    if table == "costs":
        # Month to date, like the cost view: the date range does not apply.
        today = timezone.now().date()
        rows = (
            [
                row["site"].name,
                today.strftime("%Y-%m"),
                row["tokens"],
                row["cost"],
                row["budget"],
                row["share"],
                row["level"],
            ]
            for row in month_to_date_costs(today)
        )
        return csv_response(f"costs_{today:%Y-%m}.csv", COST_COLUMNS, rows)
    if table in ("topics", "gaps"):
        # Every stored topic (not the dashboard's top ten), in the table's order.
        limit = QuestionTopic.objects.count()
        pick = selectors.top_topics if table == "topics" else selectors.knowledge_gaps
        rows = (
            [
                t.site.name,
                t.label,
                t.size,
                t.answered_by_bot_share,
                t.escalated_share,
                t.no_article_share,
                t.low_rating_share,
                t.average_rating,
                t.gap_score,
                " | ".join(t.examples),
                t.computed_at.isoformat(),
            ]
            for t in pick(f.site_ids, limit=limit)
        )
        return csv_response(name, TOPIC_COLUMNS, rows)
    export = selectors.conversation_export_rows(f.site_ids, f.start, f.end)
    rows = (
        [
            row[col].isoformat() if hasattr(row[col], "isoformat") else row[col]
            for col in selectors.EXPORT_COLUMNS
        ]
        for row in export
    )
    return csv_response(name, selectors.EXPORT_COLUMNS, rows)


def month_to_date_costs(today: date) -> list[dict]:
    """Tokens and cost of the current calendar month per site, against the site's budget.

    From the daily aggregates: two queries whatever the number of sites or days.
    """
    usage = month_to_date_tokens(today)
    rows = []
    for site in Site.objects.select_related("bot_config").order_by("name"):
        used = usage.get(site.pk, {})
        tokens = (used.get("prompt") or 0) + (used.get("completion") or 0)
        config = getattr(site, "bot_config", None)
        budget = config.monthly_token_budget if config else None
        share = Decimal(tokens) / Decimal(budget) if budget else None
        if share is None:
            level = "none"
        elif share >= BUDGET_OVER:
            level = "over"
        elif share >= BUDGET_WARNING:
            level = "warning"
        else:
            level = "ok"
        rows.append(
            {
                "site": site,
                # The conversations behind the month's LLM calls of this site.
                "query": Filters(start=today.replace(day=1), end=today, site_ids=[site.pk]).query(
                    metric="llm_calls"
                ),
                "tokens": tokens,
                "cost": used.get("cost") or Decimal(0),
                "budget": budget,
                "share": share,
                "share_display": "—" if share is None else f"{share:.0%}",
                "level": level,
            }
        )
    return rows


def costs_view(request: HttpRequest) -> HttpResponse:
    _require_manager(request)
    today = timezone.now().date()
    return TemplateResponse(
        request,
        "admin/analytics/costs.html",
        _admin_context(
            request,
            _("Cost per site, month to date"),
            None,
            rows=month_to_date_costs(today),
            month_start=today.replace(day=1),
            today=today,
        ),
    )


@require_POST
def topic_fix_view(request: HttpRequest, topic_id: int) -> HttpResponse:
    """From a gap: create a draft article or an inactive curated answer prefilled from the
    topic, record the fix, and open the new record's admin page to finish it."""
    _require_manager(request)
    kind = request.POST.get("kind")
    permission = {"article": "bots.add_article", "curated": "bots.add_curatedanswer"}.get(
        kind or ""
    )
    if permission is None:
        return HttpResponseBadRequest(_("Unknown kind of fix."))
    if not request.user.has_perm(permission):
        raise PermissionDenied
    topic = get_object_or_404(QuestionTopic, pk=topic_id)
    fix = create_fix(topic=topic, kind=kind, user=request.user)
    if fix.article_id:
        return HttpResponseRedirect(reverse("admin:bots_article_change", args=[fix.article_id]))
    return HttpResponseRedirect(
        reverse("admin:bots_curatedanswer_change", args=[fix.curated_answer_id])
    )
