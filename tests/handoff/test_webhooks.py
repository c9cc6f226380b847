"""Outgoing webhooks against a real HTTP receiver on 127.0.0.1, with Celery eager."""

import json
import logging
import sys
import threading
import time
import types
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import transaction

from handoff import webhooks
from handoff.models import Webhook, WebhookDelivery
from handoff.tasks import deliver_webhook, mark_abandoned_handoffs_task
from handoff.webhooks import WebhookDeliveryError, deliver, emit_event, sign, verify
from helpdesk.celery import app as celery_app
from tests.conftest import make_site

SECRET = "whsec-test-5f1c9a"
HANDOFF_CREATED = Webhook.Event.HANDOFF_CREATED


class Receiver:
    """A webhook endpoint: records each request; answers the scripted statuses, then 200."""

    def __init__(self):
        self.requests = []
        self.statuses = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "body": body}
                )
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                if status in (301, 302, 307, 308):
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc_info):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    with Receiver() as receiver:
        yield receiver


@pytest.fixture(params=["httpx", "urllib"])
def transport(request, monkeypatch):
    """Run the test over httpx2 and over the stdlib fallback."""
    if request.param == "urllib":
        monkeypatch.setattr(webhooks, "httpx", None)
    return request.param


@pytest.fixture
def retries_inline(monkeypatch):
    """Let eager Celery run a task's retries at once, as a worker would after the backoff.

    The settings make eager tasks propagate errors, and then a retry escapes as `Retry`
    instead of running.
    """
    monkeypatch.setitem(celery_app.conf, "task_eager_propagates", False)


def make_webhook(site, url, **fields) -> Webhook:
    return Webhook.objects.create(site=site, url=url, secret=SECRET, **fields)


def make_delivery(webhook, data=None) -> WebhookDelivery:
    return WebhookDelivery.objects.create(
        webhook=webhook,
        event=HANDOFF_CREATED,
        payload={"id": 1, "event": HANDOFF_CREATED, "data": data or {"handoff": 7}},
    )


@pytest.mark.django_db
def test_emit_posts_a_signed_event_after_commit(site, receiver, django_capture_on_commit_callbacks):
    webhook = make_webhook(site, f"{receiver.url}/hooks/helpdesk")
    data = {"handoff": 7, "reason": "Kunde möchte einen Menschen"}

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert emit_event(site_id=site.id, event=HANDOFF_CREATED, payload=data) == 1
        assert receiver.requests == []  # nothing leaves before the commit
    assert len(callbacks) == 1

    delivery = WebhookDelivery.objects.get()
    assert delivery.webhook == webhook
    assert delivery.status == WebhookDelivery.Status.DELIVERED
    assert delivery.attempts == 1
    assert delivery.response_status == 200
    assert delivery.delivered_at is not None

    [request] = receiver.requests
    assert request["path"] == "/hooks/helpdesk"
    headers = request["headers"]
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "Helpdesk-Webhooks/1"
    assert headers["X-Helpdesk-Event"] == "handoff.created"
    assert headers["X-Helpdesk-Delivery"] == str(delivery.id)

    body = request["body"]
    envelope = json.loads(body)
    assert envelope == {
        "id": delivery.id,
        "event": "handoff.created",
        "created_at": delivery.created_at.isoformat(),
        "site": site.id,
        "data": data,
    }
    # Compact, sorted, UTF-8 (not \u escapes): the bytes a receiver verifies.
    assert (
        body
        == json.dumps(envelope, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()
    )

    header = headers["X-Helpdesk-Signature"]
    timestamp = int(header.split(",")[0].removeprefix("t="))
    assert abs(time.time() - timestamp) < 60
    assert header == f"t={timestamp},v1={sign(SECRET, body, timestamp)}"
    assert verify(SECRET, body, header)
    assert not verify("another-secret", body, header)
    assert not verify(SECRET, body.replace(b"7", b"8"), header)
    # The timestamp is signed too: moving it breaks the signature ...
    signature = header.split("v1=")[1]
    assert not verify(SECRET, body, f"t={timestamp + 1},v1={signature}")
    # ... and a correctly signed but old request is a replay.
    old = timestamp - 301
    assert not verify(SECRET, body, f"t={old},v1={sign(SECRET, body, old)}")
    assert verify(SECRET, body, f"t={old},v1={sign(SECRET, body, old)}", tolerance=400)
    assert not verify(SECRET, body, "v1=" + signature)
    assert not verify(SECRET, body, "garbage")


@pytest.mark.django_db
def test_emit_sends_to_subscribed_active_webhooks_of_the_site_only(
    site, receiver, django_capture_on_commit_callbacks
):
    subscribed = make_webhook(site, f"{receiver.url}/subscribed", events=[HANDOFF_CREATED])
    everything = make_webhook(site, f"{receiver.url}/everything", events=[])
    make_webhook(site, f"{receiver.url}/ratings", events=[Webhook.Event.RATING_RECEIVED])
    make_webhook(site, f"{receiver.url}/inactive", is_active=False)
    make_webhook(make_site(name="Other"), f"{receiver.url}/other-site")

    with django_capture_on_commit_callbacks(execute=True):
        sent = emit_event(site_id=site.id, event=HANDOFF_CREATED, payload={"handoff": 1})

    assert sent == 2
    assert {d.webhook for d in WebhookDelivery.objects.all()} == {subscribed, everything}
    assert sorted(r["path"] for r in receiver.requests) == ["/everything", "/subscribed"]


@pytest.mark.django_db
def test_a_payload_given_as_a_function_is_built_only_for_a_subscribed_webhook(
    site, receiver, django_capture_on_commit_callbacks
):
    built = []

    def payload() -> dict:
        built.append(True)
        return {"handoff": 7}

    make_webhook(site, f"{receiver.url}/ratings", events=[Webhook.Event.RATING_RECEIVED])
    assert emit_event(site_id=site.id, event=HANDOFF_CREATED, payload=payload) == 0
    assert built == []

    make_webhook(site, f"{receiver.url}/handoffs", events=[HANDOFF_CREATED])
    with django_capture_on_commit_callbacks(execute=True):
        assert emit_event(site_id=site.id, event=HANDOFF_CREATED, payload=payload) == 1
    assert built == [True]
    assert json.loads(receiver.requests[0]["body"])["data"] == {"handoff": 7}


@pytest.mark.django_db
def test_emit_refuses_unknown_events(site, receiver):
    make_webhook(site, receiver.url)

    with pytest.raises(ValueError, match=r"handoff\.exploded"):
        emit_event(site_id=site.id, event="handoff.exploded", payload={})

    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_emit_sends_nothing_when_the_transaction_rolls_back(
    site, receiver, django_capture_on_commit_callbacks
):
    make_webhook(site, receiver.url)

    def change_that_fails():
        with transaction.atomic():
            emit_event(site_id=site.id, event=HANDOFF_CREATED, payload={})
            raise RuntimeError("the change that emitted the event failed")

    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
    ):
        change_that_fails()

    assert callbacks == []
    assert receiver.requests == []
    assert not WebhookDelivery.objects.exists()


@pytest.mark.django_db
def test_task_retries_until_the_receiver_accepts(
    site, receiver, retries_inline, django_capture_on_commit_callbacks
):
    make_webhook(site, receiver.url)
    receiver.statuses = [500, 500]

    with django_capture_on_commit_callbacks(execute=True):
        emit_event(site_id=site.id, event=HANDOFF_CREATED, payload={"handoff": 1})

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.DELIVERED
    assert delivery.attempts == 3
    assert delivery.response_status == 200
    assert delivery.error == ""
    assert len(receiver.requests) == 3
    # Every attempt is the same delivery with the same body, re-signed.
    assert {r["headers"]["X-Helpdesk-Delivery"] for r in receiver.requests} == {str(delivery.id)}
    assert len({r["body"] for r in receiver.requests}) == 1
    assert all(
        verify(SECRET, r["body"], r["headers"]["X-Helpdesk-Signature"]) for r in receiver.requests
    )


@pytest.mark.django_db
def test_task_marks_the_delivery_failed_when_retries_run_out(
    site, receiver, retries_inline, django_capture_on_commit_callbacks
):
    make_webhook(site, receiver.url)
    receiver.statuses = [503] * 20

    with django_capture_on_commit_callbacks(execute=True):
        emit_event(site_id=site.id, event=HANDOFF_CREATED, payload={"handoff": 1})

    delivery = WebhookDelivery.objects.get()
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.attempts == 1 + deliver_webhook.max_retries
    assert len(receiver.requests) == 1 + deliver_webhook.max_retries
    assert delivery.response_status == 503
    assert delivery.error == "HTTP 503 Service Unavailable"
    assert delivery.delivered_at is None


@pytest.mark.django_db
def test_a_failing_receiver_never_breaks_the_emitting_caller(
    site, receiver, caplog, django_capture_on_commit_callbacks
):
    """With the settings' eager propagation, the first failure escapes the task as `Retry`:
    it is logged, not raised into the code whose transaction emitted the event."""
    make_webhook(site, receiver.url)
    receiver.statuses = [500]

    with django_capture_on_commit_callbacks(execute=True):
        emit_event(site_id=site.id, event=HANDOFF_CREATED, payload={"handoff": 1})

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 1, 500)
    assert "on_commit" in caplog.text


def test_task_retry_configuration():
    assert deliver_webhook.acks_late is True
    assert deliver_webhook.autoretry_for == (WebhookDeliveryError,)
    # 60 s, not True (1 s): the waits grow from a minute to the one-hour cap.
    assert deliver_webhook.retry_backoff == 60
    assert deliver_webhook.retry_backoff_max == 3600
    assert deliver_webhook.retry_jitter is True
    assert deliver_webhook.max_retries == 8


@pytest.mark.django_db
def test_deliver_records_each_attempt(site, receiver, transport):
    delivery = make_delivery(make_webhook(site, receiver.url))
    receiver.statuses = [500, 404]

    with pytest.raises(WebhookDeliveryError, match="HTTP 500"):
        deliver(delivery.id)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 1, 500)
    assert delivery.error == "HTTP 500 Internal Server Error"

    with pytest.raises(WebhookDeliveryError, match="HTTP 404"):
        deliver(delivery.id)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("pending", 2, 404)

    assert deliver(delivery.id) is True
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_status) == ("delivered", 3, 200)
    assert delivery.error == ""
    assert delivery.delivered_at is not None
    request = receiver.requests[-1]
    assert verify(SECRET, request["body"], request["headers"]["X-Helpdesk-Signature"])
    assert request["headers"]["User-Agent"] == "Helpdesk-Webhooks/1"


@pytest.mark.django_db
def test_deliver_does_not_follow_redirects(site, receiver, transport):
    delivery = make_delivery(make_webhook(site, receiver.url))
    receiver.statuses = [302]

    with pytest.raises(WebhookDeliveryError):
        deliver(delivery.id)

    delivery.refresh_from_db()
    assert delivery.response_status == 302
    assert [r["path"] for r in receiver.requests] == ["/"]


@pytest.mark.django_db
def test_deliver_records_connection_errors(site, transport):
    with Receiver() as closed:
        url = closed.url
    delivery = make_delivery(make_webhook(site, url))

    with pytest.raises(WebhookDeliveryError):
        deliver(delivery.id)

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.PENDING
    assert delivery.attempts == 1
    assert delivery.response_status is None
    assert "refused" in delivery.error.lower()


@pytest.mark.django_db
def test_deliver_truncates_long_errors(site, monkeypatch):
    delivery = make_delivery(make_webhook(site, "http://127.0.0.1:9/"))
    monkeypatch.setattr(webhooks, "_post_httpx", lambda *args: (None, "x" * 5000))
    monkeypatch.setattr(webhooks, "_post_urllib", lambda *args: (None, "x" * 5000))

    with pytest.raises(WebhookDeliveryError):
        deliver(delivery.id)

    delivery.refresh_from_db()
    assert delivery.error == "x" * 300


@pytest.mark.django_db
def test_a_delivered_delivery_is_not_sent_again(site, receiver):
    delivery = make_delivery(make_webhook(site, receiver.url))

    assert deliver_webhook.delay(delivery.id).get() is True
    assert deliver_webhook.delay(delivery.id).get() is True
    assert deliver(delivery.id) is True

    assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert delivery.attempts == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "ftp://127.0.0.1/hook", "gopher://127.0.0.1/", "127.0.0.1/x"]
)
def test_non_http_urls_are_refused_without_retries(site, url, monkeypatch):
    def must_not_post(*args):
        raise AssertionError("posted to a refused URL")

    monkeypatch.setattr(webhooks, "_post_httpx", must_not_post)
    monkeypatch.setattr(webhooks, "_post_urllib", must_not_post)
    delivery = make_delivery(make_webhook(site, url))

    assert deliver_webhook.delay(delivery.id).get() is False

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert delivery.attempts == 0
    assert "Refused URL scheme" in delivery.error


@pytest.mark.django_db
def test_a_delivery_whose_webhook_was_deleted_is_dropped(site):
    delivery = make_delivery(make_webhook(site, "http://127.0.0.1:9/"))
    delivery.webhook.delete()

    assert deliver_webhook.delay(delivery.id).get() is False


@pytest.mark.django_db
def test_a_webhook_switched_off_after_the_event_is_not_called(site, receiver):
    webhook = make_webhook(site, receiver.url)
    delivery = make_delivery(webhook)
    Webhook.objects.filter(pk=webhook.pk).update(is_active=False)

    assert deliver(delivery.id) is False

    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.FAILED
    assert receiver.requests == []


@pytest.mark.django_db
def test_the_secret_and_payload_never_reach_the_logs(
    site, receiver, caplog, retries_inline, django_capture_on_commit_callbacks
):
    caplog.set_level(logging.DEBUG)
    make_webhook(site, receiver.url)
    marker = "customer-said-something-private"
    receiver.statuses = [500]

    with django_capture_on_commit_callbacks(execute=True):
        emit_event(site_id=site.id, event=HANDOFF_CREATED, payload={"text": marker})
    receiver.statuses = [500] * 20
    with django_capture_on_commit_callbacks(execute=True):
        emit_event(site_id=site.id, event=HANDOFF_CREATED, payload={"text": marker})

    delivered, failed = WebhookDelivery.objects.order_by("id")
    messages = [record.getMessage() for record in caplog.records]
    # Both deliveries were logged about, so the assertions below are not vacuous.
    assert any(f"delivery {delivered.id} " in m and "delivered" in m for m in messages)
    assert any(f"delivery {failed.id} " in m and "failed" in m for m in messages)
    assert SECRET not in caplog.text
    assert marker not in caplog.text
    for record in caplog.records:
        assert SECRET not in repr(record.__dict__)
        assert marker not in repr(record.__dict__)


def test_mark_abandoned_handoffs_task_calls_the_service(monkeypatch):
    calls = []
    service = types.ModuleType("handoff.services")
    service.mark_abandoned_handoffs = lambda: calls.append("called") or 2
    monkeypatch.setitem(sys.modules, "handoff.services", service)

    assert mark_abandoned_handoffs_task.delay().get() == 2
    assert calls == ["called"]


@pytest.mark.django_db
def test_with_nothing_subscribed_an_event_costs_no_query_once_the_site_is_cached(
    site, receiver, settings, django_assert_num_queries
):
    settings.HELPDESK_SITE_CACHE_SECONDS = 60
    make_webhook(site, f"{receiver.url}/ratings", events=[Webhook.Event.RATING_RECEIVED])
    assert emit_event(site_id=site.id, event=HANDOFF_CREATED, payload={"handoff": 1}) == 0
    with django_assert_num_queries(0):
        assert emit_event(site_id=site.id, event=HANDOFF_CREATED, payload={"handoff": 2}) == 0


@pytest.mark.django_db
def test_a_webhook_saved_in_this_process_gets_the_next_event_despite_the_cache(
    site, receiver, settings, django_capture_on_commit_callbacks
):
    settings.HELPDESK_SITE_CACHE_SECONDS = 60
    assert emit_event(site_id=site.id, event=HANDOFF_CREATED, payload={"handoff": 1}) == 0
    webhook = make_webhook(site, f"{receiver.url}/handoffs", events=[HANDOFF_CREATED])
    with django_capture_on_commit_callbacks(execute=True):
        assert emit_event(site_id=site.id, event=HANDOFF_CREATED, payload={"handoff": 2}) == 1
    assert [r["path"] for r in receiver.requests] == ["/handoffs"]
    webhook.delete()
    assert emit_event(site_id=site.id, event=HANDOFF_CREATED, payload={"handoff": 3}) == 0


@pytest.mark.django_db
def test_a_webhook_deleted_by_another_process_while_cached_gets_no_delivery(
    site, receiver, settings
):
    from django.db import connection

    settings.HELPDESK_SITE_CACHE_SECONDS = 60
    webhook = make_webhook(site, f"{receiver.url}/handoffs", events=[HANDOFF_CREATED])
    assert emit_event(site_id=site.id, event=HANDOFF_CREATED, payload={"handoff": 1}) == 1
    with connection.cursor() as cursor:  # no signal, as from another process
        cursor.execute("DELETE FROM handoff_webhookdelivery")
        cursor.execute("DELETE FROM handoff_webhook WHERE id = %s", [webhook.pk])
    assert emit_event(site_id=site.id, event=HANDOFF_CREATED, payload={"handoff": 2}) == 0
    assert not WebhookDelivery.objects.exists()
