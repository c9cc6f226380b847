from django.apps import AppConfig


class HandoffConfig(AppConfig):
    name = "handoff"
    verbose_name = "Human handoff"

    def ready(self) -> None:
        from bots import site_cache
        from handoff.models import HandoffSettings, SensitiveTopic, Team, Webhook

        # The escalation policy and the webhooks are cached per site; a Team has no site,
        # so it drops them all.
        site_cache.watch(HandoffSettings, SensitiveTopic, Team, Webhook)
