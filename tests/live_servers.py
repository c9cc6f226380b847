"""Real servers for browser tests: Helpdesk over uvicorn, and a third-party page elsewhere."""

import functools
import http.server
import threading
import time
from pathlib import Path

import uvicorn

from helpdesk import consumers
from helpdesk.asgi import application


class ASGITestServer:
    """Helpdesk's ASGI app (HTTP and websockets) on a free loopback port, in a thread.

    A thread rather than a subprocess, so the server shares the test's settings and test
    database; tests that use it need `transactional_db`, since they commit what it reads.
    """

    def __init__(self) -> None:
        config = uvicorn.Config(
            application,
            host="127.0.0.1",
            port=0,
            lifespan="off",
            ws="websockets-sansio",
            log_level="warning",
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""

    def start(self) -> "ASGITestServer":
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the ASGI test server did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def wait_idle(self, timeout: float = 10) -> None:
        """Wait until every connection's ASGI app has returned.

        Channels keeps one channel layer per process, and the Redis layer refuses a receive
        from a second event loop while one is pending: a consumer still closing in this
        server's loop would break the next test's consumers, which run in the test's loop.
        """
        deadline = time.monotonic() + timeout
        # Answers outlive their sockets by design (the customer finds them on reconnect);
        # one still publishing in this server's loop breaks the next test's layer too.
        while self.server.server_state.tasks or consumers._running_answers:
            if time.monotonic() > deadline:
                raise RuntimeError("the ASGI test server's connections did not close")
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args) -> None:
        pass


class StaticSiteServer:
    """Serves a folder on its own loopback port: a business's site on another origin."""

    def __init__(self, root: Path) -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "StaticSiteServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
