"""Settings come from the environment, with safe local defaults and loud failures."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL", "HELPDESK_DB_"))
    }
    return subprocess.run(  # noqa: S603 - the test's own code
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def load_settings(**env: str) -> subprocess.CompletedProcess:
    return run_python(
        "import helpdesk.settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.CHANNEL_LAYERS['default']['BACKEND'], "
        "s.CELERY_TASK_ALWAYS_EAGER, s.DEBUG)",
        **env,
    )


def test_the_defaults_are_the_embedded_demo():
    result = load_settings()
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.sqlite3",
        "channels.layers.InMemoryChannelLayer",
        "True",
        "True",
    ]


def test_production_services_come_from_the_environment():
    result = load_settings(
        DATABASE_URL="postgres://u@db.example:5432/helpdesk",
        REDIS_URL="redis://cache.example:6379/0",
        DJANGO_DEBUG="0",
        DJANGO_SECRET_KEY="a-real-secret-for-this-test-only",
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.postgresql",
        "channels_redis.core.RedisChannelLayer",
        "False",
        "False",
    ]


def test_production_refuses_to_start_with_the_default_secret_key():
    result = load_settings(DJANGO_DEBUG="0")
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_a_malformed_boolean_fails_loudly():
    result = load_settings(DJANGO_DEBUG="perhaps")
    assert result.returncode != 0
    assert "DJANGO_DEBUG must be a boolean" in result.stderr


def test_postgresql_connections_may_prepare_unless_switched_off():
    code = (
        "import helpdesk.settings as s; "
        "print(s.HELPDESK_DB_PREPARED_STATEMENTS, "
        "s.DATABASES['default']['OPTIONS'].get('prepare_threshold'))"
    )
    url = "postgres://u@db.example:5432/helpdesk"
    on = run_python(code, DATABASE_URL=url)
    off = run_python(code, DATABASE_URL=url, HELPDESK_DB_PREPARED_STATEMENTS="0")
    embedded = run_python(code)
    assert on.stdout.split() == ["True", str(2**31 - 1)], on.stderr
    assert off.stdout.split() == ["False", "None"], off.stderr
    assert embedded.stdout.split() == ["False", "None"], embedded.stderr


def test_the_event_loops_own_connections_are_postgresql_only_and_configurable():
    code = "import helpdesk.settings as s; print(s.HELPDESK_DB_LOOP_CONNECTIONS)"
    url = "postgres://u@db.example:5432/helpdesk"
    assert run_python(code, DATABASE_URL=url).stdout.split() == ["4"]
    assert run_python(code, DATABASE_URL=url, HELPDESK_DB_LOOP_CONNECTIONS="1").stdout.split() == [
        "1"
    ]
    assert run_python(code).stdout.split() == ["0"]
    malformed = run_python(code, DATABASE_URL=url, HELPDESK_DB_LOOP_CONNECTIONS="many")
    assert "HELPDESK_DB_LOOP_CONNECTIONS must be an integer" in malformed.stderr


def test_the_asgi_entry_point_takes_start_up_objects_out_of_garbage_collection():
    result = run_python("import gc, helpdesk.asgi; print(gc.get_freeze_count())")
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 10_000


SQLITE_WRITERS = """
import threading, time
import django
django.setup()
from django.db import connection, transaction

with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE IF NOT EXISTS jot (n INTEGER)")
read = threading.Event()
errors = []

def reads_then_writes():
    try:
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SELECT COUNT(*) FROM jot")
                read.set()
                time.sleep(0.3)
                cursor.execute("INSERT INTO jot VALUES (1)")
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        read.set()
        connection.close()

def writes():
    read.wait()
    try:
        with connection.cursor() as cursor:
            cursor.execute("INSERT INTO jot VALUES (2)")
    except Exception as exc:
        errors.append(repr(exc))
    finally:
        connection.close()

threads = [threading.Thread(target=reads_then_writes), threading.Thread(target=writes)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
with connection.cursor() as cursor:
    cursor.execute("SELECT COUNT(*) FROM jot")
    print(errors, cursor.fetchone()[0])
"""


def test_the_embedded_database_lets_a_background_writer_wait_its_turn(tmp_path):
    # A transaction that reads, then writes after another thread wrote, fails at once with
    # "database is locked" unless it took the write lock when it began.
    result = run_python(
        SQLITE_WRITERS, HELPDESK_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="helpdesk.settings"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] 2"
