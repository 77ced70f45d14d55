"""The embedded Argilla server: stock argilla-server 2.8.0 with its web UI, started and stopped by us.

`flywheel argilla up | down | status`. What `up` does, once per machine and then in seconds:

* a virtualenv of its own (`~/.cache/flywheel/argilla-venv`, or `FLYWHEEL_ARGILLA_VENV`) from the exact pins
  in `argilla_requirements.txt` — the server's pins conflict with transformers 5, so it never shares ours;
* SQLite for its database and `search_engine.py` (in this folder) as its search engine, so neither
  Elasticsearch nor OpenSearch is needed;
* Redis for background jobs: Debian's `redis-server` on a private unix socket plus one rq worker when present,
  otherwise an in-process fakeredis (with a warning: background jobs then never run);
* bound to 127.0.0.1; an owner user with a generated password and API key, kept in `credentials.json`
  in the state folder (`~/.cache/flywheel/argilla`, or `FLYWHEEL_ARGILLA_HOME`).

The state folder is owner-only: 0700 folders, 0600 files (its database holds the owner's API key verbatim);
the processes run with umask 077, so files they create later are owner-only too, and `up` repairs an older
home's modes. `down` stops only the processes `up` started (their pid files, checked against the process's
start time and command line). When the server dies, the redis-server and worker it leaves behind are
orphans: `status` names them and says how to stop them; `up` and `down` stop them.
Teams with their own Argilla set the URL and API key environment variables named in the config
(`review.argilla_url_env`, `review.argilla_api_key_env`) and none of this runs; the SDK code is the same.
"""

from __future__ import annotations

import contextlib
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
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import redis
from filelock import FileLock
from redis.backoff import NoBackoff
from redis.retry import Retry

from flywheel.core.argilla_login import (
    ArgillaServerError,
    ServerInfo,
    answers,
    credentials_path,
    read_state,
    server_info,
    state_dir,
    state_path,
)
from flywheel.core.files import atomic_write_text

HERE = Path(__file__).resolve().parent
REQUIREMENTS = HERE / "argilla_requirements.txt"
PLUGIN = HERE / "search_engine.py"
ENGINE_NAME = "flywheel-sql"  # must match search_engine.ENGINE_NAME
SERVER_VERSION = "2.8.0"
DEFAULT_PORT = 6900
HOST = "127.0.0.1"
OWNER = "flywheel"
WORKSPACE = "flywheel"
COMPONENTS = ("worker", "server", "redis")  # stop order
HELPERS = ("worker", "redis")  # useless without the server: orphans when it has died
PRIVATE_UMASK = 0o077  # for every process we spawn: what they create is owner-only


def venv_dir() -> Path:
    return Path(
        os.environ.get("FLYWHEEL_ARGILLA_VENV") or Path.home() / ".cache" / "flywheel" / "argilla-venv"
    )


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


def _file_lock(path: Path) -> FileLock:
    return FileLock(path, mode=0o600)


# --- credentials and state (owner-only) -----------------------------------------------------------
def _ensure_private_home() -> Path:
    """Create the state folder owner-only, and make an existing one (and all in it) owner-only."""
    home = state_dir()
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    make_private(home)
    return home


def make_private(root: Path) -> None:
    """0700 for folders, 0600 for everything else under `root` (symlinks are left alone)."""
    for folder, _, files in os.walk(root):
        with contextlib.suppress(FileNotFoundError):  # a file may vanish while we walk (journals)
            os.chmod(folder, 0o700)
        for name in files:
            path = os.path.join(folder, name)
            with contextlib.suppress(FileNotFoundError):
                if not os.path.islink(path):
                    os.chmod(path, 0o600)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file keeps its mode on open: fix it
    with os.fdopen(fd, "w") as f:
        f.write(text)


def _credentials() -> dict:
    """The owner's credentials: generated on first use, kept in a 0600 file, never printed."""
    path = credentials_path()
    if path.is_file():
        return json.loads(path.read_text())
    _ensure_private_home()
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


def _write_state(state: dict) -> None:
    atomic_write_text(state_path(), json.dumps(state, indent=2), private=True)


def _pid_file(component: str) -> Path:
    return state_dir() / f"{component}.pid"


def _our_process(component: str) -> Any | None:
    """The process in a component's pid file, if it is alive and is the one we started (same start time,
    and our marker in its command line: a recycled pid is someone else's)."""
    path = _pid_file(component)
    try:
        fields = path.read_text().split()
        process = psutil.Process(int(fields[0]))
        if len(fields) > 1 and abs(process.create_time() - float(fields[1])) > 1.0:
            return None
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        cmdline = " ".join(process.cmdline())
        for _ in range(20):  # empty for a moment while a process rewrites its title (redis-server does)
            if cmdline.strip():
                break
            time.sleep(0.05)
            cmdline = " ".join(process.cmdline())
    except (OSError, ValueError, IndexError, psutil.Error):
        return None
    marker = str(state_dir()) if component == "redis" else str(PLUGIN)
    return process if marker in cmdline else None


def _our_pid(component: str) -> int | None:
    process = _our_process(component)
    return process.pid if process is not None else None


def orphans() -> dict[str, int]:
    """Helpers (redis-server, worker) still running while the server they serve is not: {name: pid}."""
    if _our_pid("server"):
        return {}
    return {component: pid for component in HELPERS if (pid := _our_pid(component))}


def _log_path(component: str) -> Path:
    path = state_dir() / "logs" / f"{component}.log"
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def _open_log(component: str) -> Any:
    fd = os.open(_log_path(component), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, "ab")


def _spawn(component: str, cmd: list[str], env: dict[str, str]) -> int:
    """Start a process in its own session (it outlives the notebook kernel that started it)."""
    with _open_log(component) as log:
        proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
            umask=PRIVATE_UMASK,
        )
    try:
        created = psutil.Process(proc.pid).create_time()
    except psutil.Error:  # it died at once: its log says why
        created = 0.0
    _write_private(_pid_file(component), f"{proc.pid} {created}\n")
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


def _redis_client(timeout: float = 1.0) -> redis.Redis:
    # no retries: a failed ping means "not up yet", and SHUTDOWN ends with the server closing the connection
    no_retries = Retry(NoBackoff(), retries=0)
    return redis.Redis(unix_socket_path=str(_redis_socket()), socket_timeout=timeout, retry=no_retries)


def _redis_ping() -> bool:
    try:
        with _redis_client() as client:
            return bool(client.ping())
    except (redis.RedisError, OSError):
        return False


def _redis_shutdown() -> None:
    """Ask our redis-server to exit (it keeps no data: `--save ""`); a signal stops it if this fails."""
    with contextlib.suppress(redis.RedisError, OSError), _redis_client() as client:
        client.shutdown(nosave=True)


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
    if _our_pid("redis") and _redis_ping():
        return "redis-server"
    _redis_socket().unlink(missing_ok=True)
    data = state_dir() / "redis"
    data.mkdir(mode=0o700, parents=True, exist_ok=True)
    cmd = [binary, "--port", "0", "--unixsocket", str(_redis_socket()), "--unixsocketperm", "700"]
    cmd += ["--dir", str(data), "--save", "", "--appendonly", "no", "--daemonize", "no"]
    _spawn("redis", cmd, dict(os.environ))
    deadline = time.monotonic() + 20
    while not _redis_ping():
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


def up(port: int | None = None, timeout: float = 180.0, log: Callable[[str], None] = print) -> ServerInfo:
    """Start the embedded server (and Redis, and a worker) unless it is running; return where it is."""
    python = ensure_venv(log)
    _ensure_private_home()
    with _file_lock(state_dir() / ".up.lock"):
        creds = _credentials()
        state = read_state()
        if _our_pid("server") and state.get("url") and answers(state["url"]):
            return server_info(creds, state)
        left = orphans()
        if left:  # the server died: start its helpers afresh too
            log(f"the Argilla server had exited; stopping what it left running: {_describe(left)}")
            for component in HELPERS:
                _stop(component)
        redis_mode = _start_redis()
        env = _server_env(creds, redis_mode)
        home = state_dir() / "home"
        marker = home / ".flywheel-bootstrapped"
        # a new home is bootstrapped by the server process itself before it listens (one interpreter start)
        bootstrap = not (marker.is_file() and (home / "argilla.db").is_file())
        if bootstrap:
            home.mkdir(mode=0o700, parents=True, exist_ok=True)
        _stop("server")
        # A restart keeps its port, so clients (and a push retrying through an outage) find it again;
        # only the default port falls back to a free one when taken. port=0: any free port.
        fixed = port if port is not None else state.get("port") or os.environ.get("FLYWHEEL_ARGILLA_PORT")
        chosen = _free_port(
            int(fixed) if fixed is not None else DEFAULT_PORT, fallback=fixed is None or fixed == 0
        )
        url = f"http://{HOST}:{chosen}"
        started = time.perf_counter()
        serve = [str(python), "-P", str(PLUGIN), "serve", "--host", HOST, "--port", str(chosen)]
        _spawn("server", serve + ["--bootstrap"] * bootstrap, env)
        deadline = time.monotonic() + timeout
        while not answers(url, timeout=1.0):
            if not _our_pid("server"):
                raise ArgillaServerError(
                    f"the Argilla server exited; log {_log_path('server')}:\n{_log_tail('server')}"
                )
            if time.monotonic() > deadline:
                _stop("server")
                raise ArgillaServerError(f"the Argilla server did not answer within {timeout:.0f} s")
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        if bootstrap:
            _write_private(marker, SERVER_VERSION + "\n")
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
        return server_info(creds, state, started=True)


def _stop(component: str, grace: float = 10.0) -> bool:
    pid = _our_pid(component)
    if pid is None:
        _pid_file(component).unlink(missing_ok=True)
        return False
    if component == "redis":
        _redis_shutdown()
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
    """Stop the processes `up` started (worker, server, redis), orphans too; returns which were running."""
    stopped = [component for component in COMPONENTS if _stop(component)]
    state = read_state()
    if state.pop("port", None) is not None:  # a clean stop: the next start may take the default port again
        state.pop("url", None)
        _write_state(state)
    return stopped


def _describe(pids: dict[str, int | None]) -> str:
    names = {"server": "argilla server", "redis": "redis-server", "worker": "worker"}
    return ", ".join(f"{names[c]} (pid {pid})" for c, pid in pids.items() if pid)


def status() -> dict:
    """What runs, where, and where the credentials are (never the secrets themselves); `message` says it
    in a sentence, with how to stop it."""
    state = read_state()
    running = {component: _our_pid(component) for component in COMPONENTS}
    url = state.get("url")
    serving = bool(running["server"] and url and answers(url))
    left = orphans()
    if left:
        message = (
            f"the Argilla server is not running, but it left {_describe(left)} running; "
            "`flywheel argilla down` stops them"
        )
    elif serving:
        message = f"Argilla is running at {url}: {_describe(running)}; `flywheel argilla down` stops it"
    elif any(running.values()):
        message = f"Argilla is not answering at {url}: {_describe(running)}; `flywheel argilla down` stops it"
    else:
        message = "nothing is running"
    return {
        "running": serving,
        "message": message,
        "orphans": left,
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
        left = orphans()
        stopped = down()
        note = f" (left running by a server that had exited: {', '.join(left)})" if left else ""
        typer.echo(f"stopped: {', '.join(stopped)}{note}" if stopped else "nothing was running")

    @app.command("status")
    def status_command() -> None:
        """Print whether it runs, its URL and where the credentials are (one JSON object), then one
        sentence saying what runs and how to stop it."""
        state = status()
        typer.echo(json.dumps(state, indent=2))
        typer.echo(state["message"], err=True)

    return app


app = _cli()
