from celery import shared_task


@shared_task(acks_late=True)
def aggregate_task() -> str:
    """Safe to run twice or after a killed run: it recomputes whole days, in one transaction."""
    from analytics.aggregation import aggregate

    return str(aggregate())
