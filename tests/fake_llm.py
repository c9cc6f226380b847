"""A fake OpenAI-compatible LLM server on loopback, for tests and benchmarks.

Usage::

    with FakeLLMServer() as server:
        server.script(Reply(text="Hello there"), Reply(status=429, headers={"retry-after": "0"}))
        client = AsyncOpenAI(api_key="test", base_url=server.base_url)
        ...
        assert server.chat_requests()[0]["model"] == "gpt-4o-mini"

Standard library only. Every chat completion consumes the next scripted `Reply`; when the
script is empty the server answers deterministically with "Fake answer: <last user message>".
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import itertools
import json
import math
import re
import selectors
import socket
import socketserver
import struct
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "DEFAULT_FLAG_WORDS",
    "EMBEDDING_DIMENSIONS",
    "MODEL_IDS",
    "FakeLLMServer",
    "RecordedRequest",
    "Reply",
    "ToolCall",
    "default_chunks",
    "embed_text",
]

EMBEDDING_DIMENSIONS = 64
DEFAULT_FLAG_WORDS: frozenset[str] = frozenset({"kill yourself", "bomb threat"})
MODEL_IDS: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "text-embedding-3-small")
MODERATION_CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
_SELF_HARM_HINTS = ("yourself", "myself", "suicide", "self-harm", "self harm")
_WORDS_PER_CHUNK = 3
_WORD_PATTERN = re.compile(r"\s*\S+\s*")
_ID_COUNTER = itertools.count(1)


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


@dataclass(frozen=True)
class ToolCall:
    """A function call the fake model makes; `arguments` is the raw JSON string."""

    name: str
    arguments: str = "{}"
    id: str = field(default_factory=lambda: _new_id("call_"))


@dataclass
class Reply:
    """One scripted answer to a chat completion request."""

    text: str = ""
    chunks: list[str] | None = None
    tool_calls: Sequence[ToolCall] = ()
    status: int = 200
    error_message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0
    chunk_delay: float = 0
    die_after_chunks: int | None = None
    finish_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def content_pieces(self) -> list[str]:
        """The content deltas to stream: `chunks` if given, else `text` split every few words."""
        return list(self.chunks) if self.chunks is not None else default_chunks(self.text)

    def full_text(self) -> str:
        return "".join(self.chunks) if self.chunks is not None else self.text

    def resolved_finish_reason(self) -> str:
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"

    def resolved_completion_tokens(self) -> int:
        if self.completion_tokens is not None:
            return self.completion_tokens
        generated = self.full_text() + "".join(c.name + c.arguments for c in self.tool_calls)
        return len(generated) // 4 + 1


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the server saw it; `body` is the parsed JSON (None if absent/invalid)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


def default_chunks(text: str) -> list[str]:
    """Split text into pieces of a few words, keeping all whitespace ("".join == text)."""
    words = _WORD_PATTERN.findall(text)
    if not words:
        return [text] if text else []
    return [
        "".join(words[i : i + _WORDS_PER_CHUNK]) for i in range(0, len(words), _WORDS_PER_CHUNK)
    ]


def _split_arguments(arguments: str) -> list[str]:
    """Split a tool call's arguments into 2-3 fragments so clients must reassemble them."""
    if len(arguments) < 2:
        return ["", arguments]
    parts = min(3, len(arguments))
    cuts = [len(arguments) * i // parts for i in range(parts + 1)]
    return [arguments[cuts[i] : cuts[i + 1]] for i in range(parts)]


@lru_cache(maxsize=4096)
def _trigram_slot(trigram: str) -> tuple[int, float]:
    # A stable hash (not hash(), which is salted per process) keeps vectors deterministic.
    digest = hashlib.blake2b(trigram.encode(), digest_size=8).digest()
    return digest[0], 1.0 if digest[1] & 1 else -1.0


@lru_cache(maxsize=1024)
def embed_text(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> tuple[float, ...]:
    """A deterministic unit vector from hashed character trigrams: similar text, similar vector."""
    normalized = "  " + " ".join(text.lower().split()) + " "
    vector = [0.0] * dimensions
    for start in range(len(normalized) - 2):
        slot, sign = _trigram_slot(normalized[start : start + 3])
        vector[slot % dimensions] += sign
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0:
        vector[0], norm = 1.0, 1.0
    return tuple(v / norm for v in vector)


def _message_text(content: Any) -> str:
    """Text of a message's content, which may be a string or a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "") for part in content if isinstance(part, dict) and "text" in part
        )
    return ""


def _estimate_prompt_tokens(messages: Iterable[Any]) -> int:
    total = sum(len(_message_text(m.get("content"))) for m in messages if isinstance(m, dict))
    return total // 4 + 1


def _error_body(status: int, message: str) -> dict[str, Any]:
    if status == 429:
        error_type, code = "requests", "rate_limit_exceeded"
    elif status == 401:
        error_type, code = "invalid_request_error", "invalid_api_key"
    elif status == 404:
        error_type, code = "invalid_request_error", "not_found"
    elif status >= 500:
        error_type, code = "server_error", None
    else:
        error_type, code = "invalid_request_error", None
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


class _Server(ThreadingHTTPServer):
    # Daemon handler threads are not joined by server_close(), which would hang on idle
    # keep-alive connections; stop() closes those sockets itself.
    daemon_threads = True
    fake: FakeLLMServer

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn) we don't need.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (timeouts, cancelled streams) are routine here.
        return


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Without this, Nagle + delayed ACK can add ~40 ms to small writes.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.fake._track_connection(self.connection)

    def finish(self) -> None:
        self.server.fake._untrack_connection(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            self.server.fake._handle(self)
        except OSError:
            # The client went away (timeout, cancelled stream); nothing left to answer.
            self.close_connection = True

    def read_body(self) -> bytes:
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def encode_head(self, status: int, headers: dict[str, str]) -> bytes:
        """The status line and headers, encoded; callers send them together with the body."""
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        lines = [f"HTTP/1.1 {status} {phrase}"]
        lines.extend(f"{name}: {value}" for name, value in headers.items())
        if self.close_connection:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        head = self.encode_head(
            status,
            {
                "Content-Type": "application/json",
                "Content-Length": str(len(body)),
                "x-request-id": f"req_fake_{next(_ID_COUNTER)}",
                **(headers or {}),
            },
        )
        self.wfile.write(head + body)


@dataclass
class _Running:
    httpd: _Server
    thread: threading.Thread
    wake_reader: socket.socket
    wake_writer: socket.socket


class FakeLLMServer:
    """An OpenAI-compatible HTTP server on 127.0.0.1 with scripted chat replies."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.default_reply: Reply | None = None
        self.flag_words: set[str] = set(DEFAULT_FLAG_WORDS)
        # Seconds the moderation endpoint takes to answer.
        self.moderation_delay: float = 0
        self.base_url = ""
        self.port = 0
        self._script: deque[Reply] = deque()
        self._routed: list[tuple[Callable[[dict[str, Any]], bool], deque[Reply]]] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._running: _Running | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeLLMServer:
        """Bind an OS-chosen port on 127.0.0.1 and serve in a daemon thread."""
        if self._running is not None:
            raise RuntimeError("FakeLLMServer already started")
        self._stopping.clear()
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.fake = self
        self.port = httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        wake_reader, wake_writer = socket.socketpair()
        thread = threading.Thread(
            target=self._serve, args=(httpd, wake_reader), name=f"fake-llm-{self.port}", daemon=True
        )
        self._running = _Running(httpd, thread, wake_reader, wake_writer)
        thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, wake every waiting handler and close open (keep-alive) sockets."""
        running, self._running = self._running, None
        if running is None:
            return
        self._stopping.set()
        running.wake_writer.send(b"x")
        running.thread.join(timeout=5)
        running.httpd.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            # Unblocks handler threads waiting to read the next keep-alive request.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        running.wake_reader.close()
        running.wake_writer.close()

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(self, httpd: _Server, wake_reader: socket.socket) -> None:
        # Our own accept loop (instead of serve_forever's 0.5 s polling) so stop() is instant.
        with selectors.DefaultSelector() as selector:
            selector.register(httpd, selectors.EVENT_READ)
            selector.register(wake_reader, selectors.EVENT_READ)
            while not self._stopping.is_set():
                ready = selector.select()
                if self._stopping.is_set():
                    return
                for key, _ in ready:
                    if key.fileobj is httpd:
                        httpd.handle_request()

    def _track_connection(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)
        if self._stopping.is_set():
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def _untrack_connection(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    # -- scripting and records -------------------------------------------------------------

    def script(self, *replies: Reply) -> None:
        """Queue replies; each chat completion request consumes the next one."""
        with self._lock:
            self._script.extend(replies)

    def script_for(self, wants: Callable[[dict[str, Any]], bool], *replies: Reply) -> None:
        """Queue replies for the chat completion requests whose JSON body `wants`; they go
        before the general script, so concurrent callers each get their own answers."""
        with self._lock:
            self._routed.append((wants, deque(replies)))

    def pending_replies(self) -> int:
        """How many scripted replies have not been consumed yet."""
        with self._lock:
            return len(self._script)

    def chat_requests(self) -> list[Any]:
        """JSON bodies of the chat completion requests received so far, oldest first."""
        with self._lock:
            return [
                r.body
                for r in self.requests
                if r.method == "POST" and r.path == "/v1/chat/completions" and r.body is not None
            ]

    def reset(self) -> None:
        """Forget recorded requests and scripted replies; restore default configuration."""
        with self._lock:
            self.requests.clear()
            self._script.clear()
            self._routed.clear()
            self.default_reply = None
            self.flag_words = set(DEFAULT_FLAG_WORDS)
            self.moderation_delay = 0

    def _next_reply(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            for wants, replies in self._routed:
                if replies and wants(body):
                    return replies.popleft()
            if self._script:
                return self._script.popleft()
        if self.default_reply is not None:
            return self.default_reply
        messages = body.get("messages") or []
        user_texts = [
            _message_text(m.get("content"))
            for m in messages
            if isinstance(m, dict) and m.get("role") == "user"
        ]
        return Reply(text=f"Fake answer: {user_texts[-1] if user_texts else ''}")

    # -- request handling ------------------------------------------------------------------

    def _handle(self, handler: _Handler) -> None:
        path = urlsplit(handler.path).path
        raw = handler.read_body()
        headers = {name.lower(): value for name, value in handler.headers.items()}
        body: Any = None
        malformed = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                malformed = True
        with self._lock:
            self.requests.append(RecordedRequest(handler.command, path, headers, body))

        if malformed:
            handler.send_json(400, _error_body(400, "We could not parse the JSON body."))
            return
        route = (handler.command, path.rstrip("/"))
        if route == ("GET", "/v1/models"):
            self._send_models(handler)
            return
        endpoint = {
            ("POST", "/v1/chat/completions"): self._chat_completion,
            ("POST", "/v1/embeddings"): self._embeddings,
            ("POST", "/v1/moderations"): self._moderations,
        }.get(route)
        if endpoint is None:
            message = f"Unknown request URL: {handler.command} {path}"
            handler.send_json(404, _error_body(404, message))
        elif not isinstance(body, dict):
            handler.send_json(400, _error_body(400, "Expected a JSON object body."))
        else:
            endpoint(handler, body)

    def _wait(self, seconds: float) -> None:
        # Event.wait instead of sleep so stop() interrupts scripted delays.
        if seconds > 0:
            self._stopping.wait(seconds)

    def _send_models(self, handler: _Handler) -> None:
        created = int(time.time())
        data = [
            {"id": model, "object": "model", "created": created, "owned_by": "fake-llm"}
            for model in MODEL_IDS
        ]
        handler.send_json(200, {"object": "list", "data": data})

    def _chat_completion(self, handler: _Handler, body: dict[str, Any]) -> None:
        reply = self._next_reply(body)
        self._wait(reply.delay)
        if self._stopping.is_set():
            handler.close_connection = True
            return
        if reply.status != 200:
            message = reply.error_message or f"Fake error {reply.status}"
            handler.send_json(reply.status, _error_body(reply.status, message), reply.headers)
            return
        model = str(body.get("model") or MODEL_IDS[0])
        prompt_tokens = (
            reply.prompt_tokens
            if reply.prompt_tokens is not None
            else _estimate_prompt_tokens(body.get("messages") or [])
        )
        completion_tokens = reply.resolved_completion_tokens()
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if body.get("stream"):
            stream_options = body.get("stream_options") or {}
            include_usage = bool(stream_options.get("include_usage"))
            self._stream_completion(handler, reply, model, usage if include_usage else None)
            return
        tool_calls = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in reply.tool_calls
        ]
        text = reply.full_text()
        message: dict[str, Any] = {
            "role": "assistant",
            "content": text if text or not tool_calls else None,
            "refusal": None,
        }
        if tool_calls:
            message["tool_calls"] = tool_calls
        payload = {
            "id": _new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": reply.resolved_finish_reason(),
                }
            ],
            "usage": usage,
        }
        handler.send_json(200, payload, reply.headers)

    def _stream_completion(
        self, handler: _Handler, reply: Reply, model: str, usage: dict[str, int] | None
    ) -> None:
        completion_id = _new_id("chatcmpl-")
        created = int(time.time())

        def frame(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            chunk = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": choices,
                **extra,
            }
            data = b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"
            return b"%x\r\n%s\r\n" % (len(data), data)

        def delta(payload: dict[str, Any], finish_reason: str | None = None) -> bytes:
            choice = {
                "index": 0,
                "delta": payload,
                "logprobs": None,
                "finish_reason": finish_reason,
            }
            return frame([choice])

        head = handler.encode_head(
            200,
            {
                "Content-Type": "text/event-stream",
                "Transfer-Encoding": "chunked",
                "Cache-Control": "no-cache",
                "x-request-id": f"req_fake_{next(_ID_COUNTER)}",
                **reply.headers,
            },
        )
        pieces = reply.content_pieces()
        content_frames = [delta({"content": piece}) for piece in pieces]
        tool_frames: list[bytes] = []
        for index, call in enumerate(reply.tool_calls):
            first, *rest = _split_arguments(call.arguments)
            function = {"name": call.name, "arguments": first}
            tool_frames.append(
                delta(
                    {
                        "tool_calls": [
                            {
                                "index": index,
                                "id": call.id,
                                "type": "function",
                                "function": function,
                            }
                        ]
                    }
                )
            )
            tool_frames.extend(
                delta({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
                for fragment in rest
            )
        done = b"data: [DONE]\n\n"
        # Finish reason, usage, [DONE] and the last chunk go out together as one write.
        tail = delta({}, reply.resolved_finish_reason())
        if usage is not None:
            tail += frame([], usage=usage)
        tail += b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done)

        first = head + delta({"role": "assistant", "content": ""})
        if reply.die_after_chunks is not None:
            self._send_frames(handler, [first, *content_frames[: reply.die_after_chunks]], reply)
            # Abrupt end: no terminating chunk, no [DONE]; the client sees a truncated body.
            handler.close_connection = True
            handler.wfile.flush()
            handler.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send_frames(handler, [first, *content_frames, *tool_frames, tail], reply)

    def _send_frames(self, handler: _Handler, frames: list[bytes], reply: Reply) -> None:
        if reply.chunk_delay <= 0:
            handler.wfile.write(b"".join(frames))
            return
        for number, data in enumerate(frames):
            if number:
                self._wait(reply.chunk_delay)
                if self._stopping.is_set():
                    handler.close_connection = True
                    return
            handler.wfile.write(data)

    def _embeddings(self, handler: _Handler, body: dict[str, Any]) -> None:
        raw_input = body.get("input")
        inputs = raw_input if isinstance(raw_input, list) else [raw_input]
        # Token-array inputs (lists of ints) are embedded by their textual form.
        if inputs and all(isinstance(x, int) for x in inputs):
            inputs = [inputs]
        texts = [x if isinstance(x, str) else " ".join(map(str, x or [])) for x in inputs]
        dimensions = body.get("dimensions")
        if not isinstance(dimensions, int) or dimensions <= 0:
            dimensions = EMBEDDING_DIMENSIONS
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = embed_text(text, dimensions)
            embedding: Any = (
                base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
                if as_base64
                else list(vector)
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(text) // 4 + 1 for text in texts)
        handler.send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": str(body.get("model") or "text-embedding-3-small"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def _moderation_result(self, text: str) -> dict[str, Any]:
        lowered = text.lower()
        flagged_categories: set[str] = set()
        for word in list(self.flag_words):
            if word.lower() in lowered:
                if any(hint in word.lower() for hint in _SELF_HARM_HINTS):
                    flagged_categories.update({"self-harm", "self-harm/intent"})
                else:
                    flagged_categories.add("violence")
        return {
            "flagged": bool(flagged_categories),
            "categories": {name: name in flagged_categories for name in MODERATION_CATEGORIES},
            "category_scores": {
                name: 0.97 if name in flagged_categories else 0.0001
                for name in MODERATION_CATEGORIES
            },
            "category_applied_input_types": {name: ["text"] for name in MODERATION_CATEGORIES},
        }

    def _moderations(self, handler: _Handler, body: dict[str, Any]) -> None:
        raw_input = body.get("input")
        inputs = raw_input if isinstance(raw_input, list) else [raw_input]
        texts = [
            item if isinstance(item, str) else _message_text([item]) if item is not None else ""
            for item in inputs
        ]
        self._wait(self.moderation_delay)
        handler.send_json(
            200,
            {
                "id": _new_id("modr-"),
                "model": str(body.get("model") or "omni-moderation-latest"),
                "results": [self._moderation_result(text) for text in texts],
            },
        )


def serve_until_stdin_closes(reply_text: str | None = None) -> None:
    """Serve in this process (a benchmark's own one): print the base URL, then serve until
    stdin closes; every chat completion answers `reply_text` when given."""
    import sys

    with FakeLLMServer() as server:
        if reply_text is not None:
            server.default_reply = Reply(text=reply_text)
        print(server.base_url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="A fake OpenAI-compatible LLM server.")
    parser.add_argument("--reply", help="the text of every chat completion")
    serve_until_stdin_closes(parser.parse_args().reply)
