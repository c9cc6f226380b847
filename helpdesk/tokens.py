"""Signed visitor tokens: the frame keeps one, and it alone reopens that visitor's chats."""

import uuid

from django.conf import settings
from django.core import signing

SALT = "helpdesk.visitor"


def make_visitor_token(*, site_id: int, visitor_uid: uuid.UUID) -> str:
    return signing.dumps({"s": site_id, "v": str(visitor_uid)}, salt=SALT)


def read_visitor_token(token: object, *, site_id: int) -> uuid.UUID | None:
    """The visitor uid in a valid token for this site, or None for anything else."""
    if not isinstance(token, str) or not token or len(token) > 500:
        return None
    try:
        payload = signing.loads(token, salt=SALT, max_age=settings.HELPDESK_VISITOR_TOKEN_MAX_AGE)
    except signing.BadSignature:
        return None
    if not isinstance(payload, dict) or payload.get("s") != site_id:
        return None
    try:
        return uuid.UUID(str(payload.get("v")))
    except ValueError:
        return None
