import secrets
import uuid
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _


def new_widget_key() -> str:
    return "pk_" + secrets.token_urlsafe(18)


def normalize_origin(value: str) -> str:
    """`https://Shop.example:443/x` -> `https://shop.example`; ValueError if not an origin."""
    parts = urlsplit(value.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) origin")
    default_port = {"http": 80, "https": 443}[parts.scheme]
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port and parts.port != default_port else ""
    return f"{parts.scheme}://{host}{port}"


def validate_origins(value: list) -> None:
    if not isinstance(value, list):
        raise ValidationError(_("Allowed origins must be a list of URLs."))
    for item in value:
        try:
            normalize_origin(str(item))
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class Site(models.Model):
    """A business that embeds the widget; its key is public, its origins are the guard."""

    name = models.CharField(max_length=200)
    key = models.CharField(
        "public widget key", max_length=64, unique=True, default=new_widget_key, editable=False
    )
    allowed_origins = models.JSONField(
        default=list,
        validators=[validate_origins],
        help_text='Origins allowed to embed the widget, e.g. ["https://shop.example"].',
    )
    is_active = models.BooleanField(default=True)
    scope = models.TextField(
        "business scope",
        help_text="The system message: who the bot speaks for and what it may talk about.",
    )
    greeting = models.CharField(max_length=500, blank=True)
    default_language = models.CharField(
        max_length=16, choices=settings.LANGUAGES, default=settings.LANGUAGE_CODE
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if isinstance(self.allowed_origins, list):
            self.allowed_origins = sorted({normalize_origin(o) for o in self.allowed_origins})

    def allows_origin(self, origin: str) -> bool:
        try:
            return normalize_origin(origin) in self.allowed_origins
        except ValueError:
            return False


class Visitor(models.Model):
    """One browser on one site; it proves who it is with a signed token (helpdesk.tokens)."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="visitors")
    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    language = models.CharField(max_length=16, blank=True)
    page_url = models.URLField(max_length=2000, blank=True)
    user_agent = models.CharField(max_length=500, blank=True)
    attributes = models.JSONField(
        default=dict, blank=True, help_text="Set by the host page with Helpdesk('setAttributes')."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Visitor {str(self.uid)[:8]} on {self.site_id}"


class ConversationQuerySet(models.QuerySet):
    def open(self):
        return self.exclude(status=Conversation.Status.RESOLVED)


class Conversation(models.Model):
    class Status(models.TextChoices):
        BOT = "bot", _("With the bot")
        WAITING = "waiting", _("Waiting for a human")
        HUMAN = "human", _("With a human")
        RESOLVED = "resolved", _("Resolved")

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="conversations")
    visitor = models.ForeignKey(Visitor, on_delete=models.CASCADE, related_name="conversations")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.BOT)
    language = models.CharField(max_length=16, blank=True)
    # Why the conversation asked for a human ("customer:button", "tool: …", "moderation"…).
    escalation_reason = models.CharField(max_length=200, blank=True)
    # Left by the customer for a follow-up when no agent was available.
    contact_email = models.EmailField(blank=True)
    # The sequence number of the newest message; every stored message takes the next one.
    last_seq = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["site", "status", "-updated_at"]),
            # analytics.aggregation.touched_keys: rows created, changed or resolved since
            # the watermark, an OR that PostgreSQL answers with a bitmap OR of these.
            models.Index(fields=["created_at"], name="conversation_created_idx"),
            models.Index(fields=["updated_at"], name="conversation_updated_idx"),
            models.Index(fields=["resolved_at"], name="conversation_resolved_idx"),
        ]

    def __str__(self) -> str:
        return f"Conversation {self.pk}"

    @property
    def group_name(self) -> str:
        return f"conversation.{self.pk}"


class Message(models.Model):
    class Author(models.TextChoices):
        VISITOR = "visitor", _("Visitor")
        BOT = "bot", _("Bot")
        AGENT = "agent", _("Agent")
        SYSTEM = "system", _("System")

    class State(models.TextChoices):
        COMPLETE = "complete", _("Complete")
        STREAMING = "streaming", _("Streaming")
        INTERRUPTED = "interrupted", _("Interrupted")

    class Feedback(models.TextChoices):
        UP = "up", _("Helpful")
        DOWN = "down", _("Not helpful")

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    seq = models.PositiveIntegerField()
    author = models.CharField(max_length=16, choices=Author.choices)
    text = models.TextField(blank=True)
    state = models.CharField(max_length=16, choices=State.choices, default=State.COMPLETE)
    client_id = models.UUIDField(null=True, blank=True)
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    # What the customer saw as the writer's name when it was sent; a transfer or a renamed
    # profile does not change who said what.
    author_name = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    # LLM usage of a bot answer; empty for everything else.
    llm_model = models.CharField(max_length=100, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    first_token_ms = models.FloatField(null=True, blank=True)
    total_ms = models.FloatField(null=True, blank=True)
    cost = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    answer_source = models.CharField(
        max_length=16,
        blank=True,
        help_text="How a bot answer was made: llm, offline, curated, cache.",
    )
    sources = models.JSONField(
        default=list, blank=True, help_text="Knowledge-base articles a bot answer used."
    )
    feedback = models.CharField(max_length=8, choices=Feedback.choices, blank=True)
    feedback_at = models.DateTimeField(null=True, blank=True)
    # Set by moderation: a human should look at this message.
    needs_review = models.BooleanField(default=False)
    review_reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["conversation", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="message_seq_unique"),
            models.UniqueConstraint(
                fields=["conversation", "client_id"],
                condition=models.Q(client_id__isnull=False),
                name="message_client_id_unique",
            ),
        ]
        # A resend is looked up by client id across the visitor's conversations.
        indexes = [
            models.Index(fields=["client_id"], name="message_client_id_idx"),
            # analytics.aggregation.touched_keys: messages stored, completed or rated since
            # the watermark. Without these an incremental run scans every message.
            models.Index(fields=["created_at"], name="message_created_idx"),
            models.Index(fields=["completed_at"], name="message_completed_idx"),
            models.Index(fields=["feedback_at"], name="message_feedback_idx"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.author}: {self.text[:40]}"

    def as_frame(self) -> dict:
        """The message as the widget sees it (docs/protocol.md, `message` frame)."""
        return {
            "id": self.pk,
            "seq": self.seq,
            "author": self.author,
            "text": self.text,
            "state": self.state,
            "client_id": str(self.client_id) if self.client_id else None,
            "created_at": self.created_at.isoformat(),
            "sources": self.sources,
            "feedback": self.feedback or None,
            "answer_source": self.answer_source or None,
            "author_name": self.author_name or None,
        }
