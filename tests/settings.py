"""The project settings with the few values tests must pin."""

import os

from helpdesk.settings import *  # noqa: F403
from helpdesk.settings import CHANNEL_LAYERS, DATABASES, VAR_DIR

# Tests never reach a real provider, whatever the environment says; tests that want an
# LLM point OPENAI_BASE_URL at the fake server in tests/fake_llm.py.
OPENAI_API_KEY = ""
OPENAI_BASE_URL = ""
HELPDESK_LLM_MAX_RETRIES = 0

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # A file, not :memory:, so the browser tests' server thread sees the same database;
    # one per process, so parallel runs do not collide. A fresh clone has no var/ yet.
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}

if "CONFIG" in CHANNEL_LAYERS["default"]:
    CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = f"test-{os.getpid()}"

# Tasks run in the test's process, whatever broker the environment names, and inside the
# call that schedules them, so a test sees their effects when the call returns (tests of
# the background threads turn HELPDESK_EAGER_TASKS_IN_BACKGROUND on).
CELERY_TASK_ALWAYS_EAGER = True
HELPDESK_EAGER_TASKS_IN_BACKGROUND = False

# Every test sees its own writes at once.
HELPDESK_SITE_CACHE_SECONDS = 0
