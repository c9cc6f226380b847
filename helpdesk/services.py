"""Writes to conversations. Every stored message takes the conversation's next sequence number."""

import dataclasses
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from helpdesk import loop_db, message_sql, prepared
from helpdesk.languages import supported_language
from helpdesk.models import Conversation, Message, Site, Visitor
from helpdesk.tokens import make_visitor_token, read_visitor_token


@dataclass(frozen=True)
class SiteInfo:
    """What a websocket connection keeps about its site; never a model instance."""

    id: int
    key: str
    greeting: str
    allowed_origins: tuple[str, ...]


@dataclass(frozen=True)
class VisitorSession:
    visitor_id: int
    token: str
    conversation: dict | None


@dataclass(frozen=True)
class RecordedMessage:
    message: dict
    conversation_id: int
    conversation_status: str
    created: bool
    # The values of the caller's snapshot reads, when the statement that stored the message
    # ran them and nothing else was stored in the conversation meanwhile; else None.
    reads: tuple | None = None
    # The bot's answer, stored empty and streaming right after the message, when the caller
    # asked for it and the bot has the conversation; fill it in or `release_answer` it.
    answer: dict | None = None
    # The language of the conversation the message opened ("" when unknown); None when
    # it went into a conversation that was open already.
    opened_in: str | None = None


def get_active_site(*, key: str) -> SiteInfo | None:
    site = Site.objects.filter(key=key, is_active=True).first()
    if site is None:
        return None
    return SiteInfo(
        id=site.pk,
        key=site.key,
        greeting=site.greeting,
        allowed_origins=tuple(site.allowed_origins),
    )


def conversation_summary(conversation: Conversation | None) -> dict | None:
    if conversation is None:
        return None
    return {"id": conversation.pk, "status": conversation.status, "seq": conversation.last_seq}


def open_visitor_session(
    *, site_id: int, token: str | None, language: str = "", page_url: str = "", user_agent: str = ""
) -> VisitorSession:
    """The visitor a token names, or a new one when the token is missing, forged or foreign."""
    uid = read_visitor_token(token, site_id=site_id)
    visitor = Visitor.objects.filter(site_id=site_id, uid=uid).first() if uid else None
    fields = {
        "language": supported_language(language) if language else "",
        "page_url": page_url,
        "user_agent": user_agent[:500],
    }
    if visitor is None:
        visitor = Visitor.objects.create(site_id=site_id, **fields)
    else:
        changed = {name: value for name, value in fields.items() if value}
        Visitor.objects.filter(pk=visitor.pk).update(last_seen_at=timezone.now(), **changed)
    conversation = visitor.conversations.open().order_by("-created_at").first()
    return VisitorSession(
        visitor_id=visitor.pk,
        token=make_visitor_token(site_id=site_id, visitor_uid=visitor.uid),
        conversation=conversation_summary(conversation),
    )


def _take_seq(
    conversation_id: int, *, visitor_id: int | None = None, reserve_answer: bool = False
) -> tuple[int, str] | None:
    """The conversation's next sequence number and its status; None when there is no such
    conversation (or, given `visitor_id`, none of that visitor still open). With
    `reserve_answer`, a conversation the bot has gives two numbers, and this returns the
    second (the answer's)."""
    # The UPDATE holds the conversation's row lock until commit, so concurrent writers of
    # one conversation take numbers one after another and none is skipped or repeated.
    # One statement with RETURNING (PostgreSQL, SQLite 3.35+) instead of the ORM's UPDATE
    # and SELECT: this runs for every message, on the path to the ack and the first token.
    ops = connection.ops
    table = ops.quote_name(Conversation._meta.db_table)
    numbers = "CASE WHEN status = %s THEN 2 ELSE 1 END" if reserve_answer else "1"
    sql = f"UPDATE {table} SET last_seq = last_seq + {numbers}, updated_at = %s WHERE id = %s"  # noqa: S608
    params = [ops.adapt_datetimefield_value(timezone.now()), conversation_id]
    if reserve_answer:
        params.insert(0, Conversation.Status.BOT)
    if visitor_id is not None:
        sql += " AND visitor_id = %s AND status <> %s"
        params += [visitor_id, Conversation.Status.RESOLVED]
    with connection.cursor() as cursor:
        cursor.execute(sql + " RETURNING last_seq, status", params)
        row = cursor.fetchone()
    return (row[0], row[1]) if row is not None else None


def _next_seq(conversation_id: int) -> int:
    taken = _take_seq(conversation_id)
    if taken is None:
        raise Conversation.DoesNotExist(f"No conversation {conversation_id}.")
    return taken[0]


def append_message(*, conversation_id: int, author: str, text: str, **fields) -> Message:
    """Store one message at the conversation's next sequence number."""
    if message_sql.supported():
        return _append_in_one_statement(
            Message(conversation_id=conversation_id, author=author, text=text, **fields)
        )
    # No savepoint when a caller's transaction is open: it rolls back as one anyway.
    with transaction.atomic(savepoint=False):
        seq = _next_seq(conversation_id)
        return Message.objects.create(
            conversation_id=conversation_id, seq=seq, author=author, text=text, **fields
        )


def _append_in_one_statement(message: Message) -> Message:
    row = prepared.write_one(message_sql.append_sql(), message_sql.append_params(message))
    if row is None:
        raise Conversation.DoesNotExist(f"No conversation {message.conversation_id}.")
    return _stored_as(message, *row)


def _stored_as(message: Message, pk: int, seq: int) -> Message:
    """The instance of a message a statement stored, as the ORM would leave it."""
    message.pk, message.seq = pk, seq
    message._state.adding = False
    return message


def _store_into_open_conversation(
    *,
    visitor_id: int,
    conversation_id: int,
    client_id: uuid.UUID,
    text: str,
    reads: tuple[message_sql.SnapshotRead, ...],
    reserve_answer: bool,
    while_storing: Callable[[], None] | None,
) -> RecordedMessage | None:
    """The common case in one statement: a new message into the open conversation the
    visitor last saw. None when the client id is stored already or the conversation has
    closed; the caller then takes the general path."""
    statement = _OpenConversationStatement(
        visitor_id=visitor_id,
        conversation_id=conversation_id,
        client_id=client_id,
        text=text,
        reads=reads,
        reserve_answer=reserve_answer,
    )
    try:
        row = prepared.write_one(
            statement.sql, statement.params, savepoint=True, while_waiting=while_storing
        )
    except IntegrityError:
        return None  # another tab stored the same client id meanwhile
    return statement.recorded(row)


async def store_into_open_conversation_on_loop(
    *,
    visitor_id: int,
    conversation_id: int,
    client_id: uuid.UUID,
    text: str,
    reads: tuple[message_sql.SnapshotRead, ...],
    while_storing: Callable[[], None] | None = None,
) -> RecordedMessage | None:
    """`record_visitor_message`'s common case with the bot's answer reserved, run on the
    event loop (helpdesk.loop_db) while it can: PostgreSQL, a loop connection free, the
    client id new and the conversation open. None otherwise, and then the caller stores the
    message with `record_visitor_message` in the ORM thread (which finds it if PostgreSQL
    stored it here before failing). `while_storing` is `loop_db.write_one`'s
    `while_waiting`."""
    if not (message_sql.supported() and loop_db.enabled()):
        return None
    statement = _OpenConversationStatement(
        visitor_id=visitor_id,
        conversation_id=conversation_id,
        client_id=client_id,
        text=text,
        reads=reads,
        reserve_answer=True,
    )
    try:
        row = await loop_db.write_one(statement.sql, statement.params, while_waiting=while_storing)
    except loop_db.Unavailable:
        return None
    return statement.recorded(row)


class _OpenConversationStatement:
    """`message_sql.visitor_message_sql` for one message: its SQL and parameters, and what
    its row means."""

    def __init__(
        self,
        *,
        visitor_id: int,
        conversation_id: int,
        client_id: uuid.UUID,
        text: str,
        reads: tuple[message_sql.SnapshotRead, ...],
        reserve_answer: bool,
    ) -> None:
        self.message = _visitor_message(conversation_id, text=text, client_id=client_id)
        self.answer = _reserved_answer(conversation_id) if reserve_answer else None
        self.reads = reads
        self.sql = message_sql.visitor_message_sql(
            tuple(read.sql for read in reads), reserve_answer=reserve_answer
        )
        self.params = message_sql.visitor_message_params(
            self.message, visitor_id=visitor_id, reads=reads, answer=self.answer
        )

    def recorded(self, row: tuple | None) -> RecordedMessage | None:
        if row is None:
            return None
        pk, seq, status = row[:3]
        recorded = _recorded(_stored_as(self.message, pk, seq), status, created=True)
        rest = row[3:]
        if self.answer is not None:
            answer_id, rest = rest[0], rest[1:]
            if answer_id is not None:
                recorded = dataclasses.replace(
                    recorded, answer=_stored_as(self.answer, answer_id, seq + 1).as_frame()
                )
        if self.reads and rest[0] == seq - 1:
            recorded = dataclasses.replace(recorded, reads=tuple(rest[1:]))
        return recorded


def _open_with_first_message(
    *,
    visitor_id: int,
    client_id: uuid.UUID,
    text: str,
    reserve_answer: bool,
    while_storing: Callable[[], None] | None,
) -> RecordedMessage | None:
    """The visitor's new conversation opened with the message: the visitor's lock and the
    writes in one round trip. None when the visitor has an open conversation or the client
    id is stored already; the caller then takes the general path."""
    # A new conversation is the bot's, and starts with its first numbers taken.
    conversation = Conversation(last_seq=2 if reserve_answer else 1)
    message = _visitor_message(None, text=text, client_id=client_id)
    answer = _reserved_answer(None, seq=2) if reserve_answer else None
    try:
        row = prepared.write_together(
            [
                (message_sql.lock_visitor_sql(), [visitor_id]),
                (
                    message_sql.opening_message_sql(reserve_answer=reserve_answer),
                    message_sql.opening_message_params(
                        conversation, message, visitor_id=visitor_id, answer=answer
                    ),
                ),
            ],
            savepoint=True,
            while_waiting=while_storing,
        )
    except IntegrityError:
        return None  # another tab stored the same client id meanwhile
    if row is None:
        return None
    conversation_id, status, language, message_id = row[:4]
    message.conversation_id = conversation_id
    recorded = _recorded(
        _stored_as(message, message_id, 1), status, created=True, opened_in=language
    )
    if answer is None:
        return recorded
    answer.conversation_id = conversation_id
    return dataclasses.replace(recorded, answer=_stored_as(answer, row[4], 2).as_frame())


def release_answer(answer: dict) -> None:
    """Drop an answer `record_visitor_message` reserved that the bot will not write (a
    person takes the conversation over first), handing its number back when nothing was
    stored after it."""
    if message_sql.supported():
        prepared.write_one(
            message_sql.release_answer_sql(), [answer["id"], Message.State.STREAMING]
        )
        return
    with transaction.atomic():
        reserved = Message.objects.filter(pk=answer["id"], state=Message.State.STREAMING)
        row = reserved.values_list("conversation_id", "seq").first()
        if row is None:
            return
        reserved.delete()
        conversation_id, seq = row
        Conversation.objects.filter(pk=conversation_id, last_seq=seq).update(last_seq=seq - 1)


def record_visitor_message(
    *,
    visitor_id: int,
    client_id: uuid.UUID,
    text: str,
    conversation_id: int | None = None,
    reads: tuple[message_sql.SnapshotRead, ...] = (),
    reserve_answer: bool = False,
    while_storing: Callable[[], None] | None = None,
) -> RecordedMessage:
    """Store a customer message once per client id; a resend returns the stored one.

    `conversation_id` is the conversation the caller last saw: while it is still open the
    message goes there without locking the visitor (the conversation's row lock orders its
    writers), which saves two round trips on every message. There `reads` run in the same
    statement (PostgreSQL); their values come back in `RecordedMessage.reads`. With
    `reserve_answer`, a conversation the bot has also gets the bot's answer, stored empty
    and streaming with the message (`RecordedMessage.answer`).
    Without `conversation_id`, a visitor with no open conversation has one opened with the
    message in one round trip (PostgreSQL).
    `while_storing` runs in this thread while PostgreSQL runs those statements, if they run
    pipelined (`helpdesk.prepared`); it must not use the database.
    """
    if message_sql.supported():
        storing = {
            "visitor_id": visitor_id,
            "client_id": client_id,
            "text": text,
            "reserve_answer": reserve_answer,
            "while_storing": while_storing,
        }
        if conversation_id is None:
            recorded = _open_with_first_message(**storing)
        else:
            recorded = _store_into_open_conversation(
                conversation_id=conversation_id, reads=reads, **storing
            )
        if recorded is not None:
            return recorded
    try:
        with transaction.atomic():
            taken = opened_in = None
            if conversation_id is not None:
                existing = _stored_with_client_id(visitor_id=visitor_id, client_id=client_id)
                if existing is not None:
                    return existing
                taken = _take_seq(
                    conversation_id, visitor_id=visitor_id, reserve_answer=reserve_answer
                )
            if taken is None:
                # Locking the visitor serialises one visitor's tabs, so two of them cannot
                # both open a conversation or both store the same client id.
                visitor = Visitor.objects.select_for_update().get(pk=visitor_id)
                existing = _stored_with_client_id(visitor_id=visitor_id, client_id=client_id)
                if existing is not None:
                    return existing
                # A new conversation is the bot's: it starts with the numbers taken.
                conversation, started = _open_conversation(
                    visitor, numbers_taken=2 if reserve_answer else 1
                )
                conversation_id = conversation.pk
                if started:
                    taken = (conversation.last_seq, conversation.status)
                    opened_in = conversation.language
                else:
                    taken = _take_seq(conversation_id, reserve_answer=reserve_answer)
            last_seq, status = taken
            with_answer = reserve_answer and status == Conversation.Status.BOT
            message = _visitor_message(conversation_id, text=text, client_id=client_id)
            message.seq = last_seq - 1 if with_answer else last_seq
            answer = _reserved_answer(conversation_id, seq=last_seq) if with_answer else None
            # One INSERT, with the answer when there is one.
            Message.objects.bulk_create([message] if answer is None else [message, answer])
            recorded = _recorded(message, status, created=True, opened_in=opened_in)
            if answer is None:
                return recorded
            return dataclasses.replace(recorded, answer=answer.as_frame())
    except IntegrityError:
        existing = _stored_with_client_id(visitor_id=visitor_id, client_id=client_id)
        if existing is None:
            raise
        return existing


def _visitor_message(conversation_id: int | None, *, text: str, client_id: uuid.UUID) -> Message:
    return message_sql.CUSTOMER_MESSAGE.new(
        conversation_id=conversation_id, text=text, client_id=client_id
    )


def _reserved_answer(conversation_id: int | None, *, seq: int | None = None) -> Message:
    """The bot's answer as stored with the customer's message: empty and streaming."""
    return message_sql.RESERVED_ANSWER.new(conversation_id=conversation_id, seq=seq)


def _stored_with_client_id(*, visitor_id: int, client_id: uuid.UUID) -> RecordedMessage | None:
    existing = (
        Message.objects.filter(conversation__visitor_id=visitor_id, client_id=client_id)
        .select_related("conversation")
        .first()
    )
    if existing is None:
        return None
    return _recorded(existing, existing.conversation.status, created=False)


def _open_conversation(visitor: Visitor, *, numbers_taken: int = 0) -> tuple[Conversation, bool]:
    """The visitor's latest open conversation, or a new one (True) that starts with
    `numbers_taken` sequence numbers taken."""
    conversation = visitor.conversations.open().order_by("-created_at").first()
    if conversation is not None:
        return conversation, False
    conversation = Conversation.objects.create(
        site_id=visitor.site_id,
        visitor=visitor,
        language=visitor.language,
        last_seq=numbers_taken,
    )
    return conversation, True


def open_conversation(*, visitor_id: int) -> int:
    """The visitor's open conversation, started if there is none."""
    with transaction.atomic():
        visitor = Visitor.objects.select_for_update().get(pk=visitor_id)
        return _open_conversation(visitor)[0].pk


def _recorded(
    message: Message, status: str, *, created: bool, opened_in: str | None = None
) -> RecordedMessage:
    return RecordedMessage(
        message=message.as_frame(),
        conversation_id=message.conversation_id,
        conversation_status=status,
        created=created,
        opened_in=opened_in,
    )


def messages_after(*, visitor_id: int, conversation_id: int, after: int) -> list[dict]:
    """One batch of stored messages past `after`, oldest first, of a conversation the visitor owns.

    Callers loop until a batch comes back short; batches keep one replay from loading a
    long conversation at once.
    """
    rows = Message.objects.filter(
        conversation_id=conversation_id, conversation__visitor_id=visitor_id, seq__gt=after
    ).order_by("seq")[: settings.HELPDESK_RESUME_BATCH]
    return [message.as_frame() for message in rows]


def touch_visitor(*, visitor_id: int) -> None:
    Visitor.objects.filter(pk=visitor_id).update(last_seen_at=timezone.now())


def update_visitor_attributes(*, visitor_id: int, attributes: dict) -> None:
    with transaction.atomic():
        visitor = Visitor.objects.select_for_update().get(pk=visitor_id)
        visitor.attributes = {**visitor.attributes, **attributes}
        visitor.save(update_fields=["attributes", "last_seen_at"])


@dataclass(frozen=True)
class StatusChange:
    conversation_id: int
    status: str
    changed: bool
    notice: dict | None


def request_human(*, conversation_id: int, reason: str, notice: str) -> StatusChange:
    """Put a conversation in the human queue (once) and tell the customer.

    The handoff app builds its queue on top of this state; until a human takes over, the
    bot stops answering the conversation.
    """
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
        if conversation.status != Conversation.Status.BOT:
            return StatusChange(conversation_id, conversation.status, changed=False, notice=None)
        conversation.status = Conversation.Status.WAITING
        conversation.escalation_reason = reason[:200]
        conversation.save(update_fields=["status", "escalation_reason", "updated_at"])
        message = append_message(
            conversation_id=conversation_id, author=Message.Author.SYSTEM, text=notice
        )
    return StatusChange(
        conversation_id, conversation.status, changed=True, notice=message.as_frame()
    )


def record_feedback(*, visitor_id: int, message_id: int, vote: str | None) -> dict | None:
    """Store a thumbs up/down (or withdraw it) on a bot answer of the visitor's own chat."""
    updated = Message.objects.filter(
        pk=message_id, author=Message.Author.BOT, conversation__visitor_id=visitor_id
    ).update(feedback=vote or "", feedback_at=timezone.now() if vote else None)
    if not updated:
        return None
    conversation_id = (
        Message.objects.filter(pk=message_id).values_list("conversation_id", flat=True).get()
    )
    return {"conversation": conversation_id, "message_id": message_id, "vote": vote}
