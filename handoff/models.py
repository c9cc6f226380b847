from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from helpdesk.models import Conversation, Site


class Team(models.Model):
    """A group of agents a handoff can be routed to (e.g. Billing)."""

    name = models.CharField(max_length=100, unique=True)
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, related_name="helpdesk_teams", blank=True
    )

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class AgentProfile(models.Model):
    """An agent's sites, capacity and presence."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_profile"
    )
    display_name = models.CharField(max_length=100, blank=True)
    sites = models.ManyToManyField(Site, related_name="agents", blank=True)
    capacity = models.PositiveIntegerField(
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(100)],
        help_text="Conversations this agent can hold at once.",
    )
    is_online = models.BooleanField(default=False)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    notifications = models.BooleanField(
        default=True, help_text="Browser notification and sound for new handoffs."
    )

    def __str__(self) -> str:
        return self.name

    @property
    def name(self) -> str:
        return self.display_name or self.user.get_full_name() or self.user.get_username()


class HandoffSettings(models.Model):
    """A site's escalation policy and queue settings."""

    class AutoAssign(models.TextChoices):
        OFF = "off", _("Off: agents claim")
        ROUND_ROBIN = "round_robin", _("Round robin")
        LEAST_BUSY = "least_busy", _("Least busy")

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="handoff_settings")
    failure_threshold = models.PositiveIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(20)],
        help_text="Bot failures in a row (no match, refusal, error) that call a human.",
    )
    sentiment_check = models.BooleanField(
        default=True, help_text="Escalate angry or distressed customers."
    )
    sentiment_llm = models.BooleanField(
        "ask the LLM about sentiment",
        default=False,
        help_text=(
            "When an LLM is configured, also ask it about each customer message the word list "
            "lets through (one extra call per message, counted in the LLM call log)."
        ),
    )
    business_hours = models.JSONField(
        default=dict,
        blank=True,
        help_text='Per weekday, e.g. {"mon": ["09:00", "17:00"], …}; empty: always open.',
    )
    timezone = models.CharField(max_length=64, default="UTC")
    default_team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL)
    auto_assign = models.CharField(max_length=16, choices=AutoAssign.choices, default="off")
    wait_alert_seconds = models.PositiveIntegerField(
        default=300, help_text="Handoffs waiting longer are highlighted."
    )
    abandon_after_seconds = models.PositiveIntegerField(
        default=1800, help_text="A waiting handoff whose customer left this long ago is abandoned."
    )

    class Meta:
        verbose_name = "handoff settings"
        verbose_name_plural = "handoff settings"

    def __str__(self) -> str:
        return f"Handoff settings of {self.site}"


class SensitiveTopic(models.Model):
    """Keywords that send a conversation to a human, optionally to a team, at a priority."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="sensitive_topics")
    name = models.CharField(max_length=100)
    keywords = models.TextField(help_text="One word or phrase per line (any language).")
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL)
    priority = models.PositiveSmallIntegerField(default=1)
    amount_over = models.DecimalField(
        "only for amounts over",
        max_digits=12,
        decimal_places=2,
        null=True,
        blank=True,
        help_text=(
            "Fire only when the message also names an amount of money above this "
            '(e.g. 100 for "a refund over 100": "$250", "250 euros", "300元"). '
            "Empty: any mention of a keyword."
        ),
    )

    def __str__(self) -> str:
        return self.name

    def keyword_list(self) -> list[str]:
        return [line.strip() for line in self.keywords.splitlines() if line.strip()]


class HandoffQuerySet(models.QuerySet):
    def open(self):
        return self.filter(status__in=[Handoff.Status.WAITING, Handoff.Status.ASSIGNED])

    def waiting(self):
        return self.filter(status=Handoff.Status.WAITING)

    def visible_to(self, user):
        """Superusers and managers see every site; agents see their sites."""
        if user.is_superuser or user.groups.filter(name="Managers").exists():
            return self
        return self.filter(site__agents__user=user)


class Handoff(models.Model):
    """A conversation in the human queue: waiting -> assigned -> resolved (or abandoned)."""

    class Status(models.TextChoices):
        WAITING = "waiting", _("Waiting")
        ASSIGNED = "assigned", _("Assigned")
        RESOLVED = "resolved", _("Resolved")
        ABANDONED = "abandoned", _("Abandoned")

    class Rule(models.TextChoices):
        CUSTOMER = "customer_request", _("Customer asked for a person")
        TOOL = "tool", _("The bot handed off")
        FAILURES = "failures", _("The bot failed repeatedly")
        SENTIMENT = "sentiment", _("Angry or distressed customer")
        KEYWORD = "keyword", _("Sensitive topic")
        MODERATION = "moderation", _("Moderation flag")
        PROVIDER_DOWN = "provider_down", _("LLM provider down")

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="handoffs"
    )
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="handoffs")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.WAITING)
    priority = models.PositiveSmallIntegerField(default=0)
    rule = models.CharField(max_length=20, choices=Rule.choices)
    reason = models.CharField(max_length=300, blank=True)
    team = models.ForeignKey(Team, null=True, blank=True, on_delete=models.SET_NULL)
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="handoffs",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    first_reply_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    objects = HandoffQuerySet.as_manager()

    class Meta:
        ordering = ["-priority", "created_at"]
        indexes = [models.Index(fields=["status", "-priority", "created_at"])]
        constraints = [
            # One open handoff per conversation at a time.
            models.UniqueConstraint(
                fields=["conversation"],
                condition=Q(status__in=["waiting", "assigned"]),
                name="handoff_one_open_per_conversation",
            )
        ]

    def __str__(self) -> str:
        return f"Handoff {self.pk} ({self.status})"


class InternalNote(models.Model):
    """An agent's note on a conversation; never shown to the customer."""

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="internal_notes"
    )
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return self.text[:60]


class CannedResponse(models.Model):
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="canned_responses")
    title = models.CharField(max_length=100)
    text = models.TextField()

    class Meta:
        ordering = ["site", "title"]

    def __str__(self) -> str:
        return self.title


class Rating(models.Model):
    """The customer's satisfaction rating (CSAT), once per conversation."""

    conversation = models.OneToOneField(
        Conversation, on_delete=models.CASCADE, related_name="rating"
    )
    score = models.PositiveSmallIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(5)]
    )
    comment = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.score}/5 for conversation {self.conversation_id}"


class Webhook(models.Model):
    class Event(models.TextChoices):
        CONVERSATION_STARTED = "conversation.started", _("Conversation started")
        HANDOFF_CREATED = "handoff.created", _("Handoff created")
        HANDOFF_CLAIMED = "handoff.claimed", _("Handoff claimed")
        CONVERSATION_RESOLVED = "conversation.resolved", _("Conversation resolved")
        RATING_RECEIVED = "rating.received", _("Rating received")
        BUDGET_CROSSED = "budget.crossed", _("Monthly token budget crossed")

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="webhooks")
    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=100, help_text="Signs each delivery (HMAC-SHA256).")
    events = models.JSONField(default=list, blank=True, help_text="Event names; empty: all events.")
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.url


class WebhookDelivery(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        DELIVERED = "delivered", _("Delivered")
        FAILED = "failed", _("Failed")

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "webhook deliveries"

    def __str__(self) -> str:
        return f"{self.event} #{self.pk} ({self.status})"
