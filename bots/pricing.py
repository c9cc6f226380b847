"""What a call costs: a per-model price table, in US dollars per million tokens."""

import json
from decimal import Decimal
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

# (input, output) per 1M tokens, from the providers' public price lists. Unknown models,
# such as a self-hosted one, cost nothing unless HELPDESK_PRICES names them.
DEFAULT_PRICES: dict[str, tuple[str, str]] = {
    "gpt-4o-mini": ("0.15", "0.60"),
    "gpt-4o": ("2.50", "10.00"),
    "gpt-4.1-nano": ("0.10", "0.40"),
    "gpt-4.1-mini": ("0.40", "1.60"),
    "gpt-4.1": ("2.00", "8.00"),
    "gpt-3.5-turbo": ("0.50", "1.50"),
    "text-embedding-3-small": ("0.02", "0"),
    "omni-moderation-latest": ("0", "0"),
}
MILLION = Decimal(1_000_000)


@cache
def _price_table(raw: str) -> dict[str, tuple[Decimal, Decimal]]:
    table = {name: (Decimal(i), Decimal(o)) for name, (i, o) in DEFAULT_PRICES.items()}
    if raw:
        try:
            extra = json.loads(raw)
            table.update(
                {name: (Decimal(str(i)), Decimal(str(o))) for name, (i, o) in extra.items()}
            )
        except (ValueError, TypeError, AttributeError) as exc:
            raise ImproperlyConfigured(
                'HELPDESK_PRICES must be JSON like {"my-model": [0.5, 1.5]} '
                "(dollars per million input and output tokens)"
            ) from exc
    return table


def price_of(model: str) -> tuple[Decimal, Decimal]:
    table = _price_table(settings.HELPDESK_PRICES)
    if model not in table and "/" in model:
        # Gateways name models "openai/gpt-4o"; the price is the model's own.
        model = model.rsplit("/", 1)[1]
    if model in table:
        return table[model]
    # Dated snapshots ("gpt-4o-mini-2024-07-18") cost what their family costs.
    family = max((name for name in table if model.startswith(name + "-")), key=len, default=None)
    return table[family] if family else (Decimal(0), Decimal(0))


def cost_of(model: str, prompt_tokens: int, completion_tokens: int) -> Decimal:
    price_in, price_out = price_of(model)
    cost = (price_in * prompt_tokens + price_out * completion_tokens) / MILLION
    return cost.quantize(Decimal("0.000001"))


def check_price_table() -> None:
    """Raise ImproperlyConfigured for a malformed HELPDESK_PRICES (run at start)."""
    _price_table(settings.HELPDESK_PRICES)
