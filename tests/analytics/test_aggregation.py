"""Aggregation against hand-computed figures, re-runs, crashes, increments and the schedule.

The fixture (times UTC, the run's `now` is 2026-03-04 12:00):

site A, 2026-03-01
  c1 (visitor v1) 09:00 question, bot answer (llm, 200 ms, thumbs up), resolved 09:10, rated 5
  c2 (v2) 10:00 question, bot answer (cache, 400 ms, thumbs down); handoff "customer_request"
     10:01, claimed 10:03, first reply 10:04, resolved 10:30; rated 3
  c3 (v3) 11:00 question, bot answer (curated, 600 ms); idle since 11:01
  c4 (v3 again) 20:00 question; handoff "keyword" 20:01, abandoned 20:31
  LLM calls: 100+50 tokens $0.001, 200+100 $0.002, one timeout 10+0 $0
site A, 2026-03-02
  c5 (v4) 08:00 question, bot answer (llm, 300 ms), resolved 08:05; rated 4 LATE (after the
     first aggregation)
  LLM call 300+150 $0.003
site B, 2026-03-02
  c6 (v5) 12:00 two questions, bot answer (llm, 1000 ms); handoff "failures" 12:05,
     claimed 12:15, first reply 12:20, still with the agent
  LLM calls 500+250 $0.005, one rate-limit error
site B, 2026-03-03
  c7 (v6) 09:00 question, bot answer (llm, 500 ms, thumbs down); idle since 09:01 (27 h)
  LLM call 50+25 $0.0005
"""

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections
from django.forms.models import model_to_dict
from django.urls import reverse

from analytics import aggregation
from analytics.aggregation import aggregate, touched_keys
from analytics.models import AggregationState, DailySiteStats, HandoffReasonStats, HourlySiteStats
from analytics.selectors import (
    conversation_export_rows,
    conversations_for,
    daily_series,
    handoff_reasons,
    site_summary,
)
from bots.models import LLMCall
from handoff.models import Handoff, Rating
from helpdesk.models import Conversation, Message, Site, Visitor
from tests.conftest import ON_POSTGRESQL

NOW = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
D1, D2, D3 = date(2026, 3, 1), date(2026, 3, 2), date(2026, 3, 3)


def at(day: date, hhmm: str) -> datetime:
    hour, minute = map(int, hhmm.split(":"))
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


class World:
    """Builds source rows with explicit timestamps (the models stamp `now` themselves)."""

    def __init__(self):
        self.sites = {
            name: Site.objects.create(name=f"Site {name}", scope="Test shop.") for name in "AB"
        }
        self.visitors = {}

    def visitor(self, site: str, name: str) -> Visitor:
        if name not in self.visitors:
            self.visitors[name] = Visitor.objects.create(site=self.sites[site])
        return self.visitors[name]

    def conversation(self, site, visitor, started, *, status="bot", resolved=None, idle=None):
        conv = Conversation.objects.create(
            site=self.sites[site], visitor=self.visitor(site, visitor)
        )
        Conversation.objects.filter(pk=conv.pk).update(
            created_at=started,
            status=status,
            resolved_at=resolved,
            updated_at=resolved or idle or started,
        )
        conv.refresh_from_db()
        return conv

    def message(self, conv, author, when, **fields):
        seq = conv.messages.count() + 1
        msg = Message.objects.create(conversation=conv, seq=seq, author=author, text="x", **fields)
        Message.objects.filter(pk=msg.pk).update(created_at=when)
        return msg

    def handoff(self, conv, rule, created, **times):
        handoff = Handoff.objects.create(
            conversation=conv, site=conv.site, rule=rule, status=times.pop("status", "waiting")
        )
        Handoff.objects.filter(pk=handoff.pk).update(created_at=created, **times)
        return handoff

    def rating(self, conv, score, when):
        rating = Rating.objects.create(conversation=conv, score=score)
        Rating.objects.filter(pk=rating.pk).update(created_at=when)
        return rating

    def call(self, site, when, prompt, completion, cost, outcome="ok", conversation=None):
        call = LLMCall.objects.create(
            site=self.sites[site],
            conversation=conversation,
            kind="chat",
            model="m",
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost=Decimal(cost),
            outcome=outcome,
        )
        LLMCall.objects.filter(pk=call.pk).update(created_at=when)
        return call


@pytest.fixture
def world(db) -> World:
    return build_world()


@pytest.fixture
def committed_world(transactional_db) -> World:
    """The same rows, committed, for a test whose other process must see them."""
    return build_world()


def build_world() -> World:
    w = World()
    c1 = w.conversation("A", "v1", at(D1, "09:00"), status="resolved", resolved=at(D1, "09:10"))
    w.message(c1, "visitor", at(D1, "09:00"))
    w.message(c1, "bot", at(D1, "09:00"), answer_source="llm", first_token_ms=200, feedback="up")
    w.rating(c1, 5, at(D1, "09:11"))

    c2 = w.conversation("A", "v2", at(D1, "10:00"), status="resolved", resolved=at(D1, "10:30"))
    w.message(c2, "visitor", at(D1, "10:00"))
    w.message(
        c2, "bot", at(D1, "10:00"), answer_source="cache", first_token_ms=400, feedback="down"
    )
    w.handoff(
        c2,
        "customer_request",
        at(D1, "10:01"),
        status="resolved",
        claimed_at=at(D1, "10:03"),
        first_reply_at=at(D1, "10:04"),
        resolved_at=at(D1, "10:30"),
    )
    w.rating(c2, 3, at(D1, "10:31"))

    c3 = w.conversation("A", "v3", at(D1, "11:00"), idle=at(D1, "11:01"))
    w.message(c3, "visitor", at(D1, "11:00"))
    w.message(c3, "bot", at(D1, "11:00"), answer_source="curated", first_token_ms=600)

    c4 = w.conversation("A", "v3", at(D1, "20:00"), status="resolved", resolved=at(D1, "20:31"))
    w.message(c4, "visitor", at(D1, "20:00"))
    w.handoff(c4, "keyword", at(D1, "20:01"), status="abandoned", resolved_at=at(D1, "20:31"))

    w.call("A", at(D1, "09:00"), 100, 50, "0.001", conversation=c1)
    w.call("A", at(D1, "10:00"), 200, 100, "0.002", conversation=c2)
    w.call("A", at(D1, "11:00"), 10, 0, "0", outcome="APITimeoutError", conversation=c3)

    c5 = w.conversation("A", "v4", at(D2, "08:00"), status="resolved", resolved=at(D2, "08:05"))
    w.message(c5, "visitor", at(D2, "08:00"))
    w.message(c5, "bot", at(D2, "08:00"), answer_source="llm", first_token_ms=300)
    w.call("A", at(D2, "08:00"), 300, 150, "0.003", conversation=c5)

    c6 = w.conversation("B", "v5", at(D2, "12:00"), status="human", idle=at(D2, "12:20"))
    w.message(c6, "visitor", at(D2, "12:00"))
    w.message(c6, "visitor", at(D2, "12:01"))
    w.message(c6, "bot", at(D2, "12:01"), answer_source="llm", first_token_ms=1000)
    w.handoff(
        c6,
        "failures",
        at(D2, "12:05"),
        status="assigned",
        claimed_at=at(D2, "12:15"),
        first_reply_at=at(D2, "12:20"),
    )
    w.call("B", at(D2, "12:01"), 500, 250, "0.005", conversation=c6)
    w.call("B", at(D2, "12:02"), 0, 0, "0", outcome="RateLimitError", conversation=c6)

    c7 = w.conversation("B", "v6", at(D3, "09:00"), idle=at(D3, "09:01"))
    w.message(c7, "visitor", at(D3, "09:00"))
    w.message(c7, "bot", at(D3, "09:00"), answer_source="llm", first_token_ms=500, feedback="down")
    w.call("B", at(D3, "09:00"), 50, 25, "0.0005", conversation=c7)
    w.c5 = c5
    w.c7 = c7
    return w


def snapshot() -> dict:
    def rows(model, key):
        return sorted(
            (
                {k: v for k, v in model_to_dict(obj).items() if k not in {"id", "updated_at"}}
                for obj in model.objects.all()
            ),
            key=key,
        )

    return {
        "daily": rows(DailySiteStats, lambda r: (r["site"], r["day"])),
        "hourly": rows(HourlySiteStats, lambda r: (r["site"], r["hour"])),
        "reasons": rows(HandoffReasonStats, lambda r: (r["site"], r["day"], r["rule"])),
    }


def day_row(world, site, day) -> DailySiteStats:
    return DailySiteStats.objects.get(site=world.sites[site], day=day)


def test_hand_computed_figures(world):
    aggregate(now=NOW)

    a1 = day_row(world, "A", D1)
    assert (a1.conversations, a1.customer_messages, a1.bot_answers) == (4, 4, 3)
    # c1 bot-only and resolved; c3 idle but its visitor came back (c4) within 24 h.
    assert (a1.autonomous, a1.reopened_24h, a1.assisted, a1.escalated) == (1, 1, 1, 2)
    assert (a1.handoffs, a1.abandoned) == (2, 1)
    assert a1.bot_first_token_p50_ms == pytest.approx(400)
    assert a1.bot_first_token_p95_ms == pytest.approx(580)  # 400 + 0.9 * (600 - 400)
    assert a1.human_wait_p50_s == pytest.approx(120)
    assert a1.human_wait_p95_s == pytest.approx(120)
    assert a1.first_reply_p50_s == pytest.approx(180)
    assert a1.resolution_p50_s == pytest.approx(1800)  # of 600, 1800, 1860
    assert (a1.csat_count, a1.csat_sum, a1.csat_3, a1.csat_5, a1.csat_4) == (2, 8, 1, 1, 0)
    assert (a1.bot_csat_count, a1.bot_csat_sum) == (1, 5)
    assert (a1.human_csat_count, a1.human_csat_sum) == (1, 3)
    assert (a1.llm_calls, a1.llm_errors, a1.prompt_tokens, a1.completion_tokens) == (3, 1, 310, 150)
    assert a1.cost == Decimal("0.003")
    assert (a1.cache_hits, a1.curated_hits, a1.thumbs_up, a1.thumbs_down) == (1, 1, 1, 1)

    a2 = day_row(world, "A", D2)
    assert (a2.conversations, a2.autonomous, a2.csat_count, a2.resolution_p50_s) == (1, 1, 0, 300)

    b2 = day_row(world, "B", D2)
    assert (b2.conversations, b2.customer_messages, b2.escalated, b2.assisted) == (1, 2, 1, 0)
    assert (b2.autonomous, b2.handoffs, b2.abandoned) == (0, 1, 0)
    assert (b2.human_wait_p50_s, b2.first_reply_p95_s, b2.resolution_p50_s) == (600, 900, None)
    assert (b2.llm_calls, b2.llm_errors, b2.cost) == (2, 1, Decimal("0.005"))

    b3 = day_row(world, "B", D3)
    # Idle for 27 h with no handoff: the bot's.
    assert (b3.conversations, b3.autonomous, b3.thumbs_down) == (1, 1, 1)
    assert DailySiteStats.objects.count() == 4

    assert sorted(HandoffReasonStats.objects.values_list("site__name", "day", "rule", "count")) == [
        ("Site A", D1, "customer_request", 1),
        ("Site A", D1, "keyword", 1),
        ("Site B", D2, "failures", 1),
    ]
    # Hourly rows for today and yesterday only: c7's hour on 03-03.
    hourly = HourlySiteStats.objects.get()
    assert (hourly.hour, hourly.conversations, hourly.customer_messages) == (
        at(D3, "09:00"),
        1,
        1,
    )
    assert (hourly.bot_answers, hourly.llm_calls, hourly.prompt_tokens) == (1, 1, 50)


def test_abandoned_counts_conversations_not_handoffs(world):
    c4 = Conversation.objects.get(created_at=at(D1, "20:00"))
    # The customer is handed off again and leaves again: still one abandoned conversation.
    world.handoff(c4, "failures", at(D1, "20:40"), status="abandoned")
    aggregate(now=NOW)
    a1 = day_row(world, "A", D1)
    assert (a1.handoffs, a1.abandoned) == (3, 1)
    assert conversations_for(None, D1, D1, metric="abandoned").paginator.count == 1


def test_idle_conversation_becomes_autonomous_after_24_hours(world):
    aggregate(now=at(D3, "20:00"))  # c7 idle for 11 h only
    assert day_row(world, "B", D3).autonomous == 0
    # Nothing about c7 changed, but it crossed the idle line since the last run.
    since = AggregationState.objects.get().watermark
    assert (world.sites["B"].pk, D3) in touched_keys(since=since, now=NOW)
    aggregate(now=NOW)
    assert day_row(world, "B", D3).autonomous == 1


def test_late_rating_updates_its_day_and_only_that_day(world):
    aggregate(now=NOW)
    before = snapshot()
    world.rating(world.c5, 4, NOW + timedelta(minutes=1))
    later = NOW + timedelta(minutes=10)

    assert touched_keys(since=NOW - aggregation.OVERLAP, now=later) == {(world.sites["A"].pk, D2)}
    report = aggregate(now=later)
    assert (report.keys, report.daily_rows) == (1, 1)

    a2 = day_row(world, "A", D2)
    assert (a2.csat_count, a2.csat_sum, a2.csat_4, a2.bot_csat_count, a2.bot_csat_sum) == (
        1,
        4,
        1,
        1,
        4,
    )
    after = snapshot()
    changed = [row for row in after["daily"] if row not in before["daily"]]
    assert [(row["site"], row["day"]) for row in changed] == [(world.sites["A"].pk, D2)]


def test_rerun_is_idempotent(world):
    aggregate(now=NOW)
    first = snapshot()
    aggregate(now=NOW)
    assert snapshot() == first
    aggregate(now=NOW, full=True)
    assert snapshot() == first
    # Nothing changed since the watermark: nothing to recompute.
    report = aggregate(now=NOW + timedelta(minutes=10))
    assert (report.keys, report.daily_rows) == (0, 0)
    assert snapshot() == first


def waiting_on(table: str) -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relname = %s AND NOT l.granted",
            [table],
        )
        return cursor.fetchone()[0] > 0


@pytest.mark.skipif(not ON_POSTGRESQL, reason="holds a table lock with PostgreSQL's LOCK TABLE")
def test_a_real_process_killed_mid_run_leaves_the_tables_as_they_were(committed_world):
    """`manage.py aggregate` in its own process, SIGKILLed while its transaction is open."""
    aggregate(now=NOW)
    before = snapshot()
    watermark = AggregationState.objects.get().watermark
    committed_world.rating(committed_world.c5, 4, NOW + timedelta(minutes=1))

    # Another session holds the daily table, so the run stops inside its transaction, at its
    # first statement on that table, with everything before it done.
    blocker = connections.create_connection("default")
    blocker.set_autocommit(False)
    with blocker.cursor() as cursor:
        cursor.execute(f"LOCK TABLE {DailySiteStats._meta.db_table} IN ACCESS EXCLUSIVE MODE")
    db = connection.settings_dict
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"REDIS_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env["DATABASE_URL"] = (
        f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "aggregate", "--full"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not waiting_on(DailySiteStats._meta.db_table):
            assert worker.poll() is None, "the run ended before it reached the daily table"
            assert time.monotonic() < deadline, "the run never reached the daily table"
            time.sleep(0.05)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            worker.kill()
        blocker.rollback()
        blocker.close()

    assert worker.returncode == -signal.SIGKILL
    assert snapshot() == before
    assert AggregationState.objects.get().watermark == watermark
    later = NOW + timedelta(minutes=10)
    aggregate(now=later)
    rerun = snapshot()
    assert rerun != before  # the late rating counts now
    aggregate(now=later, full=True)
    assert snapshot() == rerun


def test_full_and_incremental_give_the_same_tables(world):
    aggregate(now=NOW, full=True)
    full = snapshot()
    DailySiteStats.objects.all().delete()
    HourlySiteStats.objects.all().delete()
    HandoffReasonStats.objects.all().delete()
    AggregationState.objects.update(watermark=datetime(2026, 2, 1, tzinfo=UTC))
    report = aggregate(now=NOW)
    assert not report.full
    assert snapshot() == full


def test_incremental_run_touches_only_new_days(world):
    aggregate(now=NOW)
    later = NOW + timedelta(minutes=10)
    c7 = world.c7
    world.message(c7, "visitor", NOW + timedelta(minutes=1))
    Conversation.objects.filter(pk=c7.pk).update(updated_at=NOW + timedelta(minutes=1))
    site_b = world.sites["B"].pk
    # The message's own day and its conversation's day (its outcome may change).
    assert touched_keys(since=NOW - aggregation.OVERLAP, now=later) == {
        (site_b, D3),
        (site_b, NOW.date()),
    }
    report = aggregate(now=later)
    assert (report.keys, report.daily_rows) == (2, 2)
    assert day_row(world, "B", NOW.date()).customer_messages == 1
    # Active again a minute ago: no longer idle, so no longer the bot's.
    assert day_row(world, "B", D3).autonomous == 0
    assert day_row(world, "A", D1).conversations == 4


def test_stale_rows_of_a_recomputed_day_are_deleted(world):
    aggregate(now=NOW)
    Handoff.objects.filter(rule="keyword").delete()
    aggregate(now=NOW, full=True)
    assert not HandoffReasonStats.objects.filter(rule="keyword").exists()
    assert day_row(world, "A", D1).handoffs == 1


def test_management_command(world):
    out = StringIO()
    call_command("aggregate", "--full", stdout=out)
    assert "full: 4 site-days recomputed, 4 daily" in out.getvalue()
    out = StringIO()
    call_command("aggregate", stdout=out)
    assert "incremental since" in out.getvalue()
    assert DailySiteStats.objects.count() == 4


def test_task_runs_the_aggregation(world):
    from analytics.tasks import aggregate_task

    assert "site-days recomputed" in aggregate_task.delay().get()
    assert DailySiteStats.objects.count() == 4


def test_beat_schedule_names_real_tasks():
    from helpdesk.celery import app

    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    # The analytics jobs are on the schedule, and late-acked so a killed worker's run repeats.
    for task in ("analytics.tasks.aggregate_task", "analytics.tasks.cluster_topics"):
        assert task in scheduled
        assert app.tasks[task].acks_late
    for name, entry in settings.CELERY_BEAT_SCHEDULE.items():
        assert entry["task"] in app.tasks, f"beat entry {name!r} names no registered task"


# Selectors.


def test_site_summary_and_series(world):
    aggregate(now=NOW)
    summary = site_summary(None, D1, D3)
    assert (summary["conversations"], summary["autonomous"], summary["escalated"]) == (7, 3, 3)
    assert summary["escalation_rate"] == pytest.approx(3 / 7)
    assert summary["error_rate"] == pytest.approx(2 / 7)
    assert summary["total_tokens"] == 310 + 150 + 450 + 750 + 75
    assert summary["cost"] == Decimal("0.0115")
    assert summary["cost_per_1k_tokens"] == Decimal("0.0115") * 1000 / 1735
    assert summary["csat_distribution"] == {1: 0, 2: 0, 3: 1, 4: 0, 5: 1}
    assert summary["bot_csat_avg"] == 5.0
    assert summary["human_csat_avg"] == 3.0

    only_a = site_summary([world.sites["A"].pk], D2, D2)
    assert (only_a["conversations"], only_a["llm_calls"]) == (1, 1)

    series = daily_series(None, D1, D3)
    assert [(row["day"], row["conversations"]) for row in series] == [(D1, 4), (D2, 2), (D3, 1)]
    assert [row["label"] for row in handoff_reasons(None, D1, D3)] == [
        "Customer asked for a person",
        "The bot failed repeatedly",
        "Sensitive topic",
    ]


def test_report_figures_read_only_the_aggregate_tables(world, django_assert_num_queries):
    aggregate(now=NOW)
    with django_assert_num_queries(3):
        site_summary(None, D1, D3)
        daily_series(None, D1, D3)
        handoff_reasons(None, D1, D3)


@pytest.mark.parametrize(
    ("metric", "expected", "figure"),
    [
        ("handoffs", 3, "handoffs"),
        ("abandoned", 1, "abandoned"),
        ("thumbs_down", 2, "thumbs_down"),
        ("thumbs_up", 1, "thumbs_up"),
        ("cache_hits", 1, "cache_hits"),
        ("curated_hits", 1, "curated_hits"),
        ("autonomous", 3, "autonomous"),
        ("reopened_24h", 1, "reopened_24h"),
        ("assisted", 1, "assisted"),
        ("escalated", 3, "escalated"),
        ("rated", 2, "csat_count"),
        ("bot_rated", 1, "bot_csat_count"),
        ("human_rated", 1, "human_csat_count"),
        ("llm_errors", 2, None),  # c3's timeout and c6's rate limit: conversations, not calls
        ("llm_calls", 6, None),  # every conversation but c4, which never reached the LLM
        ("bot_answers", 6, None),
        ("customer_messages", 7, None),
        (None, 7, "conversations"),
    ],
)
def test_drill_down_matches_the_figures(world, metric, expected, figure):
    aggregate(now=NOW)
    page = conversations_for(None, D1, D3, metric=metric, per_page=5)
    assert page.paginator.count == expected
    if figure:
        assert page.paginator.count == site_summary(None, D1, D3)[figure]


def test_drill_down_of_bot_and_human_satisfaction(world):
    bot = conversations_for(None, D1, D3, metric="bot_rated")
    human = conversations_for(None, D1, D3, metric="human_rated")
    assert [c.rating.score for c in bot] == [5]
    assert [c.rating.score for c in human] == [3]
    assert [c.rating.score for c in conversations_for(None, D1, D3, metric="rated", score=3)] == [3]


def test_every_dashboard_tile_drills_down(world, client, django_user_model):
    from tests.analytics.test_reports import make_user

    aggregate(now=NOW)
    client.force_login(make_user(django_user_model, "maria", group="Managers"))
    params = {"start": D1.isoformat(), "end": D3.isoformat()}
    response = client.get(reverse("admin:analytics_dashboard"), params)
    tiles = response.context["tiles"]
    html = response.content.decode()
    keys = {tile["key"] for tile in tiles}
    # The outcome figures that tell the bot's work from the humans'.
    assert {"autonomous_rate", "assisted_rate", "reopened_24h"} <= keys
    assert {"bot_csat_avg", "human_csat_avg", "cache_hit_rate", "curated_hits"} <= keys
    shown = {tile["key"]: tile["display"] for tile in tiles}
    assert (shown["bot_csat_avg"], shown["human_csat_avg"]) == ("5.00 / 5", "3.00 / 5")
    assert (shown["assisted_rate"], shown["reopened_24h"]) == ("14.3%", "1")
    for tile in tiles:
        assert tile["url"].replace("&", "&amp;") in html
        listed = client.get(tile["url"])
        assert listed.status_code == 200, tile["key"]
        assert listed.context["page_obj"].paginator.count > 0, tile["key"]


def test_conversation_export_rows(world):
    rows = list(conversation_export_rows([world.sites["A"].pk], D1, D1, batch_size=2))
    assert [row["outcome"] for row in rows] == ["autonomous", "assisted", "reopened", "abandoned"]
    c1, c2 = rows[0], rows[1]
    assert (c1["site"], c1["rating"], c1["prompt_tokens"], c1["cost"]) == (
        "Site A",
        5,
        100,
        Decimal("0.001"),
    )
    assert (c2["handoff_reason"], c2["rating"], c2["completion_tokens"]) == (
        "customer_request",
        3,
        100,
    )
    assert rows[3]["handoff_reason"] == "keyword"
    assert rows[3]["prompt_tokens"] == 0
