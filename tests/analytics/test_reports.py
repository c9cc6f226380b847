"""The managers' reports in the admin: access, figures from the aggregate tables, drill-downs,
CSV exports and the per-site cost view."""

import csv
import io
import uuid
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.staticfiles import finders
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from analytics import selectors
from analytics.exports import safe_cell
from analytics.models import DailySiteStats, HandoffReasonStats, QuestionTopic, TopicFix
from analytics.views import EXPORT_TABLES
from bots.models import Article, BotConfig
from handoff.models import Handoff, Rating
from helpdesk.models import Conversation, Visitor
from tests.conftest import make_site

pytestmark = pytest.mark.django_db

DASHBOARD = "admin:analytics_dashboard"
PAGES = [
    (DASHBOARD, ()),
    ("admin:analytics_conversations", ()),
    *(("admin:analytics_export", (table,)) for table in EXPORT_TABLES),
    ("admin:analytics_costs", ()),
]


def make_user(django_user_model, username, *, group=None, **fields):
    user = django_user_model.objects.create_user(username, password="pw", is_staff=True, **fields)
    if group:
        user.groups.add(Group.objects.get_or_create(name=group)[0])
    return user


@pytest.fixture
def manager(django_user_model):
    return make_user(django_user_model, "maria", group="Managers")


@pytest.fixture
def agent(django_user_model):
    return make_user(django_user_model, "alex", group="Agents")


@pytest.fixture
def manager_client(client, manager):
    client.force_login(manager)
    return client


def today():
    return timezone.now().date()


def stats(site, day, **fields):
    return DailySiteStats.objects.create(site=site, day=day, **fields)


def conversation(site, day, *, score=None, hour=12):
    visitor = Visitor.objects.create(site=site)
    conv = Conversation.objects.create(site=site, visitor=visitor)
    started = timezone.make_aware(datetime.combine(day, time(hour)))
    # created_at is auto_now_add: move it to the day the test needs.
    Conversation.objects.filter(pk=conv.pk).update(created_at=started, updated_at=started)
    if score is not None:
        Rating.objects.create(conversation=conv, score=score)
    return conv


def read_csv(response):
    body = b"".join(response.streaming_content).decode("utf-8")
    assert body.startswith("\ufeff"), "UTF-8 BOM for Excel"
    return list(csv.reader(io.StringIO(body[1:])))


# Access


@pytest.mark.parametrize(("name", "args"), PAGES)
def test_anonymous_is_sent_to_login(client, name, args):
    response = client.get(reverse(name, args=args))
    assert response.status_code == 302
    assert reverse("admin:login") in response["Location"]


@pytest.mark.parametrize(("name", "args"), PAGES)
def test_agent_is_refused(client, agent, name, args):
    client.force_login(agent)
    assert client.get(reverse(name, args=args)).status_code == 403


@pytest.mark.parametrize(("name", "args"), PAGES)
def test_manager_and_superuser_see_reports(client, manager, django_user_model, name, args):
    client.force_login(manager)
    assert client.get(reverse(name, args=args)).status_code == 200
    admin = django_user_model.objects.create_superuser("root", password="pw")
    client.force_login(admin)
    assert client.get(reverse(name, args=args)).status_code == 200


def test_agent_does_not_see_the_report_tables(client, agent, manager):
    view = Permission.objects.get(codename="view_dailysitestats")
    agent.user_permissions.add(view)
    manager.user_permissions.add(view)
    client.force_login(agent)
    url = reverse("admin:analytics_dailysitestats_changelist")
    assert client.get(url).status_code == 403
    client.force_login(manager)
    response = client.get(url)
    assert response.status_code == 200
    assert reverse(DASHBOARD) in response.content.decode()


# Dashboard figures


def test_dashboard_totals_come_from_the_daily_rows(manager_client):
    shop, other = make_site(name="Shop"), make_site(name="Other")
    day = today() - timedelta(days=3)
    stats(
        shop,
        day,
        conversations=10,
        customer_messages=40,
        autonomous=6,
        escalated=2,
        llm_calls=50,
        llm_errors=5,
        prompt_tokens=1500,
        completion_tokens=500,
        cost=Decimal("0.40"),
        csat_count=4,
        csat_sum=18,
        csat_5=2,
        csat_4=2,
        bot_first_token_p50_ms=800,
        handoffs=2,
    )
    stats(
        shop,
        day + timedelta(days=1),
        conversations=30,
        customer_messages=60,
        autonomous=14,
        escalated=6,
        llm_calls=50,
        llm_errors=0,
        prompt_tokens=3000,
        completion_tokens=1000,
        cost=Decimal("0.60"),
        csat_count=1,
        csat_sum=2,
        csat_2=1,
        bot_first_token_p50_ms=1200,
        handoffs=6,
    )
    stats(other, day, conversations=999, llm_calls=1, llm_errors=1)  # another site
    stats(shop, day - timedelta(days=40), conversations=777)  # outside the range
    HandoffReasonStats.objects.create(site=shop, day=day, rule="customer_request", count=5)
    HandoffReasonStats.objects.create(site=shop, day=day, rule="failures", count=3)
    HandoffReasonStats.objects.create(site=other, day=day, rule="tool", count=50)

    response = manager_client.get(
        reverse(DASHBOARD),
        {
            "site": shop.pk,
            "start": (day - timedelta(days=1)).isoformat(),
            "end": today().isoformat(),
        },
    )

    assert response.status_code == 200
    tiles = {tile["key"]: tile for tile in response.context["tiles"]}
    assert tiles["conversations"]["value"] == 40
    assert tiles["customer_messages"]["value"] == 100
    assert tiles["autonomous_rate"]["display"] == "50.0%"
    assert tiles["escalation_rate"]["display"] == "20.0%"
    assert tiles["success_rate"]["display"] == "95.0%"  # 1 - 5/100
    assert tiles["response_time_ms"]["display"] == "1,000 ms"
    assert tiles["csat_avg"]["display"] == "4.00 / 5"
    assert tiles["total_tokens"]["value"] == 6000
    assert tiles["cost_per_1k_tokens"]["display"] == "0.1667"
    reasons = [(r["rule"], r["count"]) for r in response.context["reasons"]]
    assert reasons == [("customer_request", 5), ("failures", 3)]

    html = response.content.decode()
    # Every tile links to its drill-down with the same filters.
    assert (
        f"{reverse('admin:analytics_conversations')}?start={(day - timedelta(days=1))}"
        f"&amp;end={today()}&amp;metric=escalated&amp;site={shop.pk}"
    ) in html
    assert "Customer asked for a person" in html
    # Each escalation reason drills down to the handoffs of its rule.
    assert (
        f"{reverse('admin:analytics_conversations')}?start={(day - timedelta(days=1))}"
        f"&amp;end={today()}&amp;metric=handoffs&amp;rule=customer_request&amp;site={shop.pk}"
    ) in html
    # Each figure of the daily table drills down to that day's conversations.
    one_day = f"start={day}&amp;end={day}&amp;site={shop.pk}"
    for metric in ("conversations", "customer_messages", "autonomous", "escalated", "rated"):
        assert f"{reverse('admin:analytics_conversations')}?{one_day}&amp;metric={metric}" in html
    assert html.count(f"?{one_day}&amp;metric=llm_calls") == 2  # tokens and cost
    assert 'id="an-topics"' in html
    assert 'id="an-gaps"' in html
    # Charts: data in a json_script block, Chart.js from static, no inline script.
    assert 'id="an-chart-data" type="application/json"' in html
    assert "analytics/vendor/chart.umd.min.js" in html
    assert "analytics/dashboard.js" in html
    chart = response.context["chart_data"]
    volume = chart["charts"]["volume"]["series"]["Conversations"]
    assert len(chart["labels"]) == len(volume) == 5
    assert volume[1:3] == [10.0, 30.0]


def test_dashboard_defaults_to_the_last_30_days(manager_client):
    shop = make_site(name="Shop")
    stats(shop, today() - timedelta(days=29), conversations=3)
    stats(shop, today() - timedelta(days=30), conversations=100)
    response = manager_client.get(reverse(DASHBOARD))
    assert response.context["summary"]["conversations"] == 3
    assert response.context["filters"].start == today() - timedelta(days=29)


def seed(sites: int, days: int):
    for n in range(sites):
        site = make_site(name=f"Site {n}")
        for d in range(days):
            day = today() - timedelta(days=d)
            stats(site, day, conversations=1, llm_calls=2)
            HandoffReasonStats.objects.create(site=site, day=day, rule="tool", count=1)
    return {"start": (today() - timedelta(days=days)).isoformat(), "end": today().isoformat()}


# Session, user, Managers group; the days (the summary adds them up) and reasons (the
# aggregate tables); topics, gaps, fixes; the user's and the group's permissions (the fix
# buttons); the site filter.
DASHBOARD_QUERIES = 11


def test_dashboard_queries_do_not_grow_with_days_or_sites(
    manager_client, django_assert_num_queries
):
    small = seed(1, 2)
    with django_assert_num_queries(DASHBOARD_QUERIES):
        assert manager_client.get(reverse(DASHBOARD), small).status_code == 200
    DailySiteStats.objects.all().delete()
    large = seed(6, 90)
    with django_assert_num_queries(DASHBOARD_QUERIES):
        response = manager_client.get(reverse(DASHBOARD), large)
    assert response.context["summary"]["conversations"] == 6 * 90


def test_dashboard_reads_no_source_table(manager_client):
    """Figures come from the report tables only: a year of ten sites costs what a day does."""
    params = seed(2, 3)
    with CaptureQueriesContext(connection) as queries:
        assert manager_client.get(reverse(DASHBOARD), params).status_code == 200
    sources = ("helpdesk_message", "helpdesk_conversation", "handoff_", "bots_llmcall")
    read = [q["sql"] for q in queries if any(f'"{table}' in q["sql"] for table in sources)]
    assert read == []


def year_of_days(site, days=365, **fields):
    DailySiteStats.objects.bulk_create(
        DailySiteStats(site=site, day=today() - timedelta(days=d), **fields) for d in range(days)
    )


def test_dashboard_queries_stay_the_same_for_a_year(manager_client, django_assert_num_queries):
    for n in range(3):
        year_of_days(make_site(name=f"Site {n}"), conversations=1)
    params = {"start": (today() - timedelta(days=364)).isoformat(), "end": today().isoformat()}
    with django_assert_num_queries(DASHBOARD_QUERIES):
        response = manager_client.get(reverse(DASHBOARD), params)
    assert response.context["summary"]["conversations"] == 3 * 365
    assert len(response.context["chart_data"]["labels"]) == 365


# The table by day, week or month


@pytest.mark.parametrize(
    ("days", "period"),
    [(1, "day"), (selectors.TABLE_ROWS, "day"), (selectors.TABLE_ROWS + 1, "week"), (365, "week")],
)
def test_table_period_keeps_the_table_short(days, period):
    end = date(2026, 12, 31)
    assert selectors.table_period(end - timedelta(days=days - 1), end) == period
    assert selectors.table_period(date(2025, 1, 1), end) == "month"  # 105 weeks


def test_by_period_sums_counts_averages_percentiles_and_clips_to_the_range():
    shop, other = make_site(name="Shop"), make_site(name="Other")
    stats(shop, date(2026, 1, 30), conversations=100)  # before the range
    stats(shop, date(2026, 1, 31), conversations=2, escalated=1, bot_first_token_p50_ms=900)
    stats(shop, date(2026, 2, 1), conversations=3, escalated=3, bot_first_token_p50_ms=200)
    stats(other, date(2026, 2, 1), conversations=1, cost=Decimal("0.25"))  # no sample
    stats(shop, date(2026, 2, 27), conversations=4, bot_first_token_p50_ms=600)
    start, end = date(2026, 1, 31), date(2026, 2, 28)

    rows = selectors.by_period(selectors.daily_series(None, start, end), start, end, "month")

    assert [(row["start"], row["end"]) for row in rows] == [
        (date(2026, 1, 31), date(2026, 1, 31)),
        (date(2026, 2, 1), date(2026, 2, 28)),
    ]
    february = rows[1]
    assert february["conversations"] == 8
    assert february["escalation_rate"] == pytest.approx(3 / 8)
    assert february["cost"] == Decimal("0.25")
    assert february["bot_first_token_p50_ms"] == pytest.approx(400)  # of its two samples
    weeks = selectors.by_period(selectors.daily_series(None, start, end), start, end, "week")
    # 2026-01-31 is a Saturday: its week is clipped to the range and ends on Sunday.
    assert [(row["start"], row["end"]) for row in weeks] == [
        (date(2026, 1, 31), date(2026, 2, 1)),
        (date(2026, 2, 23), date(2026, 2, 28)),
    ]
    assert weeks[0]["conversations"] == 6


def test_summary_adds_up_the_days_and_averages_over_every_sample():
    shop, other = make_site(name="Shop"), make_site(name="Other")
    day = today() - timedelta(days=1)
    stats(shop, day, conversations=2, cost=Decimal("0.10"), human_wait_p50_s=100)
    stats(other, day, conversations=3, cost=Decimal("0.05"), human_wait_p50_s=300)
    stats(shop, today(), conversations=5, human_wait_p50_s=600)
    stats(other, today(), conversations=1)  # no sample

    summary = selectors.site_summary(None, day, today())

    assert summary["conversations"] == 11
    assert summary["cost"] == Decimal("0.15")
    # The mean of the three site-days with a sample, as AVG over the rows; not 400, the
    # mean of the two days' means.
    assert summary["human_wait_p50_s"] == pytest.approx(1000 / 3)
    assert summary["human_wait_p50_s_samples"] == 3
    empty = selectors.site_summary(None, day - timedelta(days=9), day - timedelta(days=5))
    assert (empty["conversations"], empty["cost"], empty["human_wait_p50_s"]) == (0, 0, None)


@pytest.fixture
def long_range():
    """120 days of one site, day n (from 0) with n + 1 conversations: shown by week."""
    shop = make_site(name="Shop")
    end = today()
    start = end - timedelta(days=119)
    DailySiteStats.objects.bulk_create(
        DailySiteStats(
            site=shop, day=start + timedelta(days=n), conversations=n + 1, csat_count=1, csat_sum=4
        )
        for n in range(120)
    )
    return shop, start, end


def test_dashboard_table_sums_long_ranges_by_week(manager_client, long_range):
    shop, start, end = long_range
    params = {"start": start.isoformat(), "end": end.isoformat(), "site": shop.pk}

    response = manager_client.get(reverse(DASHBOARD), params)

    table = response.context["table"]
    assert table["period"] == "week"
    monday = start - timedelta(days=start.weekday())
    weeks = (end - timedelta(days=end.weekday()) - monday).days // 7 + 1
    assert len(table["rows"]) == weeks
    # Newest first, the first and the last week clipped to the range.
    assert table["rows"][0]["label"].endswith(end.isoformat())
    assert table["rows"][-1]["label"].startswith(start.isoformat())
    first, last = monday + timedelta(days=7), monday + timedelta(days=13)  # a whole week
    expected = sum(n + 1 for n in range(120) if first <= start + timedelta(days=n) <= last)
    row = table["rows"][-2]
    assert row["label"] == f"{first} – {last}"
    assert row["conversations"] == f"{expected:,}"
    assert row["csat_avg"] == "4.00"
    html = response.content.decode()
    assert "By week" in html
    # Each figure of a week drills down to that week's conversations.
    week = f"start={first}&amp;end={last}&amp;site={shop.pk}"
    for metric in ("conversations", "customer_messages", "autonomous", "escalated", "rated"):
        assert f"{reverse('admin:analytics_conversations')}?{week}&amp;metric={metric}" in html
    assert html.count(f"?{week}&amp;metric=llm_calls") == 2
    # No row per day; the charts still have every day.
    tuesday = first + timedelta(days=1)
    assert f"start={tuesday}&amp;end={tuesday}" not in html
    assert len(response.context["chart_data"]["labels"]) == 120
    # The table's CSV link exports the weeks as shown.
    export = reverse("admin:analytics_export", args=["daily"])
    assert f"{export}?start={start}&amp;end={end}&amp;period=week&amp;site={shop.pk}" in html


def test_daily_export_by_week_matches_the_table(manager_client, long_range):
    shop, start, end = long_range
    params = {"start": start.isoformat(), "end": end.isoformat(), "site": shop.pk}
    table = manager_client.get(reverse(DASHBOARD), params).context["table"]
    url = reverse("admin:analytics_export", args=["daily"])

    response = manager_client.get(url, {**params, "period": "week"})

    assert f"weekly_{start}_{end}.csv" in response["Content-Disposition"]
    rows = read_csv(response)
    assert rows[0][:3] == ["start", "end", "conversations"]
    shown = [(row["label"], row["conversations"]) for row in reversed(table["rows"])]
    exported = [(f"{a}" if a == b else f"{a} – {b}", f"{int(n):,}") for a, b, n, *_ in rows[1:]]
    assert exported == shown
    daily = read_csv(manager_client.get(url, params))
    assert daily[0][0] == "day"
    assert len(daily) == 1 + 120
    assert manager_client.get(url, {**params, "period": "year"}).status_code == 400


def test_chart_points_are_rounded(manager_client):
    stats(make_site(name="Shop"), today(), conversations=3, escalated=1)
    chart = manager_client.get(reverse(DASHBOARD)).context["chart_data"]
    assert chart["charts"]["resolution"]["series"]["Escalation rate"][-1] == 33.333


def test_topic_rows_are_formatted_with_their_drill_downs(manager_client):
    shop = make_site(name="Shop")
    now = timezone.now()
    topic = QuestionTopic.objects.create(
        site=shop,
        key=uuid.uuid4(),
        label="Refunds",
        size=1200,
        examples=["refund?", "money back"],
        answered_by_bot_share=0.125,
        escalated_share=0.5,
        no_article_share=0.875,
        low_rating_share=0,
        average_rating=None,
        gap_score=2.345,
        window_start=now - timedelta(days=30),
        window_end=now,
        computed_at=now,
    )

    response = manager_client.get(reverse(DASHBOARD))

    [row] = response.context["gaps"]
    assert row["topic"] == topic
    assert (row["size"], row["no_article"], row["escalated"]) == ("1200", "88%", "50%")
    assert (row["answered_by_bot"], row["rating"], row["gap_score"]) == ("12%", "—", "2.35")
    html = response.content.decode()
    assert 'title="refund? | money back"' in html
    assert f'metric=topic&amp;topic={topic.key}&amp;outcome=no_article">88%</a>' in html
    assert f'action="{reverse("admin:analytics_topic_fix", args=[topic.pk])}"' in html


def test_dashboard_does_not_load_article_bodies(manager_client, manager):
    shop = make_site(name="Shop")
    article = Article.objects.create(site=shop, title="Returns", body="A long article. " * 500)
    TopicFix.objects.create(site=shop, topic_key=uuid.uuid4(), label="Returns", article=article)
    with CaptureQueriesContext(connection) as queries:
        response = manager_client.get(reverse(DASHBOARD))
    assert "Article: Returns" in response.content.decode()
    assert not any('"bots_article"."body"' in q["sql"] for q in queries)


# Drill-down


def test_drill_down_lists_the_conversations_behind_a_figure(manager_client):
    shop, other = make_site(name="Shop"), make_site(name="Other")
    day = today() - timedelta(days=2)
    rated = conversation(shop, day, score=2)
    unrated = conversation(shop, day)
    conversation(shop, day - timedelta(days=5), score=5)  # before the range
    conversation(other, day, score=1)  # another site
    url = reverse("admin:analytics_conversations")
    params = {"start": day.isoformat(), "end": day.isoformat(), "site": shop.pk}

    everything = manager_client.get(url, {**params, "metric": "conversations"})
    assert {c.pk for c in everything.context["page_obj"]} == {rated.pk, unrated.pk}

    response = manager_client.get(url, {**params, "metric": "rated"})
    assert [c.pk for c in response.context["page_obj"]] == [rated.pk]
    html = response.content.decode()
    assert reverse("admin:handoff_console", args=[rated.pk]) in html
    assert reverse("admin:helpdesk_conversation_change", args=[rated.pk]) in html
    assert reverse("admin:handoff_console", args=[unrated.pk]) not in html

    assert manager_client.get(url, {**params, "metric": "nope"}).status_code == 400


def test_reason_drill_down_lists_the_handoffs_of_that_rule(manager_client):
    shop = make_site(name="Shop")
    day = today() - timedelta(days=1)
    convs = {rule: conversation(shop, day) for rule in ("keyword", "tool", "customer_request")}
    for rule, conv in convs.items():
        handoff = Handoff.objects.create(conversation=conv, site=shop, rule=rule)
        conv.refresh_from_db()
        Handoff.objects.filter(pk=handoff.pk).update(created_at=conv.created_at)
    url = reverse("admin:analytics_conversations")
    params = {"start": day.isoformat(), "end": day.isoformat(), "metric": "handoffs"}

    response = manager_client.get(url, {**params, "rule": "keyword"})

    assert [c.pk for c in response.context["page_obj"]] == [convs["keyword"].pk]
    everything = manager_client.get(url, params)
    assert len(everything.context["page_obj"]) == 3
    assert manager_client.get(url, {**params, "rule": "nope"}).status_code == 400


def test_drill_down_is_paginated(manager_client):
    shop = make_site(name="Shop")
    for _ in range(51):
        conversation(shop, today())
    url = reverse("admin:analytics_conversations")
    first = manager_client.get(url)
    assert len(first.context["page_obj"]) == 50
    second = manager_client.get(url, {"page": 2})
    assert len(second.context["page_obj"]) == 1


# CSV exports


def test_safe_cell_quotes_formulas_only():
    assert safe_cell("=1+1") == "'=1+1"
    assert safe_cell("+1") == "'+1"
    assert safe_cell("-1") == "'-1"
    assert safe_cell("@SUM(A1)") == "'@SUM(A1)"
    assert safe_cell("plain") == "plain"
    assert safe_cell(-3) == -3
    assert safe_cell(None) == ""


def test_tiles_and_daily_exports(manager_client):
    shop = make_site(name="Shop")
    day = today() - timedelta(days=1)
    stats(shop, day, conversations=12, llm_calls=10, llm_errors=1, cost=Decimal("1.5"))
    stats(shop, day - timedelta(days=1), conversations=8)
    params = {"start": (day - timedelta(days=1)).isoformat(), "end": day.isoformat()}

    response = manager_client.get(reverse("admin:analytics_export", args=["tiles"]), params)
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = read_csv(response)
    assert rows[0] == ["figure", "label", "value"]
    values = {row[0]: row[2] for row in rows[1:]}
    assert values["conversations"] == "20"
    assert float(values["success_rate"]) == pytest.approx(0.9)

    rows = read_csv(manager_client.get(reverse("admin:analytics_export", args=["daily"]), params))
    header = rows[0]
    assert header[:2] == ["day", "conversations"]
    by_day = {row[0]: dict(zip(header, row, strict=True)) for row in rows[1:]}
    assert by_day[day.isoformat()]["conversations"] == "12"
    assert by_day[(day - timedelta(days=1)).isoformat()]["conversations"] == "8"
    assert Decimal(by_day[day.isoformat()]["cost"]) == Decimal("1.5")


def test_csat_export_and_drill_down_per_score(manager_client):
    shop = make_site(name="Shop")
    day = today() - timedelta(days=1)
    stats(shop, day, csat_count=2, csat_sum=7, csat_2=1, csat_5=1)
    low, high = conversation(shop, day, score=2), conversation(shop, day, score=5)

    rows = read_csv(manager_client.get(reverse("admin:analytics_export", args=["csat"])))
    assert rows == [
        ["score", "ratings"],
        ["1", "0"],
        ["2", "1"],
        ["3", "0"],
        ["4", "0"],
        ["5", "1"],
    ]

    html = manager_client.get(reverse(DASHBOARD)).content.decode()
    assert f"end={today()}&amp;metric=rated&amp;score=2" in html
    url = reverse("admin:analytics_conversations")
    params = {"start": day.isoformat(), "end": day.isoformat(), "metric": "rated"}
    listed = manager_client.get(url, {**params, "score": 2})
    assert [c.pk for c in listed.context["page_obj"]] == [low.pk]
    assert [c.pk for c in manager_client.get(url, {**params, "score": 5}).context["page_obj"]] == [
        high.pk
    ]
    assert manager_client.get(url, {**params, "score": 9}).status_code == 400
    assert manager_client.get(url, {**params, "score": 12}).status_code == 400
    assert manager_client.get(url, {**params, "metric": "handoffs", "score": 2}).status_code == 400


def test_reasons_export(manager_client):
    shop = make_site(name="Shop")
    HandoffReasonStats.objects.create(site=shop, day=today(), rule="keyword", count=4)
    HandoffReasonStats.objects.create(site=shop, day=today(), rule="tool", count=7)
    rows = read_csv(manager_client.get(reverse("admin:analytics_export", args=["reasons"])))
    assert rows == [
        ["rule", "label", "count"],
        ["tool", "The bot handed off", "7"],
        ["keyword", "Sensitive topic", "4"],
    ]


def test_conversation_export_one_row_per_conversation_and_guarded(manager_client):
    shop = make_site(name='=HYPERLINK("http://evil")')
    day = today() - timedelta(days=1)
    rated = conversation(shop, day, score=4)
    plain = conversation(shop, day)
    conversation(shop, day - timedelta(days=60))  # outside the default range
    rows = read_csv(manager_client.get(reverse("admin:analytics_export", args=["conversations"])))
    header, body = rows[0], rows[1:]
    assert header[:4] == ["conversation", "site", "started", "resolved"]
    assert {"outcome", "handoff_reason", "rating", "cost"} <= set(header)
    by_pk = {row[0]: dict(zip(header, row, strict=True)) for row in body}
    assert set(by_pk) == {str(rated.pk), str(plain.pk)}
    assert by_pk[str(rated.pk)]["rating"] == "4"
    assert by_pk[str(plain.pk)]["rating"] == ""
    assert by_pk[str(rated.pk)]["site"] == '\'=HYPERLINK("http://evil")'


# Per-site cost view


def test_cost_view_badges_at_80_and_100_percent(manager_client):
    month_start = today().replace(day=1)

    def site_with(name, budget, tokens):
        site = make_site(name=name)
        BotConfig.objects.update_or_create(site=site, defaults={"monthly_token_budget": budget})
        stats(site, today(), prompt_tokens=tokens, cost=Decimal("2"))
        # Last month does not count against this month's budget.
        stats(site, month_start - timedelta(days=1), prompt_tokens=10**9)
        return site

    site_with("A under", 1000, 500)
    site_with("B warning", 1000, 850)
    site_with("C over", 1000, 1200)
    site_with("D unlimited", None, 5000)

    response = manager_client.get(reverse("admin:analytics_costs"))
    rows = {row["site"].name: row for row in response.context["rows"]}
    assert {name: row["level"] for name, row in rows.items()} == {
        "A under": "ok",
        "B warning": "warning",
        "C over": "over",
        "D unlimited": "none",
    }
    assert rows["B warning"]["tokens"] == 850
    html = response.content.decode()
    assert html.count("an-badge-warning") == 1
    assert html.count("an-badge-over") == 1
    assert "Over budget" in html
    # Each site's tokens and cost drill down to its conversations with LLM calls this month.
    over = rows["C over"]["site"]
    assert (
        f"{reverse('admin:analytics_conversations')}?start={month_start}&amp;end={today()}"
        f"&amp;metric=llm_calls&amp;site={over.pk}"
    ) in html

    rows = read_csv(manager_client.get(reverse("admin:analytics_export", args=["costs"])))
    assert rows[0] == [
        "site",
        "month",
        "tokens",
        "cost",
        "monthly_token_budget",
        "budget_used",
        "level",
    ]
    by_site = {row[0]: row for row in rows[1:]}
    tokens, cost, budget, used, level = by_site["B warning"][2:]
    assert (tokens, Decimal(cost), budget, Decimal(used), level) == (
        "850",
        2,
        "1000",
        Decimal("0.85"),
        "warning",
    )
    assert by_site["D unlimited"][4:] == ["", "", "none"]


def test_chart_library_is_vendored():
    assert finders.find("analytics/vendor/chart.umd.min.js")
    assert finders.find("analytics/vendor/chart.js.LICENSE.md")
    assert finders.find("analytics/dashboard.js")
