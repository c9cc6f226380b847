from django.core.management.base import BaseCommand
from django.utils import timezone

from analytics.aggregation import aggregate
from analytics.services import fire_budget_alerts
from analytics.tasks import cluster_topics


class Command(BaseCommand):
    help = (
        "Aggregate conversations, messages, handoffs, ratings and LLM calls into the report "
        "tables: the days changed since the last run, or every day with --full. Then fire "
        "the monthly budget alerts due. With --topics, also recompute the question topics."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--full", action="store_true", help="Recompute every day, not only changed ones."
        )
        parser.add_argument(
            "--topics",
            action="store_true",
            help="Also cluster the last 30 days of questions into topics and gaps.",
        )
        parser.add_argument(
            "--site", type=int, help="With --topics: only this site id (default: every site)."
        )

    def handle(self, *args, **options):
        report = aggregate(full=options["full"])
        self.stdout.write(self.style.SUCCESS(f"Aggregated ({report})."))
        alerts = fire_budget_alerts(today=timezone.now().date())
        if alerts:
            self.stdout.write(f"Budget alerts fired: {', '.join(map(str, alerts))}.")
        if options["topics"]:
            # Called directly: synchronous whatever the broker, like the aggregation above.
            self.stdout.write(self.style.SUCCESS(cluster_topics(options["site"])))
