"""The widget's websocket: validates frames, stores messages, relays the bot's answer.

docs/protocol.md is the contract. ORM work happens in helpdesk.services through
database_sync_to_async; the bot is reached only through bots.engine.reply().
"""

import asyncio
import concurrent.futures
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import translation
from django.utils.translation import gettext

from bots import engine
from bots.circuit import breaker
from bots.llm import llm_configured, provider_key
from handoff import escalation as handoff_escalation
from handoff import selectors as handoff_selectors
from handoff import services as handoff_services
from handoff.models import Handoff
from handoff.policy import PolicyConfig, priority_for
from helpdesk import loop_db, services
from helpdesk.languages import supported_language
from helpdesk.models import Conversation, normalize_origin
from helpdesk.protocol import ProtocolError, parse_client_frame
from helpdesk.websocket import WebsocketConsumer, group_size

logger = logging.getLogger(__name__)

# Answers keep running after their socket closes, so the customer finds them on reconnect;
# so does a count of a conversation's connections (`keep_running`).
_running_answers: set[asyncio.Task] = set()

# How long after its message is committed an ack waits at most for the rest of the trip.
_ACK_LATEST_SECONDS = 0.005
# How long the ORM thread waits for the event loop to send an ack it needs out first.
_ACK_WAIT_SECONDS = 1.0
# The longest the copies of a message for the conversation's other connections wait while
# the bot prepares its answer (`acknowledge`).
_GROUP_HOLD_SECONDS = 0.5

# An answer's frames that only show it being written. Their copies for the conversation's
# group are left out while no other connection follows it: one that joins meanwhile, before
# it is heard of, misses some of them, as it would have by joining a moment later, and
# still gets the stored message itself (`done`, notices, the customer's echo).
_FLEETING = ("delta", "typing")

# Conversation statuses in which a handoff may be open (queue place or agent to tell about).
_WITH_A_PERSON = (Conversation.Status.WAITING, Conversation.Status.HUMAN)


@dataclass(frozen=True)
class StoredTurn:
    recorded: services.RecordedMessage
    escalation: "handoff_services.Escalation | None" = None
    turn: "engine.services.Turn | None" = None


def _store_and_read_turn(
    *,
    visitor_id: int,
    site_id: int,
    conversation_id: int | None,
    client_id,
    text: str,
    on_sent: Callable[[], None],
    on_stored: Callable[[services.RecordedMessage], None],
    acknowledge_now: Callable[[services.RecordedMessage], None],
    read_turn: bool,
) -> StoredTurn:
    """One trip to the ORM thread for a customer message: store it (then `on_stored`), and
    for the bot's conversations run the escalation policy and read the bot's turn.
    `on_sent` is called once, as soon as the message is on its way to the database.
    `acknowledge_now` sends the ack and waits for it, before the trip sends the
    conversation anything (an escalation's status).

    What the policy and the turn read from the database comes back with the statement that
    stores the message, where it can (PostgreSQL, the open conversation the connection
    follows); else they read it themselves. While PostgreSQL stores the message (the open
    conversation's or a new one's), this thread makes the turn's lookups from the question
    (retrieval, curated answers).

    `read_turn` is False while an earlier answer of this connection is still being written:
    the next turn must see it, so the answer reads its turn itself once that one is done.
    A failure after the message is stored does not fail the message: the answer reads
    again on its own and reports the failure to the customer.
    """

    reads = ()
    lookups = []
    sent = []

    def tell_sent() -> None:
        if not sent:
            sent.append(True)
            on_sent()

    if read_turn and conversation_id is not None:
        reads = (
            handoff_escalation.recent_outcomes_read(
                conversation_id=conversation_id, site_id=site_id
            ),
            *engine.turn_reads(conversation_id=conversation_id),
        )
    elif not read_turn:
        # No lookups to make: nothing to do while the message is stored.
        tell_sent()

    def look_up_while_storing() -> None:
        tell_sent()
        try:
            lookups.append(engine.lookups_ahead(site_id=site_id, question=text))
        except Exception:
            # Only time is lost: the turn read makes the lookups again.
            logger.exception("Looking up the question of conversation %s failed", conversation_id)

    recorded = services.record_visitor_message(
        visitor_id=visitor_id,
        client_id=client_id,
        text=text,
        conversation_id=conversation_id,
        reads=reads,
        reserve_answer=read_turn,
        while_storing=look_up_while_storing if read_turn else None,
    )
    # Where the statement did not run pipelined (SQLite), the lookups did not run either.
    tell_sent()
    on_stored(recorded)
    if not recorded.created:
        return StoredTurn(recorded)
    return _policy_and_turn(
        recorded,
        site_id=site_id,
        read_turn=read_turn,
        lookups=lookups[0] if lookups else None,
        acknowledge_now=lambda: acknowledge_now(recorded),
    )


def _policy_and_turn(
    recorded: services.RecordedMessage,
    *,
    site_id: int,
    read_turn: bool,
    lookups: "engine.services.Lookups | None",
    acknowledge_now: Callable[[], None],
) -> StoredTurn:
    """The rest of a new customer message's trip, in the ORM thread: a new conversation
    announced, then for the bot's conversations the escalation policy and the bot's turn.
    `acknowledge_now` as in `_store_and_read_turn`."""
    message = recorded.message
    try:
        if message["seq"] == 1:
            handoff_services.announce_conversation_started(
                conversation_id=recorded.conversation_id, site_id=site_id
            )
        if not read_turn or recorded.conversation_status != Conversation.Status.BOT:
            return StoredTurn(recorded)
        read = recorded.reads
        escalation = handoff_escalation.maybe_escalate(
            message_id=message["id"],
            conversation_id=recorded.conversation_id,
            site_id=site_id,
            seq=message["seq"],
            text=message["text"],
            recent_outcomes=None if read is None else handoff_escalation.outcomes_of_read(read[0]),
            before_escalating=_before_escalating(recorded.answer, acknowledge_now),
        )
        if escalation is not None:
            return StoredTurn(recorded, escalation=escalation)
        turn_reads = None if read is None else read[1:]
        if turn_reads is None and recorded.opened_in is not None:
            turn_reads = engine.opening_turn_reads(site_id=site_id, language=recorded.opened_in)
        turn = engine.read_turn(
            conversation_id=recorded.conversation_id,
            message_id=message["id"],
            reads=turn_reads,
            message=message,
            lookups=lookups,
        )
        return StoredTurn(recorded, turn=turn)
    except Exception:
        logger.exception("Reading the turn of conversation %s failed", recorded.conversation_id)
        return StoredTurn(recorded)


def _policy_and_turn_from_caches(
    recorded: services.RecordedMessage,
    *,
    policy: PolicyConfig,
    lookups: "engine.services.Lookups | None",
    text_let_through: bool | None = None,
) -> StoredTurn | None:
    """`_policy_and_turn` with no I/O, on the event loop, for a message stored there; None
    where it would need some (a new conversation to announce, a rule that fires, what the
    caches do not hold): then `_policy_and_turn` runs in the ORM thread.
    `text_let_through`: the policy's rules on the text, told while the message was being
    stored (`handoff.escalation.text_lets_bot_answer`)."""
    message, read = recorded.message, recorded.reads
    if message["seq"] == 1 or read is None:
        return None
    if recorded.conversation_status != Conversation.Status.BOT:
        return StoredTurn(recorded)
    try:
        recent_outcomes = handoff_escalation.outcomes_of_read(read[0])
        if not handoff_escalation.lets_bot_answer(
            policy=policy,
            text=message["text"],
            recent_outcomes=recent_outcomes,
            text_let_through=text_let_through,
        ):
            return None
        turn = engine.read_turn_from_caches(
            conversation_id=recorded.conversation_id,
            message_id=message["id"],
            reads=read[1:],
            message=message,
            lookups=lookups,
        )
    except Exception:
        logger.exception("Reading the turn of conversation %s failed", recorded.conversation_id)
        return None
    return None if turn is None else StoredTurn(recorded, turn=turn)


_store_and_read_turn_in_thread = database_sync_to_async(_store_and_read_turn)


def _before_escalating(
    answer: dict | None, acknowledge: Callable[[], None] | None = None
) -> Callable[[], None]:
    """What runs once the policy hands the conversation to a person, before the notice is
    stored: the customer's ack (so it comes before the status and the notice), then the
    bot's reserved answer dropped (the notice takes its number)."""

    def prepare() -> None:
        if acknowledge is not None:
            acknowledge()
        if answer is not None:
            services.release_answer(answer)

    return prepare


def conversation_group(conversation_id: int) -> str:
    return f"conversation.{conversation_id}"


def origin_allowed(*, origin: str, host: str, site: services.SiteInfo) -> bool:
    """The frame's own origin (Helpdesk's host) or one of the site's allowed origins."""
    try:
        normalized = normalize_origin(origin)
    except ValueError:
        return False
    return urlsplit(normalized).netloc == host.lower() or normalized in site.allowed_origins


class WidgetConsumer(WebsocketConsumer):
    site: services.SiteInfo
    visitor_id: int | None = None
    conversation_id: int | None = None
    closed = False
    # Whether the bot answers the conversation, as last stored or told.
    bot_has_chat = True
    # Answers scheduled and not yet finished on this connection.
    answers_pending = 0
    # No other connection follows the conversation (another tab, an agent), as last
    # counted: the group gets no copies of this connection's fleeting frames. Any joiner
    # announces itself (`group_joined`); a count that ran meanwhile is ignored.
    alone = False
    joins_heard = 0

    async def connect(self) -> None:
        headers = {
            name.decode("latin-1"): value.decode("latin-1") for name, value in self.scope["headers"]
        }
        key = self.scope["url_route"]["kwargs"]["site_key"]
        site = await database_sync_to_async(services.get_active_site)(key=key)
        if site is None or not origin_allowed(
            origin=headers.get("origin", ""), host=headers.get("host", ""), site=site
        ):
            # Closing before accept refuses the handshake with HTTP 403.
            await self.close()
            return
        self.site = site
        self.user_agent = headers.get("user-agent", "")
        self.recent_messages: deque[float] = deque()
        self.answer_lock = asyncio.Lock()
        await self.accept()

    async def disconnect(self, code: int) -> None:
        self.closed = True
        if self.conversation_id is not None:
            await self.leave_group(conversation_group(self.conversation_id))

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        frame_type = None

        try:
            if text_data is None:
                raise ProtocolError("binary_not_supported", "Binary frames are not supported.")
            if len(text_data.encode("utf-8")) > settings.HELPDESK_MAX_FRAME_BYTES:
                raise ProtocolError(
                    "frame_too_large",
                    f"Frames are limited to {settings.HELPDESK_MAX_FRAME_BYTES} bytes.",
                )
            frame = parse_client_frame(text_data)
            frame_type = frame["type"]
            if frame["type"] != "hello" and self.visitor_id is None:
                raise ProtocolError("not_ready", "Send 'hello' first.")
            await getattr(self, f"on_{frame['type']}")(frame)
        except ProtocolError as error:
            await self.send_frame(
                {
                    "type": "error",
                    "code": error.code,
                    "message": error.message,
                    "id": error.client_id,
                    "about": error.about or frame_type,
                }
            )

    async def send_frame(self, frame: dict) -> None:
        await self.send(text_data=json.dumps(frame, ensure_ascii=False))

    # Client frames

    async def on_hello(self, frame: dict) -> None:
        session = await database_sync_to_async(services.open_visitor_session)(
            site_id=self.site.id,
            token=frame["token"],
            language=frame["language"],
            page_url=frame["page_url"],
            user_agent=self.user_agent,
        )
        self.visitor_id = session.visitor_id
        self.language = supported_language(frame["language"])
        conversation = session.conversation
        if conversation is None:
            conversation = await database_sync_to_async(handoff_selectors.conversation_to_rate)(
                visitor_id=session.visitor_id
            )
        await self.follow_conversation(conversation["id"] if conversation else None)
        self.bot_has_chat = conversation is None or conversation["status"] not in _WITH_A_PERSON
        await self.send_frame(
            {
                "type": "ready",
                "token": session.token,
                "conversation": conversation,
                "greeting": self.site.greeting,
            }
        )
        if conversation is not None and conversation["status"] in _WITH_A_PERSON:
            # A reload knows nothing of the handoff: its queue place, or who has the chat.
            # Sent before the replay, so the widget takes them as state, not as news.
            for state in await database_sync_to_async(handoff_selectors.widget_handoff_frames)(
                conversation["id"]
            ):
                await self.send_frame(state)
        await self.replay(after=frame["after"])

    async def on_message(self, frame: dict) -> None:
        self.check_rate(frame["id"])
        loop = asyncio.get_running_loop()
        acks: list[asyncio.Task] = []

        def acknowledge(recorded: services.RecordedMessage) -> asyncio.Task:
            if not acks:
                acks.append(asyncio.create_task(self.acknowledge(frame["id"], recorded)))
            return acks[0]

        async def acknowledged(recorded: services.RecordedMessage) -> None:
            await acknowledge(recorded)

        def acknowledge_now(recorded: services.RecordedMessage) -> None:
            sent = asyncio.run_coroutine_threadsafe(acknowledged(recorded), loop)
            concurrent.futures.wait([sent], timeout=_ACK_WAIT_SECONDS)

        def on_stored(recorded: services.RecordedMessage) -> None:
            # Called in the ORM thread once the message is committed. The ack goes out when
            # the trip ends, which is sooner than sending it from here: the event loop would
            # wait for the interpreter while this thread goes on. Should the rest of the trip
            # be slow (a cache rebuilt), the ack goes out after a short while regardless.
            # A new conversation's trip is long (its webhooks, its first turn read): its ack
            # (which follows the conversation) goes out at once, and an escalation waits
            # for it (`acknowledge_now`) before it sends the conversation anything.
            if recorded.conversation_id != self.conversation_id:
                loop.call_soon_threadsafe(acknowledge, recorded)
            else:
                loop.call_soon_threadsafe(
                    loop.call_later, _ACK_LATEST_SECONDS, acknowledge, recorded
                )

        moderations: list[asyncio.Task] = []
        given_up: list[bool] = []

        def start_moderation() -> None:
            # Not once the trip has been given up (the connection closed meanwhile).
            if self.bot_has_chat and not moderations and not given_up:
                moderation = engine.start_moderation(frame["text"])
                if moderation is not None:
                    moderations.append(moderation)

        def on_sent() -> None:
            # The provider's moderation runs while PostgreSQL stores the message and the
            # ORM thread makes the turn's lookups. Started before the statement is sent,
            # the building of its request holds the interpreter and the thread waits for it.
            loop.call_soon_threadsafe(start_moderation)

        try:
            stored = await self.store_on_loop(
                frame,
                start_moderation=start_moderation,
                acknowledge=acknowledge,
                acknowledge_now=acknowledge_now,
            )
            if stored is None:
                stored = await _store_and_read_turn_in_thread(
                    visitor_id=self.visitor_id,
                    site_id=self.site.id,
                    conversation_id=self.conversation_id,
                    client_id=frame["id"],
                    text=frame["text"],
                    on_sent=on_sent,
                    on_stored=on_stored,
                    acknowledge_now=acknowledge_now,
                    read_turn=self.answers_pending == 0,
                )

            await acknowledge(stored.recorded)
        except BaseException:
            given_up.append(True)
            for moderation in moderations:
                moderation.cancel()
            raise
        # The thread's call to start it came before the trip's end, and callbacks from one
        # thread run in order (on the loop, it started after the lookups): the moderation
        # has started if it was wanted.
        moderation = moderations[0] if moderations else None
        recorded = stored.recorded
        bot_answers = recorded.created and recorded.conversation_status == Conversation.Status.BOT
        if moderation is not None and not bot_answers:
            moderation.cancel()
            moderation = None
        if bot_answers:
            self.answers_pending += 1
            self.keep_running(
                self.answer(
                    recorded.conversation_id,
                    recorded.message,
                    turn=stored.turn,
                    escalation=stored.escalation,
                    moderation=moderation,
                    reserved=recorded.answer,
                )
            )

    async def store_on_loop(
        self,
        frame: dict,
        *,
        start_moderation: Callable[[], None],
        acknowledge: Callable[[services.RecordedMessage], asyncio.Task],
        acknowledge_now: Callable[[services.RecordedMessage], None],
    ) -> StoredTurn | None:
        """A customer message's trip on the event loop (helpdesk.loop_db), with no hand-off
        to the ORM thread: stored into the open conversation this connection follows with
        the reads of the policy and the turn, the lookups made meanwhile, then the policy
        and the turn from the caches (in the ORM thread where they need I/O).

        None when it is not stored here (no conversation yet, an answer still being
        written, the site's policy not cached, no loop connection free, the client id
        stored already, the conversation closed): the ORM thread's trip takes it.
        """
        if self.conversation_id is None or self.answers_pending or not loop_db.enabled():
            return None
        policy = PolicyConfig.cached(self.site.id)
        if policy is None:
            return None
        conversation_id, site_id = self.conversation_id, self.site.id
        lookups = []
        text_let_through = []

        def look_up_while_storing() -> None:
            try:
                lookups.append(engine.lookups_ahead(site_id=site_id, question=frame["text"]))
                text_let_through.append(
                    handoff_escalation.text_lets_bot_answer(policy=policy, text=frame["text"])
                )
            except Exception:
                # Only time is lost: the turn read makes the lookups again, and the policy
                # reads the text again.
                logger.exception(
                    "Looking up the question of conversation %s failed", conversation_id
                )
            # After the lookups, not before: sending its request wakes the provider, and
            # on a machine it shares the provider would run in the loop's place.
            start_moderation()

        recorded = await services.store_into_open_conversation_on_loop(
            visitor_id=self.visitor_id,
            conversation_id=conversation_id,
            client_id=frame["id"],
            text=frame["text"],
            reads=(
                handoff_escalation.recent_outcomes_read(
                    conversation_id=conversation_id, site_id=site_id, policy=policy
                ),
                *engine.turn_reads(conversation_id=conversation_id),
            ),
            while_storing=look_up_while_storing,
        )
        if recorded is None:
            return None
        found = lookups[0] if lookups else None

        stored = _policy_and_turn_from_caches(
            recorded,
            policy=policy,
            lookups=found,
            text_let_through=text_let_through[0] if text_let_through else None,
        )
        if stored is not None:
            return stored
        acknowledge(recorded)
        return await database_sync_to_async(_policy_and_turn)(
            recorded,
            site_id=site_id,
            read_turn=True,
            lookups=found,
            acknowledge_now=lambda: acknowledge_now(recorded),
        )

    def keep_running(self, work) -> None:
        """Run `work` to its end even if this connection closes."""
        task = asyncio.ensure_future(work)
        _running_answers.add(task)
        task.add_done_callback(_running_answers.discard)

    async def acknowledge(self, client_id, recorded: services.RecordedMessage) -> None:
        """Send the ack and the echo to the conversation's other connections (other tabs, an
        agent)."""

        await self.follow_conversation(recorded.conversation_id)
        stored = recorded.message
        await self.send_frame(
            {
                "type": "ack",
                "id": str(client_id),
                "message_id": stored["id"],
                "conversation": recorded.conversation_id,
                "seq": stored["seq"],
                "duplicate": not recorded.created,
            }
        )
        if not recorded.created:
            return
        self.bot_has_chat = recorded.conversation_status == Conversation.Status.BOT
        if self.bot_has_chat:
            # The bot answers: the copies wait until its request to the LLM is on its way
            # (or its first frame is out), so that their Redis round trips do not run on
            # the way to the first token. Order is kept; only the start waits.
            self.group_sends.hold(_GROUP_HOLD_SECONDS)
        self.publish({"type": "message", "message": stored}, skip_self=True)

    async def on_resume(self, frame: dict) -> None:
        await self.replay(after=frame["after"])

    async def on_attributes(self, frame: dict) -> None:
        await database_sync_to_async(services.update_visitor_attributes)(
            visitor_id=self.visitor_id, attributes=frame["attributes"]
        )

    async def on_feedback(self, frame: dict) -> None:
        stored = await database_sync_to_async(services.record_feedback)(
            visitor_id=self.visitor_id, message_id=frame["message_id"], vote=frame["vote"]
        )
        if stored is None:
            raise ProtocolError("invalid_field", "Feedback is only for answers of this chat.")
        await self.channel_layer.group_send(
            conversation_group(stored["conversation"]),
            {"type": "conversation.frame", "frame": {"type": "feedback", **stored}, "skip": None},
        )

    async def on_handoff(self, frame: dict) -> None:
        conversation_id = await database_sync_to_async(services.open_conversation)(
            visitor_id=self.visitor_id
        )
        await self.follow_conversation(conversation_id)
        with translation.override(self.language):
            notice = gettext("Thanks — we're connecting you to a person. Please stay in this chat.")
        # The service sends the status, the notice, the queue or an auto-assignment's claim
        # (in that order) and `conversation.started` when the notice opens the conversation.
        await database_sync_to_async(handoff_services.escalate_conversation)(
            conversation_id=conversation_id,
            rule="customer_request",
            reason=f"customer:{frame['reason']}",
            notice=notice,
            priority=priority_for(Handoff.Rule.CUSTOMER),
        )

    async def on_typing(self, frame: dict) -> None:
        if self.conversation_id is None:
            return
        await self.channel_layer.group_send(
            conversation_group(self.conversation_id),
            {
                "type": "conversation.frame",
                "frame": {
                    "type": "typing",
                    "conversation": self.conversation_id,
                    "author": "visitor",
                    "active": frame["active"],
                },
                "skip": self.channel_name,
                "audience": "agents",
            },
        )

    async def on_contact(self, frame: dict) -> None:
        try:
            email = await database_sync_to_async(handoff_services.set_contact_email)(
                visitor_id=self.visitor_id, email=frame["email"]
            )
        except handoff_services.HandoffError as error:
            raise ProtocolError("invalid_field", "That e-mail address is not valid.") from error
        await self.send_frame(
            {"type": "contact", "conversation": self.conversation_id, "email": email}
        )

    async def on_rating(self, frame: dict) -> None:
        try:
            rating = await database_sync_to_async(handoff_services.rate_conversation)(
                visitor_id=self.visitor_id, score=frame["score"], comment=frame["comment"]
            )
        except handoff_services.HandoffError as error:
            code = "already_rated" if error.code == "already_rated" else "invalid_field"
            raise ProtocolError(code, str(error) or "This conversation cannot be rated.") from error
        await self.send_frame(
            {"type": "rating", "conversation": rating["conversation"], "score": rating["score"]}
        )

    async def on_ping(self, frame: dict) -> None:
        # A quiet customer still waiting for a person is not gone: pings mark them present,
        # at most once a minute.
        now = time.monotonic()
        if now - getattr(self, "last_touch", 0.0) > 60:
            self.last_touch = now
            await database_sync_to_async(services.touch_visitor)(visitor_id=self.visitor_id)
        await self.send_frame({"type": "pong"})

    # Helpers

    def check_rate(self, client_id) -> None:
        now = time.monotonic()
        window = settings.HELPDESK_RATE_LIMIT_WINDOW
        while self.recent_messages and now - self.recent_messages[0] > window:
            self.recent_messages.popleft()
        if len(self.recent_messages) >= settings.HELPDESK_RATE_LIMIT_MESSAGES:
            raise ProtocolError(
                "rate_limited", "Too many messages; wait a moment and resend.", str(client_id)
            )
        self.recent_messages.append(now)

    async def follow_conversation(self, conversation_id: int | None) -> None:
        if conversation_id == self.conversation_id:
            return
        if self.conversation_id is not None:
            await self.leave_group(conversation_group(self.conversation_id))
        self.conversation_id = conversation_id
        self.alone = False
        if conversation_id is not None:
            await self.join_group(conversation_group(conversation_id))
            self.keep_running(self.count_company(conversation_id))

    async def count_company(self, conversation_id: int) -> None:
        """Count the conversation's group, off the customer's path; alone if this connection
        is all it has, unless someone announced joining while it was counted."""
        joins = self.joins_heard
        try:
            size = await group_size(self.channel_layer, conversation_group(conversation_id))
        except Exception:
            logger.exception("Counting the connections of conversation %s failed", conversation_id)
            return
        if size == 1 and self.conversation_id == conversation_id and self.joins_heard == joins:
            self.alone = True

    async def group_joined(self, event: dict) -> None:
        if event["channel"] != self.channel_name:
            self.joins_heard += 1
            self.alone = False

    async def group_left(self, event: dict) -> None:
        if event["channel"] != self.channel_name and self.conversation_id is not None:
            self.keep_running(self.count_company(self.conversation_id))

    async def replay(self, *, after: int) -> None:
        if self.conversation_id is not None:
            while True:
                batch = await database_sync_to_async(services.messages_after)(
                    visitor_id=self.visitor_id, conversation_id=self.conversation_id, after=after
                )
                for message in batch:
                    await self.send_frame(
                        {
                            "type": "message",
                            "conversation": self.conversation_id,
                            "message": message,
                        }
                    )
                    after = message["seq"]
                if len(batch) < settings.HELPDESK_RESUME_BATCH:
                    break
        await self.send_frame(
            {"type": "synced", "conversation": self.conversation_id, "seq": after}
        )

    def publish(self, frame: dict, *, skip_self: bool = False) -> None:
        """Send a frame to every connection following the current conversation, after what
        this connection published before (`group_sends`)."""
        self.group_sends.send(
            conversation_group(self.conversation_id),
            {
                "type": "conversation.frame",
                "frame": {"conversation": self.conversation_id, **frame},
                "skip": self.channel_name if skip_self else None,
            },
        )

    async def publish_status_change(self, change: services.StatusChange) -> None:
        """Tell every connection of the conversation that it changed state, and why: after
        what this connection published before, and sent when this returns."""
        if not change.changed:
            return
        frames = [{"type": "status", "status": change.status}]
        if change.notice is not None:
            frames.append({"type": "message", "message": change.notice})
        for frame in frames:
            self.group_sends.send(
                conversation_group(change.conversation_id),
                {
                    "type": "conversation.frame",
                    "frame": {"conversation": change.conversation_id, **frame},
                    "skip": None,
                },
            )
        await self.group_sends.flush()

    async def answer(
        self,
        conversation_id: int,
        message: dict,
        *,
        turn=None,
        escalation: "handoff_services.Escalation | None" = None,
        moderation: "asyncio.Task | None" = None,
        reserved: dict | None = None,
    ) -> None:
        """The bot's answer to a stored customer message; `turn` and `escalation` as read
        by `_store_and_read_turn` (neither: read here, after earlier answers finished),
        `reserved` the answer's row if stored with the message."""
        relay = AnswerRelay(self, conversation_id)
        try:
            async with self.answer_lock:
                if turn is None and escalation is None:
                    escalation = await database_sync_to_async(handoff_escalation.maybe_escalate)(
                        message_id=message["id"],
                        conversation_id=conversation_id,
                        site_id=self.site.id,
                        seq=message["seq"],
                        text=message["text"],
                        before_escalating=_before_escalating(reserved),
                    )
                if escalation is not None:
                    if moderation is not None:
                        moderation.cancel()
                    await self.publish_status_change(escalation.status_change)
                    return
                await self.run_engine(relay, conversation_id, message, turn, moderation, reserved)
        finally:
            self.answers_pending -= 1
            self.group_sends.release()

    async def run_engine(
        self,
        relay: "AnswerRelay",
        conversation_id: int,
        message: dict,
        turn,
        moderation,
        reserved: dict | None,
    ) -> None:
        loop = asyncio.get_running_loop()
        await relay({"type": "typing", "author": "bot", "active": True})
        try:
            async for event in engine.reply(
                conversation_id=conversation_id,
                message_id=message["id"],
                turn=turn,
                moderation=moderation,
                reserved=reserved,
                # Once the request has left (the engine's next wait), the held copies go.
                before_llm_call=lambda: loop.call_soon(self.group_sends.release),
            ):
                if isinstance(event, engine.StatusChanged):
                    relay.keep_order_with_the_group()
                    await self.publish_status_change(event.change)
                else:
                    await relay(_frame_of(event))
        except Exception:
            logger.exception("The bot failed on conversation %s", conversation_id)
            await relay(
                {
                    "type": "error",
                    "code": "bot_unavailable",
                    "message": "The assistant failed.",
                    "id": None,
                }
            )
        finally:
            await relay({"type": "typing", "author": "bot", "active": False})
        escalation = await database_sync_to_async(handoff_escalation.escalate_after_bot)(
            conversation_id=conversation_id,
            provider_down=llm_configured() and breaker.is_open(provider_key()),
        )
        if escalation is not None:
            await self.publish_status_change(escalation.status_change)

    # Channel-layer events

    async def conversation_frame(self, event: dict) -> None:
        if event.get("skip") != self.channel_name and event.get("audience") != "agents":
            frame = event["frame"]
            if frame.get("type") == "status":
                self.bot_has_chat = frame["status"] == Conversation.Status.BOT
            await self.send_frame(frame)


class AnswerRelay:
    """The frames of one bot answer: straight to the socket that asked, through the
    conversation's group to its other connections (other tabs, agents).

    The direct send spares the asking customer a round trip through the channel layer on
    every delta, and the group's copy is queued (`OrderedGroupSends`), not waited for. Once
    the answer publishes something through the group only (a status change), the rest goes
    through the group too, so that socket sees them in order.
    """

    def __init__(self, consumer: WidgetConsumer, conversation_id: int) -> None:
        self.consumer = consumer
        self.conversation_id = conversation_id
        self.direct = True

    def keep_order_with_the_group(self) -> None:
        self.direct = False

    async def __call__(self, frame: dict) -> None:
        consumer = self.consumer
        event = {"conversation": self.conversation_id, **frame}
        skip = None
        if self.direct and not consumer.closed and consumer.conversation_id == self.conversation_id:
            try:
                await consumer.send_frame(event)
                skip = consumer.channel_name
            except OSError:
                # The customer left mid-answer; a reconnect finds the rest in the group.
                consumer.closed = True
        if frame["type"] != "typing":
            consumer.group_sends.release()
        if skip is not None and consumer.alone and frame["type"] in _FLEETING:
            return
        consumer.group_sends.send(
            conversation_group(self.conversation_id),
            {"type": "conversation.frame", "frame": event, "skip": skip},
        )


def _frame_of(event: engine.BotEvent) -> dict:
    if isinstance(event, engine.Delta):
        return {
            "type": "delta",
            "message_id": event.message_id,
            "seq": event.seq,
            "offset": event.offset,
            "text": event.text,
        }
    if isinstance(event, engine.Stored):
        message = event.message
        return {
            "type": "done",
            "message_id": message["id"],
            "seq": message["seq"],
            "author": message["author"],
            "text": message["text"],
            "state": message["state"],
            "sources": message["sources"],
            "answer_source": message["answer_source"],
        }
    return {"type": "message", "message": event.message}
