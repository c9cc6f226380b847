"""The escalation policy: should this customer message go to a human, and why?

One entry point, `evaluate(facts, config)`. It is pure and fast: no database, no network, no
logging of the customer's text; regular expressions are compiled at import and a site's topic
matchers are built once (`bots.moderation.banned_words_for`). The caller builds the snapshot:
`PolicyConfig.for_site()` (the only database read here) and `TurnFacts` from what it already
knows about the turn, e.g. `bot_outcome()` of the bot's previous answers.

Rules, checked in this order; the first that fires wins:

====  =================  ===========================================  ===================
 #    rule               fires when                                   priority, team
====  =================  ===========================================  ===================
 1    moderation         moderation flagged the message               2, default team
 2    customer_request   the customer asks for a person (EN, ZH)      1, default team
 3    keyword            a site's sensitive-topic keyword appears     the topic's
 4    sentiment          angry or distressed customer (if enabled)    2, default team
 5    failures           the bot's last N answers all failed          0, default team
 6    provider_down      the LLM provider is down                     0, default team
====  =================  ===========================================  ===================

Why this order: a flagged message needs review whatever else it says; an explicit request
for a person beats anything inferred; a configured topic knows where to route (its team),
which sentiment cannot; a failure streak and an outage are about the bot rather than the
message, so a message-based reason tells the agent more when both apply. The priorities are
RULE_PRIORITY's, also used by escalations that do not come through `evaluate` (a moderation
flag or a tool call found after the bot's answer, in handoff.escalation).
"""

import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from bots import site_cache
from bots.moderation import banned_words_for
from handoff.models import Handoff, HandoffSettings, SensitiveTopic

__all__ = [
    "ANSWERED",
    "ERROR",
    "FAILED_OUTCOMES",
    "NO_MATCH",
    "REFUSED",
    "SENTIMENT_THRESHOLD",
    "Decision",
    "PolicyConfig",
    "Topic",
    "TurnFacts",
    "bot_outcome",
    "evaluate",
    "priority_for",
]

# -- the snapshot ------------------------------------------------------------------------


@dataclass(frozen=True)
class Topic:
    """A sensitive topic: any of its keywords sends the conversation to `team_id`."""

    name: str
    keywords: tuple[str, ...]
    team_id: int | None = None
    priority: int = 1
    # Set: a keyword fires only with an amount of money above it in the same message.
    amount_over: Decimal | None = None


@dataclass(frozen=True)
class PolicyConfig:
    """A site's escalation settings, built from HandoffSettings and SensitiveTopic rows."""

    failure_threshold: int = 3
    sentiment_check: bool = True
    # Also ask the LLM (handoff.sentiment) about messages the lexicon lets through.
    sentiment_llm: bool = False
    topics: tuple[Topic, ...] = ()
    default_team_id: int | None = None

    @classmethod
    def for_site(cls, site_id: int) -> "PolicyConfig":
        """The site's policy, cached briefly per process (bots.site_cache)."""
        return site_cache.get(site_id, cls.load, kind="policy")

    @classmethod
    def cached(cls, site_id: int) -> "PolicyConfig | None":
        """`for_site` if the site's policy is cached in this process, else None; no query."""
        config = site_cache.peek(site_id, kind="policy")
        return config if isinstance(config, cls) else None

    @classmethod
    def load(cls, site_id: int) -> "PolicyConfig":
        """The site's policy; model defaults when it has no settings row (not created here)."""
        settings = HandoffSettings.objects.filter(site_id=site_id).first()
        if settings is None:
            settings = HandoffSettings(site_id=site_id)
        topics = tuple(
            Topic(
                name=row.name,
                keywords=tuple(row.keyword_list()),
                team_id=row.team_id,
                priority=row.priority,
                amount_over=row.amount_over,
            )
            # Highest priority first, so the most urgent topic wins when several match.
            for row in SensitiveTopic.objects.filter(site_id=site_id).order_by("-priority", "id")
        )
        return cls(
            failure_threshold=settings.failure_threshold,
            sentiment_check=settings.sentiment_check,
            sentiment_llm=settings.sentiment_check and settings.sentiment_llm,
            topics=tuple(t for t in topics if t.keywords),
            default_team_id=settings.default_team_id,
        )


@dataclass(frozen=True)
class TurnFacts:
    """What the caller knows about the customer's new message."""

    text: str
    # Outcomes of the bot's previous answers in this conversation, newest last
    # (see `bot_outcome`).
    recent_bot_outcomes: tuple[str, ...] = ()
    moderation_flagged: bool = False
    provider_down: bool = False


@dataclass(frozen=True)
class Decision:
    escalate: bool
    rule: str | None
    reason: str
    priority: int = 0
    team_id: int | None = None


NO_ESCALATION = Decision(escalate=False, rule=None, reason="")

# Queue priority per rule (higher first); a sensitive topic brings its own. Moderation and an
# angry customer are the urgent ones: someone should look before the customer leaves.
PRIORITY_HIGH = 2
PRIORITY_NORMAL = 1
PRIORITY_LOW = 0
RULE_PRIORITY = {
    Handoff.Rule.MODERATION: PRIORITY_HIGH,
    Handoff.Rule.SENTIMENT: PRIORITY_HIGH,
    Handoff.Rule.CUSTOMER: PRIORITY_NORMAL,
    Handoff.Rule.KEYWORD: PRIORITY_NORMAL,
    Handoff.Rule.TOOL: PRIORITY_LOW,
    Handoff.Rule.FAILURES: PRIORITY_LOW,
    Handoff.Rule.PROVIDER_DOWN: PRIORITY_LOW,
}


def priority_for(rule: str) -> int:
    """The queue priority of a handoff for `rule`, wherever the escalation comes from."""
    return RULE_PRIORITY.get(rule, PRIORITY_LOW)


# -- bot outcomes ------------------------------------------------------------------------

ANSWERED = "answered"
NO_MATCH = "no_match"
REFUSED = "refused"
ERROR = "error"
FAILED_OUTCOMES = frozenset({NO_MATCH, REFUSED, ERROR})

# How bots/offline.py's "no match" reply begins, in English and in its zh-hans translation
# (locale/zh_Hans); tests pin these against the answerer itself.
_OFFLINE_NO_MATCH_PREFIXES = ("Sorry, I couldn't find anything", "抱歉，我在帮助文章中没有找到")


def bot_outcome(answer_source: str, text: str, state: str) -> str:
    """Classify a stored bot answer as "answered", "no_match", "refused" or "error"."""
    # An answer cut off mid-stream failed, whatever produced it.
    if state == "interrupted":
        return ERROR
    if answer_source == "guard":
        return REFUSED
    if answer_source == "offline" and _straight_quotes(text.lstrip()).startswith(
        _OFFLINE_NO_MATCH_PREFIXES
    ):
        return NO_MATCH
    return ANSWERED


# -- text helpers ------------------------------------------------------------------------

# English patterns run with re.ASCII, so a Han character next to a Latin word does not glue
# it into one \w run ("我要talk to a human" still matches) and IGNORECASE stays ASCII-only.
_EN = re.IGNORECASE | re.ASCII
_WORD_START = r"(?<![a-z0-9])"
_WORD_END = r"(?![a-z0-9])"


def _straight_quotes(text: str) -> str:
    return text.replace("\u2019", "'").replace("\u2018", "'")


def _prepare(text: str) -> str:
    # NFKC folds full-width Latin and punctuation ("ＨＵＭＡＮ！" -> "HUMAN!").
    return _straight_quotes(unicodedata.normalize("NFKC", text))


def _quote(fragment: str, limit: int = 60) -> str:
    fragment = " ".join(fragment.split())
    if len(fragment) > limit:
        fragment = fragment[: limit - 1] + "…"
    return f"'{fragment}'"


# -- rule 2: the customer asks for a person ---------------------------------------------

# Whom a customer asks for, after "talk to a …" / "connect me with your …".
_TALK_TARGET = (
    r"(?:person|people|humans?|agents?|representatives?|reps?|operators?|managers?|"
    r"supervisors?|someone|somebody|staff|support|customer\s+(?:service|support|care)|"
    r"(?:support|service|sales|billing)\s+team|team\s+member)"
)
# Narrower after "get/want/need a …": "I need someone to sign for it" is not a request.
_GET_TARGET = r"(?:person|human|agent|representative|rep|operator|manager|supervisor)s?"
_DETERMINER = r"(?:an?|the|your|some|any|one\s+of\s+your|a\s+member\s+of\s+(?:your|the))"
_QUALIFIER = r"(?:real|live|actual|human|customer\s+service|customer\s+support|support)"

_ASK_FOR_PERSON_EN = tuple(
    re.compile(pattern, _EN)
    for pattern in (
        # talk / speak / chat / connect me / transfer me … to|with (a) (real) person
        rf"{_WORD_START}(?:talk(?:ing)?|speak(?:ing)?|chat(?:ting)?|connect(?:ed)?\s+me|"
        rf"transfer(?:red)?\s+me|put\s+me\s+through|pass\s+me|hand\s+me\s+over|"
        rf"escalate(?:\s+(?:this|me|it))?)\s+(?:to|with)\s+(?:{_DETERMINER}\s+)?"
        rf"(?:{_QUALIFIER}\s+)?{_TALK_TARGET}{_WORD_END}",
        # get / want / need / ask for … a (real) agent; not "the agent's number"
        rf"{_WORD_START}(?:get|want|need|request(?:ing)?|ask(?:ing)?\s+for|give|bring|send)"
        rf"\s+(?:me\s+)?(?:an?|the|your|some)\s+(?:(?:real|live|actual|human)\s+)?"
        rf"{_GET_TARGET}{_WORD_END}(?!'s)",
        rf"{_WORD_START}(?:real|live|actual)\s+(?:person|people|human|agent|representative|"
        rf"operator)s?{_WORD_END}",
        rf"{_WORD_START}human\s+(?:agent|representative|operator|support|being)s?{_WORD_END}",
        rf"{_WORD_START}customer\s+(?:service|support|care)\s+(?:representative|rep|agent|"
        rf"officer)s?{_WORD_END}",
        rf"{_WORD_START}live\s+(?:chat|support|help){_WORD_END}",
        rf"{_WORD_START}human\s+(?:please|pls|plz|now){_WORD_END}",
        # "an agent please", "Hi, operator please" — not "my travel agent please call me"
        rf"(?:^|[.!?,;:]\s*|{_WORD_START}(?:an?|the|some)\s+)(?:real\s+|live\s+)?"
        rf"(?:person|agent|representative|rep|operator|manager)\s+(?:please|pls|plz|now)"
        rf"{_WORD_END}",
        rf"{_WORD_START}(?:can|could|may)\s+(?:an?|some)\s+(?:real\s+|live\s+)?(?:human|person|"
        rf"agent|representative)\s+(?:help|call|contact|assist){_WORD_END}",
        rf"{_WORD_START}(?:is|are)\s+there\s+(?:an?|any)\s+(?:real\s+|live\s+)?(?:human|person|"
        rf"people|agent|representative|operator)s?{_WORD_END}",
        rf"{_WORD_START}(?:human|agent|representative|operator)s?\s+(?:available|online)"
        rf"{_WORD_END}",
        rf"{_WORD_START}(?:don't|dont|do\s+not)\s+want\s+(?:to\s+(?:talk|speak|chat)\s+"
        rf"(?:to|with)\s+)?(?:an?|the|your|this)\s+(?:bot|robot|machine|chatbot){_WORD_END}",
        # The whole message is the request: "agent", "Human please!", "a real person?"
        r"^[^a-z0-9\u3400-\u9fff]*(?:(?:hi|hello|hey)[^a-z0-9\u3400-\u9fff]+)?"
        r"(?:(?:please|pls|plz)\s+)?(?:(?:an?|the|real|live)\s+)*"
        r"(?:human|person|agent|representative|rep|operator|manager|supervisor|"
        r"customer\s+service)s?(?:\s+(?:please|pls|plz|now))?[^a-z0-9\u3400-\u9fff]*$",
    )
)
# Not a request: a negation at most three words before it in the same clause ("I don't
# really need to talk to a human", "no need for an agent"; a comma ends the window, so "I
# don't know, talk to a human" still asks), or a story ("I was talking to a person").
_NOT_A_REQUEST_EN = re.compile(
    rf"{_WORD_START}(?:(?:don't|dont|do\s+not|doesn't|does\s+not|didn't|did\s+not|"
    rf"no\s+need\s+(?:to|for)|not|never|without)\s+(?:[a-z']+\s+){{0,3}}|(?:was|were|been)\s+)$",
    _EN,
)

# Chinese is matched as substrings: no spaces delimit words. 真人秀 is a reality show.
_ASK_FOR_PERSON_ZH = re.compile(
    r"转人工|轉人工|转接人工|人工客服|人工服务|人工服務|人工坐席|找人工|要人工|接人工|"
    r"找客服|联系客服|聯繫客服|在线客服|客服电话|客服電話|客服热线|真人(?!秀|版)|"
    r"不要机器人|不想(?:和|跟)机器人|找(?:你们)?(?:的)?(?:经理|主管|负责人)|"
    r"^[^\u3400-\u9fffa-z0-9]*(?:人工|客服)[吧啊呢呀]?[^\u3400-\u9fffa-z0-9]*$",
    re.IGNORECASE,
)
# The negation window in Chinese: a negation right before the phrase, or a few characters
# before it with only "me / help / again / go / find / transfer" between ("别给我转人工").
# A negation may also end inside the phrase's own start: in 不需要人工 the phrase 要人工 is
# found after 不需. Punctuation is not in the filler class, so "不用了，我要人工客服" asks.
_NEGATED_ZH = re.compile(
    r"(?:不用|不需要?|不要|不想|不必|无需|無需|没必要|沒必要|用不着|用不著|别|別|不)"
    r"[我你帮幫给給再去找转轉接\s]{0,3}$"
)
_ZH_WINDOW = 6


def _asks_for_person(text: str) -> str | None:
    """The phrase in which the customer asks for a person, or None."""
    # Spans of negated phrases: a phrase overlapping one is negated too, so in "I don't think
    # I need a real person" the "real person" inside the negated "need a real person" is.
    negated: list[tuple[int, int]] = []

    def within_negated(match: re.Match) -> bool:
        return any(match.start() < end and start < match.end() for start, end in negated)

    candidates = []
    for pattern in _ASK_FOR_PERSON_EN:
        for match in pattern.finditer(text):
            if _NOT_A_REQUEST_EN.search(text, 0, match.start()):
                negated.append(match.span())
            else:
                candidates.append((match, match.group().strip(" .,!?;:")))
    for match in _ASK_FOR_PERSON_ZH.finditer(text):
        if _NEGATED_ZH.search(text[max(0, match.start() - _ZH_WINDOW) : match.start()]):
            negated.append(match.span())
        else:
            candidates.append((match, match.group().strip()))
    for match, phrase in candidates:
        if not within_negated(match):
            return phrase
    return None


# Amounts of money, for topics with a limit ("a refund over 100"): a number with a currency
# sign or word before or after it, so an order number or a date is never an amount. Thousands
# may be grouped with commas ("1,200.50"); "2k" is 2000. No currency conversion: the limit
# is compared with the number as written.
_NUMBER = r"(\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?)\s*(k\b)?"
_CURRENCY_BEFORE = r"(?:[$€£¥]|(?<![a-z])(?:us\$|usd|eur|gbp|cny|rmb|aud|cad)\s*)"
_CURRENCY_AFTER = (
    r"(?:\s*(?:dollars?|bucks|euros?|pounds?|usd|eur|gbp|cny|rmb|aud|cad)(?![a-z])"
    r"|\s*(?:美元|美金|欧元|英镑|人民币|元|块|塊|圆))"
)
_AMOUNT = re.compile(
    rf"{_CURRENCY_BEFORE}\s*{_NUMBER}|(?<![\d.,]){_NUMBER}(?={_CURRENCY_AFTER})", re.IGNORECASE
)


def amounts_of_money(text: str) -> list[Decimal]:
    """Every amount of money the (NFKC-normalised) text names, e.g. "$1,200" -> 1200."""
    found = []
    for match in _AMOUNT.finditer(text):
        number, thousands = (
            (match.group(1), match.group(2)) if match.group(1) else match.group(3, 4)
        )
        try:
            value = Decimal(number.replace(",", ""))
        except InvalidOperation:
            continue
        found.append(value * 1000 if thousands else value)
    return found


# -- rule 4: sentiment -------------------------------------------------------------------

# Lexicon-based, English and Chinese. Each distinct signal found adds its weight; the
# message escalates at SENTIMENT_THRESHOLD:
#
#   3  severe    threats (sue, lawyer, chargeback, 投诉, 律师…), insults or profanity aimed at
#                the service ("useless bot", "you idiots", "fuck", 垃圾, 骗子…), explicit
#                distress ("I'm desperate", "this is ridiculous", "worst service", "so angry",
#                气死, 退钱…) — any one of them fires alone
#   2  strong    ALL-CAPS shouting of >= 3 words, anger words (ridiculous, scam, useless,
#                无语, 离谱…) — fires with any other signal
#   1  mild      "!!!", urgency and mild complaint words (urgent, frustrated, still waiting,
#                紧急, 失望…) — three fire, one or two do not
#
# So "my parcel is late, a bit disappointed" (1) stays with the bot, "URGENT!!!" (1+1) too,
# "WHERE IS MY ORDER!!!" (2+1) goes to a person. Shouting alone does not fire: caps lock and
# "THANK YOU SO MUCH" are not anger. This lexicon costs nothing and never leaves the
# process; a site may add the LLM's opinion on what it lets through (`sentiment_llm`,
# handoff.sentiment), which never overrules it.
SENTIMENT_THRESHOLD = 3


def _signal(label: str, weight: int, english: str = "", chinese: str = "") -> tuple:
    parts = []
    if english:
        parts.append(rf"{_WORD_START}(?:{english}){_WORD_END}")
    if chinese:
        parts.append(rf"(?:{chinese})")
    return label, weight, re.compile("|".join(parts), _EN)


_SERVICE = (
    r"(?:bot|chatbot|robot|ai|machine|service|company|support|app|website|site|shop|store|"
    r"system|people|staff|team|customer\s+service)s?"
)
_SENTIMENT_SIGNALS = (
    _signal(
        "threat",
        3,
        r"(?:sue|suing)\s+(?:you|your|the|this|them|it)|i(?:'ll|\s+will|'m\s+going\s+to|"
        r"\s+am\s+going\s+to|'m\s+gonna|\s+am\s+gonna)\s+sue|lawsuit|lawyers?|attorneys?|"
        r"legal\s+action|(?:take|taking)\s+(?:you|this|it|them)\s+to\s+court|small\s+claims|"
        r"charge\s*-?\s*backs?|dispute\s+(?:the|this|my)\s+(?:charge|payment|transaction)|"
        r"report(?:ing)?\s+(?:you|your\s+company|them)\s+to|bbb|"
        r"better\s+business\s+bureau|consumer\s+protection|trading\s+standards|ombudsman|"
        r"leave\s+(?:you\s+)?(?:an?\s+)?(?:bad|negative|(?:1|one)[-\s]star)\s+reviews?",
        r"投诉|投訴|举报|舉報|起诉|起訴|律师|律師|法院|报警|報警|消协|消费者协会|12315|"
        r"曝光你们|工商局|拒付",
    ),
    _signal(
        "abuse",
        3,
        rf"(?:stupid|useless|dumb|incompetent|pathetic|worthless|crappy|shitty|lousy|"
        rf"rubbish|garbage|trash|fucking|damn|bloody)\s+{_SERVICE}|"
        r"you(?:\s+are|'re|\s+r)?\s+(?:so\s+|such\s+|all\s+|a\s+bunch\s+of\s+)?(?:an?\s+)?"
        r"(?:stupid|useless|dumb|incompetent|pathetic|worthless|idiots?|morons?|liars?|"
        r"thie(?:f|ves)|crooks?|scammers?|clowns?|jokes?|hopeless|disgrace)|"
        r"f+u+c+k\w*|wtf|bullshit|stfu|piece\s+of\s+shit|screw\s+you|go\s+to\s+hell|"
        r"shut\s+up|"
        rf"{_SERVICE}\s+(?:is|are)\s+(?:so\s+|completely\s+|totally\s+|just\s+)?(?:useless|"
        r"stupid|dumb|pathetic|worthless|garbage|trash|a\s+joke)",
        r"垃圾(?!袋|桶|分类|箱|车|处理|邮件)|骗子|騙子|骗人|骗钱|傻逼|傻b|煞笔|妈的|他妈|我操|卧槽|"
        r"草泥马|黑店|坑爹|废物|智障|滚蛋|去死|什么破|破玩意",
    ),
    _signal(
        "distress",
        3,
        r"(?:i'm|i\s+am|so|really|getting)\s+desperate|desperately|"
        r"(?:this|that|it)(?:'s|\s+is)\s+(?:absolutely\s+|so\s+|completely\s+|totally\s+|"
        r"just\s+)?(?:ridiculous|unacceptable|outrageous|insane|a\s+joke|a\s+scam|a\s+disgrace)|"
        r"(?:so|really|very|extremely|absolutely|totally)\s+(?:angry|mad|upset|frustrated|"
        r"annoyed|disappointed)|"
        r"unacceptable|worst\s+(?:service|company|support|experience|customer\s+service|shop|"
        r"store|bot)|fed\s+up|sick\s+and\s+tired|had\s+enough|furious|livid|pissed\s+off|"
        r"(?:give|want)\s+(?:me\s+)?my\s+money\s+back|never\s+(?:buying|ordering|shopping)\s+"
        r"(?:here|from\s+you)\s+again",
        r"气死|氣死|太差了|太差劲|差劲|退钱|退錢|最差|忍无可忍|崩溃|受够了",
    ),
    _signal(
        "anger",
        2,
        r"ridiculous|outrageous|angry|pissed|scam|scammed|rip\s*-?\s*off|"
        r"disgusting|pathetic|useless|worst|hate\s+(?:you|this|your)|waste\s+of\s+(?:my\s+)?"
        r"time|sick\s+of|shit",
        r"无语|無語|离谱|離譜|受不了|失望透顶|恶心|噁心|烦死|急死|坑人|太慢了|差评|生气",
    ),
    _signal(
        "frustration",
        1,
        r"urgent|urgently|asap|emergency|immediately|right\s+now|frustrated|frustrating|"
        r"disappointed|disappointing|annoyed|annoying|upset|unhappy|not\s+happy|terrible|"
        r"awful|horrible|bad\s+service|still\s+waiting|still\s+(?:not|haven't|hasn't)|"
        r"not\s+working|doesn't\s+work|does\s+not\s+work|damn|crap",
        r"紧急|緊急|着急|急用|很急|失望|不满意|不满|很慢|好慢|还没收到|怎么回事|到底|很烦|烦人",
    ),
)
# Three "!" in a row, "?" may mix in: "!!!", "!?!?!".
_EXCLAMATIONS = re.compile(r"(?:!\??){3}")
_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z']*")
_SHOUT_MIN_WORDS = 3


def _shouts(text: str) -> bool:
    """At least three ALL-CAPS words in a row, one of 4+ letters ("I AM OK" is not shouting)."""
    run, long_word, last_end = 0, False, 0
    for match in _LATIN_WORD.finditer(text):
        word = match.group()
        if not (word.isupper() and (len(word) >= 2 or word in {"I", "A"})):
            run, long_word = 0, False
        else:
            # Other text (digits, Han) between two capitalised words breaks the run.
            if run and any(c.isalnum() for c in text[last_end : match.start()]):
                run, long_word = 0, False
            run += 1
            long_word = long_word or len(word) >= 4
            if run >= _SHOUT_MIN_WORDS and long_word:
                return True
        last_end = match.end()
    return False


def _sentiment(text: str) -> tuple[int, list[str]]:
    """The score of a message and the signals behind it, e.g. (5, ["threat 'lawyer'", …])."""
    score = 0
    found: list[str] = []
    for label, weight, pattern in _SENTIMENT_SIGNALS:
        seen = {" ".join(m.group().casefold().split()) for m in pattern.finditer(text)}
        for fragment in sorted(seen):
            score += weight
            found.append(f"{label} {_quote(fragment, 30)}")
    if _shouts(text):
        score += 2
        found.append("shouting")
    if _EXCLAMATIONS.search(text):
        score += 1
        found.append("'!!!'")
    return score, found


# -- the policy --------------------------------------------------------------------------

_MAX_REASON = 300  # Handoff.reason's max_length


def _escalate(rule: str, reason: str, priority: int, team_id: int | None) -> Decision:
    return Decision(
        escalate=True, rule=rule, reason=reason[:_MAX_REASON], priority=priority, team_id=team_id
    )


def evaluate(facts: TurnFacts, config: PolicyConfig) -> Decision:
    """Whether the customer's new message goes to a human: the first rule that fires wins."""
    if facts.moderation_flagged:
        return _escalate(
            Handoff.Rule.MODERATION,
            "Message flagged by moderation",
            priority_for(Handoff.Rule.MODERATION),
            config.default_team_id,
        )
    return rule_on_text(facts.text, config) or rule_on_state(facts, config)


def rule_on_text(text: str, config: PolicyConfig) -> Decision | None:
    """The first of the rules that read only the message's text to fire (the customer asks
    for a person, a sensitive topic, the sentiment lexicon), or None."""
    text = _prepare(text)
    if not text.strip():
        return None
    team = config.default_team_id
    if phrase := _asks_for_person(text):
        return _escalate(
            Handoff.Rule.CUSTOMER,
            f"Customer asked for a person: {_quote(phrase)}",
            priority_for(Handoff.Rule.CUSTOMER),
            team,
        )

    # sorted() is stable: on equal priority the first configured topic wins.
    for topic in sorted(config.topics, key=lambda t: -t.priority):
        if word := banned_words_for(topic.keywords).find(text):
            why = f"Sensitive topic {_quote(topic.name, 100)}: {_quote(word)}"
            if topic.amount_over is not None:
                largest = max(amounts_of_money(text), default=None)
                if largest is None or largest <= topic.amount_over:
                    continue
                why += f", amount {largest:f} over {topic.amount_over:f}"
            return _escalate(
                Handoff.Rule.KEYWORD,
                why,
                topic.priority,
                topic.team_id if topic.team_id is not None else team,
            )

    if config.sentiment_check:
        score, signals = _sentiment(text)
        if score >= SENTIMENT_THRESHOLD:
            return _escalate(
                Handoff.Rule.SENTIMENT,
                f"Angry or distressed customer (score {score}): {', '.join(signals)}",
                priority_for(Handoff.Rule.SENTIMENT),
                team,
            )
    return None


def rule_on_state(facts: TurnFacts, config: PolicyConfig) -> Decision:
    """The rules on the conversation's state (the bot's recent failures, the provider
    down): the first that fires, else no escalation."""
    team = config.default_team_id
    threshold = config.failure_threshold
    recent = facts.recent_bot_outcomes[-threshold:] if threshold > 0 else ()
    if len(recent) == threshold > 0 and all(o in FAILED_OUTCOMES for o in recent):
        kinds = ", ".join(o.replace("_", " ") for o in recent)
        return _escalate(
            Handoff.Rule.FAILURES,
            f"The bot failed {threshold} times in a row ({kinds})",
            priority_for(Handoff.Rule.FAILURES),
            team,
        )

    if facts.provider_down:
        return _escalate(
            Handoff.Rule.PROVIDER_DOWN,
            "The AI assistant is unavailable (provider down)",
            priority_for(Handoff.Rule.PROVIDER_DOWN),
            team,
        )

    return NO_ESCALATION
