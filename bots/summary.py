"""The rolling summary: older turns folded into a few sentences, off the customer's path.

After an answer is stored the engine asks `schedule_summary_if_due`; when enough messages have
piled up since the last summary, a Celery task folds all but the newest few into the summary,
so the prompt carries summary + recent turns and stays flat as the conversation grows.
"""

import time

from django.conf import settings
from django.db import transaction

from bots import services
from bots.llm import PROVIDER_ERRORS, get_sync_client, llm_configured
from bots.models import BotConfig, ConversationSummary
from bots.pii import redact
from bots.pricing import cost_of
from helpdesk.models import Conversation, Message

SUMMARY_INSTRUCTIONS = (
    "You keep the running summary of a customer-service chat for the assistant that answers "
    "it. Merge the previous summary and the new messages into one short summary (at most 120 "
    "words, in English): what the customer wants, facts they gave (order numbers, products, "
    "dates), what was answered or promised, and what is still open. Placeholders such as "
    "[EMAIL] stand for redacted personal data; keep them as they are. Output only the summary."
)
AUTHOR_LABELS = {
    Message.Author.VISITOR: "Customer",
    Message.Author.BOT: "Assistant",
    Message.Author.AGENT: "Agent",
}


def _pending(conversation_id: int) -> tuple[int, list[tuple[int, str, str]]]:
    """The summarized-up-to seq, and the messages after it that a summary would fold."""
    upto = (
        ConversationSummary.objects.filter(conversation_id=conversation_id)
        .values_list("upto_seq", flat=True)
        .first()
        or 0
    )
    rows = list(
        Message.objects.filter(
            conversation_id=conversation_id, seq__gt=upto, author__in=AUTHOR_LABELS
        )
        .exclude(text="")
        .exclude(state=Message.State.STREAMING)
        .order_by("seq")
        .values_list("seq", "author", "text")
    )
    return upto, rows


def summary_due(conversation_id: int) -> bool:
    _upto, rows = _pending(conversation_id)
    return len(rows) >= settings.HELPDESK_SUMMARY_TRIGGER


def schedule_summary_if_due(*, conversation_id: int) -> None:
    if llm_configured() and summary_due(conversation_id):
        from bots.tasks import summarize_conversation_task

        summarize_conversation_task.delay_on_commit(conversation_id)


def summarize_conversation(conversation_id: int) -> bool:
    """Fold older messages into the summary; False when there was nothing to do."""
    _upto, rows = _pending(conversation_id)
    if len(rows) < settings.HELPDESK_SUMMARY_TRIGGER:
        return False
    folded = rows[: len(rows) - settings.HELPDESK_SUMMARY_KEEP]
    if not folded:
        return False
    conversation = Conversation.objects.select_related("site").get(pk=conversation_id)
    config, _ = BotConfig.objects.get_or_create(site=conversation.site)
    previous = ConversationSummary.objects.filter(conversation_id=conversation_id).first()
    pii = 0
    lines = []
    for _seq, author, text in folded:
        cleaned = redact(text)
        pii += cleaned.total
        lines.append(f"{AUTHOR_LABELS[author]}: {cleaned.text}")
    transcript = "\n".join(lines)
    user_content = (
        f"Previous summary:\n{previous.text if previous else '(none)'}\n\n"
        f"New messages:\n{transcript}"
    )
    model = settings.HELPDESK_SUMMARY_MODEL or config.chat_model
    started = time.perf_counter()

    def audit(**fields) -> None:
        services.record_llm_calls(
            site_id=conversation.site_id,
            conversation_id=conversation_id,
            message_id=None,
            calls=[
                services.CallRecord(
                    kind="summary",
                    model=model,
                    parameters={"max_tokens": 300},
                    total_ms=round((time.perf_counter() - started) * 1000, 2),
                    pii_redacted=pii,
                    **fields,
                )
            ],
        )

    try:
        completion = get_sync_client().chat.completions.create(
            model=model,
            messages=[
                {"role": "system", "content": SUMMARY_INSTRUCTIONS},
                {"role": "user", "content": user_content},
            ],
            temperature=0,
            max_tokens=300,
        )
    except PROVIDER_ERRORS as exc:
        audit(outcome=type(exc).__name__)
        raise
    text = (completion.choices[0].message.content or "").strip()
    usage = completion.usage
    prompt_tokens = usage.prompt_tokens if usage else 0
    completion_tokens = usage.completion_tokens if usage else 0
    with transaction.atomic():
        services.save_summary(conversation_id=conversation_id, text=text, upto_seq=folded[-1][0])
        audit(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=cost_of(model, prompt_tokens, completion_tokens),
            prompt_text=user_content if config.store_prompts else "",
        )
    return True
