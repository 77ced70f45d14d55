"""The embedded Argilla server as its clients see it: where its state is, where it listens, how to log in,
and how to have it started or stopped. No server code: the server and its process manager are the
`flywheel.argilla` service, which this module reaches only through its command
(`python -m flywheel.argilla up | down | status`, the same as `flywheel argilla ...`), never by import.

The state folder (`~/.cache/flywheel/argilla`, or `FLYWHEEL_ARGILLA_HOME`) is owner-only; it holds the
owner's login in `credentials.json` (0600) and the server's address in `state.json`.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ArgillaServerError(RuntimeError):
    """The embedded server could not be set up or started; the message says why and where the log is."""


@dataclass
class ServerInfo:
    """Where the embedded server listens and how to log in; the secrets never appear in its repr."""

    url: str
    username: str
    password: str = field(repr=False)
    api_key: str = field(repr=False)
    workspace: str
    credentials_path: Path
    redis: str  # "redis-server" or "fakeredis"
    started: bool = False  # True when this call started it (False: it was running already)
    seconds: float = 0.0  # how long the start took (server process to HTTP ready)


def state_dir() -> Path:
    return Path(os.environ.get("FLYWHEEL_ARGILLA_HOME") or Path.home() / ".cache" / "flywheel" / "argilla")


def credentials_path() -> Path:
    return state_dir() / "credentials.json"


def state_path() -> Path:
    return state_dir() / "state.json"


def read_state() -> dict[str, Any]:
    path = state_path()
    return json.loads(path.read_text()) if path.is_file() else {}


def answers(url: str, timeout: float = 2.0) -> bool:
    """The Argilla server at `url` answers its status endpoint."""
    try:
        with urllib.request.urlopen(f"{url}/api/v1/status", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def server_info(credentials: dict[str, Any], state: dict[str, Any], started: bool = False) -> ServerInfo:
    return ServerInfo(
        url=state["url"],
        username=credentials["username"],
        password=credentials["password"],
        api_key=credentials["api_key"],
        workspace=credentials["workspace"],
        credentials_path=credentials_path(),
        redis=state.get("redis", "?"),
        started=started,
        seconds=state.get("start_seconds", 0.0) if started else 0.0,
    )


def running_server() -> ServerInfo | None:
    """The login of the embedded server when it is running and answering, else None."""
    state = read_state()
    if not (state.get("url") and credentials_path().is_file() and answers(state["url"])):
        return None
    return server_info(json.loads(credentials_path().read_text()), state)


def _command(action: str, log: Callable[[str], None]) -> str:
    """Run `python -m flywheel.argilla ACTION`; its progress lines go to `log`, its stdout is returned."""
    process = subprocess.Popen(
        [sys.executable, "-m", "flywheel.argilla", action],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    for line in process.stderr:  # the server's progress ("creating the virtualenv ...") as it happens
        lines.append(line.rstrip("\n"))
        log(lines[-1])
    out = process.stdout.read()
    if process.wait() != 0:
        raise ArgillaServerError("\n".join(lines) or f"`flywheel argilla {action}` failed")
    return out


def up(log: Callable[[str], None] = print) -> ServerInfo:
    """The embedded server's login, starting it first (`flywheel argilla up`) when it is not running."""
    info = running_server()
    if info is not None:
        return info
    asked = time.time()
    _command("up", log)
    state = read_state()
    return server_info(
        json.loads(credentials_path().read_text()), state, started=state.get("started_at", 0) >= asked
    )


def status() -> dict[str, Any]:
    """`flywheel argilla status`: what runs, orphans, the URL (never the secrets)."""
    return json.loads(_command("status", lambda _: None))


@contextlib.contextmanager
def stopped_after_if_started(log: Callable[[str], None] = print) -> Iterator[None]:
    """Stop the embedded server at the end if it was not running at the start (a command that needed it
    for a moment leaves the machine as it found it), and what it left running if it died meanwhile."""
    was_running = running_server() is not None
    try:
        yield
    finally:
        if not was_running:
            state = status()
            if state["orphans"]:
                log("the embedded Argilla server had exited; stopping what it left running")
                _command("down", log)
            elif state["running"]:
                log("stopping the embedded Argilla server that this command started")
                _command("down", log)
