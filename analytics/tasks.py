from celery import shared_task


@shared_task(acks_late=True)
def aggregate_task() -> str:
    """Safe to run twice or after a killed run: it recomputes whole days, in one transaction.

    Then the budget check, which reads the rows just written; it fires each alert once.
    """
    from django.utils import timezone

    from analytics.aggregation import aggregate
    from analytics.services import fire_budget_alerts

    report = aggregate()
    alerts = fire_budget_alerts(today=timezone.now().date())
    return f"{report}; {len(alerts)} budget alerts"


@shared_task(acks_late=True)
def cluster_topics(site_id: int | None = None) -> str:
    """Recompute the question topics of one site, or of every active site.

    Idempotent: each site's topics are replaced in one transaction, from seeded clustering.
    """
    from analytics.topics import recompute_topics
    from helpdesk.models import Site

    site_ids = (
        [site_id]
        if site_id is not None
        else Site.objects.filter(is_active=True).values_list("pk", flat=True)
    )
    counts = {sid: recompute_topics(site_id=sid) for sid in list(site_ids)}
    return f"{sum(counts.values())} topics for {len(counts)} sites"
