"""What a quiet spell costs a round trip: PostgreSQL statements after pauses of 0 to 50 ms.

A customer's message arrives after seconds of quiet; by then the database backend (and the
server's own threads) sleep, and waking them costs more than the statement. This prints the
median and p99 of `SELECT 1` and of an INSERT with its commit (a WAL flush) after each pause,
on one connection, prepared.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/helpdesk \\
        .venv/bin/python bench/idle_latency.py [--rounds 100]
"""

import argparse
import os
import statistics
import sys
import time

import psycopg

PAUSES_MS = (0, 1, 5, 20, 50)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def timed(connection, sql: str, pause: float, rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        time.sleep(pause)
        started = time.perf_counter()
        connection.execute(sql, prepare=True)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL")
    if not url:
        sys.exit("Set DATABASE_URL to a PostgreSQL database.")
    table = f"bench_idle_{os.getpid()}"
    with psycopg.connect(url, autocommit=True) as connection:
        # A logged table: a temporary one writes no WAL, so its commit flushes nothing.
        connection.execute(f"CREATE TABLE {table} (n int)")
        try:
            print(f"PostgreSQL round trips after a pause, {args.rounds} rounds each, ms:")
            for pause_ms in PAUSES_MS:
                for name, sql in (
                    ("SELECT 1", "SELECT 1"),
                    ("INSERT + commit", f"INSERT INTO {table} VALUES (1)"),  # noqa: S608
                ):
                    times = timed(connection, sql, pause_ms / 1000, args.rounds)
                    print(
                        f"pause {pause_ms:3d} ms  {name:<16} "
                        f"median={statistics.median(times):6.3f}  p99={percentile(times, 99):6.3f}"
                    )
        finally:
            connection.execute(f"DROP TABLE {table}")


if __name__ == "__main__":
    main()
