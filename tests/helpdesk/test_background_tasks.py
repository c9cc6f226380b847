"""In-process tasks (the embedded default) run beside their caller, not inside it."""

import threading

import pytest

from helpdesk.celery import app

ran: dict[str, threading.Event | str] = {}


@app.task
def note_the_thread() -> str:
    ran["thread"] = threading.current_thread().name
    ran["done"].set()
    return "done"


@pytest.fixture
def clean_run():
    ran.clear()
    ran["done"] = threading.Event()
    return ran


def test_in_the_background_delay_returns_at_once_and_the_task_runs_elsewhere(settings, clean_run):
    settings.HELPDESK_EAGER_TASKS_IN_BACKGROUND = True
    assert note_the_thread.delay() is None
    assert clean_run["done"].wait(5)
    assert clean_run["thread"] != threading.current_thread().name
    assert clean_run["thread"].startswith("task")


def test_inside_the_caller_when_switched_off(settings, clean_run):
    settings.HELPDESK_EAGER_TASKS_IN_BACKGROUND = False
    assert note_the_thread.delay().get() == "done"
    assert clean_run["thread"] == threading.current_thread().name
