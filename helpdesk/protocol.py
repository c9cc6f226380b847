"""Validation of the frames a widget sends (docs/protocol.md is the contract)."""

import json
import uuid
from dataclasses import dataclass
from typing import Any

MAX_TEXT_CHARS = 2000
MAX_ATTRIBUTES = 50
MAX_ATTRIBUTE_CHARS = 500


@dataclass
class ProtocolError(Exception):
    code: str
    message: str
    client_id: str | None = None
    # The type of the client frame the error answers, once it is known.
    about: str | None = None


def _require(frame: dict, field: str, kind: type, client_id: str | None = None) -> Any:
    if field not in frame:
        raise ProtocolError("missing_field", f"The field '{field}' is required.", client_id)
    value = frame[field]
    if not isinstance(value, kind):
        raise ProtocolError("invalid_field", f"The field '{field}' has the wrong type.", client_id)
    return value


def _sequence(frame: dict, field: str) -> int:
    value = frame.get(field, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError("invalid_field", f"The field '{field}' must be a whole number ≥ 0.")
    return value


def _parse_message(frame: dict) -> dict:
    raw_id = _require(frame, "id", str)
    try:
        client_id = uuid.UUID(raw_id)
    except ValueError:
        raise ProtocolError("invalid_field", "The field 'id' must be a UUID.") from None
    text = _require(frame, "text", str, raw_id).strip()
    if not text:
        raise ProtocolError("invalid_field", "The message is empty.", raw_id)
    if len(text) > MAX_TEXT_CHARS:
        raise ProtocolError(
            "invalid_field", f"The message is longer than {MAX_TEXT_CHARS} characters.", raw_id
        )
    return {"type": "message", "id": client_id, "text": text}


def _parse_hello(frame: dict) -> dict:
    token = frame.get("token")
    if token is not None and not isinstance(token, str):
        raise ProtocolError("invalid_field", "The field 'token' must be a string or null.")
    language = frame.get("language") or ""
    page_url = frame.get("page_url") or ""
    if not isinstance(language, str) or not isinstance(page_url, str):
        raise ProtocolError("invalid_field", "The fields 'language' and 'page_url' are strings.")
    return {
        "type": "hello",
        "token": token,
        "after": _sequence(frame, "after"),
        "language": language[:16],
        "page_url": page_url[:2000] if page_url.startswith(("http://", "https://")) else "",
    }


def _parse_attributes(frame: dict) -> dict:
    attributes = _require(frame, "attributes", dict)
    if len(attributes) > MAX_ATTRIBUTES:
        raise ProtocolError("invalid_field", f"At most {MAX_ATTRIBUTES} attributes.")
    clean = {}
    for name, value in attributes.items():
        if not isinstance(value, str | int | float | bool):
            raise ProtocolError(
                "invalid_field", f"The attribute '{name[:50]}' must be a string, number or boolean."
            )
        clean[name[:100]] = value[:MAX_ATTRIBUTE_CHARS] if isinstance(value, str) else value
    return {"type": "attributes", "attributes": clean}


def _parse_feedback(frame: dict) -> dict:
    message_id = _require(frame, "message_id", int)
    if isinstance(message_id, bool) or message_id <= 0:
        raise ProtocolError("invalid_field", "The field 'message_id' must be a message id.")
    if "vote" not in frame:
        raise ProtocolError("missing_field", "The field 'vote' is required.")
    vote = frame["vote"]
    if vote not in ("up", "down", None):
        raise ProtocolError("invalid_field", 'The field \'vote\' must be "up", "down" or null.')
    return {"type": "feedback", "message_id": message_id, "vote": vote}


def _parse_handoff(frame: dict) -> dict:
    reason = frame.get("reason") or "button"
    if not isinstance(reason, str):
        raise ProtocolError("invalid_field", "The field 'reason' must be a string.")
    return {"type": "handoff", "reason": reason[:50]}


def _parse_typing(frame: dict) -> dict:
    active = frame.get("active")
    if not isinstance(active, bool):
        raise ProtocolError("invalid_field", "The field 'active' must be true or false.")
    return {"type": "typing", "active": active}


def _parse_contact(frame: dict) -> dict:
    email = _require(frame, "email", str).strip()
    if not email or len(email) > 254:
        raise ProtocolError("invalid_field", "The field 'email' must be an e-mail address.")
    return {"type": "contact", "email": email}


def _parse_rating(frame: dict) -> dict:
    score = _require(frame, "score", int)
    if isinstance(score, bool) or not 1 <= score <= 5:
        raise ProtocolError("invalid_field", "The field 'score' must be a whole number 1 to 5.")
    comment = frame.get("comment") or ""
    if not isinstance(comment, str) or len(comment) > 2000:
        raise ProtocolError("invalid_field", "The comment must be text of at most 2000 characters.")
    return {"type": "rating", "score": score, "comment": comment.strip()}


PARSERS = {
    "typing": _parse_typing,
    "contact": _parse_contact,
    "rating": _parse_rating,
    "feedback": _parse_feedback,
    "handoff": _parse_handoff,
    "hello": _parse_hello,
    "message": _parse_message,
    "resume": lambda frame: {"type": "resume", "after": _sequence(frame, "after")},
    "attributes": _parse_attributes,
    "ping": lambda frame: {"type": "ping"},
}


def parse_client_frame(raw: str) -> dict:
    """A validated frame as a dict, or ProtocolError naming what is wrong."""
    try:
        frame = json.loads(raw)
    except ValueError:
        raise ProtocolError("invalid_json", "The frame is not valid JSON.") from None
    if not isinstance(frame, dict):
        raise ProtocolError("invalid_json", "The frame must be a JSON object.")
    frame_type = frame.get("type")
    parser = PARSERS.get(frame_type) if isinstance(frame_type, str) else None
    if parser is None:
        raise ProtocolError("unknown_type", f"Unknown frame type {str(frame_type)[:40]!r}.")
    try:
        return parser(frame)
    except ProtocolError as error:
        error.about = frame_type
        raise
