"""Prompt tokens per turn over one 40-turn conversation, with and without the rolling summary.

Builds each turn's prompt with the real `bots.prompt.build_prompt` and tokenizer (no database,
no LLM) for a simulated conversation: customer messages of 15-40 words, answers of 40-90 words
(customer-service text, fixed seed), a ~200-word site scope, the same 4 knowledge-base
articles of ~120 words every turn, model gpt-4o-mini, max_tokens 600, no few-shot examples.
Three ways of choosing the history, as bots/services.py:prepare_turn and bots/summary.py do:
  full    - every message so far, no cap (HELPDESK_PROMPT_BUDGET raised to 100000 so the
            budget does not hide the growth)
  capped  - the newest HELPDESK_HISTORY_TURNS messages, no summary (default budget)
  summary - after each answer, once HELPDESK_SUMMARY_TRIGGER messages are unsummarized, all
            but the newest HELPDESK_SUMMARY_KEEP are folded into the summary (a fixed ~110-word
            text stands in for the model's); the prompt carries the summary + the messages after
            it, capped at HELPDESK_HISTORY_TURNS (default budget)
Prints the prompt tokens of each turn and the growth from turn 20 to turn 40.

    .venv/bin/python bench/prompt_tokens.py
"""

import argparse
import os
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helpdesk.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.test import override_settings  # noqa: E402

from bots import tokens  # noqa: E402
from bots.prompt import (  # noqa: E402
    DEFAULT_PROMPT_BUDGET,
    KnowledgeSnippet,
    PromptParts,
    build_prompt,
)

MODEL = "gpt-4o-mini"
MAX_TOKENS = 600
FULL_BUDGET = 100_000
SITE_NAME = "Summit Outfitters"

SCOPE = (
    "You are the customer-service assistant of Summit Outfitters, an outdoor-equipment shop "
    "with an online store and twelve stores in Colorado, Utah and Washington. Summit "
    "Outfitters sells hiking, climbing, camping, ski and snowboard, cycling and paddling gear, "
    "outdoor clothing and footwear for women, men and kids, and runs a rental service for "
    "tents, skis, snowboards, kayaks and stand-up paddle boards. The repair shop fixes "
    "zippers, seams and buckles, resoles climbing shoes and boots, and tunes skis and bikes. "
    "You help customers with orders, shipping and delivery times, returns and exchanges, "
    "refunds, sizing and fit, product care, warranty claims, rentals, repairs, gift cards, "
    "price matching and the Summit Rewards membership. You can look up general policies but "
    "not a customer's payment details. Members get free standard shipping, a 10% dividend "
    "each spring and early access to the garage sale. Orders placed before 2 pm Mountain "
    "Time on a business day leave the warehouse the same day. Keep answers short and "
    "friendly, use the customer's name when they give it, and suggest a store visit for "
    "boot fitting or ski binding adjustments. Do not give medical, legal or avalanche-safety "
    "advice beyond pointing to official sources, and do not promise delivery dates that the "
    "carrier has not confirmed."
)

SNIPPETS = (
    KnowledgeSnippet(
        12,
        "Returns and exchanges",
        "You can return most items within 60 days of delivery for a refund to the original "
        "payment method, and Summit Rewards members have a full year. Items must be clean and "
        "unused, except footwear and clothing that turned out not to fit after a short indoor "
        "try-on. Start a return from Orders in your account, print the prepaid label and drop "
        "the parcel at any UPS location, or bring it to one of our stores with the receipt or "
        "order number. Exchanges for a different size or color ship free once we scan the "
        "returned item. Refunds are issued within 5 business days of the return reaching our "
        "warehouse; your bank may need a few more days to show them. Used rental gear, custom "
        "ski boots and gift cards cannot be returned.",
    ),
    KnowledgeSnippet(
        7,
        "Shipping times and costs",
        "Standard shipping within the contiguous United States takes 3 to 5 business days and "
        "is free on orders over $75 and for all Summit Rewards members; below that it costs "
        "$7.95. Express shipping takes 2 business days and costs $19.95, and overnight "
        "delivery costs $34.95 when ordered before 2 pm Mountain Time. Orders to Alaska, "
        "Hawaii and APO addresses take 7 to 10 business days. We ship to Canada with duties "
        "and taxes paid at checkout, usually within 6 business days. Oversized items such as "
        "kayaks, bikes and roof boxes ship by freight and need a signature. You get a tracking "
        "link by email as soon as the carrier scans your parcel, usually on the evening after "
        "it leaves the warehouse.",
    ),
    KnowledgeSnippet(
        31,
        "Boot sizing and fit",
        "Hiking boots should leave about a thumb's width between your longest toe and the "
        "front of the boot when you stand, and your heel should not lift more than a few "
        "millimetres when you walk uphill. Measure your feet in the evening, when they are "
        "largest, and wear the socks you hike in. Most of our boots run true to size; Alpine "
        "Ridge and Talus models run half a size small, and wide (2E) versions exist for the "
        "Trailhead and Summit Pro lines. If a pair does not fit after an indoor try-on, you "
        "can exchange it for free. Every store offers a free boot fitting with a Brannock "
        "device and heat-moldable insoles, and our staff can stretch leather boots at the toe "
        "box.",
    ),
    KnowledgeSnippet(
        44,
        "Warranty and repairs",
        "Everything we sell is covered against defects in materials and workmanship for two "
        "years, and our own Summit brand for the lifetime of the product. Normal wear and "
        "tear, accidents and damage from improper care are not covered, but our repair shop "
        "can usually fix them at a fair price. To make a claim, send photos of the problem and "
        "your order number through the warranty form, or bring the item to a store. We reply "
        "within 3 business days; approved claims are repaired, replaced or refunded as store "
        "credit. Zipper and seam repairs take about two weeks, resoling takes four to six "
        "weeks, and we ship repaired items back free of charge. Keep the receipt, because "
        "the warranty starts on the date of purchase.",
    ),
)

SUMMARY = (
    "Dana ordered Alpine Ridge hiking boots (size 9) and a Summit Pro 3 tent "
    "in order #48213 on March 3, standard shipping to Boulder. The tent arrived "
    "on March 7; the boots shipped separately and their tracking has not updated since "
    "March 8. The assistant explained standard shipping takes 3 to 5 business days and offered "
    "to open a carrier trace if there is no update by March 12. Dana also asked about "
    "exchanging the boots for size 9.5 because Alpine Ridge runs small; the assistant "
    "confirmed free exchanges and the 60-day return window. Open: the carrier trace, the size "
    "exchange, and whether the tent footprint can be added to the same order."
)

CUSTOMER_SENTENCES = [
    "Hi, I placed an order last week and it still has not arrived.",
    "My order number is #48213 and the tracking page has not changed since Tuesday.",
    "I ordered the Alpine Ridge hiking boots in size 9.",
    "Can I exchange them for a half size larger?",
    "The tent arrived but one of the poles is cracked.",
    "Do I need to print a return label or can I bring it to the store in Denver?",
    "I am leaving for a trip on Friday, so I really need the boots before then.",
    "Is express shipping still possible if I pay the difference?",
    "What happens if the parcel is lost?",
    "I am a Summit Rewards member, does that change anything?",
    "Could you check whether the Talus jacket in medium is in stock?",
    "The zipper on my old rain shell broke, can your repair shop fix it?",
    "How long does a refund take to show up on my credit card?",
    "I used a gift card for part of the order.",
    "Thanks, that helps.",
    "Also, can I add the tent footprint to the same order?",
    "The email said it would be delivered yesterday but nothing came.",
    "Can you send the replacement pole instead of a whole new tent?",
    "I would rather not wait two weeks for a repair.",
    "Is there a way to speak to someone at the Boulder store?",
    "Okay.",
    "Great, thank you so much.",
    "One more question about the warranty.",
    "I bought the sleeping bag two years ago and the baffles are tearing.",
]

ANSWER_SENTENCES = [
    "Thanks for the details, I can help with that.",
    "Standard shipping takes 3 to 5 business days after your order leaves the warehouse.",
    "Your tracking link can lag a day behind the carrier's own scans, so a pause of a day or "
    "two is normal.",
    "If there is still no update by Thursday, reply here and I will ask the carrier to open a "
    "trace on the parcel [#7].",
    "You can exchange the boots for a different size for free within 60 days [#12].",
    "Start the exchange from Orders in your account and print the prepaid label, or bring "
    "the boots to any of our stores with your order number.",
    "Alpine Ridge boots run about half a size small, so a 9.5 is a good choice [#31].",
    "A cracked pole counts as a defect, which our warranty covers for two years [#44].",
    "Please send a photo of the pole and your order number through the warranty form, and "
    "we will ship a replacement pole free of charge.",
    "As a Summit Rewards member you get free standard shipping and a full year for returns.",
    "Express shipping takes 2 business days and costs $19.95, but it cannot be added to an "
    "order that has already shipped [#7].",
    "Refunds are issued within 5 business days of the return reaching our warehouse; your "
    "bank may need a few more days to show them [#12].",
    "The part you paid with a gift card is refunded to a new gift card.",
    "Our repair shop can replace the zipper in about two weeks, and we ship the shell back "
    "free of charge [#44].",
    "I cannot see live stock levels, but the product page shows availability for each store.",
    "If you prefer, I can connect you with a member of our team.",
    "Is there anything else I can help you with?",
    "I am sorry the delivery is taking longer than expected.",
    "Items that are already packed cannot be added to an order, but the footprint ships free "
    "on its own because you are a member.",
    "Tearing baffles after two years of normal use may be wear and tear rather than a defect, "
    "so the repair shop will look at it first [#44].",
]


def text_of(rng: random.Random, pool: list[str], low: int, high: int) -> str:
    """Sentences from `pool`, no repeats, until the text has low..high words."""
    chosen: list[str] = []
    words = 0
    while True:
        fitting = [s for s in pool if s not in chosen and words + len(s.split()) <= high]
        if not fitting or (words >= low and rng.random() < 0.4):
            break
        sentence = rng.choice(fitting)
        chosen.append(sentence)
        words += len(sentence.split())
    return " ".join(chosen)


def prompt_tokens(history: list[tuple[str, str]], summary: str) -> tuple[int, int]:
    built = build_prompt(
        PromptParts(
            site_name=SITE_NAME,
            scope=SCOPE,
            language="en",
            snippets=SNIPPETS,
            few_shot=(),
            summary=summary,
            history=tuple(history),
            model=MODEL,
            max_tokens=MAX_TOKENS,
            tools_enabled=True,
        )
    )
    return built.prompt_tokens, len(history) - built.dropped_turns


def growth(rows: list[tuple], column: int, first: int, last: int) -> str:
    a, b = rows[first - 1][column], rows[last - 1][column]
    return f"{b - a:+d} tokens ({(b - a) / a:+.0%})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=40)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    history_turns = settings.HELPDESK_HISTORY_TURNS
    trigger = settings.HELPDESK_SUMMARY_TRIGGER
    keep = settings.HELPDESK_SUMMARY_KEEP
    budget = getattr(settings, "HELPDESK_PROMPT_BUDGET", DEFAULT_PROMPT_BUDGET)
    rng = random.Random(args.seed)

    messages: list[tuple[str, str]] = []  # (role, text), oldest first
    summarized = 0  # messages folded into the summary so far (bots.summary: upto_seq)
    summary = ""
    rows = []
    for turn in range(1, args.turns + 1):
        messages.append(("user", text_of(rng, CUSTOMER_SENTENCES, 15, 40)))
        with override_settings(HELPDESK_PROMPT_BUDGET=FULL_BUDGET):
            full, full_n = prompt_tokens(messages, "")
        capped, capped_n = prompt_tokens(messages[-history_turns:], "")
        with_summary, summary_n = prompt_tokens(messages[summarized:][-history_turns:], summary)
        rows.append((turn, full, capped, with_summary, full_n, capped_n, summary_n, summary))
        messages.append(("assistant", text_of(rng, ANSWER_SENTENCES, 40, 90)))
        # After the answer is stored: bots.summary.schedule_summary_if_due, and the task.
        if len(messages) - summarized >= trigger:
            summarized = len(messages) - keep
            summary = SUMMARY

    words = [len(text.split()) for _role, text in messages]
    count = tokens.encoding_for(MODEL).count
    print(
        f"prompt tokens per turn, one {args.turns}-turn conversation ({MODEL}, "
        f"max_tokens={MAX_TOKENS}, {tokens.TOKENIZER_NAME}); customer messages "
        f"{min(words[0::2])}-{max(words[0::2])} words, answers {min(words[1::2])}-"
        f"{max(words[1::2])} words; scope {len(SCOPE.split())} words, {len(SNIPPETS)} articles "
        f"of ~{sum(len(s.body.split()) for s in SNIPPETS) // len(SNIPPETS)} words, summary "
        f"{len(SUMMARY.split())} words ({count(SUMMARY)} tokens)"
    )
    print(
        f"HELPDESK_HISTORY_TURNS={history_turns}, HELPDESK_SUMMARY_TRIGGER={trigger}, "
        f"HELPDESK_SUMMARY_KEEP={keep}; full history is built with HELPDESK_PROMPT_BUDGET="
        f"{FULL_BUDGET} so the budget does not hide its growth, the others with the default "
        f"budget ({budget})"
    )
    print()
    print(f"{'turn':>4}  {'full history':>12}  {'capped':>8}  {'summary':>8}   history messages")
    print(f"{'':>4}  {'':>12}  {'no summ.':>8}  {'':>8}   full/capped/summary")
    for turn, full, capped, with_summary, full_n, capped_n, summary_n, text in rows:
        messages_kept = f"{full_n}/{capped_n}/{summary_n}" + (" + summary" if text else "")
        print(f"{turn:>4}  {full:>12}  {capped:>8}  {with_summary:>8}   {messages_kept}")
    if len(rows) >= 40:
        print()
        print(
            f"growth turn 20 -> 40:  full history {growth(rows, 1, 20, 40)};  "
            f"capped, no summary {growth(rows, 2, 20, 40)};  with summary "
            f"{growth(rows, 3, 20, 40)}"
        )


if __name__ == "__main__":
    main()
