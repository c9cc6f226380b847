"""The escalation policy, rule by rule: pure tests, except one of PolicyConfig.for_site."""

from decimal import Decimal

import pytest

from bots import offline, site_cache
from handoff.models import HandoffSettings, SensitiveTopic, Team
from handoff.policy import (
    ERROR,
    NO_MATCH,
    SENTIMENT_THRESHOLD,
    Decision,
    PolicyConfig,
    Topic,
    TurnFacts,
    bot_outcome,
    evaluate,
    rule_on_state,
    rule_on_text,
)
from tests.conftest import make_site

DEFAULTS = PolicyConfig()


def decide(text: str = "", config: PolicyConfig = DEFAULTS, **facts) -> Decision:
    return evaluate(TurnFacts(text=text, **facts), config)


def test_a_plain_question_stays_with_the_bot():
    assert decide("How long does shipping take?") == Decision(False, None, "")
    assert decide("") == Decision(False, None, "")


# -- 1. moderation -----------------------------------------------------------------------


def test_moderation_flag_escalates_at_priority_2_to_the_default_team():
    config = PolicyConfig(default_team_id=7)
    decision = decide("hello", config, moderation_flagged=True)
    assert decision.escalate
    assert decision.rule == "moderation"
    assert decision.priority == 2
    assert decision.team_id == 7
    assert decision.reason


# -- 2. the customer asks for a person ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "asks"),
    [
        # English requests
        ("talk to a human", True),
        ("Can I talk to an agent?", True),
        ("agent please", True),
        ("agent", True),
        ("Agent!", True),
        ("Human please!", True),
        ("I'd like an agent please", True),
        ("a real person?", True),
        ("Is there a real person I can talk to?", True),
        ("I want to speak to someone", True),
        ("I'd like to speak to a customer service representative", True),
        ("customer service representative", True),
        ("operator", True),
        ("Is there an operator?", True),
        ("I want to speak to your manager", True),
        ("Connect me with a live agent", True),
        ("Can I get a real person on the line", True),
        ("I need a human", True),
        ("Do you have live chat?", True),
        ("Why won't you let me talk to a human?", True),
        ("ＨＵＭＡＮ ＰＬＥＡＳＥ", True),
        ("我要talk to a human", True),
        # English that is not a request
        ("my travel agent booked it", False),
        ("What user agent does the widget support?", False),
        ("Is the agent's commission included?", False),
        ("I need to talk to my manager first", False),
        ("My manager asked me to order this", False),
        ("The tour operator cancelled my trip", False),
        ("I need someone to sign for the parcel", False),
        ("The human body needs water, do you sell bottles?", False),
        ("I don't need to talk to a human, just tell me the price", False),
        ("I was talking to a person in your store yesterday", False),
        # The negation window: up to three words before, within the clause
        ("I don't need a human", False),
        ("no need for an agent", False),
        ("I do not need an agent, thanks", False),
        ("I don't really need to speak to a human", False),
        ("I don't think I need a real person", False),
        ("There's no need for a human agent", False),
        ("I don't know the answer, talk to a human", True),
        ("no thanks, I want a human", True),
        # Chinese requests
        ("转人工", True),
        ("我要转人工", True),
        ("人工客服在吗", True),
        ("人工服务", True),
        ("人工", True),
        ("转人工！！", True),
        ("找客服", True),
        ("你是真人吗？我想找真人", True),
        ("客服电话是多少", True),
        ("客服", True),
        # Chinese that is not a request
        ("不用转人工了，谢谢", False),
        ("我不要人工", False),
        ("不需要人工", False),
        ("我不需要人工客服", False),
        ("暂时不需要人工服务", False),
        ("不需要人工了谢谢", False),
        ("别给我转人工", False),
        ("无需转人工", False),
        ("不用了，我要人工客服", True),
        ("我不需要退款，转人工", True),
        ("搞不定转人工", True),
        ("不知道怎么办转人工", True),
        ("人工智能产品有保修吗", False),
        ("我喜欢看真人秀", False),
        ("客服说周一发货", False),
    ],
)
def test_customer_request(text, asks):
    decision = decide(text)
    if asks:
        assert decision.rule == "customer_request"
        assert decision.priority == 1
        assert decision.reason.startswith("Customer asked for a person: '")
    else:
        assert decision == Decision(False, None, "")


def test_customer_request_goes_to_the_default_team():
    assert decide("talk to a human", PolicyConfig(default_team_id=3)).team_id == 3


# -- 3. sensitive topics -----------------------------------------------------------------

BILLING = Topic("Billing", ("refund", "charged twice", "退款"), team_id=11, priority=2)
LEGAL = Topic("Legal", ("GDPR", "data deletion"), team_id=None, priority=3)
TOPICS = PolicyConfig(topics=(BILLING, LEGAL), default_team_id=5)


@pytest.mark.parametrize(
    ("text", "topic", "team_id", "priority"),
    [
        ("I'd like a refund for my tent", "Billing", 11, 2),
        ("REFUND please", "Billing", 11, 2),
        ("I was   charged twice for one order", "Billing", 11, 2),
        ("我想退款", "Billing", 11, 2),
        # A topic without a team goes to the site's default team.
        ("Please process my data deletion request", "Legal", 5, 3),
        # Both match: the higher priority wins.
        ("Refund me and delete my data under GDPR", "Legal", 5, 3),
    ],
)
def test_sensitive_topic(text, topic, team_id, priority):
    decision = decide(text, TOPICS)
    assert decision.rule == "keyword"
    assert decision.team_id == team_id
    assert decision.priority == priority
    assert f"'{topic}'" in decision.reason


@pytest.mark.parametrize("text", ["Is my order refundable?", "Tell me about your tents"])
def test_sensitive_topic_keywords_match_whole_words_only(text):
    assert not decide(text, TOPICS).escalate
    # and the same topics do match their keyword in the same sentence shape
    assert decide(text + " I want a refund", TOPICS).rule == "keyword"


def test_equal_priority_topics_keep_their_configured_order():
    first = Topic("Returns", ("broken",), team_id=1, priority=1)
    second = Topic("Damage", ("broken",), team_id=2, priority=1)
    assert decide("it arrived broken", PolicyConfig(topics=(first, second))).team_id == 1


# -- 4. sentiment ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "This is ridiculous, I've waited two weeks",
        "Worst service ever",
        "I'm desperate, my order hasn't arrived and the wedding is tomorrow",
        "Your bot is useless",
        "you idiots lost my package",
        "What the fuck is going on",
        "I will sue you",
        "I'm calling my lawyer",
        "I'll file a chargeback with my bank",
        "I want my money back",
        "I'm so angry",
        "WHERE IS MY ORDER!!!",
        "This is urgent, I'm frustrated and still waiting",
        "your site is a joke!!!",
        "垃圾服务",
        "我要投诉你们",
        "你们太差了",
        "气死我了",
        "骗子！退钱！",
        "你们到底怎么回事，太慢了！！！",
    ],
)
def test_angry_or_distressed_customer_escalates(text):
    decision = decide(text)
    assert decision.rule == "sentiment"
    assert decision.priority == 2
    assert decision.reason.startswith("Angry or distressed customer (score ")


@pytest.mark.parametrize(
    "text",
    [
        # mild complaints and single mild words
        "My parcel is late, I'm a bit disappointed",
        "This is terrible",
        "The delivery was slow, which is annoying",
        "urgent!!!",
        "Thanks!!! That helped",
        # shouting alone is caps lock or gratitude, not anger
        "THANK YOU SO MUCH",
        "WHERE IS MY ORDER",
        # words that only look angry
        "Sorry if this is a stupid question, how do I return shoes?",
        "My name is Sue and I need a receipt",
        "I read a bad review of this tent, is it waterproof?",
        "In the worst case can I return it?",
        "Do you sell garbage bags? 垃圾袋有吗",
        "怎么还没收到，有点失望",
        "紧急！！！",
        "无语",
        "操作步骤是什么",
        "麻烦你帮我查一下订单",
    ],
)
def test_mild_or_neutral_messages_stay_with_the_bot(text):
    assert decide(text) == Decision(False, None, "")


def test_sentiment_score_builds_up_from_mild_signals():
    # Each mild signal adds one; the threshold is reached at the third.
    assert SENTIMENT_THRESHOLD == 3
    assert not decide("I'm frustrated").escalate
    assert not decide("I'm frustrated and still waiting").escalate
    decision = decide("I'm frustrated and still waiting!!!")
    assert decision.rule == "sentiment"
    assert "(score 3)" in decision.reason
    assert "'!!!'" in decision.reason


def test_sentiment_reason_names_the_signals():
    reason = decide("I'm calling my lawyer").reason
    assert "threat 'lawyer'" in reason


def test_sentiment_check_can_be_turned_off():
    assert decide("Worst service ever", PolicyConfig(sentiment_check=False)).escalate is False
    assert decide("Worst service ever").escalate is True


# -- 5. failures in a row ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "escalates"),
    [
        ((), False),
        (("no_match", "no_match"), False),
        (("no_match", "refused", "error"), True),
        (("answered", "no_match", "no_match", "no_match"), True),
        (("no_match", "answered", "no_match", "no_match"), False),
        (("no_match", "no_match", "no_match", "answered"), False),
    ],
)
def test_failure_streak(outcomes, escalates):
    decision = decide("ok", recent_bot_outcomes=outcomes)
    assert decision.escalate is escalates
    if escalates:
        assert decision.rule == "failures"
        assert decision.reason.startswith("The bot failed 3 times in a row")


def test_failure_threshold_is_the_sites():
    config = PolicyConfig(failure_threshold=1, default_team_id=4)
    decision = decide("ok", config, recent_bot_outcomes=("answered", "error"))
    assert (decision.rule, decision.team_id) == ("failures", 4)
    strict = PolicyConfig(failure_threshold=5)
    assert not decide("ok", strict, recent_bot_outcomes=("no_match",) * 4).escalate
    assert decide("ok", strict, recent_bot_outcomes=("no_match",) * 5).rule == "failures"


# -- 6. provider down --------------------------------------------------------------------


def test_provider_down_escalates():
    decision = decide("How long does shipping take?", provider_down=True)
    assert (decision.escalate, decision.rule) == (True, "provider_down")


# -- rule order --------------------------------------------------------------------------

ALL_TOPICS = PolicyConfig(topics=(Topic("Billing", ("refund",), team_id=9, priority=2),))


@pytest.mark.parametrize(
    ("text", "facts", "rule"),
    [
        ("talk to a human", {"moderation_flagged": True}, "moderation"),
        ("I want a refund, talk to a human", {}, "customer_request"),
        ("This is ridiculous, give me a refund", {}, "keyword"),
        ("Worst service ever", {"recent_bot_outcomes": ("no_match",) * 3}, "sentiment"),
        ("ok", {"recent_bot_outcomes": ("error",) * 3, "provider_down": True}, "failures"),
        ("ok", {"provider_down": True}, "provider_down"),
    ],
)
def test_first_rule_that_fires_wins(text, facts, rule):
    assert decide(text, ALL_TOPICS, **facts).rule == rule


# -- bot_outcome -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "text", "state", "outcome"),
    [
        ("llm", "Standard shipping takes 3-5 days.", "complete", "answered"),
        ("curated", "Returns are free within 30 days.", "complete", "answered"),
        ("cache", "Standard shipping takes 3-5 days.", "complete", "answered"),
        ("offline", "Here is what our help center says about “Shipping”:", "complete", "answered"),
        ("offline", "Sorry, I couldn't find anything about that.", "complete", "no_match"),
        ("offline", "Sorry, I couldn’t find anything about that.", "complete", "no_match"),
        ("offline", "抱歉，我在帮助文章中没有找到相关内容。", "complete", "no_match"),
        # only the offline answerer's wording counts: an LLM saying sorry still answered
        ("llm", "Sorry, I couldn't find anything about that.", "complete", "answered"),
        ("guard", "Sorry, I can't share that.", "complete", "refused"),
        ("llm", "Standard shipping ta", "interrupted", "error"),
        ("offline", "Sorry, I couldn't find", "interrupted", "error"),
    ],
)
def test_bot_outcome(source, text, state, outcome):
    assert bot_outcome(source, text, state) == outcome


@pytest.mark.parametrize(("question", "language"), [("xyzzy?", "en"), ("这是什么？", "zh-hans")])
def test_bot_outcome_knows_the_offline_answerers_no_match_reply(monkeypatch, question, language):
    """Pins the wording against bots/offline.py and its translation, not a copy of it."""
    monkeypatch.setattr(offline, "search_articles", lambda **kwargs: [])
    answer = offline.answer_offline(site_id=1, question=question, language=language)
    assert not answer.matched
    assert bot_outcome("offline", answer.text, "complete") == "no_match"


# -- PolicyConfig.for_site ---------------------------------------------------------------


@pytest.mark.django_db
def test_policy_config_for_site(django_assert_max_num_queries):
    site = make_site()
    other = make_site(name="Other")
    billing = Team.objects.create(name="Billing")
    legal = Team.objects.create(name="Legal")

    # No settings row: the model's defaults, and nothing is created.
    with django_assert_max_num_queries(2):
        config = PolicyConfig.for_site(site.id)
    assert config == PolicyConfig()
    assert not HandoffSettings.objects.exists()

    HandoffSettings.objects.create(
        site=site, failure_threshold=2, sentiment_check=False, default_team=legal
    )
    SensitiveTopic.objects.create(
        site=site, name="Billing", keywords="refund\n  charged twice \n\n退款\n", team=billing
    )
    SensitiveTopic.objects.create(site=site, name="Legal", keywords="GDPR", priority=3)
    SensitiveTopic.objects.create(site=site, name="Empty", keywords="\n  \n")
    SensitiveTopic.objects.create(site=other, name="Elsewhere", keywords="refund")

    with django_assert_max_num_queries(2):
        config = PolicyConfig.for_site(site.id)
    assert config == PolicyConfig(
        failure_threshold=2,
        sentiment_check=False,
        topics=(
            Topic("Legal", ("GDPR",), team_id=None, priority=3),
            Topic("Billing", ("refund", "charged twice", "退款"), team_id=billing.id, priority=1),
        ),
        default_team_id=legal.id,
    )
    decision = evaluate(TurnFacts("I was charged twice"), config)
    assert (decision.rule, decision.team_id) == ("keyword", billing.id)


# -- 3b. sensitive topics with an amount limit ("a refund over 100") ----------------------

REFUNDS_OVER_100 = PolicyConfig(
    topics=(Topic("Large refunds", ("refund", "退款"), team_id=7, amount_over=Decimal(100)),)
)


@pytest.mark.parametrize(
    "text",
    [
        "I want a refund of $250",
        "Refund me 1,200.50 euros now",
        "refund USD 101",
        "我要退款500元",
        "a refund of $2k please",
        # The largest amount decides.
        "I paid $20 and $180, refund all of it",
    ],
)
def test_a_topic_with_a_limit_fires_over_it(text):
    decision = decide(text, REFUNDS_OVER_100)
    assert (decision.rule, decision.team_id) == ("keyword", 7)
    assert "over 100" in decision.reason


@pytest.mark.parametrize(
    "text",
    [
        "I want a refund of $50",
        "refund exactly $100",
        "退款80元",
        # Numbers without a currency are not amounts: order numbers, dates, quantities.
        "refund for order 48211 from 2024-05-01",
        "refund please",
        # An amount without the keyword is not the topic.
        "I paid $900 for the tent",
    ],
)
def test_a_topic_with_a_limit_stays_quiet_at_or_under_it(text):
    assert not decide(text, REFUNDS_OVER_100).escalate


def test_the_amount_limit_is_read_from_the_site(db, site):
    SensitiveTopic.objects.create(
        site=site, name="Large refunds", keywords="refund", amount_over=Decimal("99.50")
    )
    config = PolicyConfig.for_site(site.id)
    assert config.topics == (
        Topic("Large refunds", ("refund",), team_id=None, priority=1, amount_over=Decimal("99.50")),
    )
    assert evaluate(TurnFacts("refund $99.51"), config).rule == "keyword"
    assert not evaluate(TurnFacts("refund $99.50"), config).escalate


@pytest.mark.django_db
def test_the_policy_is_cached_per_site_until_its_settings_change(
    settings, django_assert_num_queries
):
    settings.HELPDESK_SITE_CACHE_SECONDS = 60
    site_cache.invalidate()
    site = make_site()
    PolicyConfig.for_site(site.id)
    with django_assert_num_queries(0):
        assert PolicyConfig.for_site(site.id).topics == ()
    SensitiveTopic.objects.create(site=site, name="Legal", keywords="lawyer")
    assert [t.name for t in PolicyConfig.for_site(site.id).topics] == ["Legal"]
    HandoffSettings.objects.create(site=site, failure_threshold=5)
    assert PolicyConfig.for_site(site.id).failure_threshold == 5
    site_cache.invalidate()


# -- the rules on the text apart, as the event loop tells them while storing ---------------


A_TOPIC_AND_FAILURES = PolicyConfig(
    topics=(Topic(name="Refunds", keywords=("refund",), priority=3, team_id=None),),
    failure_threshold=2,
)


@pytest.mark.parametrize(
    ("text", "outcomes"),
    [
        ("How long does shipping take?", ()),
        ("I want a human", ()),
        ("I need a refund now", ()),
        ("THIS IS USELESS!!! worst service ever, I am furious", ()),
        ("And what about returns?", (NO_MATCH, ERROR)),
        ("I want a human", (NO_MATCH, ERROR)),
        ("", (NO_MATCH, ERROR)),
    ],
)
def test_the_rules_on_the_text_then_on_the_state_decide_as_all_the_rules_do(text, outcomes):
    facts = TurnFacts(text=text, recent_bot_outcomes=outcomes)
    apart = rule_on_text(text, A_TOPIC_AND_FAILURES) or rule_on_state(facts, A_TOPIC_AND_FAILURES)
    assert apart == evaluate(facts, A_TOPIC_AND_FAILURES)


def test_what_the_text_rules_told_beforehand_is_not_told_again(monkeypatch):
    from handoff import escalation

    config = PolicyConfig(sentiment_check=False)
    asked = []
    monkeypatch.setattr(escalation, "rule_on_text", lambda *args: asked.append(args))
    assert escalation.lets_bot_answer(
        policy=config, text="Hi", recent_outcomes=(), text_let_through=True
    )
    assert not escalation.lets_bot_answer(
        policy=config, text="Hi", recent_outcomes=(), text_let_through=False
    )
    assert asked == []
