import asyncio
import logging
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from asgiref.sync import SyncToAsync, sync_to_async
from celery import Celery
from celery.contrib.django.task import DjangoTask
from django.conf import settings
from django.db import connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk.settings")

logger = logging.getLogger(__name__)


class Task(DjangoTask):
    """Django's task class (`delay_on_commit`), and in-process tasks that leave their caller.

    With tasks in-process (the embedded default, `CELERY_TASK_ALWAYS_EAGER`), Celery runs a
    task inside `delay()`. Called from the consumers' ORM thread, that would hold every
    conversation's database work for the task's LLM call or webhook delivery. With
    `HELPDESK_EAGER_TASKS_IN_BACKGROUND` they run on other threads instead, as a worker would
    run them; `delay()` then returns None, nothing waits on their results.
    """

    def apply_async(self, args=None, kwargs=None, **options):
        if not (self.app.conf.task_always_eager and settings.HELPDESK_EAGER_TASKS_IN_BACKGROUND):
            return super().apply_async(args, kwargs, **options)
        _start_in_background(self, args, kwargs, options)
        return None


# Background tasks still running; held so none is collected half-way.
_running: set[Future] = set()


def _start_in_background(task: Task, args, kwargs, options) -> None:
    # Called from the server's ORM thread, a task runs in a thread of the server's event
    # loop (sync_to_async), so what it publishes through the in-memory channel layer is sent
    # on that loop, where the sockets listen (asgiref records the loop in that thread).
    loop = getattr(SyncToAsync.threadlocal, "main_event_loop", None)
    if loop is not None and loop.is_running():
        run = sync_to_async(_run_in_background, thread_sensitive=False)
        future = asyncio.run_coroutine_threadsafe(run(task, args, kwargs, options), loop)
    else:
        future = _background_pool().submit(_run_in_background, task, args, kwargs, options)
    _running.add(future)
    future.add_done_callback(_running.discard)


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _background_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=settings.HELPDESK_EAGER_TASK_THREADS, thread_name_prefix="task"
            )
        return _pool


def _run_in_background(task: Task, args, kwargs, options) -> None:
    try:
        task.apply(args, kwargs, **options)
    except Exception:
        logger.exception("Task %s failed", task.name)
    finally:
        # The pool's threads outlive the task; their connections must not.
        connections.close_all()


app = Celery("helpdesk", task_cls=Task)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
