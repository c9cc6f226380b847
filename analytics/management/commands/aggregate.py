from django.core.management.base import BaseCommand

from analytics.aggregation import aggregate


class Command(BaseCommand):
    help = (
        "Aggregate conversations, messages, handoffs, ratings and LLM calls into the report "
        "tables: the days changed since the last run, or every day with --full."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--full", action="store_true", help="Recompute every day, not only changed ones."
        )

    def handle(self, *args, **options):
        report = aggregate(full=options["full"])
        self.stdout.write(self.style.SUCCESS(f"Aggregated ({report})."))
