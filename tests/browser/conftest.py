"""A real Chromium, Helpdesk served over uvicorn, and a business's page on another origin."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections
from playwright.sync_api import sync_playwright

from bots.models import Article
from tests.conftest import make_site
from tests.live_servers import ASGITestServer, StaticSiteServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

HOST_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Acme Outfitters</title>
<style>button {{ background: hotpink !important; font-size: 40px; }}</style></head>
<body><h1>Acme Outfitters</h1><p>A business's own page.</p>
<script>window.Helpdesk = window.Helpdesk || function () {{
  (window.Helpdesk.q = window.Helpdesk.q || []).push(arguments); }};
window.helpdeskEvents = [];
for (const name of ["ready", "message"]) {{
  window.addEventListener("helpdesk:" + name, (e) => window.helpdeskEvents.push([name, e.detail]));
}}
</script>
<script src="{helpdesk}/widget.js" data-site-key="{key}" async></script>
</body></html>
"""


@pytest.fixture(scope="session")
def helpdesk_server(django_db_setup):
    server = ASGITestServer().start()
    yield server
    server.stop()


@pytest.fixture
def business_site(tmp_path):
    server = StaticSiteServer(tmp_path).start()
    yield server, tmp_path
    server.stop()


@pytest.fixture
def host_page(transactional_db, helpdesk_server, business_site) -> str:
    """The URL of a business's page, on another origin, that embeds the widget."""
    server, root = business_site
    site = make_site(name="Acme Outfitters", allowed_origins=[server.url])
    Article.objects.create(
        site=site,
        title="Shipping times and costs",
        body="Standard shipping takes 3-5 business days and costs $5; free over $75.",
        tags=["shipping"],
    )
    Article.objects.create(
        site=site,
        title="退货政策",
        body="未使用的商品可在30天内退货并全额退款。",
        tags=["退货"],
        language="zh-hans",
    )
    (root / "index.html").write_text(
        HOST_PAGE.format(helpdesk=helpdesk_server.url, key=site.key), encoding="utf-8"
    )
    return f"{server.url}/index.html"


@pytest.fixture
def chromium(transactional_db, helpdesk_server):
    # Playwright's sync API keeps an event loop running in this thread, and Django refuses
    # ORM calls from such a thread; a browser per test starts after the database is set up
    # and is gone before the database is flushed.
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()
    helpdesk_server.wait_idle()


@pytest.fixture
def browser_page(chromium):
    """A fresh English-speaking browser profile."""
    context = chromium.new_context(locale="en-US")
    context.set_default_timeout(15000)
    yield context.new_page()
    context.close()


def in_thread(query):
    """ORM work from the test body: Playwright's loop owns this thread, so use another.

    The worker thread's connection is closed before it ends: a pooled connection left open
    in a finished thread never goes back to the pool, and a dozen of them starve the server.
    """

    def run():
        try:
            return query()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result()


class HeldScript:
    """A static script of the context's pages, held back as on a slow network until released.

    Routing turns off the browser's cache, so every page load asks for the script again. A
    page whose scripts are `defer` fires neither DOMContentLoaded nor load while one is held:
    navigate with `wait_until="commit"`.
    """

    def __init__(self, context, path: str):
        self.context = context
        self.pattern = f"**/static/{path}*"
        self.requests = []
        context.route(self.pattern, lambda route: self.requests.append(route))

    def release(self, page) -> None:
        """Let the page have the script (once it has asked for it); later loads get it at once."""
        for _ in range(250):
            if self.requests:
                break
            page.wait_for_timeout(20)
        assert len(self.requests) == 1, f"{self.pattern} was asked for {len(self.requests)} times"
        self.requests.pop().continue_()
        self.context.unroute(self.pattern)
