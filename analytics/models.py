"""Report tables: per-site facts, recomputed from the source tables by `analytics.aggregation`.

Every row is derived data: `aggregate(full=True)` rebuilds all of it. Rates (escalation,
error, cache hit, cost per 1,000 tokens, CSAT average) are not stored; they are ratios of the
counts below, computed over any date range by `analytics.selectors`.
"""

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
    abandoned = _count("Handoffs the customer left before an agent took them.")

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
