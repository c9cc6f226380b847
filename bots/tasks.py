from celery import shared_task

from bots.llm import PROVIDER_ERRORS
from bots.summary import summarize_conversation


@shared_task(
    acks_late=True,
    autoretry_for=PROVIDER_ERRORS,
    retry_backoff=True,
    retry_backoff_max=300,
    max_retries=5,
)
def summarize_conversation_task(conversation_id: int) -> bool:
    """Safe to run twice: a second run finds nothing left to fold."""
    return summarize_conversation(conversation_id)
