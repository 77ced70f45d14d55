"""The embedded Argilla server: stock argilla-server 2.8.0 with its web UI, started and stopped by us.

`flywheel argilla up | down | status`. What `up` does, once per machine and then in seconds:

* a virtualenv of its own (`~/.cache/flywheel/argilla-venv`, or `FLYWHEEL_ARGILLA_VENV`) from the exact pins
  in `argilla_requirements.txt` — the server's pins conflict with transformers 5, so it never shares ours;
* SQLite for its database and `argilla_search_engine.py` (in this folder) as its search engine, so neither
  Elasticsearch nor OpenSearch is needed;
* Redis for background jobs: Debian's `redis-server` on a private unix socket plus one rq worker when present,
  otherwise an in-process fakeredis (with a warning: background jobs then never run);
* bound to 127.0.0.1; an owner user with a generated password and API key, kept in `credentials.json`
  (mode 0600) in the state folder (`~/.cache/flywheel/argilla`, or `FLYWHEEL_ARGILLA_HOME`).

`down` stops only the processes `up` started (their pid files, checked against their command lines).
Teams with their own Argilla set the URL and API key environment variables named in the config
(`review.argilla_url_env`, `review.argilla_api_key_env`) and none of this runs; the SDK code is the same.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "argilla_requirements.txt"
PLUGIN = HERE / "argilla_search_engine.py"
ENGINE_NAME = "flywheel-sql"  # must match argilla_search_engine.ENGINE_NAME
SERVER_VERSION = "2.8.0"
DEFAULT_PORT = 6900
HOST = "127.0.0.1"
OWNER = "flywheel"
WORKSPACE = "flywheel"
COMPONENTS = ("worker", "server", "redis")  # stop order


class ArgillaServerError(RuntimeError):
    """The embedded server could not be set up or started; the message says why and where the log is."""


def venv_dir() -> Path:
    return Path(
        os.environ.get("FLYWHEEL_ARGILLA_VENV") or Path.home() / ".cache" / "flywheel" / "argilla-venv"
    )


def state_dir() -> Path:
    return Path(os.environ.get("FLYWHEEL_ARGILLA_HOME") or Path.home() / ".cache" / "flywheel" / "argilla")


def credentials_path() -> Path:
    return state_dir() / "credentials.json"


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


# --- the virtualenv -------------------------------------------------------------------------------
def requirements_digest() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def server_python() -> Path:
    return venv_dir() / "bin" / "python"


def venv_ready() -> bool:
    stamp = venv_dir() / ".flywheel-requirements"
    return stamp.is_file() and stamp.read_text().strip() == requirements_digest() and server_python().exists()


def ensure_venv(log: Callable[[str], None] = print) -> Path:
    """Create the server's virtualenv from the exact pins, unless it exists with the same pins."""
    if venv_ready():
        return server_python()
    folder = venv_dir()
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(folder.parent / f".{folder.name}.lock"):  # two processes setting up at once
        if venv_ready():
            return server_python()
        log(f"creating the Argilla server virtualenv in {folder} (once; about a minute)")
        shutil.rmtree(folder, ignore_errors=True)
        base = getattr(sys, "_base_executable", None) or sys.executable
        _run([base, "-m", "venv", str(folder)], "create the virtualenv")
        pip = [str(server_python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        _run([*pip, "--no-deps", "-r", str(REQUIREMENTS)], "install argilla-server")
        _run([str(server_python()), "-m", "pip", "check"], "check the server's dependencies")
        (folder / ".flywheel-requirements").write_text(requirements_digest() + "\n")
    return server_python()


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise ArgillaServerError(f"could not {what} ({' '.join(cmd[:3])} ...):\n{tail}")


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- credentials and state ------------------------------------------------------------------------
def _credentials() -> dict:
    """The owner's credentials: generated on first use, kept in a 0600 file, never printed."""
    path = credentials_path()
    if path.is_file():
        return json.loads(path.read_text())
    path.parent.mkdir(parents=True, exist_ok=True)
    creds = {
        "username": OWNER,
        "password": secrets.token_urlsafe(18),
        "api_key": "flywheel." + secrets.token_urlsafe(32),
        "workspace": WORKSPACE,
        "auth_secret_key": secrets.token_hex(32),
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(creds, f, indent=2)
    return creds


def _state_file() -> Path:
    return state_dir() / "state.json"


def _read_state() -> dict:
    path = _state_file()
    return json.loads(path.read_text()) if path.is_file() else {}


def _write_state(state: dict) -> None:
    tmp = _state_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(_state_file())


def _pid_file(component: str) -> Path:
    return state_dir() / f"{component}.pid"


def _our_pid(component: str) -> int | None:
    """The pid in a component's pid file, if that process is alive and is the one we started."""
    path = _pid_file(component)
    if not path.is_file():
        return None
    try:
        pid = int(path.read_text().strip())
        for _ in range(20):  # empty for a moment while a process rewrites its title (redis-server does)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if cmdline.strip():
                break
            time.sleep(0.05)
    except (ValueError, OSError):
        return None
    marker = str(state_dir()) if component == "redis" else str(PLUGIN)
    if marker not in cmdline:
        return None  # the pid was recycled by another process: not ours
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":  # a zombie is not running
            return None
    return pid


def _log_path(component: str) -> Path:
    path = state_dir() / "logs" / f"{component}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _spawn(component: str, cmd: list[str], env: dict[str, str]) -> int:
    """Start a process in its own session (it outlives the notebook kernel that started it)."""
    with open(_log_path(component), "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )
    _pid_file(component).write_text(f"{proc.pid}\n")
    return proc.pid


def _log_tail(component: str, lines: int = 20) -> str:
    path = _log_path(component)
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


# --- processes ------------------------------------------------------------------------------------
def _free_port(preferred: int, fallback: bool = True) -> int:
    for port in (preferred, 0) if fallback else (preferred,):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: TIME_WAIT is fine
            try:
                s.bind((HOST, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise ArgillaServerError(
        f"port {preferred} on 127.0.0.1 is taken by another process; free it, or set FLYWHEEL_ARGILLA_PORT "
        "(clients of the embedded server expect the port it had)"
    )


def _redis_socket() -> Path:
    return state_dir() / "redis.sock"


def _redis_ping(path: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(1)
            s.connect(str(path))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _start_redis() -> str:
    """Debian's redis-server on a private unix socket (no TCP port); fakeredis when it is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        warnings.warn(
            "redis-server is not installed: the embedded Argilla server uses fakeredis, so its background "
            "jobs (e.g. record status after a distribution change) will not run; "
            "scripts/system_deps.sh installs redis-server",
            stacklevel=3,
        )
        return "fakeredis"
    if _our_pid("redis") and _redis_ping(_redis_socket()):
        return "redis-server"
    _redis_socket().unlink(missing_ok=True)
    data = state_dir() / "redis"
    data.mkdir(parents=True, exist_ok=True)
    cmd = [binary, "--port", "0", "--unixsocket", str(_redis_socket()), "--unixsocketperm", "700"]
    cmd += ["--dir", str(data), "--save", "", "--appendonly", "no", "--daemonize", "no"]
    _spawn("redis", cmd, dict(os.environ))
    deadline = time.monotonic() + 20
    while not _redis_ping(_redis_socket()):
        if time.monotonic() > deadline or not _our_pid("redis"):
            raise ArgillaServerError(f"redis-server did not start; log:\n{_log_tail('redis')}")
        time.sleep(0.1)
    return "redis-server"


def _server_env(creds: dict, redis_mode: str) -> dict[str, str]:
    home = state_dir() / "home"
    env = dict(os.environ)
    for key in [k for k in env if k.startswith("ARGILLA_")]:  # a team's ARGILLA_API_URL etc. must not leak in
        del env[key]
    env.update(
        ARGILLA_HOME_PATH=str(home),
        ARGILLA_DATABASE_URL=f"sqlite+aiosqlite:///{home / 'argilla.db'}",
        ARGILLA_SEARCH_ENGINE=ENGINE_NAME,
        ARGILLA_REDIS_URL=f"unix://{_redis_socket()}?db=0",
        ARGILLA_AUTH_SECRET_KEY=creds["auth_secret_key"],
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_OFFLINE="1",
        FLYWHEEL_ARGILLA_FAKEREDIS="1" if redis_mode == "fakeredis" else "0",
        FLYWHEEL_ARGILLA_USERNAME=creds["username"],
        FLYWHEEL_ARGILLA_PASSWORD=creds["password"],
        FLYWHEEL_ARGILLA_API_KEY=creds["api_key"],
        FLYWHEEL_ARGILLA_WORKSPACE=creds["workspace"],
        PYTHONUNBUFFERED="1",
    )
    env.pop("VIRTUAL_ENV", None)
    return env


def _http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/status", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _info(creds: dict, state: dict, started: bool = False, seconds: float = 0.0) -> ServerInfo:
    return ServerInfo(
        url=state["url"],
        username=creds["username"],
        password=creds["password"],
        api_key=creds["api_key"],
        workspace=creds["workspace"],
        credentials_path=credentials_path(),
        redis=state.get("redis", "?"),
        started=started,
        seconds=seconds,
    )


def up(port: int | None = None, timeout: float = 180.0, log: Callable[[str], None] = print) -> ServerInfo:
    """Start the embedded server (and Redis, and a worker) unless it is running; return where it is."""
    python = ensure_venv(log)
    state_dir().mkdir(parents=True, exist_ok=True)
    with _file_lock(state_dir() / ".up.lock"):
        creds = _credentials()
        state = _read_state()
        if _our_pid("server") and state.get("url") and _http_ok(state["url"]):
            return _info(creds, state)
        redis_mode = _start_redis()
        env = _server_env(creds, redis_mode)
        home = state_dir() / "home"
        marker = home / ".flywheel-bootstrapped"
        if not (marker.is_file() and (home / "argilla.db").is_file()):
            home.mkdir(parents=True, exist_ok=True)
            _run_logged([str(python), "-P", str(PLUGIN), "bootstrap"], env, "bootstrap")
            marker.write_text(SERVER_VERSION + "\n")
        _stop("server")
        # A restart keeps its port, so clients (and a push retrying through an outage) find it again;
        # only the default port falls back to a free one when taken. port=0: any free port.
        fixed = port if port is not None else state.get("port") or os.environ.get("FLYWHEEL_ARGILLA_PORT")
        chosen = _free_port(
            int(fixed) if fixed is not None else DEFAULT_PORT, fallback=fixed is None or fixed == 0
        )
        url = f"http://{HOST}:{chosen}"
        started = time.perf_counter()
        _spawn(
            "server", [str(python), "-P", str(PLUGIN), "serve", "--host", HOST, "--port", str(chosen)], env
        )
        deadline = time.monotonic() + timeout
        while not _http_ok(url, timeout=1.0):
            if not _our_pid("server"):
                raise ArgillaServerError(
                    f"the Argilla server exited; log {_log_path('server')}:\n{_log_tail('server')}"
                )
            if time.monotonic() > deadline:
                _stop("server")
                raise ArgillaServerError(f"the Argilla server did not answer within {timeout:.0f} s")
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        if redis_mode == "redis-server" and not _our_pid("worker"):
            _spawn("worker", [str(python), "-P", str(PLUGIN), "worker"], env)
        state = {
            "url": url,
            "port": chosen,
            "redis": redis_mode,
            "started_at": time.time(),
            "start_seconds": seconds,
        }
        _write_state(state)
        return _info(creds, state, started=True, seconds=seconds)


def _run_logged(cmd: list[str], env: dict[str, str], component: str) -> None:
    with open(_log_path(component), "ab") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        raise ArgillaServerError(
            f"{component} failed (exit {code}); log {_log_path(component)}:\n{_log_tail(component)}"
        )


def _stop(component: str, grace: float = 10.0) -> bool:
    pid = _our_pid(component)
    if pid is None:
        _pid_file(component).unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)  # its own session: the worker's forked children go too
    deadline = time.monotonic() + grace
    while _our_pid(component) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _our_pid(component):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)  # reap it when we are its parent
    _pid_file(component).unlink(missing_ok=True)
    return True


def down() -> list[str]:
    """Stop the processes `up` started (worker, server, redis); returns which were running."""
    stopped = [component for component in COMPONENTS if _stop(component)]
    state = _read_state()
    if state.pop("port", None) is not None:  # a clean stop: the next start may take the default port again
        state.pop("url", None)
        _write_state(state)
    return stopped


def status() -> dict:
    """What runs, where, and where the credentials are (never the secrets themselves)."""
    state = _read_state()
    running = {component: _our_pid(component) for component in COMPONENTS}
    url = state.get("url")
    return {
        "running": bool(running["server"] and url and _http_ok(url)),
        "url": url,
        "pids": running,
        "redis": state.get("redis"),
        "last_start_seconds": state.get("start_seconds"),
        "credentials": str(credentials_path()),
        "state_dir": str(state_dir()),
        "venv": str(venv_dir()),
        "venv_ready": venv_ready(),
    }


def is_running() -> bool:
    return status()["running"]


@contextlib.contextmanager
def stopped_after_if_started(
    log: Callable[[str], None] = print, keep: Callable[[], bool] = lambda: False
) -> Iterator[None]:
    """For the cycle runner: stop the embedded server at the end if it was not running at the start,
    unless `keep()` says otherwise (a cycle paused for expert review leaves it up for the experts)."""
    was_running = is_running()
    try:
        yield
    finally:
        if not was_running and is_running():
            if keep():
                log(
                    f"the embedded Argilla server stays up for the experts: {status()['url']} "
                    "(`flywheel argilla down` stops it)"
                )
            else:
                log("stopping the embedded Argilla server that this cycle started")
                down()


# --- command line ---------------------------------------------------------------------------------
def _cli():  # built on demand so that importing this module does not need typer
    import typer

    app = typer.Typer(help="The embedded Argilla server (review UI for the experts).", no_args_is_help=True)

    @app.command("up")
    def up_command(port: int | None = typer.Option(None, help=f"TCP port (default {DEFAULT_PORT})")) -> None:
        """Start the server (creating its virtualenv the first time); prints its URL and login."""
        try:
            info = up(port=port, log=lambda m: typer.echo(m, err=True))
        except ArgillaServerError as err:
            typer.echo(str(err), err=True)
            raise typer.Exit(1) from None
        how = f"started in {info.seconds:.1f} s" if info.started else "already running"
        typer.echo(f"Argilla {how}: {info.url} (redis: {info.redis})")
        typer.echo(f"log in as {info.username!r}; password and API key are in {info.credentials_path}")

    @app.command("down")
    def down_command() -> None:
        """Stop the processes `up` started."""
        stopped = down()
        typer.echo(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")

    @app.command("status")
    def status_command() -> None:
        """Print whether it runs, its URL and where the credentials are (one JSON object)."""
        typer.echo(json.dumps(status(), indent=2))

    return app


app = _cli()
