"""Storing a message in one PostgreSQL statement: take the conversation's next sequence
number and insert the message in the same round trip.

Through the ORM this is a transaction of three or four statements (BEGIN, the UPDATE that
takes the number, the INSERT, COMMIT), each compiled in Python: about 4 ms on this
project's machine for every customer message and every bot answer. One statement with
data-modifying CTEs runs in its own implicit transaction, so it needs neither BEGIN nor
COMMIT, and it is prepared once per pooled connection (helpdesk.prepared).

The columns come from the model, so a new field of Message is stored like the ORM would
store it (its default, `auto_now_add` and so on), with no change here. A customer message
and the answer reserved with it (`MessageKind`) take as parameters only what is their own;
their other columns are the same in every such row and are written into the statement.

The statement that stores a customer message can also carry reads (`SnapshotRead`): what
answering the message needs (the bot's recent outcomes, the recent turns) comes back in the
same round trip instead of two or three more.

A visitor's first message opens their conversation: `lock_visitor_sql`, then
`opening_message_sql`, sent together in one round trip (helpdesk.prepared.write_together).
"""

from dataclasses import dataclass
from functools import cache

from django.db import connection
from django.utils import timezone
from psycopg import sql

from helpdesk.models import Conversation, Message, Visitor


def supported() -> bool:
    # SQLite has no data-modifying CTEs; there the ORM's transaction stores messages.
    return connection.vendor == "postgresql"


@cache
def _stored_fields() -> tuple:
    fields = Message._meta.concrete_fields
    return tuple(field for field in fields if not field.primary_key and field.name != "seq")


@cache
def _conversation_fields() -> tuple:
    return tuple(field for field in Conversation._meta.concrete_fields if not field.primary_key)


# Columns of a conversation the opening statement takes from the visitor's row, and of its
# first messages from the conversation's; the rest are parameters.
_CONVERSATION_OF_VISITOR = {"site_id": "v.site_id", "visitor_id": "v.id", "language": "v.language"}
_MESSAGE_OF_STARTED = {"conversation_id": "started.id"}


@dataclass(frozen=True)
class MessageKind:
    """Messages that differ only in their `own` fields and their number: the statements
    that store one take those as parameters, and have the other columns written in (a
    customer message with its reserved answer and the turn's reads: 22 parameters instead
    of 58, each one prepared in Python and then sent)."""

    fixed: tuple[tuple[str, object], ...]
    own: frozenset[str]

    def new(self, **values) -> Message:
        """An unsaved message of this kind; `values` are its own (by attribute name) and
        its number."""
        return Message(**dict(self.fixed), **values)


CUSTOMER_MESSAGE = MessageKind(
    fixed=(("author", Message.Author.VISITOR),),
    own=frozenset({"conversation", "text", "client_id", "created_at"}),
)
RESERVED_ANSWER = MessageKind(
    fixed=(("author", Message.Author.BOT), ("text", ""), ("state", Message.State.STREAMING)),
    own=frozenset({"conversation", "created_at"}),
)

# Defaults that give equal values at every call. A field with another callable default (a
# uuid4, a clock) is a parameter, whatever the kind.
_CONSTANT_FACTORIES = (list, dict, tuple, str, int)


@cache
def _written_in(kind: MessageKind) -> dict[str, str]:
    """Per column, the SQL literal every message of `kind` stores there."""
    prototype = kind.new()
    literals = {}
    for field in _stored_fields():
        made_per_message = getattr(field, "auto_now", False) or getattr(
            field, "auto_now_add", False
        )
        default = field.default if field.has_default() else None
        if callable(default) and default not in _CONSTANT_FACTORIES:
            made_per_message = True
        if field.name in kind.own or made_per_message:
            continue
        value = field.get_db_prep_save(field.pre_save(prototype, add=True), connection)
        literal = sql.Literal(value).as_string().replace("%", "%%")
        literals[field.column] = f"CAST({literal} AS {_cast_type(field)})"
    return literals


def _placeholder(field) -> str:
    # Typed placeholders: in INSERT ... SELECT, PostgreSQL does not infer a parameter's
    # type from the target column (a NULL would arrive as text).
    return f"CAST(%s AS {_cast_type(field)})"


def _cast_type(field) -> str:
    # Without its length, so an overlong value fails as it would through the ORM instead of
    # being cut by the cast.
    db_type = field.cast_db_type(connection)
    if field.get_internal_type() == "CharField":
        db_type = db_type.split("(")[0]
    return db_type


def _column_list() -> str:
    quote = connection.ops.quote_name
    return ", ".join([*(quote(field.column) for field in _stored_fields()), quote("seq")])


def _values(fields: tuple, computed: dict[str, str]) -> list[str]:
    return [computed.get(field.column) or _placeholder(field) for field in fields]


def _taken(condition: str, returning: str, *, numbers: str = "1") -> str:
    """The CTE that takes the conversation's next number (or `numbers` of them); its row
    lock orders the writers."""
    conversations = connection.ops.quote_name(Conversation._meta.db_table)
    return (
        f"taken AS (UPDATE {conversations} SET last_seq = last_seq + {numbers}, "  # noqa: S608
        f"updated_at = %s WHERE {condition} RETURNING {returning})"
    )


def _insert(
    seq: str = "taken.last_seq", where: str = "", *, source: str = "taken", computed=None
) -> str:
    messages = connection.ops.quote_name(Message._meta.db_table)
    values = ", ".join([*_values(_stored_fields(), computed or {}), seq])
    return (
        f"INSERT INTO {messages} ({_column_list()}) SELECT {values} FROM {source}{where} "  # noqa: S608
        "RETURNING id, seq"
    )


def _existing() -> str:
    """The CTE that finds the visitor's message of a client id, if one is stored."""
    conversations = connection.ops.quote_name(Conversation._meta.db_table)
    messages = connection.ops.quote_name(Message._meta.db_table)
    return (
        f"existing AS (SELECT m.id FROM {messages} m JOIN {conversations} c "  # noqa: S608
        "ON c.id = m.conversation_id WHERE c.visitor_id = %s AND m.client_id = %s LIMIT 1)"
    )


@cache
def append_sql() -> str:
    return f"WITH {_taken('id = %s', 'last_seq')} {_insert()}"


@dataclass(frozen=True)
class SnapshotRead:
    """A scalar subquery run by the statement that stores a customer message.

    It sees the database as it was when the statement began: without the new message, and
    without what another writer of the conversation stored meanwhile (the statement then
    reports that its reads may be stale; see `visitor_message_sql`).
    """

    sql: str
    params: tuple = ()


@cache
def visitor_message_sql(reads: tuple[str, ...] = (), *, reserve_answer: bool = False) -> str:
    """Store a customer message into the open conversation the visitor last saw, unless the
    client id is stored already; one row (id, seq, conversation status) when stored.

    With `reserve_answer`, a conversation the bot has also gets the bot's answer, empty and
    streaming, right after the message; the row goes on with that answer's id (else NULL).
    Given reads (their SQL), it goes on with the conversation's last sequence number as the
    reads saw it, then each read's value. That number is one below the message's unless
    another message was stored between the reads' snapshot and the message.
    """
    conversations = connection.ops.quote_name(Conversation._meta.db_table)
    open_and_new = (
        "id = %s AND visitor_id = %s AND status <> %s AND NOT EXISTS (SELECT 1 FROM existing)"
    )
    ctes = [_existing()]
    columns = ["stored.id", "stored.seq", "taken.status"]
    if reserve_answer:
        # Two numbers when the bot has the conversation: the message's and its answer's.
        ctes.append(
            _taken(
                open_and_new,
                "last_seq, status, status = %s AS bot_answers",
                numbers="CASE WHEN status = %s THEN 2 ELSE 1 END",
            )
        )
        seq = "taken.last_seq - CASE WHEN taken.bot_answers THEN 1 ELSE 0 END"
        ctes.append(f"stored AS ({_insert(seq, computed=_written_in(CUSTOMER_MESSAGE))})")
        answer = _insert(where=" WHERE taken.bot_answers", computed=_written_in(RESERVED_ANSWER))
        ctes.append(f"answer AS ({answer})")
        columns.append("(SELECT id FROM answer)")
    else:
        ctes.append(_taken(open_and_new, "last_seq, status"))
        ctes.append(f"stored AS ({_insert(computed=_written_in(CUSTOMER_MESSAGE))})")
    if reads:
        columns.append(f"(SELECT last_seq FROM {conversations} WHERE id = %s)")  # noqa: S608
        columns.extend(f"({sql})" for sql in reads)
    return f"WITH {', '.join(ctes)} SELECT {', '.join(columns)} FROM stored CROSS JOIN taken"  # noqa: S608


def insert_params(message: Message) -> list:
    """The values of an unsaved message, prepared as the ORM's INSERT prepares them (this
    also sets `created_at` on it)."""
    return _prepared_values(message, _stored_fields())


def _prepared_values(instance, fields: tuple, computed=()) -> list:
    return [
        field.get_db_prep_save(field.pre_save(instance, add=True), connection)
        for field in fields
        if field.column not in computed
    ]


def append_params(message: Message) -> list:
    return [
        connection.ops.adapt_datetimefield_value(timezone.now()),
        message.conversation_id,
        *insert_params(message),
    ]


def visitor_message_params(
    message: Message,
    *,
    visitor_id: int,
    reads: tuple[SnapshotRead, ...] = (),
    answer: Message | None = None,
) -> list:
    """The parameters of `visitor_message_sql` for an unsaved `CUSTOMER_MESSAGE`, and an
    unsaved `RESERVED_ANSWER` when it reserves the answer."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    bot = Conversation.Status.BOT
    params = [visitor_id, message.client_id]
    own_values = _prepared_values(message, _stored_fields(), _written_in(CUSTOMER_MESSAGE))
    if answer is not None:
        params += [bot, now, message.conversation_id, visitor_id, Conversation.Status.RESOLVED]
        params += [bot, *own_values]
        params += _prepared_values(answer, _stored_fields(), _written_in(RESERVED_ANSWER))
    else:
        params += [now, message.conversation_id, visitor_id, Conversation.Status.RESOLVED]
        params += own_values
    if reads:
        params.append(message.conversation_id)
        for read in reads:
            params.extend(read.params)
    return params


@cache
def release_answer_sql() -> str:
    """Drop a reserved answer that will not be written, handing its number back when
    nothing was stored after it (else its number stays unused)."""
    conversations = connection.ops.quote_name(Conversation._meta.db_table)
    messages = connection.ops.quote_name(Message._meta.db_table)
    return (
        f"WITH released AS (DELETE FROM {messages} WHERE id = %s AND state = %s "  # noqa: S608
        "RETURNING conversation_id, seq) "
        f"UPDATE {conversations} c SET last_seq = c.last_seq - 1 FROM released "
        "WHERE c.id = released.conversation_id AND c.last_seq = released.seq RETURNING c.id"
    )


@cache
def lock_visitor_sql() -> str:
    """Lock the visitor's row: it orders one visitor's tabs opening a conversation."""
    visitors = connection.ops.quote_name(Visitor._meta.db_table)
    return f"SELECT id FROM {visitors} WHERE id = %s FOR UPDATE"  # noqa: S608


@cache
def opening_message_sql(*, reserve_answer: bool = False) -> str:
    """Open a conversation for the visitor with their first message as number 1, unless the
    visitor has an open conversation or the client id is stored already; one row
    (conversation id, status, language, message id) when opened. With `reserve_answer`, the
    bot's answer goes in as number 2, empty and streaming, and the row goes on with its id.

    Run after `lock_visitor_sql` in the same transaction: a statement's snapshot is taken
    when it starts, so this one sees a conversation another tab opened before the lock was
    granted. In one statement with the lock it would not.
    """
    quote = connection.ops.quote_name
    conversations = quote(Conversation._meta.db_table)
    visitors = quote(Visitor._meta.db_table)
    fields = _conversation_fields()
    columns = ", ".join(quote(field.column) for field in fields)
    values = ", ".join(_values(fields, _CONVERSATION_OF_VISITOR))
    ctes = [
        _existing(),
        f"started AS (INSERT INTO {conversations} ({columns}) SELECT {values} "  # noqa: S608
        f"FROM {visitors} v WHERE v.id = %s AND NOT EXISTS (SELECT 1 FROM existing) "
        f"AND NOT EXISTS (SELECT 1 FROM {conversations} WHERE visitor_id = %s AND status <> %s) "
        "RETURNING id, status, language)",
        f"stored AS ({_insert('1', source='started', computed=_first(CUSTOMER_MESSAGE))})",
    ]
    row = ["started.id", "started.status", "started.language", "stored.id"]
    sources = "started CROSS JOIN stored"
    if reserve_answer:
        answer = _insert("2", source="started", computed=_first(RESERVED_ANSWER))
        ctes.append(f"answer AS ({answer})")
        row.append("answer.id")
        sources += " CROSS JOIN answer"
    return f"WITH {', '.join(ctes)} SELECT {', '.join(row)} FROM {sources}"  # noqa: S608


def opening_message_params(
    conversation: Conversation,
    message: Message,
    *,
    visitor_id: int,
    answer: Message | None = None,
) -> list:
    """The parameters of `opening_message_sql`: the unsaved conversation (its numbers
    taken), its first message (a `CUSTOMER_MESSAGE`), and the reserved answer (a
    `RESERVED_ANSWER`) when there is one."""
    params = [visitor_id, message.client_id]
    params += _prepared_values(conversation, _conversation_fields(), _CONVERSATION_OF_VISITOR)
    params += [visitor_id, visitor_id, Conversation.Status.RESOLVED]
    params += _prepared_values(message, _stored_fields(), _first(CUSTOMER_MESSAGE))
    if answer is not None:
        params += _prepared_values(answer, _stored_fields(), _first(RESERVED_ANSWER))
    return params


@cache
def _first(kind: MessageKind) -> dict[str, str]:
    """The columns of a conversation's first message of `kind` that are not parameters."""
    return {**_written_in(kind), **_MESSAGE_OF_STARTED}
