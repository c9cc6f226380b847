"""Time the managers' report dashboard on a year of aggregate data for 10 sites, PostgreSQL.

Creates the database `helpdesk_bench_dashboard` (dropped first, and at the end unless --keep),
fills the report tables the dashboard reads, as the aggregation and topic jobs would leave
them: 365 days x 10 sites of DailySiteStats, HandoffReasonStats for 5 rules a day, 48 hours
of HourlySiteStats, and 60 stored topics (with their questions' rows) and 5 fixes per site.
Then, as a logged-in manager (Django test Client, the full middleware and admin stack),
requests the dashboard --requests times for each of:

- the default view (last 30 days, every site),
- a whole year, every site,
- a whole year, one site,

and prints median, p90 and p99 in milliseconds. Target: under 300 ms.

The process runs with DEBUG off, as in production (and as Django's test runner does): with
DEBUG on, every test-client request leaves its rendered contexts in an lru_cache (the signal
receiver check of `Signal.connect`), 512 pages of them, and the full garbage collections
over that heap were the p99 of the year views, not the page.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/helpdesk .venv/bin/python bench/dashboard.py
"""

import argparse
import gc
import os
import statistics
import sys
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.aggregation import createdb, dropdb  # noqa: E402

DB_NAME = "helpdesk_bench_dashboard"
SITES = 10
DAYS = 365
RULES = ("customer_request", "tool", "failures", "sentiment", "keyword")
TOPICS_PER_SITE = 60
QUESTIONS_PER_TOPIC = 20
FIXES_PER_SITE = 5


def fill(today) -> None:
    from django.contrib.auth.models import User
    from django.utils import timezone

    from analytics.models import (
        DailySiteStats,
        HandoffReasonStats,
        HourlySiteStats,
        QuestionTopic,
        TopicFix,
        TopicQuestion,
    )
    from helpdesk.models import Conversation, Message, Site, Visitor

    now = timezone.now()
    sites = [Site.objects.create(name=f"Bench {i}", scope="Bench.") for i in range(SITES)]
    daily, reasons, hourly = [], [], []
    for n, site in enumerate(sites):
        for d in range(DAYS):
            day = today - timedelta(days=d)
            base = 100 + (n * 37 + d * 11) % 400
            daily.append(
                DailySiteStats(
                    site=site,
                    day=day,
                    conversations=base,
                    customer_messages=base * 5,
                    bot_answers=base * 5,
                    autonomous=base * 7 // 10,
                    assisted=base // 10,
                    reopened_24h=base // 50,
                    escalated=base // 8,
                    handoffs=base // 8,
                    abandoned=base // 80,
                    bot_first_token_p50_ms=300 + d % 200,
                    bot_first_token_p95_ms=900 + d % 300,
                    human_wait_p50_s=40 + d % 60,
                    human_wait_p95_s=200 + d % 100,
                    first_reply_p50_s=60 + d % 60,
                    first_reply_p95_s=300 + d % 100,
                    resolution_p50_s=600,
                    csat_count=base // 3,
                    csat_sum=base // 3 * 4,
                    csat_4=base // 3,
                    bot_csat_count=base // 4,
                    bot_csat_sum=base,
                    human_csat_count=base // 12,
                    human_csat_sum=base // 3,
                    llm_calls=base * 5,
                    llm_errors=base // 20,
                    prompt_tokens=base * 4000,
                    completion_tokens=base * 600,
                    cost=Decimal(base) / 10,
                    cache_hits=base // 5,
                    curated_hits=base // 10,
                    thumbs_up=base // 4,
                    thumbs_down=base // 20,
                )
            )
            for r, rule in enumerate(RULES):
                reasons.append(
                    HandoffReasonStats(site=site, day=day, rule=rule, count=1 + r + d % 7)
                )
        for h in range(48):
            hourly.append(
                HourlySiteStats(
                    site=site,
                    hour=now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=h),
                    conversations=10,
                    customer_messages=50,
                    bot_answers=50,
                    handoffs=1,
                    llm_calls=50,
                    prompt_tokens=40000,
                    completion_tokens=6000,
                    cost=Decimal("1.5"),
                )
            )
    DailySiteStats.objects.bulk_create(daily, batch_size=2000)
    HandoffReasonStats.objects.bulk_create(reasons, batch_size=2000)
    HourlySiteStats.objects.bulk_create(hourly, batch_size=2000)

    # Topics need real questions behind them (drill-down); one conversation per question.
    manager = User.objects.get(username="bench-manager")
    for site in sites:
        visitor = Visitor.objects.create(site=site)
        topics = []
        for t in range(TOPICS_PER_SITE):
            topics.append(
                QuestionTopic(
                    site=site,
                    key=uuid.uuid4(),
                    label=f"How do I return item {t} of my order?",
                    size=QUESTIONS_PER_TOPIC,
                    examples=[f"How do I return item {t}, variant {e}?" for e in range(5)],
                    answered_by_bot_share=(t % 10) / 10,
                    escalated_share=(t % 7) / 7,
                    no_article_share=(t % 5) / 5,
                    low_rating_share=(t % 3) / 3,
                    average_rating=1 + t % 5,
                    gap_score=(t % 5) * 1.3,
                    window_start=now - timedelta(days=30),
                    window_end=now,
                    computed_at=now,
                )
            )
        QuestionTopic.objects.bulk_create(topics)
        conversations = Conversation.objects.bulk_create(
            Conversation(site=site, visitor=visitor)
            for _ in range(TOPICS_PER_SITE * QUESTIONS_PER_TOPIC)
        )
        messages = Message.objects.bulk_create(
            Message(conversation=c, seq=1, author="visitor", text="How do I return it?")
            for c in conversations
        )
        TopicQuestion.objects.bulk_create(
            (
                TopicQuestion(
                    topic=topics[i // QUESTIONS_PER_TOPIC],
                    message=m,
                    conversation_id=m.conversation_id,
                    asked_at=now - timedelta(minutes=i),
                    escalated=i % 3 == 0,
                    no_article=i % 4 == 0,
                    rating=1 + i % 5,
                )
                for i, m in enumerate(messages)
            ),
            batch_size=2000,
        )
        TopicFix.objects.bulk_create(
            TopicFix(
                site=site,
                topic_key=topic.key,
                label=topic.label,
                created_by=manager,
                fixed_at=now - timedelta(days=3),
                before_size=20,
                before_escalated_share=0.5,
                before_no_article_share=0.8,
                before_average_rating=2.0,
            )
            for topic in topics[:FIXES_PER_SITE]
        )


def measure(client, url: str, params: dict, requests: int) -> tuple[float, float, float]:
    for _ in range(5):  # warm the template cache and connections
        assert client.get(url, params).status_code == 200
    samples = []
    for _ in range(requests):
        started = time.perf_counter()
        response = client.get(url, params)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    samples.sort()
    return (
        statistics.median(samples),
        samples[int(0.9 * (len(samples) - 1))],
        samples[int(0.99 * (len(samples) - 1))],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    args = parser.parse_args()
    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL server (the database is created here).")
    createdb(DB_NAME)
    os.environ["DATABASE_URL"] = base_url.rsplit("/", 1)[0] + "/" + DB_NAME
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth.models import Group, Permission, User
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.test.utils import setup_test_environment
    from django.urls import reverse
    from django.utils import timezone

    from helpdesk.models import Site

    # Lets the test Client through ALLOWED_HOSTS; DEBUG off before the template engine exists.
    setup_test_environment(debug=False)
    settings.ALLOWED_HOSTS = ["testserver"]
    try:
        call_command("migrate", "--noinput", verbosity=0)
        managers = Group.objects.create(name="Managers")
        managers.permissions.add(
            *Permission.objects.filter(
                codename__in=["view_dailysitestats", "add_article", "add_curatedanswer"]
            )
        )
        manager = User.objects.create_user("bench-manager", password=None, is_staff=True)
        manager.groups.add(managers)
        today = timezone.now().date()
        started = time.monotonic()
        fill(today)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        print(
            f"generated {SITES} sites x {DAYS} days of report rows and "
            f"{SITES * TOPICS_PER_SITE} topics in {time.monotonic() - started:.1f} s"
        )
        # The migrations and the fill leave cyclic garbage: not a request's to collect.
        gc.collect()
        # As helpdesk/asgi.py does after start-up: the process's long-lived objects out of
        # the collections.
        gc.freeze()
        client = Client()
        client.force_login(manager)
        url = reverse("admin:analytics_dashboard")
        site = str(Site.objects.order_by("pk").values_list("pk", flat=True)[0])
        year = {"start": (today - timedelta(days=DAYS - 1)).isoformat(), "end": today.isoformat()}
        worst = 0.0
        print(f"dashboard, {args.requests} requests each (ms)   median      p90      p99")
        for label, params in (
            ("last 30 days, all sites", {}),
            ("a year, all sites", year),
            ("a year, one site", {**year, "site": site}),
        ):
            median, p90, p99 = measure(client, url, params, args.requests)
            worst = max(worst, median)
            print(f"{label:<40} {median:8.1f} {p90:8.1f} {p99:8.1f}")
        print(f"target: median < 300 ms: {'ok' if worst < 300 else 'MISSED'}")
    finally:
        connection.close()
        if not args.keep:
            dropdb(DB_NAME)


if __name__ == "__main__":
    main()
