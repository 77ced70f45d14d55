"""Run the service with uvicorn in a background thread: for tests, notebooks and benchmarks.

    with serve_in_thread(app) as base_url:      # "http://127.0.0.1:PORT/v1", a free port
        OpenAI(base_url=base_url, api_key="unused").chat.completions.create(...)

A tiny trained router to serve in tests and benchmarks is in tests/tiny_router.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from flywheel.serve.app import check_exposure


class _ThreadedServer:
    def __init__(self, app: Any, host: str, port: int):
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="flywheel-serve", daemon=True)

    def start(self, timeout: float) -> int:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive():
                raise RuntimeError("the router service stopped while starting (port in use?)")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the router service did not start within {timeout:g} s")
            time.sleep(0.02)
        return self.server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0, timeout: float = 30) -> Iterator[str]:
    """Serve `app` with uvicorn in a daemon thread (port 0: a free one); yields the `/v1` base URL.
    Like `flywheel serve`, refuses a non-loopback host unless the app requires an API key."""
    check_exposure(host, "set" if getattr(app.state, "api_key_required", False) else None)
    server = _ThreadedServer(app, host, port)
    bound = server.start(timeout)
    try:
        yield f"http://{host}:{bound}/v1"
    finally:
        server.stop()
