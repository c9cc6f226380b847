"""Banned words (Aho-Corasick) and the provider's moderation endpoint, fail-open."""

import contextlib
import json
import logging
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from time import monotonic

import openai
import pytest

from bots import llm, moderation
from bots.moderation import BannedWords, ProviderModeration, banned_words_for

# -- banned words ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("you ass", "ass"),
        ("Ass! Seriously?", "ass"),
        ("what a first class pass", None),
        ("assess the bass", None),
        ("bad-ass", "ass"),
        ("ass123", None),
    ],
)
def test_latin_words_match_whole_words_only(text, found):
    assert BannedWords(["ass"]).find(text) == found


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("你是傻瓜吗", "傻瓜"),
        ("傻瓜", "傻瓜"),
        ("hello傻瓜world", "傻瓜"),
        ("你很聪明", None),
    ],
)
def test_cjk_words_match_anywhere(text, found):
    assert BannedWords(["傻瓜"]).find(text) == found


def test_a_latin_word_next_to_chinese_characters_still_matches():
    assert BannedWords(["idiot"]).find("你是idiot吗") == "idiot"


def test_matching_is_case_insensitive_and_returns_the_word_as_configured():
    words = BannedWords(["Scam", "STRASSE"])
    assert words.find("this is a SCAM") == "Scam"
    assert words.find("Hauptstraße 5") is None  # a whole word is needed
    assert words.find("die Straße") == "STRASSE"  # casefold: ß == ss


def test_multi_word_phrases_match_across_any_whitespace():
    words = BannedWords(["money back guarantee"])
    assert words.find("Is there a Money  Back\nGuarantee?") == "money back guarantee"
    assert words.find("money back, no guarantee") is None


def test_the_first_banned_word_in_the_text_is_returned():
    words = BannedWords(["spam", "scam"])
    assert words.find("a scam and spam") == "scam"


@pytest.mark.parametrize("words", [[], ["", "   ", "\n"]])
def test_an_empty_list_never_matches(words):
    banned = BannedWords(words)
    assert banned.find("anything at all") is None
    assert banned.find("") is None


def test_blank_lines_are_ignored_among_real_words():
    assert BannedWords(["", "scam", "  "]).find("a scam") == "scam"


def test_banned_words_for_caches_per_word_list():
    first = banned_words_for(("scam", "傻瓜"))
    assert banned_words_for(("scam", "傻瓜")) is first
    assert banned_words_for(("spam",)) is not first
    assert first.find("SCAM!") == "scam"


# -- provider moderation -----------------------------------------------------------------


@pytest.fixture(autouse=True)
def forget_unsupported_providers(monkeypatch):
    monkeypatch.setattr(moderation, "_unsupported_until", {})


class _StatusServer(ThreadingHTTPServer):
    status = 500
    hits = 0
    # The first this many requests get no answer: the server closes their connection.
    dropped = 0
    delay = 0.0


class _StatusHandler(BaseHTTPRequestHandler):
    server: _StatusServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.server.hits += 1
        if self.server.hits <= self.server.dropped:
            self.close_connection = True
            return
        time.sleep(self.server.delay)
        if self.server.status == 200:
            body = json.dumps({"model": "m", "results": [{"flagged": False}]}).encode()
        else:
            body = json.dumps({"error": {"message": "nope", "type": "x", "code": None}}).encode()
        self.send_response(self.server.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args) -> None:
        return


@contextlib.contextmanager
def status_server(status: int, *, dropped: int = 0, delay: float = 0.0) -> Iterator[_StatusServer]:
    """A loopback server answering every request with `status` (after `delay` seconds),
    counting requests; it closes the connection of the first `dropped` unanswered."""
    server = _StatusServer(("127.0.0.1", 0), _StatusHandler)
    server.status, server.dropped, server.delay = status, dropped, delay
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def client_for(base_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key="test", base_url=base_url, max_retries=0)


def base_url_of(server: _StatusServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


async def test_a_flagged_input_comes_back_flagged_with_its_categories(fake_llm_server):
    fake_llm_server.reset()
    result = await moderate(fake_llm_server, "You should kill yourself now")
    assert result is not None
    assert result.flagged is True
    assert "self-harm/intent" in result.categories
    assert "violence" not in result.categories
    assert result.outcome == "ok"
    assert result.model == "omni-moderation-latest"
    assert result.total_ms > 0
    [request] = [r for r in fake_llm_server.requests if r.path == "/v1/moderations"]
    assert request.body["input"] == "You should kill yourself now"


async def test_a_custom_flag_word_maps_to_its_category(fake_llm_server):
    fake_llm_server.reset()
    fake_llm_server.flag_words.add("dynamite")
    result = await moderate(fake_llm_server, "Where do I buy DYNAMITE?")
    assert result is not None
    assert (result.flagged, result.categories) == (True, ("violence",))


async def test_a_clean_input_is_not_flagged(fake_llm_server):
    fake_llm_server.reset()
    result = await moderate(fake_llm_server, "How long does shipping take?")
    assert result == ProviderModeration(
        flagged=False,
        categories=(),
        model="omni-moderation-latest",
        total_ms=result.total_ms,
        outcome="ok",
    )


async def moderate(server, text: str) -> ProviderModeration | None:
    async with client_for(server.base_url) as client:
        return await moderation.moderate_with_provider(client, text)


@pytest.mark.parametrize("status", [404, 400])
async def test_a_provider_without_moderation_is_not_asked_again_for_an_hour(status, monkeypatch):
    with status_server(status) as server:
        async with client_for(base_url_of(server)) as client:
            assert await moderation.moderate_with_provider(client, "hello") is None
            assert await moderation.moderate_with_provider(client, "hello again") is None
            assert server.hits == 1

            # An hour later the provider gets another chance.
            monkeypatch.setattr(moderation, "monotonic", lambda: monotonic() + 3601)
            assert await moderation.moderate_with_provider(client, "later") is None
            assert server.hits == 2


async def test_remembering_a_provider_without_moderation_does_not_affect_others(
    fake_llm_server,
):
    fake_llm_server.reset()
    with status_server(404) as server:
        async with client_for(base_url_of(server)) as client:
            assert await moderation.moderate_with_provider(client, "hello") is None
    result = await moderate(fake_llm_server, "kill yourself")
    assert result is not None
    assert result.flagged


async def test_a_server_error_fails_open_and_records_the_error(caplog):
    caplog.set_level(logging.DEBUG, logger="bots.moderation")
    with status_server(500) as server:
        async with client_for(base_url_of(server)) as client:
            result = await moderation.moderate_with_provider(client, "secret kill yourself")
            assert result is not None
            assert (result.flagged, result.categories, result.model) == (False, (), "")
            assert result.outcome == "InternalServerError"
            assert result.total_ms > 0
            # A failure is not "unsupported": the next message asks again.
            await moderation.moderate_with_provider(client, "secret again")
            assert server.hits == 2
    assert caplog.records, "the failure is logged"
    assert all("secret" not in record.getMessage() for record in caplog.records)


async def test_an_unreachable_provider_fails_open():
    with status_server(500) as server:
        base_url = base_url_of(server)
    # The server is closed now: nothing listens on that port.
    async with client_for(base_url) as client:
        result = await moderation.moderate_with_provider(client, "hello")
    assert result is not None
    assert (result.flagged, result.outcome) == (False, "APIConnectionError")


async def test_the_request_carries_the_clients_key_organization_and_project(fake_llm_server):
    fake_llm_server.reset()
    client = openai.AsyncOpenAI(
        api_key="sk-site",
        organization="org-7",
        project="proj-9",
        base_url=fake_llm_server.base_url,
    )
    async with client:
        result = await moderation.moderate_with_provider(client, "How long does shipping take?")
    assert result is not None
    assert result.outcome == "ok"
    [request] = [r for r in fake_llm_server.requests if r.path == "/v1/moderations"]
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert headers["authorization"] == "Bearer sk-site"
    assert headers["openai-organization"] == "org-7"
    assert headers["openai-project"] == "proj-9"
    assert headers["content-type"] == "application/json"
    assert request.body == {"input": "How long does shipping take?"}


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(429, "RateLimitError"), (401, "AuthenticationError"), (503, "InternalServerError")],
)
async def test_a_failed_status_is_named_as_the_sdk_names_it(status, outcome):
    with status_server(status) as server:
        async with client_for(base_url_of(server)) as client:
            result = await moderation.moderate_with_provider(client, "hello")
    assert result is not None
    assert (result.flagged, result.outcome) == (False, outcome)
    assert server.hits == 1, "the answer waits for the verdict: no retries"


async def test_a_connection_the_provider_closed_is_retried_once():
    with status_server(200, dropped=1) as server:
        async with client_for(base_url_of(server)) as client:
            result = await moderation.moderate_with_provider(client, "hello")
    assert result is not None
    assert (result.outcome, result.model) == ("ok", "m")
    assert server.hits == 2


async def test_a_provider_that_keeps_closing_the_connection_fails_open_after_one_retry():
    with status_server(200, dropped=5) as server:
        async with client_for(base_url_of(server)) as client:
            result = await moderation.moderate_with_provider(client, "hello")
    assert result is not None
    assert (result.flagged, result.outcome) == (False, "APIConnectionError")
    assert server.hits == 2


async def test_a_slow_provider_times_out_and_fails_open(monkeypatch):
    monkeypatch.setattr(moderation, "_MODERATION_TIMEOUT", 0.2)
    with status_server(200, delay=1.0) as server:
        async with client_for(base_url_of(server)) as client:
            result = await moderation.moderate_with_provider(client, "hello")
    assert result is not None
    assert (result.flagged, result.outcome) == (False, "APITimeoutError")
    assert result.total_ms < 900


@pytest.mark.parametrize("bypassed", [False, True])
async def test_the_environments_proxy_is_used_unless_the_provider_is_exempt(
    bypassed, settings, monkeypatch
):
    with status_server(200) as proxy:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
        if bypassed:
            monkeypatch.setenv("NO_PROXY", "provider.invalid")
        settings.OPENAI_BASE_URL = "http://provider.invalid/v1"
        result = await moderation.moderate_with_provider(llm.get_client(), "hello")
    assert result is not None
    if bypassed:
        # Asked directly, a host that cannot exist does not answer.
        assert (proxy.hits, result.outcome) == (0, "APIConnectionError")
    else:
        assert (proxy.hits, result.outcome) == (1, "ok")
