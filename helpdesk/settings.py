"""One settings module; every difference between environments comes from the environment.

Unset variables give the embedded demo: SQLite under var/, the in-memory channel layer,
Celery in-process and the offline answerer. docs/configuration.md lists every variable.
"""

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.getenv("HELPDESK_VAR_DIR", BASE_DIR / "var"))


def env_str(name: str, default: str = "") -> str:
    return os.getenv(name, default).strip()


def env_bool(name: str, default: bool) -> bool:
    raw = os.getenv(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.getenv(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {raw!r}") from None


def env_float(name: str, default: float) -> float:
    raw = os.getenv(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {raw!r}") from None


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.getenv(name)
    if raw is None or raw.strip() == "":
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def redis_db_url(url: str, db: int) -> str:
    """The same Redis server on another database number, so layers never share keys."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


INSECURE_SECRET_KEY = "django-insecure-helpdesk-local-only"  # noqa: S105 - refused in production

DEBUG = env_bool("DJANGO_DEBUG", True)
SECRET_KEY = env_str("DJANGO_SECRET_KEY", INSECURE_SECRET_KEY)
if not DEBUG and SECRET_KEY == INSECURE_SECRET_KEY:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off (production mode)."
    )

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "helpdesk",
    "bots",
    "handoff",
    "analytics",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "helpdesk.urls"
ASGI_APPLICATION = "helpdesk.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = env_str("DATABASE_URL")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
    # Statements on the customer's path run prepared (helpdesk.prepared); off behind a
    # pooler in transaction mode that cannot keep prepared statements.
    HELPDESK_DB_PREPARED_STATEMENTS = env_bool("HELPDESK_DB_PREPARED_STATEMENTS", True)
    # Connections of each event loop of its own, for the statement that stores a customer
    # message (helpdesk.loop_db); 0 stores every message through the ORM thread.
    HELPDESK_DB_LOOP_CONNECTIONS = env_int("HELPDESK_DB_LOOP_CONNECTIONS", 4)
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # A psycopg pool instead of persistent connections: under ASGI each
        # database_sync_to_async thread would pin a connection nobody closes, and opening a
        # fresh one per query costs milliseconds on every customer message.
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            "min_size": env_int("HELPDESK_DB_POOL_MIN", 2),
            "max_size": env_int("HELPDESK_DB_POOL_MAX", 10),
            "timeout": env_float("HELPDESK_DB_POOL_TIMEOUT", 10.0),
        }
        if HELPDESK_DB_PREPARED_STATEMENTS:
            # psycopg prepares nothing when the threshold is None (Django's default), not
            # even on request; a huge one keeps automatic preparing off and lets
            # helpdesk.prepared ask for it.
            DATABASES["default"]["OPTIONS"]["prepare_threshold"] = 2**31 - 1
else:
    HELPDESK_DB_PREPARED_STATEMENTS = False
    HELPDESK_DB_LOOP_CONNECTIONS = 0
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": VAR_DIR / "helpdesk.sqlite3",
            # WAL lets the demo's readers and its one writer work side by side; with WAL,
            # synchronous=NORMAL cannot corrupt the file and saves an fsync per commit.
            # IMMEDIATE: a transaction takes the write lock when it begins, waiting up to the
            # timeout, instead of failing at once ("database is locked") when it reads first
            # and another thread (a background task) has written since.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # redis-py 8 caps a pool at 100 connections, and more raise at once instead
                # of waiting: a hundred sockets joining their groups together then fail with
                # "Too many connections".
                "hosts": [
                    {
                        "address": redis_db_url(
                            REDIS_URL, env_int("HELPDESK_REDIS_CHANNELS_DB", 0)
                        ),
                        "max_connections": env_int("HELPDESK_REDIS_MAX_CONNECTIONS", 1000),
                        # No socket timeout, as before redis-py 8. Its default of 5 s cuts
                        # off the layer's 5 s blocking pop (BZPOPMIN), and every socket
                        # quiet for 5 s loses its consumer (django/channels_redis#422).
                        # Any timeout also sends each command through asyncio.wait_for,
                        # which on Python 3.11 can swallow a cancellation: a closed
                        # socket's receive then never ends. redis-py's TCP keepalive
                        # (on by default) still finds a dead Redis.
                        "socket_timeout": None,
                    }
                ],
                "capacity": env_int("HELPDESK_CHANNEL_CAPACITY", 200),
                "expiry": 30,
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_db_url(REDIS_URL, env_int("HELPDESK_REDIS_CACHE_DB", 3)),
        }
    }
    CELERY_BROKER_URL = redis_db_url(REDIS_URL, env_int("HELPDESK_REDIS_BROKER_DB", 1))
    CELERY_RESULT_BACKEND = redis_db_url(REDIS_URL, env_int("HELPDESK_REDIS_RESULTS_DB", 2))
    CELERY_TASK_ALWAYS_EAGER = env_bool("HELPDESK_CELERY_EAGER", False)
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    CELERY_BROKER_URL = "memory://"
    CELERY_RESULT_BACKEND = "cache+memory://"
    CELERY_TASK_ALWAYS_EAGER = True

CELERY_TASK_EAGER_PROPAGATES = True
# In-process tasks (the embedded default) run on threads of their own, not inside the
# caller (helpdesk.celery.Task): an LLM call or a webhook never holds the consumers' work.
HELPDESK_EAGER_TASKS_IN_BACKGROUND = env_bool("HELPDESK_EAGER_TASKS_IN_BACKGROUND", True)
HELPDESK_EAGER_TASK_THREADS = env_int("HELPDESK_EAGER_TASK_THREADS", 4)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "aggregate-analytics": {"task": "analytics.tasks.aggregate_task", "schedule": 300.0},
    "cluster-question-topics": {"task": "analytics.tasks.cluster_topics", "schedule": 3600.0},
    "mark-abandoned-handoffs": {
        "task": "handoff.tasks.mark_abandoned_handoffs_task",
        "schedule": 60.0,
    },
}

# The LLM. With neither a key nor a base URL the bot uses the offline answerer.
OPENAI_API_KEY = env_str("OPENAI_API_KEY")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL")
HELPDESK_MODEL = env_str("HELPDESK_MODEL", "gpt-4o-mini")
HELPDESK_LLM_TIMEOUT = env_float("HELPDESK_LLM_TIMEOUT", 30.0)
HELPDESK_LLM_CONNECT_TIMEOUT = env_float("HELPDESK_LLM_CONNECT_TIMEOUT", 5.0)
HELPDESK_LLM_MAX_RETRIES = env_int("HELPDESK_LLM_MAX_RETRIES", 2)
HELPDESK_HISTORY_TURNS = env_int("HELPDESK_HISTORY_TURNS", 20)
# Extra or changed prices, JSON: {"model": [input, output]} in dollars per million tokens.
HELPDESK_PRICES = env_str("HELPDESK_PRICES")
HELPDESK_CIRCUIT_FAILURES = env_int("HELPDESK_CIRCUIT_FAILURES", 5)
HELPDESK_CIRCUIT_COOLDOWN = env_float("HELPDESK_CIRCUIT_COOLDOWN", 30.0)
# Moderation through the provider's endpoint: "auto" uses it when the provider has one.
HELPDESK_MODERATION = env_str("HELPDESK_MODERATION", "auto")
# The rolling summary: fold older turns once this many messages are unsummarized, keeping
# the newest HELPDESK_SUMMARY_KEEP as they are.
HELPDESK_SUMMARY_TRIGGER = env_int("HELPDESK_SUMMARY_TRIGGER", 16)
HELPDESK_SUMMARY_KEEP = env_int("HELPDESK_SUMMARY_KEEP", 8)
HELPDESK_SUMMARY_MODEL = env_str("HELPDESK_SUMMARY_MODEL")
# Question topics cluster by this embeddings model when set (and an LLM is configured);
# otherwise by TF-IDF on character n-grams, offline.
HELPDESK_EMBEDDING_MODEL = env_str("HELPDESK_EMBEDDING_MODEL")
HELPDESK_PROMPT_BUDGET = env_int("HELPDESK_PROMPT_BUDGET", 6000)
HELPDESK_CONTEXT_WINDOW = env_int("HELPDESK_CONTEXT_WINDOW", 0)
# Site settings and knowledge versions are cached per process this long (seconds): other
# workers see an admin change after at most this delay.
HELPDESK_SITE_CACHE_SECONDS = env_int("HELPDESK_SITE_CACHE_SECONDS", 2)

# Widget limits: a text frame larger than this is refused before it is parsed.
HELPDESK_MAX_FRAME_BYTES = env_int("HELPDESK_MAX_FRAME_BYTES", 4096)
HELPDESK_RATE_LIMIT_MESSAGES = env_int("HELPDESK_RATE_LIMIT_MESSAGES", 20)
HELPDESK_RATE_LIMIT_WINDOW = env_float("HELPDESK_RATE_LIMIT_WINDOW", 60.0)
HELPDESK_RESUME_BATCH = env_int("HELPDESK_RESUME_BATCH", 200)
# Visitor tokens are signed; a token older than this no longer opens its conversation.
HELPDESK_VISITOR_TOKEN_MAX_AGE = env_int("HELPDESK_VISITOR_TOKEN_MAX_AGE", 60 * 60 * 24 * 365)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("zh-hans", "简体中文")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
WHITENOISE_USE_FINDERS = True

SESSION_COOKIE_SECURE = not DEBUG and env_bool("DJANGO_SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("DJANGO_BEHIND_TLS_PROXY", False) else None
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("HELPDESK_LOG_LEVEL", "INFO")},
    "loggers": {"httpx2": {"level": "WARNING"}, "httpx": {"level": "WARNING"}},
}
