"""Report tables: per-site facts, recomputed from the source tables by `analytics.aggregation`.

Every row is derived data: `aggregate(full=True)` rebuilds all of it. Rates (escalation,
error, cache hit, cost per 1,000 tokens, CSAT average) are not stored; they are ratios of the
counts below, computed over any date range by `analytics.selectors`.
"""

from django.conf import settings
from django.db import models

from helpdesk.models import Site


def _count(help_text: str = "") -> models.PositiveIntegerField:
    return models.PositiveIntegerField(default=0, help_text=help_text)


def _measure(help_text: str) -> models.FloatField:
    return models.FloatField(null=True, blank=True, help_text=help_text)


class DailySiteStats(models.Model):
    """One site's facts for one UTC day (see analytics.aggregation for each definition)."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="daily_stats")
    day = models.DateField()

    # Volume.
    conversations = _count("Conversations started this day.")
    customer_messages = _count()
    bot_answers = _count()
    # Outcomes, counted on the day the conversation started.
    autonomous = _count("Resolved (or idle > 24 h) by the bot alone and not reopened in 24 h.")
    assisted = _count("Resolved after a handoff.")
    reopened_24h = _count("Bot-only 'resolutions' whose visitor came back within 24 h.")
    escalated = _count("Conversations with at least one handoff.")
    # Handoffs, counted on the day they were created.
    handoffs = _count()
    abandoned = _count("Conversations the customer left before an agent took their handoff.")

    # Latency and waiting; null when the day has no sample.
    bot_first_token_p50_ms = _measure("Time to the first token of bot answers, median.")
    bot_first_token_p95_ms = _measure("Time to the first token of bot answers, 95th pct.")
    human_wait_p50_s = _measure("Handoff created -> claimed, median.")
    human_wait_p95_s = _measure("Handoff created -> claimed, 95th percentile.")
    first_reply_p50_s = _measure("Handoff created -> first agent reply, median.")
    first_reply_p95_s = _measure("Handoff created -> first agent reply, 95th percentile.")
    resolution_p50_s = _measure("Conversation started -> resolved, median.")

    # Satisfaction, on the day the conversation started (late ratings recompute that day).
    csat_count = _count()
    csat_sum = _count()
    csat_1 = _count()
    csat_2 = _count()
    csat_3 = _count()
    csat_4 = _count()
    csat_5 = _count()
    bot_csat_count = _count("Ratings of conversations without a handoff.")
    bot_csat_sum = _count()
    human_csat_count = _count("Ratings of conversations with a handoff.")
    human_csat_sum = _count()

    # LLM usage, from the LLM call log.
    llm_calls = _count()
    llm_errors = _count()
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)

    # Bot answers by how they were made, and the customers' thumbs on them.
    cache_hits = _count()
    curated_hits = _count()
    thumbs_up = _count()
    thumbs_down = _count()

    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["site", "day"]
        constraints = [
            models.UniqueConstraint(fields=["site", "day"], name="daily_site_stats_unique")
        ]
        indexes = [models.Index(fields=["day", "site"], name="daily_site_stats_day_idx")]
        verbose_name = "daily site statistics"
        verbose_name_plural = "daily site statistics"

    def __str__(self) -> str:
        return f"{self.site_id} {self.day}"

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class HourlySiteStats(models.Model):
    """A smaller set of facts per UTC hour, kept for today and yesterday only."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="hourly_stats")
    hour = models.DateTimeField()
    conversations = _count()
    customer_messages = _count()
    bot_answers = _count()
    handoffs = _count()
    llm_calls = _count()
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    cost = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["site", "hour"]
        constraints = [
            models.UniqueConstraint(fields=["site", "hour"], name="hourly_site_stats_unique")
        ]
        verbose_name = "hourly site statistics"
        verbose_name_plural = "hourly site statistics"

    def __str__(self) -> str:
        return f"{self.site_id} {self.hour:%Y-%m-%d %H:00}"


class HandoffReasonStats(models.Model):
    """How many handoffs each escalation rule caused, per site and day."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="handoff_reason_stats")
    day = models.DateField()
    rule = models.CharField(max_length=20)
    count = _count()

    class Meta:
        ordering = ["site", "day", "rule"]
        constraints = [
            models.UniqueConstraint(
                fields=["site", "day", "rule"], name="handoff_reason_stats_unique"
            )
        ]
        verbose_name = "handoff reason statistics"
        verbose_name_plural = "handoff reason statistics"

    def __str__(self) -> str:
        return f"{self.site_id} {self.day} {self.rule}: {self.count}"


class AggregationState(models.Model):
    """Where an incremental job stopped: source rows changed before `watermark` are counted."""

    name = models.CharField(max_length=50, unique=True)
    watermark = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} @ {self.watermark}"


class QuestionTopic(models.Model):
    """A group of similar customer questions of one site, from `analytics.topics`.

    Recomputed as a whole per site (the old rows are replaced in one transaction); `key`
    survives a recompute when the new topic shares most of its questions with an old one, so
    a fix made from a gap keeps measuring the same topic.
    """

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="question_topics")
    key = models.UUIDField(help_text="Stable across recomputes; see TopicFix.topic_key.")
    label = models.CharField(max_length=200)
    size = _count("Questions in the window.")
    examples = models.JSONField(default=list, blank=True)
    answered_by_bot_share = models.FloatField(default=0)
    escalated_share = models.FloatField(default=0)
    no_article_share = models.FloatField(default=0)
    low_rating_share = models.FloatField(default=0)
    average_rating = _measure("Mean rating of the conversations asked in; null when unrated.")
    gap_score = models.FloatField(default=0, help_text="0 when the bot serves it well.")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    computed_at = models.DateTimeField()

    class Meta:
        ordering = ["site", "-size"]
        indexes = [
            models.Index(fields=["site", "-size"], name="question_topic_size_idx"),
            models.Index(fields=["site", "-gap_score"], name="question_topic_gap_idx"),
            models.Index(fields=["key"], name="question_topic_key_idx"),
        ]

    def __str__(self) -> str:
        return self.label


class TopicQuestion(models.Model):
    """One customer question of a topic, with what happened to it (for drill-down and fixes)."""

    topic = models.ForeignKey(QuestionTopic, on_delete=models.CASCADE, related_name="questions")
    message = models.ForeignKey("helpdesk.Message", on_delete=models.CASCADE, related_name="+")
    conversation = models.ForeignKey(
        "helpdesk.Conversation", on_delete=models.CASCADE, related_name="+"
    )
    asked_at = models.DateTimeField()
    answered_by_bot = models.BooleanField(default=False)
    escalated = models.BooleanField(default=False)
    no_article = models.BooleanField(default=False)
    rating = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["topic", "asked_at"], name="topic_question_asked_idx")]

    def __str__(self) -> str:
        return f"{self.topic_id}: message {self.message_id}"


class TopicFix(models.Model):
    """A draft article or curated answer a manager made from a gap, and the gap's figures then.

    `fixed_at` is set once the article is published (or the curated answer active); the
    report compares the topic's questions asked after it with the `before_*` figures.
    """

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="topic_fixes")
    topic_key = models.UUIDField(db_index=True)
    label = models.CharField(max_length=200)
    article = models.ForeignKey(
        "bots.Article", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    curated_answer = models.ForeignKey(
        "bots.CuratedAnswer", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    fixed_at = models.DateTimeField(null=True, blank=True)
    before_size = _count()
    before_escalated_share = models.FloatField(default=0)
    before_no_article_share = models.FloatField(default=0)
    before_average_rating = _measure("The topic's mean rating when the fix was made.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"Fix of {self.label}"


class BudgetAlert(models.Model):
    """A monthly token budget threshold a site crossed; one row per site, month and threshold,
    so the `budget.crossed` webhook fires once however often the check runs."""

    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="budget_alerts")
    month = models.DateField(help_text="First day of the month.")
    threshold = models.PositiveSmallIntegerField(help_text="Percent of the budget: 80 or 100.")
    tokens = models.PositiveBigIntegerField()
    budget = models.PositiveBigIntegerField()
    fired_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-month", "site", "threshold"]
        constraints = [
            models.UniqueConstraint(
                fields=["site", "month", "threshold"], name="budget_alert_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.site_id} {self.month:%Y-%m} {self.threshold}%"
