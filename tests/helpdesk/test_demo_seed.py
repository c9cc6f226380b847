import io
import stat

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from bots.models import Article
from helpdesk.demo import DEMO_GREETING, DEMO_SCOPE, DEMO_SITE_NAME, ensure_demo_accounts
from helpdesk.models import Site

pytestmark = pytest.mark.django_db

DEFAULT_ORIGINS = ["http://127.0.0.1:8000", "http://localhost:8000"]


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


def run_seed(*args) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def passwords(var_dir) -> dict[str, str]:
    text = (var_dir / "demo-passwords.txt").read_text()
    pairs = (line.split(": ", 1) for line in text.splitlines() if not line.startswith("#"))
    return dict(pairs)


def test_seed_creates_site_with_knowledge_base():
    output = run_seed()

    site = Site.objects.get(name=DEMO_SITE_NAME)
    assert site.scope == DEMO_SCOPE
    assert site.greeting == DEMO_GREETING
    assert site.allowed_origins == DEFAULT_ORIGINS
    assert site.key in output
    assert DEMO_SITE_NAME in output

    articles = Article.objects.filter(site=site)
    assert articles.count() >= 20
    assert all(a.is_published and a.body.strip() and a.tags for a in articles)
    chinese = set(articles.filter(language="zh-hans").values_list("title", flat=True))
    assert {"运费与配送时间", "退货政策", "尺码指南", "保修"} <= chinese
    titles = set(articles.filter(language="en").values_list("title", flat=True))
    assert len(titles) == articles.filter(language="en").count()  # no duplicate titles


def test_demo_articles_agree_on_key_facts():
    run_seed()
    site = Site.objects.get(name=DEMO_SITE_NAME)
    bodies = {a.title: a.body for a in site.articles.all()}
    assert "free on orders over $75" in bodies["Shipping costs and delivery times"]
    assert "满75美元免运费" in bodies["运费与配送时间"]
    assert "within 30 days of delivery" in bodies["Returns policy"]
    assert "30天内" in bodies["退货政策"]
    assert "2 years" in bodies["Warranty"]
    assert "2年" in bodies["保修"]


def test_seed_creates_accounts_in_groups_with_usable_passwords(var_dir):
    output = run_seed()
    User = get_user_model()
    stored = passwords(var_dir)
    assert set(stored) == {"admin", "agent", "manager"}

    admin = User.objects.get(username="admin")
    assert admin.is_superuser
    assert admin.is_staff
    agent = User.objects.get(username="agent")
    assert agent.is_staff
    assert not agent.is_superuser
    assert list(agent.groups.values_list("name", flat=True)) == ["Agents"]
    manager = User.objects.get(username="manager")
    assert manager.is_staff
    assert not manager.is_superuser
    assert list(manager.groups.values_list("name", flat=True)) == ["Managers"]

    for user in (admin, agent, manager):
        assert user.check_password(stored[user.username])
        assert stored[user.username] in output
    assert stat.S_IMODE((var_dir / "demo-passwords.txt").stat().st_mode) == 0o600


def test_groups_get_the_right_permissions():
    run_seed()
    User = get_user_model()
    agent = User.objects.get(username="agent")
    manager = User.objects.get(username="manager")

    assert agent.has_perm("helpdesk.view_conversation")
    assert agent.has_perm("helpdesk.change_message")
    assert agent.has_perm("helpdesk.view_visitor")
    assert agent.has_perm("bots.view_article")
    assert not agent.has_perm("bots.change_article")
    assert not agent.has_perm("helpdesk.delete_site")

    assert manager.has_perm("helpdesk.change_conversation")
    assert manager.has_perm("bots.add_article")
    assert manager.has_perm("bots.delete_article")
    assert manager.has_perm("helpdesk.change_site")


def test_seed_twice_creates_no_duplicates_and_keeps_passwords(var_dir):
    run_seed()
    site = Site.objects.get(name=DEMO_SITE_NAME)
    articles = site.articles.count()
    first = passwords(var_dir)

    output = run_seed("--origin", "https://Demo.Example:443/page")

    assert Site.objects.filter(name=DEMO_SITE_NAME).count() == 1
    assert Article.objects.count() == articles
    assert get_user_model().objects.count() == 3
    assert passwords(var_dir) == first
    for username, password in first.items():
        assert password in output
        assert get_user_model().objects.get(username=username).check_password(password)
    site.refresh_from_db()
    assert site.allowed_origins == sorted(["https://demo.example", *DEFAULT_ORIGINS])
    assert site.key in output


def test_existing_user_keeps_its_password_and_joins_its_group():
    User = get_user_model()
    User.objects.create_user(username="agent", password="chosen-by-the-operator")

    accounts = {username: password for username, _, password in ensure_demo_accounts()}

    agent = User.objects.get(username="agent")
    assert agent.check_password("chosen-by-the-operator")
    assert agent.is_staff
    assert agent.groups.filter(name="Agents").exists()
    assert accounts["agent"] is None
    assert accounts["admin"]
    assert accounts["manager"]


def test_seed_rejects_a_bad_origin():
    with pytest.raises(CommandError, match="origin"):
        run_seed("--origin", "ftp://x")
    assert not Site.objects.exists()
