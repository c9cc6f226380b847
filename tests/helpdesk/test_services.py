"""Storing customer messages: the conversation a caller last saw is the fast way in."""

import uuid

import pytest
from django.db import connection

from helpdesk.models import Conversation, Message, Visitor
from helpdesk.services import append_message, record_visitor_message, release_answer

pytestmark = pytest.mark.django_db


def statements(queries) -> list[str]:
    kinds = [q["sql"].split()[0] for q in queries.captured_queries]
    return [k for k in kinds if k not in {"BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"}]


def test_a_message_to_the_open_conversation_does_not_lock_the_visitor(
    site, django_assert_max_num_queries
):
    visitor = Visitor.objects.create(site=site)
    first = record_visitor_message(visitor_id=visitor.pk, client_id=uuid.uuid4(), text="Hi")
    with django_assert_max_num_queries(5) as queries:
        second = record_visitor_message(
            visitor_id=visitor.pk,
            client_id=uuid.uuid4(),
            text="Still there?",
            conversation_id=first.conversation_id,
        )
    # The resend check, the sequence number (the conversation's row lock), the row: one
    # statement on PostgreSQL.
    expected = ["WITH"] if connection.vendor == "postgresql" else ["SELECT", "UPDATE", "INSERT"]
    assert statements(queries) == expected
    assert (second.conversation_id, second.message["seq"], second.created) == (
        first.conversation_id,
        2,
        True,
    )


def test_a_resolved_conversation_is_not_written_to_a_new_one_opens(site):
    visitor = Visitor.objects.create(site=site)
    first = record_visitor_message(visitor_id=visitor.pk, client_id=uuid.uuid4(), text="Hi")
    Conversation.objects.filter(pk=first.conversation_id).update(status="resolved")
    later = record_visitor_message(
        visitor_id=visitor.pk,
        client_id=uuid.uuid4(),
        text="Me again",
        conversation_id=first.conversation_id,
    )
    assert later.conversation_id != first.conversation_id
    assert (later.message["seq"], later.conversation_status) == (1, "bot")


def test_another_visitors_conversation_id_is_not_written_to(site):
    owner = Visitor.objects.create(site=site)
    theirs = record_visitor_message(visitor_id=owner.pk, client_id=uuid.uuid4(), text="Mine")
    intruder = Visitor.objects.create(site=site)
    recorded = record_visitor_message(
        visitor_id=intruder.pk,
        client_id=uuid.uuid4(),
        text="Hello",
        conversation_id=theirs.conversation_id,
    )
    assert recorded.conversation_id != theirs.conversation_id
    assert Message.objects.filter(conversation_id=theirs.conversation_id).count() == 1


def test_a_resend_into_a_later_conversation_returns_the_stored_message(site):
    visitor = Visitor.objects.create(site=site)
    client_id = uuid.uuid4()
    first = record_visitor_message(visitor_id=visitor.pk, client_id=client_id, text="Hi")
    Conversation.objects.filter(pk=first.conversation_id).update(status="resolved")
    again = record_visitor_message(
        visitor_id=visitor.pk, client_id=client_id, text="Hi", conversation_id=None
    )
    assert (again.created, again.message["id"]) == (False, first.message["id"])


def test_a_first_message_opens_the_conversation_with_its_answer_reserved_in_few_statements(
    site, django_assert_max_num_queries
):
    visitor = Visitor.objects.create(site=site)
    with django_assert_max_num_queries(7) as queries:
        recorded = record_visitor_message(
            visitor_id=visitor.pk, client_id=uuid.uuid4(), text="Hi", reserve_answer=True
        )
    if connection.vendor == "postgresql":
        # The visitor's lock, then one statement for the resend check, the open
        # conversation, the new conversation, the message and its answer.
        expected = ["SELECT", "WITH"]
    else:
        # The visitor's lock, the resend check, the open conversation; the new conversation
        # with its numbers taken, and one INSERT for the message and its answer.
        expected = ["SELECT", "SELECT", "SELECT", "INSERT", "INSERT"]
    assert statements(queries) == expected
    answer = Message.objects.get(pk=recorded.answer["id"])
    assert (recorded.message["seq"], answer.seq, answer.author, answer.state) == (
        1,
        2,
        "bot",
        "streaming",
    )
    assert recorded.answer == answer.as_frame()
    assert Conversation.objects.get(pk=recorded.conversation_id).last_seq == 2


def test_no_answer_is_reserved_in_an_open_conversation_a_person_has(site):
    visitor = Visitor.objects.create(site=site)
    first = record_visitor_message(visitor_id=visitor.pk, client_id=uuid.uuid4(), text="Hi")
    Conversation.objects.filter(pk=first.conversation_id).update(status="human")
    # No conversation given: the visitor's open one is found under the visitor's lock.
    recorded = record_visitor_message(
        visitor_id=visitor.pk, client_id=uuid.uuid4(), text="Thanks", reserve_answer=True
    )
    assert (recorded.conversation_id, recorded.message["seq"], recorded.answer) == (
        first.conversation_id,
        2,
        None,
    )
    assert Conversation.objects.get(pk=first.conversation_id).last_seq == 2


def test_an_answer_reserved_with_a_first_message_can_be_released(site):
    visitor = Visitor.objects.create(site=site)
    recorded = record_visitor_message(
        visitor_id=visitor.pk, client_id=uuid.uuid4(), text="A person, please", reserve_answer=True
    )
    release_answer(recorded.answer)
    notice = append_message(
        conversation_id=recorded.conversation_id, author="system", text="Connecting…"
    )
    assert notice.seq == 2
    assert list(Message.objects.order_by("seq").values_list("seq", "author")) == [
        (1, "visitor"),
        (2, "system"),
    ]


def test_a_resend_of_a_first_message_returns_it_without_a_second_conversation(site):
    visitor = Visitor.objects.create(site=site)
    client_id = uuid.uuid4()
    first = record_visitor_message(
        visitor_id=visitor.pk, client_id=client_id, text="Hi", reserve_answer=True
    )
    again = record_visitor_message(
        visitor_id=visitor.pk, client_id=client_id, text="Hi", reserve_answer=True
    )
    assert (again.created, again.message["id"], again.answer) == (
        False,
        first.message["id"],
        None,
    )
    assert Conversation.objects.count() == 1
    assert Message.objects.count() == 2


def test_a_first_message_says_it_opened_the_conversation_and_in_which_language(site):
    visitor = Visitor.objects.create(site=site, language="zh")
    first = record_visitor_message(
        visitor_id=visitor.pk, client_id=uuid.uuid4(), text="你好", reserve_answer=True
    )
    assert (first.opened_in, first.conversation_id) == (
        "zh",
        Conversation.objects.get(visitor=visitor, language="zh").pk,
    )
    later = record_visitor_message(
        visitor_id=visitor.pk,
        client_id=uuid.uuid4(),
        text="还在吗",
        conversation_id=first.conversation_id,
    )
    # Into the open conversation, by the statement and by the ORM's path (no id given).
    unseen = record_visitor_message(visitor_id=visitor.pk, client_id=uuid.uuid4(), text="喂")
    assert (later.opened_in, unseen.opened_in) == (None, None)
    assert unseen.conversation_id == first.conversation_id
