"""Run the service with uvicorn in a background thread: for tests, notebooks and benchmarks.

    with serve_in_thread(app) as base_url:      # "http://127.0.0.1:PORT/v1", a free port
        OpenAI(base_url=base_url, api_key="unused").chat.completions.create(...)

Also a tiny trained router (TF-IDF + logistic regression on a handful of phrases per demo expert) so a test
can start a real service in about a second.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TINY_EXAMPLES = {
    "hr_benefits": [
        "how much parental leave do I get",
        "enroll in the health insurance plan",
        "dental cover",
    ],
    "payroll_equity": ["when do my RSU grants vest", "my pay slip is missing", "where is my tax form W-2"],
    "finance_earnings": [
        "when is the next earnings call",
        "what was revenue last quarter",
        "annual guidance",
    ],
    "it_help": ["vpn is not connecting", "reset my password please", "install software on my laptop"],
    "product_docs": ["SDK release notes", "driver API documentation", "where are the product docs"],
    "travel_expenses": ["submit an expense report", "book a business flight", "corporate card reimbursement"],
    "facilities": ["book a meeting room", "my badge does not open the door", "parking at the office"],
}


def train_tiny_router(folder: str | Path, name: str = "tiny-tfidf", seed: int = 7) -> Path:
    """Train the tiny TF-IDF router into `folder` (a trained candidate folder with candidate.json)."""
    import pandas as pd

    from flywheel.core.config import CandidateConfig
    from flywheel.finetune.train import train_candidate

    rows = [(text, label) for label, texts in TINY_EXAMPLES.items() for text in texts]
    train = pd.DataFrame(rows, columns=["text", "label"])
    candidate = CandidateConfig(name=name, kind="tfidf_logreg")
    train_candidate(candidate, train, list(TINY_EXAMPLES), Path(folder), seed)
    return Path(folder)


class _ThreadedServer:
    def __init__(self, app: Any, host: str, port: int):
        import uvicorn

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
    from flywheel.serve.app import check_exposure

    check_exposure(host, "set" if getattr(app.state, "api_key_required", False) else None)
    server = _ThreadedServer(app, host, port)
    bound = server.start(timeout)
    try:
        yield f"http://{host}:{bound}/v1"
    finally:
        server.stop()
