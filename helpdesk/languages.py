from django.conf import settings
from django.utils.translation import get_supported_language_variant


def supported_language(code: str) -> str:
    """A browser language ("zh-CN", "en-GB") as one of settings.LANGUAGES, or the default."""
    if not code:
        return settings.LANGUAGE_CODE
    try:
        return get_supported_language_variant(code.strip().lower()[:16])
    except LookupError:
        return settings.LANGUAGE_CODE
