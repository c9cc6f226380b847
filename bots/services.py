"""Database work of one bot turn, called from the async engine through database_sync_to_async."""

from dataclasses import dataclass

from django.conf import settings
from django.utils import timezone

from helpdesk.models import Conversation, Message
from helpdesk.services import append_message


@dataclass(frozen=True)
class Turn:
    """Everything the engine needs to answer one customer message, read in one go."""

    site_id: int
    conversation_id: int
    question: str
    language: str
    scope: str
    model: str
    temperature: float
    max_tokens: int
    history: tuple[tuple[str, str], ...]


ROLE_OF_AUTHOR = {
    Message.Author.VISITOR: "user",
    Message.Author.BOT: "assistant",
    Message.Author.AGENT: "assistant",
}


def load_turn(*, conversation_id: int, message_id: int) -> Turn:
    conversation = Conversation.objects.select_related("site", "visitor").get(pk=conversation_id)
    site = conversation.site
    question = Message.objects.get(pk=message_id, conversation=conversation)
    recent = (
        conversation.messages.filter(seq__lte=question.seq, author__in=ROLE_OF_AUTHOR)
        .exclude(text="")
        .order_by("-seq")
        .values_list("author", "text")[: settings.HELPDESK_HISTORY_TURNS]
    )
    history = tuple((ROLE_OF_AUTHOR[author], text) for author, text in reversed(recent))
    return Turn(
        site_id=site.pk,
        conversation_id=conversation.pk,
        question=question.text,
        language=conversation.language or conversation.visitor.language or site.default_language,
        scope=site.scope,
        model=site.chat_model,
        temperature=site.temperature,
        max_tokens=site.max_tokens,
        history=history,
    )


def start_bot_message(*, conversation_id: int) -> dict:
    message = append_message(
        conversation_id=conversation_id,
        author=Message.Author.BOT,
        text="",
        state=Message.State.STREAMING,
    )
    return message.as_frame()


def finish_bot_message(
    *,
    message_id: int,
    text: str,
    interrupted: bool,
    source: str,
    model: str = "",
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    first_token_ms: float | None = None,
    total_ms: float | None = None,
) -> dict:
    message = Message.objects.get(pk=message_id)
    message.text = text
    message.state = Message.State.INTERRUPTED if interrupted else Message.State.COMPLETE
    message.completed_at = timezone.now()
    message.answer_source = source
    message.llm_model = model
    message.prompt_tokens = prompt_tokens
    message.completion_tokens = completion_tokens
    message.first_token_ms = first_token_ms
    message.total_ms = total_ms
    message.save()
    return message.as_frame()


def post_system_message(*, conversation_id: int, text: str) -> dict:
    return append_message(
        conversation_id=conversation_id, author=Message.Author.SYSTEM, text=text
    ).as_frame()
