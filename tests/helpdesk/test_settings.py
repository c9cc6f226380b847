"""Settings come from the environment, with safe local defaults and loud failures."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "DATABASE_URL", "REDIS_URL"))
    }
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import helpdesk.settings as s; "
            "print(s.DATABASES['default']['ENGINE'], s.CHANNEL_LAYERS['default']['BACKEND'], "
            "s.CELERY_TASK_ALWAYS_EAGER, s.DEBUG)",
        ],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        check=False,
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
