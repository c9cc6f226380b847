"""Time the analytics aggregation on a PostgreSQL database of generated history.

Creates the database `helpdesk_bench_analytics` (dropped first, and at the end unless
--keep), fills it with --messages messages (default 1,000,000) across 10 sites and 90 days
(--days), generated in the server with INSERT … SELECT FROM generate_series (every
conversation has 10 messages, half of them bot answers with one LLM call each; one in ten
is handed off, one in three rated), then times:

- the full aggregation (--repeat times, median and slowest),
- an incremental run after --new messages (default 10,000) arrive within 20 minutes,
  --repeat times, each on a day of its own after the history (an untimed run first catches
  up, as the 5-minute beat job would have), median and slowest,
- incremental runs after a tenth of --new, --new and ten times --new on one day, and one with
  nothing new: the cost follows the new data (and the volume of the days it falls on).

That the cost does not follow the total: run it again with a quarter of the history at the
same density per day (`--messages 250000 --days 22`); the incremental figures stay the same.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/helpdesk .venv/bin/python bench/aggregation.py
"""

import argparse
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DB_NAME = "helpdesk_bench_analytics"
SITES = 10
DAYS = 90
PER_CONVERSATION = 10
START = datetime(2026, 1, 1, tzinfo=UTC)

# %(first)s: first conversation id, %(count)s: how many, %(t0)s / %(span)s: their time range.
CONVERSATIONS = """
INSERT INTO helpdesk_visitor (id, site_id, uid, language, page_url, user_agent, attributes,
                              created_at, last_seen_at)
SELECT g, %(site0)s + g %% 10, md5(g::text || 'v')::uuid, 'en', '', '', '{}',
       %(t0)s::timestamptz, %(t0)s::timestamptz
FROM generate_series(%(first)s, %(first)s + %(count)s - 1) g;

INSERT INTO helpdesk_conversation (id, site_id, visitor_id, status, language, escalation_reason,
                                   contact_email, last_seq, created_at, updated_at, resolved_at)
SELECT g, %(site0)s + g %% 10, g,
       CASE WHEN g %% 20 = 7 THEN 'bot' ELSE 'resolved' END, 'en', '', '', 10,
       t, t + interval '5 minutes', CASE WHEN g %% 20 = 7 THEN NULL
                                         ELSE t + interval '5 minutes' END
FROM (SELECT g, %(t0)s::timestamptz + (g - %(first)s) * %(span)s / %(count)s AS t
      FROM generate_series(%(first)s, %(first)s + %(count)s - 1) g) c;

INSERT INTO helpdesk_message (id, conversation_id, seq, author, text, state, created_at,
    completed_at, llm_model, prompt_tokens, completion_tokens, first_token_ms, total_ms, cost,
    answer_source, sources, feedback, feedback_at, needs_review, review_reason)
SELECT c.id * 10 + s, c.id, s, CASE WHEN s %% 2 = 1 THEN 'visitor' ELSE 'bot' END,
       'question or answer', 'complete', c.created_at + s * interval '20 seconds',
       NULL, '', NULL, NULL,
       CASE WHEN s %% 2 = 0 THEN 150 + (c.id * 7 + s * 13) %% 900 END, NULL, NULL,
       CASE WHEN s %% 2 = 1 THEN '' WHEN (c.id + s) %% 7 = 0 THEN 'cache'
            WHEN (c.id + s) %% 11 = 0 THEN 'curated' ELSE 'llm' END,
       '[]',
       CASE WHEN s %% 2 = 1 THEN '' WHEN (c.id + s) %% 13 = 0 THEN 'down'
            WHEN (c.id + s) %% 5 = 0 THEN 'up' ELSE '' END,
       NULL, false, ''
FROM helpdesk_conversation c, generate_series(1, 10) s
WHERE c.id BETWEEN %(first)s AND %(first)s + %(count)s - 1;

INSERT INTO bots_llmcall (site_id, conversation_id, message_id, kind, model, parameters,
    prompt_tokens, completion_tokens, cost, first_token_ms, total_ms, outcome, pii_redacted,
    prompt_text, created_at)
SELECT c.site_id, m.conversation_id, m.id, 'chat', 'bench-model', '{}', 800, 120, 0.000200,
       m.first_token_ms, m.first_token_ms + 900,
       CASE WHEN m.id %% 50 = 0 THEN 'APITimeoutError' ELSE 'ok' END, 0, '', m.created_at
FROM helpdesk_message m JOIN helpdesk_conversation c ON c.id = m.conversation_id
WHERE m.author = 'bot' AND m.conversation_id BETWEEN %(first)s AND %(first)s + %(count)s - 1;

INSERT INTO handoff_handoff (conversation_id, site_id, status, priority, rule, reason,
    created_at, claimed_at, first_reply_at, resolved_at)
SELECT c.id, c.site_id, CASE WHEN c.id %% 30 = 0 THEN 'abandoned' ELSE 'resolved' END, 0,
       (ARRAY['customer_request', 'tool', 'failures', 'sentiment', 'keyword'])[1 + c.id %% 5],
       '', c.created_at + interval '1 minute',
       CASE WHEN c.id %% 30 <> 0 THEN c.created_at + (60 + c.id %% 600) * interval '1 second' END,
       CASE WHEN c.id %% 30 <> 0 THEN c.created_at + (90 + c.id %% 900) * interval '1 second' END,
       c.resolved_at
FROM helpdesk_conversation c
WHERE c.id %% 10 = 0 AND c.id BETWEEN %(first)s AND %(first)s + %(count)s - 1;

INSERT INTO handoff_rating (conversation_id, score, comment, created_at)
SELECT c.id, 1 + c.id %% 5, '', c.created_at + interval '6 minutes'
FROM helpdesk_conversation c
WHERE c.id %% 3 = 0 AND c.id BETWEEN %(first)s AND %(first)s + %(count)s - 1;
"""


def dropdb(name: str = DB_NAME) -> None:
    subprocess.run(
        ["dropdb", "--force", "--if-exists", "-h", "127.0.0.1", "-U", "postgres", name],
        check=True,
    )


def createdb(name: str = DB_NAME) -> None:
    """(Re)create an empty database on the local server; bench/dashboard.py uses it too."""
    dropdb(name)
    subprocess.run(["createdb", "-h", "127.0.0.1", "-U", "postgres", name], check=True)


def generate(*, first: int, count: int, t0: datetime, span: timedelta, site0: int) -> float:
    from django.db import connection

    started = time.monotonic()
    params = {"first": first, "count": count, "t0": t0, "span": span, "site0": site0}
    with connection.cursor() as cursor:
        for statement in CONVERSATIONS.split(";\n"):
            if statement.strip():
                cursor.execute(statement, params)
        cursor.execute("ANALYZE")
    return time.monotonic() - started


def timed(label: str | None, **kwargs):
    from analytics.aggregation import aggregate

    started = time.monotonic()
    report = aggregate(**kwargs)
    elapsed = time.monotonic() - started
    if label:
        print(f"{label:<38} {elapsed:7.3f} s   {report.keys} site-days, {report.daily_rows} rows")
    return elapsed


def summary(label: str, samples: list[float]) -> float:
    median = statistics.median(samples)
    print(f"{label:<38} median {median:.3f} s, slowest {max(samples):.3f} s ({len(samples)} runs)")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=10_000)
    parser.add_argument(
        "--days",
        type=int,
        default=DAYS,
        help="Days of history; halve it with --messages to keep the same data per day.",
    )
    parser.add_argument("--repeat", type=int, default=5, help="Timed runs of each kind.")
    parser.add_argument("--keep", action="store_true", help="Keep the database afterwards.")
    args = parser.parse_args()
    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgres"):
        sys.exit("Set DATABASE_URL to a PostgreSQL server (the database is created here).")

    createdb()
    os.environ["DATABASE_URL"] = base_url.rsplit("/", 1)[0] + "/" + DB_NAME
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from helpdesk.models import Site

    try:
        call_command("migrate", "--noinput", verbosity=0)
        sites = [Site.objects.create(name=f"Bench {i}", scope="Bench.") for i in range(SITES)]
        site0 = sites[0].pk
        conversations = args.messages // PER_CONVERSATION
        elapsed = generate(
            first=1, count=conversations, t0=START, span=timedelta(days=args.days), site0=site0
        )
        print(
            f"generated {args.messages:,} messages, {conversations:,} conversations "
            f"in {elapsed:.1f} s"
        )
        end = START + timedelta(days=args.days)
        now = end + timedelta(hours=1)
        full = summary(
            "full aggregation",
            [timed("  full", now=now, full=True) for _ in range(args.repeat)],
        )

        next_id = conversations + 1

        def arrive(new: int, at) -> None:
            nonlocal next_id
            count = new // PER_CONVERSATION
            generate(first=next_id, count=count, t0=at, span=timedelta(minutes=20), site0=site0)
            next_id += count

        samples = []
        for _ in range(args.repeat):
            now += timedelta(days=1)
            timed(None, now=now)  # catch up: the crossings of the 24 h idle line
            arrive(args.new, now)
            now += timedelta(minutes=30)
            samples.append(timed(f"  incremental after {args.new:,} messages", now=now))
        incremental = summary(f"incremental after {args.new:,} messages", samples)

        now += timedelta(days=1)
        timed(None, now=now)
        print("new data on one day:")
        for new in (args.new // 10, args.new, args.new * 10):
            arrive(new, now)
            now += timedelta(minutes=30)
            timed(f"  incremental after {new:,} messages", now=now)
        now += timedelta(minutes=30)
        timed("  incremental, nothing new", now=now)
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM analytics_dailysitestats")
            print(f"daily rows: {cursor.fetchone()[0]:,}")
        print(
            f"targets: full < 20 s: {'ok' if full < 20 else 'MISSED'}; "
            f"incremental < 1 s: {'ok' if incremental < 1 else 'MISSED'} (medians)"
        )
    finally:
        connection.close()
        if not args.keep:
            dropdb()


if __name__ == "__main__":
    main()
