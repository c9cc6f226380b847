from celery import shared_task
from celery.contrib.django.task import DjangoTask

from handoff.webhooks import WebhookDeliveryError, deliver, mark_delivery_failed


# DjangoTask, the app's default task class under Django, provides delay_on_commit().
class _WebhookDeliveryTask(DjangoTask):
    def on_failure(self, exc, task_id, args, kwargs, einfo):
        """Retries exhausted, or an error no retry would fix: stop showing it as pending."""
        delivery_id = kwargs.get("delivery_id", args[0] if args else None)
        if delivery_id is None:
            return
        # deliver() recorded the last attempt's own error; anything else is recorded here.
        error = "" if isinstance(exc, WebhookDeliveryError) else f"{type(exc).__name__}: {exc}"
        mark_delivery_failed(delivery_id, error=error)


@shared_task(
    base=_WebhookDeliveryTask,
    acks_late=True,
    autoretry_for=(WebhookDeliveryError,),
    # Waits of up to 1, 2, 4 … minutes, capped at an hour and jittered down: 8 retries
    # span up to about 3 hours, enough to outlast a receiver's deploy or a short outage.
    # With `retry_backoff=True` the unit would be one second, all 8 over within 4 minutes.
    retry_backoff=60,
    retry_backoff_max=3600,
    retry_jitter=True,
    max_retries=8,
)
def deliver_webhook(delivery_id: int) -> bool:
    """Safe to run twice: a delivery already delivered is not sent again."""
    return deliver(delivery_id)


@shared_task(acks_late=True)
def mark_abandoned_handoffs_task():
    """Safe to run twice: a handoff already abandoned is no longer waiting."""
    from handoff.services import mark_abandoned_handoffs

    return mark_abandoned_handoffs()


@shared_task(acks_late=True)
def check_sentiment_task(message_id: int) -> bool:
    """The LLM's sentiment check of one customer message (handoff.sentiment).

    Safe to run twice: once the conversation is with a person nothing is asked or changed.
    No retries: a verdict that comes late is of no use, and the lexicon has decided already.
    """
    from handoff.escalation import escalate_on_sentiment

    return escalate_on_sentiment(message_id=message_id) is not None
