"""Messages stored in one PostgreSQL statement, prepared per connection (helpdesk.message_sql,
helpdesk.prepared): the same rows as the ORM's transaction would store."""

import threading
import time
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg
import pytest
from django.conf import settings
from django.db import DataError, connection, transaction
from django.forms.models import model_to_dict

from bots import services as bot_services
from bots.models import ConversationSummary
from handoff import escalation
from handoff.policy import PolicyConfig
from helpdesk import message_sql, prepared
from helpdesk.models import Conversation, Message, Visitor
from helpdesk.services import append_message, record_visitor_message, release_answer
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


def store(conversation, text: str, **options):
    return record_visitor_message(
        visitor_id=conversation.visitor_id,
        client_id=uuid.uuid4(),
        text=text,
        conversation_id=conversation.pk,
        **options,
    )


def test_a_reserved_answer_follows_the_message_when_the_bot_has_the_conversation(conversation):
    recorded = store(conversation, "Do you ship to Norway?", reserve_answer=True)
    answer = Message.objects.get(pk=recorded.answer["id"])
    assert (answer.seq, answer.author, answer.text, answer.state) == (
        recorded.message["seq"] + 1,
        "bot",
        "",
        "streaming",
    )
    assert recorded.answer == answer.as_frame()
    conversation.refresh_from_db()
    assert conversation.last_seq == answer.seq == 2


def test_no_answer_is_reserved_while_a_person_has_the_conversation(conversation):
    Conversation.objects.filter(pk=conversation.pk).update(status=Conversation.Status.HUMAN)
    recorded = store(conversation, "Thanks!", reserve_answer=True)
    assert recorded.answer is None
    assert list(Message.objects.values_list("seq", "author")) == [(1, "visitor")]
    conversation.refresh_from_db()
    assert conversation.last_seq == 1


def test_a_released_answer_hands_its_number_to_the_next_message(conversation):
    recorded = store(conversation, "I want a person", reserve_answer=True)
    release_answer(recorded.answer)
    notice = append_message(conversation_id=conversation.pk, author="system", text="Connecting…")
    assert notice.seq == 2
    assert list(Message.objects.order_by("seq").values_list("seq", "author")) == [
        (1, "visitor"),
        (2, "system"),
    ]


def test_a_released_answer_keeps_its_number_when_a_later_message_took_one(conversation):
    recorded = store(conversation, "Hello", reserve_answer=True)
    append_message(conversation_id=conversation.pk, author="agent", text="Hi, I'm Ann")
    release_answer(recorded.answer)
    # Handing 2 back would give the next message the agent's number.
    assert append_message(conversation_id=conversation.pk, author="agent", text="?").seq == 4


@pytest.fixture
def conversation_with_history(conversation):
    texts = [
        ("visitor", "Hi", "", "complete"),
        ("bot", "Hello! How can I help?", "llm", "complete"),
        ("visitor", "Where is order 5?", "", "complete"),
        ("bot", "Sorry, I could not find that.", "guard", "complete"),
        ("system", "Agent Ann joined", "", "complete"),
        ("visitor", "Still there?", "", "complete"),
        ("bot", "Half an ans", "llm", "interrupted"),
    ]
    for author, text, source, state in texts:
        append_message(
            conversation_id=conversation.pk,
            author=author,
            text=text,
            answer_source=source,
            state=state,
        )
    ConversationSummary.objects.create(conversation=conversation, text="They said hi.", upto_seq=2)
    return conversation


def test_the_reads_stored_with_a_message_are_what_reading_after_it_gives(
    conversation_with_history, site
):
    conversation = conversation_with_history
    reads = (
        escalation.recent_outcomes_read(conversation_id=conversation.pk, site_id=site.pk),
        *bot_services.turn_reads(conversation_id=conversation.pk),
    )
    recorded = store(conversation, "Hello again", reads=reads, reserve_answer=True)
    message = recorded.message
    assert recorded.reads is not None
    limit = PolicyConfig.for_site(site.pk).failure_threshold
    assert escalation.outcomes_of_read(recorded.reads[0]) == escalation._recent_outcomes(
        conversation.pk, message["seq"], limit
    )
    conversation_row, earlier = recorded.reads[1:]
    assert bot_services.turn_rows_of_reads(
        seq=message["seq"], text=message["text"], conversation=conversation_row, earlier=earlier
    ) == bot_services._turn_rows(
        conversation_id=conversation.pk,
        message_id=message["id"],
        limit=settings.HELPDESK_HISTORY_TURNS,
    )
    # Not a vacuous match: the history after the summary, newest first.
    assert [
        text
        for _author, text in bot_services._turn_rows(
            conversation_id=conversation.pk, message_id=message["id"], limit=20
        )[1]
    ] == [
        "Hello again",
        "Half an ans",
        "Still there?",
        "Sorry, I could not find that.",
        "Where is order 5?",
    ]
    assert (
        escalation.outcomes_of_read(recorded.reads[0]) == ("answered", "refused", "error")[-limit:]
    )


@pytest.mark.django_db(transaction=True)
def test_reads_are_dropped_when_another_writer_stored_a_message_meanwhile(conversation):
    # The reads see the conversation as the statement began; a writer that held the
    # conversation's lock and stored a message then is not in them.
    params = connection.get_connection_params()
    other = psycopg.connect(**{k: v for k, v in params.items() if k != "cursor_factory"})
    try:
        other.execute(
            "UPDATE helpdesk_conversation SET last_seq = last_seq + 1 WHERE id = %s",
            [conversation.pk],
        )
        result = {}

        def store_behind_the_lock():
            reads = bot_services.turn_reads(conversation_id=conversation.pk)
            result["recorded"] = store(conversation, "Hello", reads=reads)
            connection.close()

        writer = threading.Thread(target=store_behind_the_lock)
        writer.start()
        time.sleep(0.3)  # the statement now waits for the conversation's lock
        Message.objects.create(conversation=conversation, seq=1, author="agent", text="Hi")
        other.commit()
        writer.join(timeout=10)
    finally:
        other.close()
    recorded = result["recorded"]
    assert recorded.message["seq"] == 2
    assert recorded.reads is None


def test_placeholders_are_numbered_once_per_statement():
    sql = "SELECT %s, '100%%', %s"
    assert prepared.numbered(sql) == "SELECT $1, '100%', $2"
    before = prepared.numbered.cache_info().misses
    prepared.numbered(sql)
    assert prepared.numbered.cache_info().misses == before


def test_a_prepared_statement_of_many_parameters_keeps_its_literal_percent_signs(conversation):
    # psycopg's own cursor would parse a statement of more than 50 parameters on every run.
    values = list(range(60))
    sql = "SELECT '100%%', " + " + ".join(["CAST(%s AS int)"] * len(values))
    hits = prepared.numbered.cache_info().hits
    for _ in range(2):
        assert prepared.fetch_one(sql, values) == ("100%", sum(values))
    assert prepared.numbered.cache_info().hits > hits


def other_connection() -> psycopg.Connection:
    params = connection.get_connection_params()
    return psycopg.connect(
        **{k: v for k, v in params.items() if k != "cursor_factory"}, autocommit=True
    )


def locked_for(other: psycopg.Connection, table: str, row_id: int) -> bool:
    """Whether `other` finds the row locked, within five seconds."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            other.execute(f"SELECT 1 FROM {table} WHERE id = %s FOR UPDATE NOWAIT", [row_id])  # noqa: S608
        except psycopg.errors.LockNotAvailable:
            return True
    return False


def seen_while_storing(stores, *, locked: tuple[str, int], count: str):
    """What another connection sees while `stores(while_storing=...)` runs its lookups:
    whether the row `locked` (table, id) is locked, and `count` for that id. Returns that
    and what `stores` returned."""
    other = other_connection()
    table, row_id = locked
    seen = {}

    def while_storing():
        seen["locked"] = locked_for(other, table, row_id)
        seen["count"] = other.execute(count, [row_id]).fetchone()[0]

    try:
        return seen, stores(while_storing)
    finally:
        other.close()


@pytest.mark.django_db(transaction=True)
def test_what_runs_while_storing_runs_while_postgresql_runs_the_statement(conversation):
    # Seen from another connection: the statement holds the conversation's row and has not
    # committed the message yet.
    seen, recorded = seen_while_storing(
        lambda while_storing: store(conversation, "Hello", while_storing=while_storing),
        locked=("helpdesk_conversation", conversation.pk),
        count="SELECT count(*) FROM helpdesk_message WHERE conversation_id = %s",
    )
    assert seen == {"locked": True, "count": 0}
    assert Message.objects.get(pk=recorded.message["id"]).text == "Hello"


def test_nothing_runs_while_storing_inside_a_callers_transaction(conversation):
    ran = []
    with transaction.atomic():
        recorded = store(conversation, "Hello", while_storing=lambda: ran.append(True))
    assert recorded.created
    assert ran == []


@pytest.mark.django_db(transaction=True)
def test_a_statement_failing_while_waiting_raises_djangos_error_and_the_connection_goes_on(
    conversation,
):
    ran = []
    with pytest.raises(DataError):
        prepared.write_one("SELECT 1 / CAST(%s AS int)", [0], while_waiting=lambda: ran.append(1))
    assert ran == [1]
    assert prepared.fetch_one("SELECT CAST(%s AS int)", [7]) == (7,)


@pytest.mark.django_db(transaction=True)
def test_a_failure_while_storing_still_stores_the_message(conversation):
    def failing():
        raise RuntimeError("the lookups failed")

    with pytest.raises(RuntimeError):
        store(conversation, "Hello", while_storing=failing)
    assert list(Message.objects.values_list("text", flat=True)) == ["Hello"]


def first_message(visitor, text, **options):
    return record_visitor_message(
        visitor_id=visitor.pk, client_id=uuid.uuid4(), text=text, conversation_id=None, **options
    )


def test_a_conversation_opened_with_its_first_message_is_what_the_orm_would_store(site):
    visitor = Visitor.objects.create(site=site, language="de")
    recorded = first_message(visitor, "Hallo", reserve_answer=True)
    opened = Conversation.objects.get(pk=recorded.conversation_id)
    through_orm = Conversation.objects.create(site=site, visitor=visitor, language="de", last_seq=2)
    compared_away = {"id", "created_at", "updated_at"}
    assert {k: v for k, v in model_to_dict(opened).items() if k not in compared_away} == {
        k: v for k, v in model_to_dict(through_orm).items() if k not in compared_away
    }
    assert abs(opened.updated_at - opened.created_at) < timedelta(seconds=1)
    message = Message.objects.get(pk=recorded.message["id"])
    assert (message.conversation_id, message.seq, message.text, message.author) == (
        opened.pk,
        1,
        "Hallo",
        "visitor",
    )
    assert recorded.message == message.as_frame()
    answer = Message.objects.get(pk=recorded.answer["id"])
    assert (answer.conversation_id, answer.seq, answer.state) == (opened.pk, 2, "streaming")
    assert recorded.answer == answer.as_frame()


def test_without_an_answer_reserved_a_first_message_takes_one_number(site):
    visitor = Visitor.objects.create(site=site)
    recorded = first_message(visitor, "Hi")
    assert (recorded.message["seq"], recorded.answer) == (1, None)
    assert Conversation.objects.get(pk=recorded.conversation_id).last_seq == 1


@pytest.mark.django_db(transaction=True)
def test_a_first_message_is_stored_in_one_round_trip_while_the_lookups_run(site):
    # Seen from another connection while this thread makes the lookups: both statements
    # were sent together (the visitor is locked) and nothing is committed yet.
    visitor = Visitor.objects.create(site=site)
    seen, recorded = seen_while_storing(
        lambda while_storing: first_message(
            visitor, "Hello", reserve_answer=True, while_storing=while_storing
        ),
        locked=("helpdesk_visitor", visitor.pk),
        count="SELECT count(*) FROM helpdesk_conversation WHERE visitor_id = %s",
    )
    assert seen == {"locked": True, "count": 0}
    assert Message.objects.get(pk=recorded.message["id"]).seq == 1


@pytest.mark.django_db(transaction=True)
def test_two_tabs_first_messages_at_once_open_one_conversation(site):
    # Both tabs wait for the visitor's lock; the second must see the conversation the first
    # opened once the lock is its own.
    visitor = Visitor.objects.create(site=site)
    holder = other_connection()
    holder.execute("BEGIN")
    holder.execute("SELECT 1 FROM helpdesk_visitor WHERE id = %s FOR UPDATE", [visitor.pk])
    results, errors = [], []

    def tab(text):
        try:
            results.append(first_message(visitor, text, reserve_answer=True))
        except Exception as error:  # reported below
            errors.append(error)
        finally:
            connection.close()

    tabs = [threading.Thread(target=tab, args=(text,)) for text in ("From tab one", "From two")]
    try:
        for thread in tabs:
            thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            waiting = holder.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted AND locktype IN "
                "('transactionid', 'tuple')"
            ).fetchone()[0]
            if waiting >= 2:
                break
            time.sleep(0.01)
        holder.execute("COMMIT")
        for thread in tabs:
            thread.join(10)
    finally:
        holder.close()
    assert errors == []
    assert len({recorded.conversation_id for recorded in results}) == 1
    assert Conversation.objects.filter(visitor=visitor).count() == 1
    seqs = sorted(Message.objects.values_list("seq", "author"))
    assert seqs == [(1, "visitor"), (2, "bot"), (3, "visitor"), (4, "bot")]


@pytest.mark.django_db(transaction=True)
def test_statements_written_together_commit_or_roll_back_as_one(conversation):
    ran = []
    renamed = (
        "UPDATE helpdesk_conversation SET language = %s WHERE id = %s",
        ["fr", conversation.pk],
    )
    with pytest.raises(DataError):
        prepared.write_together(
            [renamed, ("SELECT 1 / CAST(%s AS int)", [0])], while_waiting=lambda: ran.append(1)
        )
    assert ran == [1]  # they ran pipelined
    conversation.refresh_from_db()
    assert conversation.language == ""
    row = prepared.write_together(
        [renamed, ("SELECT language FROM helpdesk_conversation WHERE id = %s", [conversation.pk])]
    )
    assert row == ("fr",)
    conversation.refresh_from_db()
    assert conversation.language == "fr"


def test_a_customer_message_and_its_answer_are_the_rows_the_orm_would_store(conversation):
    recorded = store(conversation, "Do you ship to Norway?", reserve_answer=True)
    message = Message.objects.get(pk=recorded.message["id"])
    answer = Message.objects.get(pk=recorded.answer["id"])
    through_orm = Message.objects.create(
        conversation=conversation,
        seq=98,
        author=Message.Author.VISITOR,
        text="Do you ship to Norway?",
        client_id=uuid.uuid4(),
    )
    answer_through_orm = Message.objects.create(
        conversation=conversation,
        seq=99,
        author=Message.Author.BOT,
        text="",
        state=Message.State.STREAMING,
    )
    compared_away = COMPARED_AWAY | {"client_id"}
    assert {k: v for k, v in model_to_dict(message).items() if k not in compared_away} == {
        k: v for k, v in model_to_dict(through_orm).items() if k not in compared_away
    }
    assert stored(answer.pk) == stored(answer_through_orm.pk)


def test_a_customer_message_takes_only_its_own_values_as_parameters(conversation):
    # The columns that are the same in every such row are written into the statement.
    client_id = uuid.uuid4()
    message = message_sql.CUSTOMER_MESSAGE.new(
        conversation_id=conversation.pk, text="Do you ship to Norway?", client_id=client_id
    )
    answer = message_sql.RESERVED_ANSWER.new(conversation_id=conversation.pk)
    params = message_sql.visitor_message_params(
        message, visitor_id=conversation.visitor_id, answer=answer
    )
    own = {conversation.pk, conversation.visitor_id, "Do you ship to Norway?", client_id}
    statuses = {Conversation.Status.BOT, Conversation.Status.RESOLVED}
    times = [value for value in params if isinstance(value, datetime)]
    assert {value for value in params if not isinstance(value, datetime)} == own | statuses
    # The conversation's update time, the message's and its answer's creation times.
    assert len(times) == 3
