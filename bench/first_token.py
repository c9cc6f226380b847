"""First-token latency through the real websocket consumer, against the fake LLM server.

Starts Helpdesk under uvicorn in a subprocess (its own database, the fake OpenAI-compatible
server with zero delay as its LLM, in another subprocess), opens real websockets, and for
each turn measures:
  ack    - message frame sent -> ack received (validated, stored, committed)
  first  - message frame sent -> first delta of the answer received
  done   - message frame sent -> done frame received
  llm    - the LLM call's time to its first chunk, as the audit log has it: from the call to
           the model's first text, so the SDK's request building, the loopback HTTP and the
           fake server's own work
  engine - first minus llm: what the engine adds before the first token (redaction,
           moderation round trip to the stub, curated/cache lookups, retrieval, prompt
           building, DB writes, channel layer)
  after  - engine minus ack: what is added once the customer's message is stored and acked
           (the escalation policy, the turn read, prompt building, the answer's row, relay)
  opener - engine, of each conversation's first message only (it opens the conversation:
           more statements, its webhooks, its response-cache lookup)
  follow - engine, of the other messages
  rtt    - ping frame sent -> pong received, through the same consumer after the same pause:
           the websocket's own round trip (client, loopback, uvicorn, the consumer's
           dispatch), which every row above includes; measured after the turns, on one
           connection, up to 200 times
Prints median, p90, p99 and max in milliseconds.

    .venv/bin/python bench/first_token.py [--turns 1000] [--conversations 50] [--articles 200]
        [--pause-ms 50] [--fake-llm-in-process]

The site gets --articles knowledge-base articles; questions vary so the response cache
does not answer them.

Uses DATABASE_URL / REDIS_URL when set (PostgreSQL / Redis channel layer), else a temporary
SQLite file and the in-memory layer.
"""

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fake_llm import FakeLLMServer, Reply  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def report(name: str, values: list[float]) -> str:
    return (
        f"{name:<6} n={len(values):<5} median={statistics.median(values):7.2f}  "
        f"p90={percentile(values, 90):7.2f}  p99={percentile(values, 99):7.2f}  "
        f"max={max(values):7.2f}"
    )


async def start_server(env: dict, port: int) -> subprocess.Popen:
    """Helpdesk under uvicorn in a subprocess, once it accepts connections."""
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "helpdesk.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--lifespan",
            "off",
            "--ws",
            "websockets-sansio",
            "--log-level",
            "warning",
            "--no-access-log",
        ],
        cwd=ROOT,
        env=env,
    )
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server
        except OSError:
            await asyncio.sleep(0.1)
    server.terminate()
    raise RuntimeError("uvicorn did not start")


# The server runs as in production: DEBUG off (no per-query logging of SQL).
PRODUCTION_LIKE = {"DJANGO_DEBUG": "0", "DJANGO_SECRET_KEY": "bench-only-" + "x" * 40}


def manage(env: dict, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


WORDS = (
    "shipping returns refund warranty boots jacket tent backpack sizing payment order tracking "
    "exchange delivery customs gift card repair waterproof down sleeping bag climbing rope "
    "pickup store rental price match discount invoice address cancel"
).split()

SEED_ARTICLES = """
import random, sys
from bots.models import Article
from helpdesk.models import Site
words = sys.argv[1].split(",")
site = Site.objects.get(key=sys.argv[2])
rng = random.Random(7)
Article.objects.bulk_create(
    Article(site=site, title=" ".join(rng.sample(words, 3)).title(),
            body=" ".join(rng.choice(words) for _ in range(120)), tags=rng.sample(words, 2))
    for _ in range(int(sys.argv[3]))
)
"""

LLM_FIRST_CHUNK = """
import json
from bots.models import LLMCall
from helpdesk.models import Message
out = {}
for call in LLMCall.objects.filter(kind="chat").select_related("message"):
    question = Message.objects.get(conversation_id=call.message.conversation_id,
                                   seq=call.message.seq - 1)
    out[question.pk] = call.first_token_ms
print(json.dumps(out))
"""


@contextlib.asynccontextmanager
async def synced_widget(url: str, origin: str):
    """A new visitor's widget connection, past its hello."""
    async with websockets.connect(url, origin=origin, max_size=2**20) as ws:
        await ws.send(json.dumps({"type": "hello", "token": None, "after": 0}))
        while json.loads(await ws.recv())["type"] != "synced":
            pass
        yield ws


async def run_conversation(
    url: str, origin: str, turns: int, timings: dict, pause: float = 0.0
) -> None:
    async with synced_widget(url, origin) as ws:
        for n in range(turns):
            started = time.perf_counter()
            words = " ".join(WORDS[(n * 7 + k * 3) % len(WORDS)] for k in range(4))
            text = f"Question {uuid.uuid4().hex[:6]} about {words}?"
            frame = {"type": "message", "id": str(uuid.uuid4()), "text": text}
            await ws.send(json.dumps(frame))
            first = None
            while True:
                received = json.loads(await ws.recv())
                now = (time.perf_counter() - started) * 1000
                if received["type"] == "ack":
                    timings["ack"].append(now)
                    timings["ids"].append(received["message_id"])
                    timings["opens"].append(n == 0)
                elif received["type"] == "delta" and first is None:
                    first = now
                    timings["first"].append(now)
                elif received["type"] == "done":
                    timings["done"].append(now)
                    break
                elif received["type"] == "error":
                    raise RuntimeError(received)
            # The customer reads the answer before asking again; without a pause the next
            # question queues behind the previous answer's bookkeeping (escalation check,
            # summary scheduling), which no customer types fast enough to meet.
            await asyncio.sleep(pause)


async def measure_round_trips(url: str, origin: str, count: int, pause: float) -> list[float]:
    async with synced_widget(url, origin) as ws:
        round_trips = []
        # The connection's first ping also marks the visitor present (a database write).
        for n in range(count + 1):
            await asyncio.sleep(pause)
            started = time.perf_counter()
            await ws.send(json.dumps({"type": "ping"}))
            while json.loads(await ws.recv())["type"] != "pong":
                pass
            if n:
                round_trips.append((time.perf_counter() - started) * 1000)
        return round_trips


REPLY = "Standard shipping takes 3 to 5 business days."


class FakeLLMProcess:
    """The fake LLM server in a process of its own, so that its streaming does not hold
    the interpreter of the client that measures."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.fake_llm", "--reply", REPLY],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.base_url = self.process.stdout.readline().strip()
        if not self.base_url:
            raise RuntimeError("the fake LLM server did not start")

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=10)


def start_fake_llm(*, in_process: bool):
    if not in_process:
        return FakeLLMProcess()
    llm = FakeLLMServer().start()
    llm.default_reply = Reply(text=REPLY)
    return llm


async def main_async(args) -> None:
    timings: dict[str, list] = {"ack": [], "first": [], "done": [], "ids": [], "opens": []}
    llm = start_fake_llm(in_process=args.fake_llm_in_process)
    tmp = tempfile.mkdtemp(prefix="helpdesk-bench-")
    port = free_port()
    env = {
        **os.environ,
        "HELPDESK_VAR_DIR": tmp,
        "OPENAI_BASE_URL": llm.base_url,
        "OPENAI_API_KEY": "bench",
        "HELPDESK_RATE_LIMIT_MESSAGES": "100000",
        "HELPDESK_LOG_LEVEL": "WARNING",
        **PRODUCTION_LIKE,
    }
    if "DATABASE_URL" in os.environ:
        env["DATABASE_URL"] = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/helpdesk_bench"
        subprocess.run(
            ["dropdb", "--if-exists", "-h", "127.0.0.1", "-U", "postgres", "helpdesk_bench"],
            check=True,
        )
        subprocess.run(
            ["createdb", "-h", "127.0.0.1", "-U", "postgres", "helpdesk_bench"], check=True
        )
    manage(env, "migrate", "--noinput", "-v", "0")
    origin = "https://shop.example"
    key = manage(env, "createsite", "Bench", "--origin", origin).strip().splitlines()[-1]
    manage(
        env,
        "shell",
        "-c",
        SEED_ARTICLES.replace("sys.argv[1]", repr(",".join(WORDS)))
        .replace("sys.argv[2]", repr(key))
        .replace("sys.argv[3]", repr(str(args.articles))),
    )
    server = await start_server(env, port)
    try:
        url = f"ws://127.0.0.1:{port}/ws/widget/{key}/"
        per_conversation = max(1, args.turns // args.conversations)
        # Warm-up: the first turn pays for imports and connection setup.
        warm_up = {"ack": [], "first": [], "done": [], "ids": [], "opens": []}
        await run_conversation(url, origin, 3, warm_up)
        started = time.perf_counter()
        for _ in range(args.conversations):
            await run_conversation(url, origin, per_conversation, timings, args.pause_ms / 1000)
        elapsed = time.perf_counter() - started
        timings["rtt"] = await measure_round_trips(
            url, origin, min(200, args.turns), args.pause_ms / 1000
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
        llm.stop()
    llm_first = json.loads(manage(env, "shell", "-c", LLM_FIRST_CHUNK).strip().splitlines()[-1])
    # The warm-up turns are not in timings["ids"], so they drop out here.
    turns = [
        (first, ack, llm_first[str(message_id)], opens)
        for message_id, first, ack, opens in zip(
            timings["ids"], timings["first"], timings["ack"], timings["opens"], strict=True
        )
        if str(message_id) in llm_first
    ]
    timings["llm"] = [llm for _first, _ack, llm, _opens in turns]
    timings["engine"] = [first - llm for first, _ack, llm, _opens in turns]
    timings["after"] = [first - ack - llm for first, ack, llm, _opens in turns]
    timings["opener"] = [first - llm for first, _ack, llm, opens in turns if opens]
    timings["follow"] = [first - llm for first, _ack, llm, opens in turns if not opens]
    database = "PostgreSQL" if "DATABASE_URL" in os.environ else "SQLite"
    layer = "Redis" if "REDIS_URL" in os.environ else "in-memory"
    print(
        f"first-token latency through the websocket ({database}, {layer} channel layer, "
        f"fake LLM with zero delay, {args.conversations} conversations, "
        f"{len(timings['done'])} turns in {elapsed:.1f} s), milliseconds:"
    )
    for name in ("ack", "first", "llm", "engine", "after", "done", "opener", "follow", "rtt"):
        print(report(name, timings[name]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--articles", type=int, default=200)
    parser.add_argument(
        "--pause-ms", type=float, default=50, help="pause after each answer (0: ask at once)"
    )
    parser.add_argument(
        "--fake-llm-in-process",
        action="store_true",
        help="serve the fake LLM from this process's threads, as before 2026-12-02 (its "
        "streaming then delays the client's reading of the deltas it measures)",
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
