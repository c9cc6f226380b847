"""The `budget.crossed` webhook: once per site, month and threshold (80 %, 100 %)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import timezone

from analytics.models import BudgetAlert
from analytics.services import fire_budget_alerts
from analytics.tasks import aggregate_task
from bots.models import BotConfig, LLMCall
from handoff.models import Webhook, WebhookDelivery
from tests.analytics.test_reports import make_user
from tests.conftest import make_site

pytestmark = pytest.mark.django_db


def spend(site, tokens: int, when=None):
    call = LLMCall.objects.create(
        site=site, kind="chat", model="m", prompt_tokens=tokens, completion_tokens=0, cost=0
    )
    if when is not None:
        LLMCall.objects.filter(pk=call.pk).update(created_at=when)


@pytest.fixture
def shop():
    site = make_site(name="Shop")
    BotConfig.objects.create(site=site, monthly_token_budget=1000)
    return site


@pytest.fixture
def hook(shop):
    return Webhook.objects.create(
        site=shop, url="http://127.0.0.1:9/hook", secret="s3cret-s3cret", events=["budget.crossed"]
    )


def deliveries():
    return [(d.event, d.payload["data"]) for d in WebhookDelivery.objects.order_by("pk")]


def test_webhook_fires_once_per_threshold(shop, hook):
    other = make_site(name="Other")  # no budget: never alerts
    BotConfig.objects.create(site=other)
    spend(other, 10**9)
    month = timezone.now().strftime("%Y-%m")

    spend(shop, 700)
    aggregate_task()
    assert deliveries() == []

    spend(shop, 150)  # 850 of 1000
    aggregate_task()
    aggregate_task()
    assert deliveries() == [
        ("budget.crossed", {"threshold": 80, "month": month, "tokens_used": 850, "budget": 1000})
    ]

    spend(shop, 300)  # 1150
    aggregate_task()
    aggregate_task()
    assert deliveries()[1:] == [
        ("budget.crossed", {"threshold": 100, "month": month, "tokens_used": 1150, "budget": 1000})
    ]
    assert WebhookDelivery.objects.filter(webhook=hook).count() == 2
    assert set(BudgetAlert.objects.values_list("site_id", "threshold")) == {
        (shop.pk, 80),
        (shop.pk, 100),
    }


def test_jumping_past_both_thresholds_fires_both_and_last_month_does_not_count(shop, hook):
    now = timezone.now()
    spend(shop, 5000, when=now.replace(day=1) - timedelta(days=2))  # last month
    aggregate_task()
    assert deliveries() == []

    spend(shop, 2000)
    aggregate_task()
    assert [data["threshold"] for _event, data in deliveries()] == [80, 100]


def test_alerts_are_recorded_without_a_webhook(shop):
    spend(shop, 900)
    aggregate_task()
    [alert] = BudgetAlert.objects.all()
    assert (alert.site, alert.threshold, alert.tokens, alert.budget) == (shop, 80, 900, 1000)
    assert alert.month == timezone.now().date().replace(day=1)
    assert fire_budget_alerts(today=timezone.now().date()) == []


def test_cost_view_shows_sites_over_80_and_100_percent(client, django_user_model, shop):
    over = make_site(name="Over")
    BotConfig.objects.create(site=over, monthly_token_budget=100)
    spend(shop, 850)
    spend(over, 150)
    aggregate_task()
    client.force_login(make_user(django_user_model, "maria", group="Managers"))
    rows = {r["site"].name: r for r in client.get(reverse("admin:analytics_costs")).context["rows"]}
    assert (rows["Shop"]["level"], rows["Over"]["level"]) == ("warning", "over")
    assert rows["Over"]["share"] == Decimal("1.5")
