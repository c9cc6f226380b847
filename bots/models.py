from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from helpdesk.models import Conversation, Message, Site


def validate_stop_sequences(value) -> None:
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise ValidationError(_("Stop sequences must be a list of non-empty strings."))
    if len(value) > 4:
        raise ValidationError(_("At most 4 stop sequences."))


def validate_few_shot(value) -> None:
    """A list of example exchanges: [{"user": "...", "assistant": "..."}, ...]."""
    if not isinstance(value, list):
        raise ValidationError(_('Few-shot examples must be a list of {"user", "assistant"} pairs.'))
    for example in value:
        if (
            not isinstance(example, dict)
            or set(example) != {"user", "assistant"}
            or not all(isinstance(v, str) and v.strip() for v in example.values())
        ):
            raise ValidationError(
                _('Each few-shot example needs exactly a "user" and an "assistant" text.')
            )


def validate_languages(value) -> None:
    codes = {code for code, _name in settings.LANGUAGES}
    if not isinstance(value, list) or not all(v in codes for v in value):
        raise ValidationError(
            _("Languages must be a list of: %(codes)s.") % {"codes": ", ".join(sorted(codes))}
        )


class BotConfig(models.Model):
    """How one site's bot talks: model, sampling, examples, limits. Edited in the Site admin."""

    site = models.OneToOneField(Site, on_delete=models.CASCADE, related_name="bot_config")
    model = models.CharField(
        "LLM model", max_length=100, blank=True, help_text="Blank uses HELPDESK_MODEL."
    )
    temperature = models.FloatField(
        default=0.3, validators=[MinValueValidator(0.0), MaxValueValidator(2.0)]
    )
    top_p = models.FloatField(
        default=1.0, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    max_tokens = models.PositiveIntegerField(
        default=600,
        validators=[MinValueValidator(16), MaxValueValidator(16000)],
        help_text="Longest answer, in tokens.",
    )
    stop_sequences = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_stop_sequences],
        help_text='Up to 4 strings, e.g. ["\\nCustomer:"].',
    )
    few_shot = models.JSONField(
        "few-shot examples",
        default=list,
        blank=True,
        validators=[validate_few_shot],
        help_text='Example exchanges: [{"user": "…", "assistant": "…"}].',
    )
    languages = models.JSONField(
        default=list,
        blank=True,
        validators=[validate_languages],
        help_text='Languages the bot answers in, e.g. ["en", "zh-hans"]; empty: any.',
    )
    banned_words = models.TextField(
        blank=True,
        help_text="One word or phrase per line; a customer message with one goes to a human.",
    )
    cache_enabled = models.BooleanField("response cache", default=True)
    cache_ttl = models.PositiveIntegerField(
        "cache TTL (seconds)", default=24 * 3600, validators=[MinValueValidator(60)]
    )
    curated_threshold = models.FloatField(
        default=0.85,
        validators=[MinValueValidator(0.5), MaxValueValidator(1.0)],
        help_text="How close a question must be to a curated one (0.5 to 1) to get its answer.",
    )
    monthly_token_budget = models.PositiveBigIntegerField(
        null=True,
        blank=True,
        help_text=(
            "Tokens per calendar month; over it the bot stops calling the LLM. Empty: no limit."
        ),
    )
    store_prompts = models.BooleanField(
        default=False, help_text="Keep the (redacted) prompt text in the LLM call log."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "bot settings"
        verbose_name_plural = "bot settings"

    def __str__(self) -> str:
        return f"Bot settings of {self.site}"

    @property
    def chat_model(self) -> str:
        return self.model or settings.HELPDESK_MODEL

    def banned_word_list(self) -> list[str]:
        return [line.strip() for line in self.banned_words.splitlines() if line.strip()]


class ArticleQuerySet(models.QuerySet):
    def published(self):
        return self.filter(is_published=True)


class Article(models.Model):
    """A knowledge-base article: what the bot may say, and what it cites."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="articles")
    title = models.CharField(max_length=300)
    body = models.TextField()
    tags = models.JSONField(default=list, blank=True)
    language = models.CharField(
        max_length=16, choices=settings.LANGUAGES, default=settings.LANGUAGE_CODE
    )
    url = models.URLField("link", max_length=500, blank=True)
    is_published = models.BooleanField("published", default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ArticleQuerySet.as_manager()

    class Meta:
        ordering = ["site", "title"]
        indexes = [models.Index(fields=["site", "is_published"])]

    def __str__(self) -> str:
        return self.title


class CuratedAnswer(models.Model):
    """A question and the answer a manager approved; served verbatim when a question matches."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="curated_answers")
    question = models.TextField()
    answer = models.TextField()
    is_active = models.BooleanField("active", default=True)
    source_message = models.ForeignKey(
        Message,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The bot or agent answer this was made from, if any.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL
    )
    hits = models.PositiveIntegerField(default=0, editable=False)
    last_hit_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["site", "-hits"]

    def __str__(self) -> str:
        return self.question[:80]


class ConversationSummary(models.Model):
    """The rolling summary of a conversation's older turns, written in the background."""

    conversation = models.OneToOneField(
        Conversation, on_delete=models.CASCADE, related_name="summary"
    )
    text = models.TextField()
    # Messages up to and including this sequence number are folded into the text.
    upto_seq = models.PositiveIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"Summary of conversation {self.conversation_id} to #{self.upto_seq}"


class LLMCall(models.Model):
    """One call to a model provider, for audit and cost. Never edited."""

    class Kind(models.TextChoices):
        CHAT = "chat", _("Chat")
        SUMMARY = "summary", _("Summary")
        MODERATION = "moderation", _("Moderation")
        EMBEDDING = "embedding", _("Embedding")

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="llm_calls")
    conversation = models.ForeignKey(
        Conversation, null=True, blank=True, on_delete=models.SET_NULL, related_name="llm_calls"
    )
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="llm_calls"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    model = models.CharField(max_length=100)
    parameters = models.JSONField(default=dict, blank=True)
    prompt_tokens = models.PositiveIntegerField(default=0)
    completion_tokens = models.PositiveIntegerField(default=0)
    cost = models.DecimalField(max_digits=12, decimal_places=6, default=0)
    first_token_ms = models.FloatField(null=True, blank=True)
    total_ms = models.FloatField(null=True, blank=True)
    outcome = models.CharField(max_length=100, default="ok", help_text="ok, or the error class.")
    pii_redacted = models.PositiveIntegerField("PII items redacted", default=0)
    prompt_text = models.TextField(blank=True, help_text="Only when the site stores prompts.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["site", "created_at"])]
        verbose_name = "LLM call"

    def __str__(self) -> str:
        return f"{self.kind} {self.model} {self.outcome}"
