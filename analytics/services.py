"""Writes of the analytics app that have side effects: fixes made from knowledge-base gaps,
and the monthly token budget alerts (the `budget.crossed` webhook)."""

from datetime import date

from django.db import IntegrityError, transaction
from django.db.models import Sum

from analytics.models import BudgetAlert, DailySiteStats, QuestionTopic, TopicFix
from bots.models import Article, CuratedAnswer
from handoff.webhooks import emit_event
from helpdesk.models import Site

# Percent of the monthly token budget at which `budget.crossed` fires, once each per month.
BUDGET_THRESHOLDS = (80, 100)


def _article_body(topic: QuestionTopic) -> str:
    questions = "\n".join(f"- {example}" for example in topic.examples)
    return f"Customers ask:\n{questions}\n\n(Write the answer here, then publish the article.)"


@transaction.atomic
def create_fix(*, topic: QuestionTopic, kind: str, user) -> TopicFix:
    """A draft article (unpublished) or an inactive curated answer, prefilled from the topic,
    and the TopicFix that links it to the topic's key with the topic's figures as of now.

    Drafts and inactive answers are never served; the manager writes the answer and
    publishes (or activates) it, and the next topic run stamps `fixed_at`.
    """
    fix = TopicFix(
        site_id=topic.site_id,
        topic_key=topic.key,
        label=topic.label,
        created_by=user,
        before_size=topic.size,
        before_escalated_share=topic.escalated_share,
        before_no_article_share=topic.no_article_share,
        before_average_rating=topic.average_rating,
    )
    if kind == "article":
        fix.article = Article.objects.create(
            site_id=topic.site_id,
            title=topic.label[:300],
            body=_article_body(topic),
            is_published=False,
        )
    elif kind == "curated":
        fix.curated_answer = CuratedAnswer.objects.create(
            site_id=topic.site_id,
            question=topic.examples[0] if topic.examples else topic.label,
            answer="",
            is_active=False,
            created_by=user,
        )
    else:
        raise ValueError(f"Unknown fix kind {kind!r}: 'article' or 'curated'.")
    fix.save()
    return fix


def month_to_date_tokens(today: date) -> dict[int, dict]:
    """Tokens and cost of the calendar month up to `today`, per site, from the daily rows."""
    return {
        row["site_id"]: row
        for row in DailySiteStats.objects.filter(day__gte=today.replace(day=1), day__lte=today)
        .order_by()
        .values("site_id")
        .annotate(
            prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"), cost=Sum("cost")
        )
    }


def fire_budget_alerts(*, today: date) -> list[BudgetAlert]:
    """Emit `budget.crossed` for every site whose month-to-date tokens reached 80 % or 100 %
    of its monthly budget, once per site, month and threshold; return the new alerts.

    The BudgetAlert row and the webhook deliveries commit together: a re-run (or a second
    worker) finds the row, or loses the unique-constraint race, and emits nothing.
    """
    month = today.replace(day=1)
    usage = month_to_date_tokens(today)
    fired = set(BudgetAlert.objects.filter(month=month).values_list("site_id", "threshold"))
    alerts = []
    budgets = Site.objects.filter(bot_config__monthly_token_budget__gt=0).values_list(
        "pk", "bot_config__monthly_token_budget"
    )
    for site_id, budget in budgets:
        used = usage.get(site_id, {})
        tokens = (used.get("prompt") or 0) + (used.get("completion") or 0)
        for threshold in BUDGET_THRESHOLDS:
            if (site_id, threshold) in fired or tokens * 100 < budget * threshold:
                continue
            try:
                with transaction.atomic():
                    alert = BudgetAlert.objects.create(
                        site_id=site_id,
                        month=month,
                        threshold=threshold,
                        tokens=tokens,
                        budget=budget,
                    )
                    emit_event(
                        site_id=site_id,
                        event="budget.crossed",
                        payload={
                            "threshold": threshold,
                            "month": month.strftime("%Y-%m"),
                            "tokens_used": tokens,
                            "budget": budget,
                        },
                    )
            except IntegrityError:
                continue  # another run fired it first
            alerts.append(alert)
    return alerts
