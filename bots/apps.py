from django.apps import AppConfig


class BotsConfig(AppConfig):
    name = "bots"
    verbose_name = "Bot engine"

    def ready(self) -> None:
        from bots.pricing import check_price_table

        # A malformed price table fails at start, not at the first answer.
        check_price_table()
