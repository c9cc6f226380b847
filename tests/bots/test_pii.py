"""PII redaction: every kind is replaced, checksums are enforced, ordinary numbers survive."""

import time

import pytest

from bots.pii import Redaction, redact


@pytest.mark.parametrize(
    "card",
    [
        "4111 1111 1111 1111",  # Visa, grouped by spaces
        "4111111111111111",
        "5555-5555-5555-4444",  # Mastercard, grouped by dashes
        "378282246310005",  # Amex, 15 digits
        "3782 822463 10005",  # Amex, 4-6-5
    ],
)
def test_luhn_valid_card_numbers_are_redacted(card):
    result = redact(f"My card is {card}, thanks")
    assert result.text == "My card is [CARD], thanks"
    assert result.counts == {"CARD": 1}


def test_a_card_number_failing_the_luhn_check_is_kept():
    text = "My card is 4111 1111 1111 1112, thanks"
    assert redact(text) == Redaction(text=text, counts={})


@pytest.mark.parametrize(
    "iban",
    [
        "GB82 WEST 1234 5698 7654 32",
        "DE89370400440532013000",
        "gb82 west 1234 5698 7654 32",
        # Ends on a full group, so the next word looks like one more group of 4.
        "BE68 5390 0754 7034",
        "BE68539007547034",
    ],
)
def test_mod97_valid_ibans_are_redacted(iban):
    result = redact(f"Refund to {iban} asap please")
    assert result.text == "Refund to [IBAN] asap please"
    assert result.counts == {"IBAN": 1}


@pytest.mark.parametrize("iban", ["GB83 WEST 1234 5698 7654 32", "DE88370400440532013000"])
def test_an_iban_with_a_wrong_check_is_kept(iban):
    text = f"Refund to {iban} please"
    assert redact(text).text == text


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("ID 11010519491231002X", "ID [CN_ID]"),
        ("身份证号11010519491231002x。", "身份证号[CN_ID]。"),
        ("身份证44030419900307123X谢谢", "身份证[CN_ID]谢谢"),
    ],
)
def test_chinese_identity_numbers_are_redacted(text, redacted):
    result = redact(text)
    assert result.text == redacted
    assert result.counts == {"CN_ID": 1}


@pytest.mark.parametrize(
    "number",
    [
        "110105194912310021",  # bad check digit (the valid one is X)
        "110105194913310021",  # right check digit, but month 13
        "110105209901010020",  # right check digit, but born in 2099
    ],
)
def test_invalid_chinese_identity_numbers_are_kept(number):
    text = f"ID {number}"
    assert redact(text).text == text


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("Mail jane.doe+shop@example.co.uk now", "Mail [EMAIL] now"),
        ("<bob_smith@mail.example.com>", "<[EMAIL]>"),
        ("我的邮箱是alice@example.com谢谢", "我的邮箱是[EMAIL]谢谢"),
    ],
)
def test_email_addresses_are_redacted(text, redacted):
    result = redact(text)
    assert result.text == redacted
    assert result.counts == {"EMAIL": 1}


@pytest.mark.parametrize(
    "phone",
    [
        "+44 20 7946 0958",
        "+1 (415) 555-2671",
        "+8613812345678",
        "+86 138 1234 5678",
        "415-555-2671",
        "(555) 123-4567",
        "1-800-555-1234",
        "13812345678",
        "138 1234 5678",
        "0086 138-1234-5678",
    ],
)
def test_phone_numbers_are_redacted(phone):
    result = redact(f"Call me on {phone} tomorrow")
    assert result.text == "Call me on [PHONE] tomorrow"
    assert result.counts == {"PHONE": 1}


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        ("我的手机是13812345678谢谢", "我的手机是[PHONE]谢谢"),
        ("电话+86 138 1234 5678，邮箱li@example.cn。", "电话[PHONE]，邮箱[EMAIL]。"),
        ("我的IP是192.168.1.20吗", "我的IP是[IP]吗"),
    ],
)
def test_pii_inside_chinese_text_without_spaces_is_redacted(text, redacted):
    assert redact(text).text == redacted


@pytest.mark.parametrize(
    ("address", "redacted"),
    [
        ("192.168.1.20", "[IP]"),
        ("255.255.255.255", "[IP]"),
        ("2001:db8::1", "[IP]"),
        ("fe80::1ff:fe23:4567:890a", "[IP]"),
        ("::ffff:10.0.0.1", "[IP]"),
        ("192.168.1.20:8080", "[IP]:8080"),
        ("IP:2001:db8::1", "IP:[IP]"),
    ],
)
def test_ip_addresses_are_redacted(address, redacted):
    result = redact(f"Blocked from {address}.")
    assert result.text == f"Blocked from {redacted}."
    assert result.counts == {"IP": 1}


@pytest.mark.parametrize(
    "text",
    [
        "Where is order #10482?",
        "order 4821 has not arrived",
        "It cost $75, free shipping over $75.00",
        "Delivered on 2024-05-01 at 14:30",
        "Open 09:00-17:30, back at 10:30:15",
        "Size EU 42, I need a 43",
        "I want 3 tents and 12 pegs",
        "My postcode is 100080",
        "Bought in 2019, still great",
        "Version 3.14 and 1.2.3",
        "Octets too big: 256.1.1.1 and 999.999.999.999",
        "Tracking 1Z999AA10123456784",
        "订单号10482，价格75元，2024年5月1日，邮编100080",
        "尺码42，数量3件",
        "std::vector and face:: in C++20",
        "Score 4-1 after 90+3 minutes",
    ],
)
def test_ordinary_numbers_are_untouched(text):
    result = redact(text)
    assert result.text == text
    assert result.counts == {}
    assert result.total == 0


def test_several_kinds_at_once_are_counted_per_kind():
    text = (
        "I'm jane@example.com, card 4111 1111 1111 1111 / 5555-5555-5555-4444, "
        "IBAN DE89370400440532013000, call +44 20 7946 0958 or 13812345678, "
        "from 192.168.1.20 about order #10482."
    )
    result = redact(text)
    assert result.text == (
        "I'm [EMAIL], card [CARD] / [CARD], IBAN [IBAN], call [PHONE] or [PHONE], "
        "from [IP] about order #10482."
    )
    assert result.counts == {"EMAIL": 1, "CARD": 2, "IBAN": 1, "PHONE": 2, "IP": 1}
    assert result.total == 7


def test_a_chinese_mobile_with_86_prefix_is_a_phone_not_a_13_digit_card():
    # 8613812345678 also passes the Luhn check.
    result = redact("电话8613812345678")
    assert result.text == "电话[PHONE]"
    assert result.counts == {"PHONE": 1}


def test_text_without_pii_is_returned_unchanged():
    text = "Hello! How long does shipping to Canada take? 你好，运费多少？"
    result = redact(text)
    assert result.text is text
    assert result == Redaction(text=text, counts={})


@pytest.mark.parametrize(
    "chunk", ["1", "1 ", "a@", "1:", "+1 ", "1.", "1-", "ab12 ", "1111 ", "我", "(1"]
)
def test_long_hostile_input_takes_linear_time(chunk):
    text = chunk * (50_000 // len(chunk))
    started = time.perf_counter()
    redact(text)
    # Linear scans take a few milliseconds here; backtracking blow-ups take minutes.
    assert time.perf_counter() - started < 1.0


def test_a_text_seen_before_is_not_redacted_again():
    # Each turn redacts the conversation's earlier turns again for its prompt.
    text = f"Write to ana.{time.monotonic_ns()}@example.com or call +44 20 7946 0958"
    misses = redact.cache_info().misses
    first = redact(text)
    assert redact(text) is first
    assert redact.cache_info().misses == misses + 1
    assert first.counts == {"EMAIL": 1, "PHONE": 1}


def test_a_kept_redaction_cannot_be_changed_by_a_caller():
    result = redact("Mail me at bo@example.com")
    with pytest.raises(TypeError):
        result.counts["EMAIL"] = 0
    assert redact("Mail me at bo@example.com").counts == {"EMAIL": 1}
