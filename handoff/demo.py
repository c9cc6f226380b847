"""Demo data of the handoff side: the demo agent works the demo site, with canned replies."""

from django.contrib.auth import get_user_model
from django.db import transaction

from handoff.models import AgentProfile, CannedResponse
from helpdesk.models import Site

DEMO_CANNED_RESPONSES = [
    ("Greeting", "Hi, I'm here to help. Could you give me your order number?"),
    ("Refund started", "I've started your refund; you'll see it within 3–5 business days."),
    ("Closing", "Is there anything else I can help you with today?"),
]


@transaction.atomic
def ensure_demo_agents(site: Site) -> None:
    """The demo agent and manager can see the demo site; idempotent."""
    users = get_user_model().objects.filter(username__in=["agent", "manager"])
    for user in users:
        profile, _ = AgentProfile.objects.get_or_create(
            user=user, defaults={"display_name": user.username.title()}
        )
        profile.sites.add(site)
    for title, text in DEMO_CANNED_RESPONSES:
        CannedResponse.objects.get_or_create(site=site, title=title, defaults={"text": text})
