"""Messages stored in one PostgreSQL statement, prepared per connection (helpdesk.message_sql,
helpdesk.prepared): the same rows as the ORM's transaction would store."""

import uuid
from decimal import Decimal

import pytest
from django.db import DataError, connection, transaction
from django.forms.models import model_to_dict

from helpdesk.models import Conversation, Message, Visitor
from helpdesk.services import append_message, record_visitor_message
from tests.conftest import ON_POSTGRESQL

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not ON_POSTGRESQL, reason="data-modifying CTEs are PostgreSQL's"),
]

COMPARED_AWAY = {"id", "seq", "created_at"}


def stored(message_id: int) -> dict:
    row = model_to_dict(Message.objects.get(pk=message_id))
    return {name: value for name, value in row.items() if name not in COMPARED_AWAY}


@pytest.fixture
def conversation(site):
    visitor = Visitor.objects.create(site=site)
    return Conversation.objects.create(site=site, visitor=visitor)


def test_an_appended_message_is_the_row_the_orm_would_store(conversation):
    fields = {
        "author": Message.Author.BOT,
        "text": "Standard shipping takes 3 days.",
        "state": Message.State.STREAMING,
        "sources": [{"id": 3, "title": "Shipping"}],
        "cost": Decimal("0.000125"),
        "prompt_tokens": 120,
        "first_token_ms": 12.5,
        "needs_review": True,
    }
    appended = append_message(conversation_id=conversation.pk, **fields)
    through_orm = Message.objects.create(conversation=conversation, seq=99, **fields)

    assert stored(appended.pk) == stored(through_orm.pk)
    row = Message.objects.get(pk=appended.pk)
    assert (row.seq, row.created_at) == (appended.seq, appended.created_at)
    assert appended.seq == 1
    conversation.refresh_from_db()
    assert conversation.last_seq == 1


def test_a_customer_message_into_the_open_conversation_takes_one_statement(
    conversation, django_assert_num_queries
):
    client_id = uuid.uuid4()
    with django_assert_num_queries(3) as queries:
        recorded = record_visitor_message(
            visitor_id=conversation.visitor_id,
            client_id=client_id,
            text="Where is my order?",
            conversation_id=conversation.pk,
        )
    # The savepoint is the test's: outside a transaction the statement stands alone.
    kinds = [query["sql"].split()[0] for query in queries.captured_queries]
    assert kinds == ["SAVEPOINT", "WITH", "RELEASE"]
    assert recorded.created
    assert recorded.message["seq"] == 1
    assert recorded.conversation_status == Conversation.Status.BOT
    row = Message.objects.get(pk=recorded.message["id"])
    assert (row.author, row.text, row.client_id, row.state, row.sources) == (
        "visitor",
        "Where is my order?",
        client_id,
        "complete",
        [],
    )
    assert recorded.message == row.as_frame()


def test_an_overlong_value_fails_as_through_the_orm_and_takes_no_number(conversation):
    # The statement's typed placeholders must not cut a value to its column's length.
    with pytest.raises(DataError), transaction.atomic():
        append_message(
            conversation_id=conversation.pk, author="agent", text="Hi", author_name="x" * 101
        )
    conversation.refresh_from_db()
    assert conversation.last_seq == 0
    assert not Message.objects.exists()


def test_the_statements_are_prepared_on_the_connection(conversation):
    record_visitor_message(
        visitor_id=conversation.visitor_id,
        client_id=uuid.uuid4(),
        text="Hello",
        conversation_id=conversation.pk,
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any(statement.startswith("WITH existing AS") for statement in prepared)
