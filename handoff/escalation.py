"""Applying the escalation policy to a conversation: the one door into the human queue.

The widget consumer calls `maybe_escalate` for each customer message while the bot owns the
conversation, and `escalate_after_bot` when the bot itself asked for a person (a tool call,
a moderation flag) or has just failed once too often.
"""

import functools
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from django.db import connection, transaction
from django.utils import translation
from django.utils.translation import gettext

from handoff import sentiment, services
from handoff.models import Handoff
from handoff.policy import (
    Decision,
    PolicyConfig,
    TurnFacts,
    bot_outcome,
    evaluate,
    priority_for,
    rule_on_state,
    rule_on_text,
)
from helpdesk import message_sql, prepared
from helpdesk.models import Conversation, Message

logger = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _notice(language: str) -> str:
    with translation.override(language or "en"):
        return gettext("Thanks — we're connecting you to a person. Please stay in this chat.")


@functools.cache
def _outcomes_sql(*, before_seq: bool) -> str:
    """The bot's latest answers since a person last had the conversation, newest first.

    A streak that led to a handoff must not count again once an agent returns the
    conversation to the bot: only answers given after the last handoff closed count.
    """
    # Hand-written SQL: it runs for every customer message before the bot answers, and
    # building this query through the ORM costs about 3 ms here against 0.2 ms to run it.
    # Prepared, as the same statement runs for every message.
    ops = connection.ops
    messages = ops.quote_name(Message._meta.db_table)
    handoffs = ops.quote_name(Handoff._meta.db_table)
    return (
        f"SELECT seq, answer_source, text, state FROM {messages} "  # noqa: S608
        "WHERE conversation_id = %s AND author = %s AND created_at > COALESCE("
        f"(SELECT MAX(COALESCE(resolved_at, created_at)) FROM {handoffs} "
        "WHERE conversation_id = %s), %s)"
        + (" AND seq < %s" if before_seq else "")
        + " ORDER BY seq DESC LIMIT %s"
    )


def _outcomes_params(conversation_id: int, before_seq: int | None, limit: int) -> list:
    params = [
        conversation_id,
        Message.Author.BOT,
        conversation_id,
        connection.ops.adapt_datetimefield_value(_EPOCH),
    ]
    if before_seq is not None:
        params.append(before_seq)
    return [*params, limit]


def _recent_outcomes(conversation_id: int, before_seq: int | None, limit: int) -> tuple[str, ...]:
    rows = prepared.fetch_all(
        _outcomes_sql(before_seq=before_seq is not None),
        _outcomes_params(conversation_id, before_seq, limit),
    )
    return tuple(bot_outcome(source, text, state) for _seq, source, text, state in reversed(rows))


def recent_outcomes_read(
    *, conversation_id: int, site_id: int, policy: PolicyConfig | None = None
) -> message_sql.SnapshotRead:
    """The bot's recent outcomes as a read of the statement that stores the customer's next
    message (it sees the conversation without that message); decode with
    `outcomes_of_read`. `policy` is the site's, when the caller has it."""
    limit = (policy or PolicyConfig.for_site(site_id)).failure_threshold
    return message_sql.SnapshotRead(
        _outcomes_read_sql(), tuple(_outcomes_params(conversation_id, None, limit))
    )


@functools.cache
def _outcomes_read_sql() -> str:
    return (
        "SELECT json_agg(json_build_array(o.answer_source, o.text, o.state) ORDER BY o.seq) "  # noqa: S608
        f"FROM ({_outcomes_sql(before_seq=False)}) o"
    )


def outcomes_of_read(value: list | None) -> tuple[str, ...]:
    return tuple(bot_outcome(source, text, state) for source, text, state in value or ())


def _escalate(conversation, decision) -> "services.Escalation":
    return services.escalate_conversation(
        conversation_id=conversation.pk,
        rule=decision.rule,
        reason=decision.reason,
        notice=_notice(conversation.language or conversation.visitor.language),
        priority=decision.priority,
        team_id=decision.team_id,
    )


def maybe_escalate(
    *,
    message_id: int,
    conversation_id: int,
    site_id: int,
    seq: int,
    text: str,
    recent_outcomes: tuple[str, ...] | None = None,
    before_escalating: "Callable[[], None] | None" = None,
) -> "services.Escalation | None":
    """Run the policy on a new customer message, before the bot; escalate when a rule fires.

    The caller passes what it has just stored, so the common case (no rule fires) reads only
    the bot's recent outcomes, or nothing when the caller read them with the message
    (`recent_outcomes_read`). A provider that is down is not checked here: the bot still
    answers from the knowledge base first, and `escalate_after_bot` then offers the human.
    `before_escalating` runs once a rule has fired, before anything is stored.
    """
    config = PolicyConfig.for_site(site_id)
    if recent_outcomes is None and seq == 1:
        recent_outcomes = ()  # the conversation's first message: no bot answer before it
    if recent_outcomes is None:
        recent_outcomes = _recent_outcomes(conversation_id, seq, config.failure_threshold)
    facts = TurnFacts(text=text, recent_bot_outcomes=recent_outcomes)
    decision = evaluate(facts, config)
    if decision.escalate:
        conversation = Conversation.objects.select_related("visitor").get(pk=conversation_id)
        if before_escalating is not None:
            before_escalating()
        return _escalate(conversation, decision)
    if _sentiment_check_due(config):
        from handoff.tasks import check_sentiment_task  # tasks imports this module

        # robust: a broker that is down must not fail the bot's answer; the lexicon stands.
        transaction.on_commit(lambda: check_sentiment_task.delay(message_id), robust=True)
    return None


def lets_bot_answer(
    *,
    policy: PolicyConfig,
    text: str,
    recent_outcomes: tuple[str, ...],
    text_let_through: bool | None = None,
) -> bool:
    """Whether `maybe_escalate` would leave the message to the bot and do nothing more, told
    with no I/O from the site's `policy` and the bot's recent outcomes: no rule fires, and
    no sentiment check is to be scheduled. `text_let_through` is what `text_lets_bot_answer`
    told, when it was asked already (while the message was being stored)."""
    if text_let_through is None:
        text_let_through = text_lets_bot_answer(policy=policy, text=text)
    if not text_let_through:
        return False
    facts = TurnFacts(text=text, recent_bot_outcomes=recent_outcomes)
    if rule_on_state(facts, policy).escalate:
        return False
    return not _sentiment_check_due(policy)


def text_lets_bot_answer(*, policy: PolicyConfig, text: str) -> bool:
    """Whether none of the rules that read only the message's text fires: the part of
    `lets_bot_answer` that needs nothing PostgreSQL reads."""
    return rule_on_text(text, policy) is None


def _sentiment_check_due(policy: PolicyConfig) -> bool:
    """Whether a message the rules let through goes to the LLM's sentiment check."""
    return policy.sentiment_check and sentiment.wanted(sentiment_llm=policy.sentiment_llm)


def escalate_on_sentiment(*, message_id: int) -> "services.Escalation | None":
    """Ask the LLM about a customer message the lexicon let through; escalate if it is angry.

    Only while the bot still has the conversation: by the time the task runs a person may
    have it, or it may be closed. Every failure leaves the conversation with the bot.
    """
    message = Message.objects.select_related("conversation__visitor").get(pk=message_id)
    conversation = message.conversation
    if conversation.status != Conversation.Status.BOT:
        return None
    verdict = sentiment.assess(
        site_id=conversation.site_id,
        conversation_id=conversation.pk,
        message_id=message.pk,
        text=message.text,
    )
    if verdict is None or not verdict.escalates:
        return None
    config = PolicyConfig.for_site(conversation.site_id)
    decision = Decision(
        escalate=True,
        rule=Handoff.Rule.SENTIMENT,
        reason=f"Angry or distressed customer (LLM, score {verdict.score}): {verdict.reason}",
        priority=priority_for(Handoff.Rule.SENTIMENT),
        team_id=config.default_team_id,
    )
    try:
        return _escalate(conversation, decision)
    except services.HandoffError:
        # Resolved meanwhile.
        logger.info("Conversation %s closed before its sentiment check.", conversation.pk)
        return None


def escalate_after_bot(
    *, conversation_id: int, provider_down: bool = False
) -> "services.Escalation | None":
    """After a bot answer: queue a conversation the bot handed over, that it failed once too
    often, or whose LLM provider is down."""
    conversation = Conversation.objects.select_related("visitor").get(pk=conversation_id)
    if conversation.status == Conversation.Status.WAITING:
        # The bot (a tool call or moderation) already asked for a person.
        rule = services.escalation_rule_for_reason(conversation.escalation_reason)
        open_handoff = Handoff.objects.open().filter(conversation=conversation).exists()
        if open_handoff:
            return None
        return services.escalate_conversation(
            conversation_id=conversation.pk,
            rule=rule,
            reason=conversation.escalation_reason,
            notice=_notice(conversation.language or conversation.visitor.language),
            priority=priority_for(rule),
        )
    if conversation.status != Conversation.Status.BOT:
        return None
    config = PolicyConfig.for_site(conversation.site_id)
    facts = TurnFacts(
        text="",
        recent_bot_outcomes=_recent_outcomes(conversation.pk, None, config.failure_threshold),
        provider_down=provider_down,
    )
    decision = evaluate(facts, config)
    return _escalate(conversation, decision) if decision.escalate else None
