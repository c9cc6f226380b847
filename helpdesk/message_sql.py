"""Storing a message in one PostgreSQL statement: take the conversation's next sequence
number and insert the message in the same round trip.

Through the ORM this is a transaction of three or four statements (BEGIN, the UPDATE that
takes the number, the INSERT, COMMIT), each compiled in Python: about 4 ms on this
project's machine for every customer message and every bot answer. One statement with
data-modifying CTEs runs in its own implicit transaction, so it needs neither BEGIN nor
COMMIT, and it is prepared once per pooled connection (helpdesk.prepared).

The columns come from the model, so a new field of Message is stored like the ORM would
store it (its default, `auto_now_add` and so on), with no change here.
"""

from functools import cache

from django.db import connection
from django.utils import timezone

from helpdesk.models import Conversation, Message


def supported() -> bool:
    # SQLite has no data-modifying CTEs; there the ORM's transaction stores messages.
    return connection.vendor == "postgresql"


@cache
def _stored_fields() -> tuple:
    fields = Message._meta.concrete_fields
    return tuple(field for field in fields if not field.primary_key and field.name != "seq")


def _placeholder(field) -> str:
    # Typed placeholders: in INSERT ... SELECT, PostgreSQL does not infer a parameter's
    # type from the target column (a NULL would arrive as text). Without its length, so an
    # overlong value fails as it would through the ORM instead of being cut by the cast.
    db_type = field.cast_db_type(connection)
    if field.get_internal_type() == "CharField":
        db_type = db_type.split("(")[0]
    return f"CAST(%s AS {db_type})"


def _select_list() -> str:
    values = [_placeholder(field) for field in _stored_fields()]
    return ", ".join([*values, "taken.last_seq"])


def _column_list() -> str:
    quote = connection.ops.quote_name
    return ", ".join([*(quote(field.column) for field in _stored_fields()), quote("seq")])


def _taken(condition: str, returning: str) -> str:
    """The CTE that takes the conversation's next number; its row lock orders the writers."""
    conversations = connection.ops.quote_name(Conversation._meta.db_table)
    return (
        f"taken AS (UPDATE {conversations} SET last_seq = last_seq + 1, updated_at = %s "  # noqa: S608
        f"WHERE {condition} RETURNING {returning})"
    )


def _insert() -> str:
    messages = connection.ops.quote_name(Message._meta.db_table)
    return (
        f"INSERT INTO {messages} ({_column_list()}) SELECT {_select_list()} FROM taken "  # noqa: S608
        "RETURNING id, seq"
    )


@cache
def append_sql() -> str:
    return f"WITH {_taken('id = %s', 'last_seq')} {_insert()}"


@cache
def visitor_message_sql() -> str:
    """Store a customer message into the open conversation the visitor last saw, unless the
    client id is stored already; one row (id, seq, conversation status) when stored."""
    conversations = connection.ops.quote_name(Conversation._meta.db_table)
    messages = connection.ops.quote_name(Message._meta.db_table)
    open_and_new = (
        "id = %s AND visitor_id = %s AND status <> %s AND NOT EXISTS (SELECT 1 FROM existing)"
    )
    return (
        "WITH existing AS ("  # noqa: S608
        f"SELECT m.id FROM {messages} m JOIN {conversations} c ON c.id = m.conversation_id "
        "WHERE c.visitor_id = %s AND m.client_id = %s LIMIT 1), "
        f"{_taken(open_and_new, 'last_seq, status')}, stored AS ({_insert()}) "
        "SELECT stored.id, stored.seq, taken.status FROM stored CROSS JOIN taken"
    )


def insert_params(message: Message) -> list:
    """The values of an unsaved message, prepared as the ORM's INSERT prepares them (this
    also sets `created_at` on it)."""
    return [
        field.get_db_prep_save(field.pre_save(message, add=True), connection)
        for field in _stored_fields()
    ]


def append_params(message: Message) -> list:
    return [
        connection.ops.adapt_datetimefield_value(timezone.now()),
        message.conversation_id,
        *insert_params(message),
    ]


def visitor_message_params(message: Message, *, visitor_id: int) -> list:
    return [
        visitor_id,
        message.client_id,
        connection.ops.adapt_datetimefield_value(timezone.now()),
        message.conversation_id,
        visitor_id,
        Conversation.Status.RESOLVED,
        *insert_params(message),
    ]
