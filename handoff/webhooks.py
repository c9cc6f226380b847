"""Outgoing webhooks: signed JSON POSTs to a site's own endpoints when something happens.

`emit_event()` records one `WebhookDelivery` per subscribed webhook and schedules
`deliver_webhook` on commit; the task calls `deliver()`, which Celery retries with
exponential backoff until the receiver answers 2xx, then marks the delivery failed.

Delivery is at least once: a retry after a lost response, or a task run twice, sends the
same body again. Receivers deduplicate on the delivery id (`X-Helpdesk-Delivery`, also the
body's `"id"`).

Every request carries

    Content-Type: application/json
    User-Agent: Helpdesk-Webhooks/1
    X-Helpdesk-Event: handoff.created
    X-Helpdesk-Delivery: 42
    X-Helpdesk-Signature: t=1700000000,v1=<hex>

where `v1` is HMAC-SHA256, keyed with the webhook's secret, over `f"{t}.".encode() + body`
(the raw request body, byte for byte). Signing the timestamp with the body lets a receiver
refuse replays of an old request: see `verify()`, which receivers written in Python can
copy as it is.
"""

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import urlsplit

from django.db import transaction
from django.utils import timezone

from bots import site_cache
from handoff.models import Webhook, WebhookDelivery

try:
    # openai's HTTP client (the httpx API), so present wherever the bot is.
    import httpx2 as httpx
except ImportError:  # pragma: no cover - exercised by patching `httpx` to None in tests
    httpx = None

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Helpdesk-Signature"
EVENT_HEADER = "X-Helpdesk-Event"
DELIVERY_HEADER = "X-Helpdesk-Delivery"
USER_AGENT = "Helpdesk-Webhooks/1"
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0
ALLOWED_SCHEMES = ("http", "https")
# WebhookDelivery.error's max_length.
ERROR_MAX_LENGTH = 300


class WebhookDeliveryError(Exception):
    """The receiver did not accept a delivery (non-2xx, timeout, connection error): retry."""


def emit_event(*, site_id: int, event: str, payload: dict | Callable[[], dict]) -> int:
    """Queue `event` for every active webhook of the site subscribed to it; return how many.

    `payload` must be JSON-serializable; receivers get it as the body's `"data"`. Given as
    a function, it is built only when a webhook is subscribed (most sites have none, and
    some events are emitted on the customer's path). The deliveries are sent after the
    surrounding transaction commits, never for a rolled-back change.
    """
    if event not in Webhook.Event.values:
        raise ValueError(f"Unknown webhook event {event!r}.")
    subscriptions = site_cache.get(site_id, _subscriptions, kind="webhooks")
    if not any(_subscribed(events, event) for events in subscriptions):
        return 0
    # Read again, not from the cache: a webhook deleted meanwhile in another process would
    # fail the deliveries' foreign key at the caller's commit.
    webhooks = [
        webhook
        for webhook in _active_webhooks(site_id).order_by("id")
        if _subscribed(webhook.events, event)
    ]
    if not webhooks:
        return 0
    if callable(payload):
        payload = payload()
    with transaction.atomic():
        for webhook in webhooks:
            delivery = WebhookDelivery.objects.create(webhook=webhook, event=event, payload={})
            # The stored payload is the exact body, so every retry sends the same bytes.
            delivery.payload = {
                "id": delivery.id,
                "event": event,
                "created_at": delivery.created_at.isoformat(),
                "site": site_id,
                "data": payload,
            }
            delivery.save(update_fields=["payload"])
            _deliver_on_commit(delivery.id)
    return len(webhooks)


def _active_webhooks(site_id: int):
    return Webhook.objects.filter(site_id=site_id, is_active=True)


def _subscribed(events: list, event: str) -> bool:
    # Filtered in Python: JSONField `contains` is not supported on SQLite, and a site has
    # a handful of webhooks.
    return not events or event in events


def _subscriptions(site_id: int) -> tuple[list, ...]:
    """The events each active webhook of the site subscribes to (empty: all of them).

    Cached per process like the site's bot settings (bots.site_cache), so that a site with
    no webhook for an event costs no query: `conversation.started` is emitted on every
    customer's first message, before the bot answers. Another process sees a new
    subscription after at most HELPDESK_SITE_CACHE_SECONDS.
    """
    return tuple(_active_webhooks(site_id).values_list("events", flat=True))


def _deliver_on_commit(delivery_id: int) -> None:
    """`deliver_webhook.delay_on_commit()`, but robust: a broker that is down (or, in eager
    mode, a receiver that is down) is logged, never raised into the action that emitted the
    event once that action has committed."""
    from handoff.tasks import deliver_webhook  # tasks imports this module

    transaction.on_commit(lambda: deliver_webhook.delay(delivery_id), robust=True)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """HMAC-SHA256 hex digest of `f"{timestamp}.".encode() + body` keyed with `secret`."""
    message = f"{timestamp}.".encode() + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, timestamp: int) -> str:
    return f"t={timestamp},v1={sign(secret, body, timestamp)}"


def verify(
    secret: str, body: bytes, header: str, tolerance: int = 300, *, now: float | None = None
) -> bool:
    """Whether `header` (an X-Helpdesk-Signature value) signs `body` with `secret`.

    For receivers: pass the raw request body, not re-serialized JSON. Refuses a timestamp
    more than `tolerance` seconds from now (either way, for clock skew), so a captured
    request cannot be replayed later; the timestamp is signed with the body, so it cannot
    be changed either. Several `v1=` values are accepted, any one matching, so a sender
    can sign with an old and a new secret while it is rotated.
    """
    timestamp = None
    signatures = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value)
    try:
        timestamp = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, body, timestamp)
    return any(hmac.compare_digest(expected, signature) for signature in signatures)


def deliver(delivery_id: int) -> bool:
    """POST one delivery to its webhook; True once delivered.

    A delivery already delivered is not sent again. A permanent problem (a URL that is not
    http(s), a webhook switched off since) marks it failed and returns False; a refusal or
    a network error records the attempt and raises `WebhookDeliveryError` for a retry.
    Logs ids and status codes only: never the body, the secret or the URL, which often
    carries a token of its own.
    """
    delivery = WebhookDelivery.objects.select_related("webhook").filter(pk=delivery_id).first()
    if delivery is None:  # the webhook was deleted, and its deliveries with it
        return False
    if delivery.status == WebhookDelivery.Status.DELIVERED:
        return True
    webhook = delivery.webhook
    scheme = urlsplit(webhook.url).scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        mark_delivery_failed(delivery_id, error=f"Refused URL scheme {scheme!r}: use http(s).")
        logger.warning(
            "Webhook delivery %s refused: webhook %s is not http(s)", delivery_id, webhook.id
        )
        return False
    if not webhook.is_active:
        mark_delivery_failed(delivery_id, error="The webhook was switched off.")
        return False

    body = json.dumps(
        delivery.payload, separators=(",", ":"), sort_keys=True, ensure_ascii=False
    ).encode("utf-8")
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_HEADER: delivery.event,
        DELIVERY_HEADER: str(delivery.id),
        # Signed at each attempt, so a retry hours later is still within the tolerance.
        SIGNATURE_HEADER: signature_header(webhook.secret, body, int(time.time())),
    }
    post = _post_httpx if httpx is not None else _post_urllib
    status, error = post(webhook.url, body, headers)

    delivery.attempts += 1
    delivery.response_status = status
    if status is not None and 200 <= status < 300:
        delivery.status = WebhookDelivery.Status.DELIVERED
        delivery.delivered_at = timezone.now()
        delivery.error = ""
        delivery.save(
            update_fields=["status", "attempts", "response_status", "error", "delivered_at"]
        )
        logger.info(
            "Webhook delivery %s (%s) delivered to webhook %s: HTTP %s",
            delivery_id,
            delivery.event,
            webhook.id,
            status,
        )
        return True
    delivery.error = error[:ERROR_MAX_LENGTH]
    delivery.save(update_fields=["attempts", "response_status", "error"])
    logger.warning(
        "Webhook delivery %s (%s) to webhook %s failed, attempt %s: %s",
        delivery_id,
        delivery.event,
        webhook.id,
        delivery.attempts,
        delivery.error,
    )
    raise WebhookDeliveryError(f"Webhook delivery {delivery_id}: {delivery.error}")


def mark_delivery_failed(delivery_id: int, *, error: str = "") -> None:
    """Give up on a delivery; keeps the last attempt's error unless `error` is given."""
    fields = {"status": WebhookDelivery.Status.FAILED}
    if error:
        fields["error"] = error[:ERROR_MAX_LENGTH]
    # A concurrent run may have delivered it meanwhile: never downgrade that.
    WebhookDelivery.objects.filter(pk=delivery_id).exclude(
        status=WebhookDelivery.Status.DELIVERED
    ).update(**fields)


def _post_httpx(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
    """(status, error): status None when no response came back."""
    timeout = httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT)
    try:
        # Redirects are not followed: a webhook answers where it was registered. The body
        # is not read; the status says whether it was accepted.
        with (
            httpx.Client(timeout=timeout, follow_redirects=False) as client,
            client.stream("POST", url, content=body, headers=headers) as response,
        ):
            status = response.status_code
            return status, _status_error(status, response.reason_phrase)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        return None, _exception_error(exc)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


def _post_urllib(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str]:
    """The stdlib fallback. urllib has one socket timeout for connecting and reading, so
    the read timeout bounds both."""
    # deliver() has refused anything but http(s), so no file:// or ftp:// reaches urllib.
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=READ_TIMEOUT) as response:
            return response.status, _status_error(response.status, response.reason)
    except urllib.error.HTTPError as exc:  # non-2xx, redirects included
        exc.close()
        return exc.code, _status_error(exc.code, str(exc.reason))
    except (OSError, ValueError) as exc:  # URLError, timeouts, malformed URLs
        return None, _exception_error(exc)


def _status_error(status: int, reason: str) -> str:
    return "" if 200 <= status < 300 else f"HTTP {status} {reason}".strip()


def _exception_error(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
