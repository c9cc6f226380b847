import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from helpdesk.models import Site

pytestmark = pytest.mark.django_db


def createsite(*args) -> list[str]:
    out = io.StringIO()
    call_command("createsite", *args, stdout=out)
    return out.getvalue().splitlines()


def test_prints_the_widget_key_on_the_last_line():
    lines = createsite("Bob's Bikes", "--origin", "https://Bobs.Example:443/shop")

    site = Site.objects.get()
    assert lines[-1] == site.key
    assert site.key.startswith("pk_")
    assert site.name == "Bob's Bikes"
    assert site.allowed_origins == ["https://bobs.example"]
    assert "Bob's Bikes" in site.scope  # the default scope names the business
    assert site.greeting
    assert site.default_language == "en"


def test_stores_several_origins_scope_greeting_and_language():
    lines = createsite(
        "Tea House",
        "--origin",
        "https://tea.example",
        "--origin",
        "http://localhost:8000",
        "--scope",
        "You answer questions about Tea House's teas and orders only.",
        "--greeting",
        "欢迎光临",
        "--language",
        "zh-hans",
    )

    site = Site.objects.get(key=lines[-1])
    assert site.allowed_origins == ["http://localhost:8000", "https://tea.example"]
    assert site.scope == "You answer questions about Tea House's teas and orders only."
    assert site.greeting == "欢迎光临"
    assert site.default_language == "zh-hans"


@pytest.mark.parametrize("origin", ["ftp://x", "not a url", "https://"])
def test_bad_origin_is_an_error_and_stores_nothing(origin):
    with pytest.raises(CommandError, match="origin"):
        createsite("Shop", "--origin", "https://good.example", "--origin", origin)
    assert not Site.objects.exists()


def test_origin_is_required():
    with pytest.raises(CommandError, match="--origin"):
        createsite("Shop")
    assert not Site.objects.exists()


def test_unknown_language_is_an_error():
    with pytest.raises(CommandError):
        createsite("Shop", "--origin", "https://shop.example", "--language", "fr")
    assert not Site.objects.exists()
