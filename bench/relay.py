"""Relay latency between a customer and an agent through the real consumers.

Starts Helpdesk under uvicorn in a subprocess, opens --conversations customer websockets that
each ask for a person, has one agent claim and open them all, then sends --messages messages
alternating visitor -> agent and agent -> visitor over random conversations and measures the
time from send to arrival on the other side. Prints median, p90, p99 and max in milliseconds.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/helpdesk REDIS_URL=redis://127.0.0.1:6379/0 \\
        .venv/bin/python bench/relay.py [--conversations 100] [--messages 1000]

Without DATABASE_URL / REDIS_URL it runs on SQLite and the in-memory channel layer.
"""

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import websockets

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.first_token import (  # noqa: E402
    PRODUCTION_LIKE,
    free_port,
    manage,
    report,
    start_server,
)

SETUP = """
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from handoff.models import AgentProfile
from helpdesk.models import Site
site = Site.objects.create(name="Relay", scope="Relay bench.", allowed_origins=["https://shop.example"])
user = get_user_model().objects.create_user("relay-agent", password="x", is_staff=True)
user.groups.add(Group.objects.get_or_create(name="Agents")[0])
AgentProfile.objects.create(user=user).sites.add(site)
client = Client()
client.force_login(user)
print(site.key, client.cookies["sessionid"].value)
"""


async def recv_until(ws, predicate) -> dict:
    while True:
        frame = json.loads(await ws.recv())
        if predicate(frame):
            return frame


async def main_async(args) -> None:
    tmp = tempfile.mkdtemp(prefix="helpdesk-relay-")
    port = free_port()
    env = {
        **os.environ,
        "HELPDESK_VAR_DIR": tmp,
        "HELPDESK_LOG_LEVEL": "WARNING",
        "HELPDESK_RATE_LIMIT_MESSAGES": "1000000",
        **PRODUCTION_LIKE,
    }
    env.pop("OPENAI_API_KEY", None)
    env.pop("OPENAI_BASE_URL", None)
    if "DATABASE_URL" in os.environ:
        env["DATABASE_URL"] = os.environ["DATABASE_URL"].rsplit("/", 1)[0] + "/helpdesk_relay"
        subprocess.run(
            ["dropdb", "--if-exists", "-h", "127.0.0.1", "-U", "postgres", "helpdesk_relay"],
            check=True,
        )
        subprocess.run(
            ["createdb", "-h", "127.0.0.1", "-U", "postgres", "helpdesk_relay"], check=True
        )
    manage(env, "migrate", "--noinput", "-v", "0")
    key, session = manage(env, "shell", "-c", SETUP).strip().splitlines()[-1].split()
    server = await start_server(env, port)
    timings: dict[str, list[float]] = {"visitor->agent": [], "agent->visitor": []}
    try:
        base = f"ws://127.0.0.1:{port}"
        visitors = []
        for _ in range(args.conversations):
            # Each waiting visitor hears of every later handoff (their queue place) and reads
            # none of it until the timed part: an unbounded queue and no keepalive, or the
            # client stops reading its socket and drops the idle connections.
            ws = await websockets.connect(
                f"{base}/ws/widget/{key}/",
                origin="https://shop.example",
                max_queue=None,
                ping_interval=None,
            )
            await ws.send(json.dumps({"type": "hello", "token": None, "after": 0}))
            await recv_until(ws, lambda f: f["type"] == "synced")
            await ws.send(json.dumps({"type": "handoff", "reason": "button"}))
            status = await recv_until(ws, lambda f: f["type"] == "status")
            visitors.append((ws, status["conversation"]))
        agent = await websockets.connect(
            f"{base}/ws/agent/",
            origin=f"http://127.0.0.1:{port}",
            additional_headers={"Cookie": f"sessionid={session}"},
            max_queue=None,
            ping_interval=None,
        )
        await agent.send(json.dumps({"type": "queue"}))
        queue = await recv_until(agent, lambda f: f["type"] == "queue")
        for handoff in queue["handoffs"]:
            await agent.send(json.dumps({"type": "claim", "handoff": handoff["id"]}))
            await recv_until(agent, lambda f: f["type"] in {"claimed", "error"})
            await agent.send(json.dumps({"type": "open", "conversation": handoff["conversation"]}))
            await recv_until(agent, lambda f: f["type"] == "transcript")
        rng = random.Random(3)
        for n in range(args.messages):
            ws, conversation = rng.choice(visitors)
            text = f"message {n} {uuid.uuid4().hex[:8]}"
            if n % 2 == 0:
                started = time.perf_counter()
                await ws.send(
                    json.dumps({"type": "message", "id": str(uuid.uuid4()), "text": text})
                )
                await recv_until(
                    agent, lambda f, t=text: f["type"] == "message" and f["message"]["text"] == t
                )
                timings["visitor->agent"].append((time.perf_counter() - started) * 1000)
            else:
                started = time.perf_counter()
                await agent.send(
                    json.dumps(
                        {
                            "type": "reply",
                            "conversation": conversation,
                            "id": str(uuid.uuid4()),
                            "text": text,
                        }
                    )
                )
                await recv_until(
                    ws, lambda f, t=text: f["type"] == "message" and f["message"]["text"] == t
                )
                timings["agent->visitor"].append((time.perf_counter() - started) * 1000)
        await agent.close()
        for ws, _ in visitors:
            await ws.close()
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            # A hundred sockets closing at once can outlast a graceful stop; the figures are in.
            server.kill()
            server.wait()
    database = "PostgreSQL" if "DATABASE_URL" in os.environ else "SQLite"
    layer = "Redis" if "REDIS_URL" in os.environ else "in-memory"
    print(
        f"relay latency ({database}, {layer} channel layer, {args.conversations} conversations "
        f"open, {args.messages} messages), milliseconds, send -> arrival incl. storing:"
    )
    for name, values in timings.items():
        print(report(name, values))
    print("target: visitor->agent and agent->visitor median under 10 ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conversations", type=int, default=100)
    parser.add_argument("--messages", type=int, default=1000)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
