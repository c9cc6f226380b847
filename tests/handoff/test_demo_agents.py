import pytest
from django.core.management import call_command

from handoff.models import AgentProfile, CannedResponse
from helpdesk.models import Site


@pytest.fixture(autouse=True)
def _var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path


@pytest.mark.django_db
def test_the_demo_agent_works_the_demo_site_with_canned_replies(capsys):
    call_command("seed_demo")
    call_command("seed_demo")
    site = Site.objects.get(name="Acme Outfitters")
    profile = AgentProfile.objects.get(user__username="agent")
    assert list(profile.sites.all()) == [site]
    assert profile.user.groups.filter(name="Agents").exists()
    assert profile.user.has_perm("handoff.view_handoff")
    assert CannedResponse.objects.filter(site=site).count() == 3
