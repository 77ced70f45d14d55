import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# --- Test tiers ---------------------------------------------------------------------------------------
# Every test gets exactly one of `unit`, `integration`, `notebooks` (plus `slow`), from the fixtures it
# uses, so the tier cannot drift from what the test starts. A test that starts a service or a kernel does
# it through one of these fixtures (directly or through a fixture that uses it); tests never mark tiers.
NOTEBOOK_FIXTURES = {"jupyter_kernel"}  # papermill executes notebooks (cycles also start Argilla)
INTEGRATION_FIXTURES = {
    "router_service",  # the router service under uvicorn
    "serve_app",  # any app served over a real socket
    "free_port",  # a server process the test starts itself (flywheel serve, Voilà)
    "pg_cluster",  # PostgreSQL
    "redis_server",  # the embedded Argilla server (its background jobs need Redis)
    "chromium",  # a headless browser
    "bench_script",  # benchmark scripts in subprocesses (they start servers and worker processes)
    "mlflow_server",  # a real `mlflow server` process
    "mlflow_server_process",  # the same, before it answers
}
SLOW_FIXTURES = {"demo_cycle", "bench_script"}  # demo-size real models; the benchmarks (minutes)
TIERS = ("unit", "integration", "notebooks")


def tier_of(item: pytest.Item) -> str:
    used = set(getattr(item, "fixturenames", ()))
    params = getattr(getattr(item, "callspec", None), "params", {})
    if used & NOTEBOOK_FIXTURES:
        return "notebooks"
    if used & INTEGRATION_FIXTURES or params.get("any_store") == "postgresql":  # it takes pg_cluster
        return "integration"
    return "unit"


def pytest_collection_modifyitems(config, items):
    for item in items:
        marked = [m.name for m in item.iter_markers() if m.name in (*TIERS, "slow")]
        if marked:
            raise pytest.UsageError(
                f"{item.nodeid}: marked {marked[0]!r} by hand; tiers come from fixtures (tests/conftest.py)"
            )
        item.add_marker(tier_of(item))
        if set(getattr(item, "fixturenames", ())) & SLOW_FIXTURES:
            item.add_marker("slow")


def wait_until(condition, timeout: float = 60, what: str = "the condition", every: float = 0.05):
    """Poll `condition` until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


# A small separable routing task shared by the training tests: four requests per expert.
ROUTING_PHRASES = {
    "it_help": [
        "my laptop will not boot",
        "reset my vpn password",
        "outlook keeps crashing",
        "install python",
    ],
    "hr_benefits": [
        "dental plan coverage",
        "how much parental leave",
        "401k matching",
        "enroll in insurance",
    ],
    "facilities": [
        "book a meeting room",
        "my badge does not open",
        "parking garage hours",
        "desk chair broken",
    ],
}


# A four-expert catalog for the tests that run the real Argilla server.
SMALL_CATALOG = {
    "hr_benefits": "benefits",
    "it_help": "laptops",
    "facilities": "badges",
    "travel_expenses": "travel",
}


def good_record(i: int = 1, **overrides) -> dict:
    """A valid interaction record in the documented schema."""
    record = {
        "id": f"ix-{i:06d}",
        "timestamp": "2026-09-08T10:15:02Z",
        "session_id": "s-00012",
        "user_id": "u-0007",
        "request": {
            "model": "llama-3.1-70b-instruct",
            "messages": [
                {"role": "system", "content": "route"},
                {"role": "user", "content": f"vpn down {i}"},
            ],
        },
        "response": {"choices": [{"index": 0, "message": {"role": "assistant", "content": "it_help"}}]},
        "routed_expert": "it_help",
        "model": "llama-3.1-70b-instruct",
        "latency_ms": 1380.5,
        "ttft_ms": 410.2,
        "tokens_in": 212,
        "tokens_out": 4,
        "answer_excerpt": "Restart the VPN client.",
        "feedback": {"thumbs": "up", "rating": None, "comment": None},
    }
    record.update(overrides)
    return record


@pytest.fixture
def write_jsonl(tmp_path):
    def write(name: str, lines: list) -> Path:
        path = tmp_path / name
        with open(path, "w", encoding="utf-8") as f:
            for line in lines:
                f.write(line if isinstance(line, str) else json.dumps(line))
                f.write("\n")
        return path

    return write


@pytest.fixture
def store(tmp_path):
    from flywheel.core.store import Store

    return Store(f"sqlite:///{tmp_path / 'store.db'}")


def require_binary(path_or_name: str, why: str) -> str:
    """The path of a system binary a test needs. Missing: skip on a developer machine, fail in CI
    (CI=true), where `make test` has installed it (scripts/system_deps.sh)."""
    import shutil

    found = shutil.which(path_or_name) or (path_or_name if os.path.exists(path_or_name) else None)
    if found:
        return found
    message = f"{path_or_name} is not installed ({why}); scripts/system_deps.sh installs it"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def jupyter_kernel():
    """The workbench's Jupyter kernel, which papermill runs the notebooks in (`make setup` installs it)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec("flywheel")
    except NoSuchKernel:
        pytest.fail("the `flywheel` Jupyter kernel is not installed: run `make setup`")
    return "flywheel"


@pytest.fixture(scope="session")
def redis_server():
    """The redis-server binary that the embedded Argilla server's background jobs need."""
    return require_binary("redis-server", "Argilla's background jobs")


@pytest.fixture(scope="session")
def chromium():
    """Headless Chromium and its ChromeDriver: `(browser_path, driver_path)`."""
    return (
        require_binary("/usr/bin/chromium", "the browser tests"),
        require_binary("/usr/bin/chromedriver", "the browser tests"),
    )


@pytest.fixture
def free_port() -> int:
    """A free local port for a server process the test starts."""
    return _free_port()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _MlflowServer(str):
    """The URL of a real `mlflow server` process; `ready()` waits until it answers /health."""

    proc: subprocess.Popen
    log_path: Path

    def ready(self) -> str:
        import urllib.request

        def healthy() -> bool:
            assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"{self}/health", timeout=2) as answer:
                    return answer.status == 200
            except OSError:
                return False

        wait_until(healthy, timeout=180, what="mlflow server /health", every=0.25)
        return str(self)


@pytest.fixture(scope="session")
def mlflow_server_process(tmp_path_factory):
    """A real `mlflow server` (SQLite backend, artifacts served by it) on a free port, started for the
    session and not yet waited for (it takes ~10-30 s to answer: the test cycle starts meanwhile)."""
    home = tmp_path_factory.mktemp("mlflow-server")
    server = _MlflowServer(f"http://127.0.0.1:{_free_port()}")
    server.log_path = home / "server.log"
    log = open(server.log_path, "w")  # noqa: SIM115 (closed below)
    server.proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri",
         f"sqlite:///{home / 'mlflow.db'}", "--artifacts-destination", str(home / "artifacts"),
         "--host", "127.0.0.1", "--port", server.rsplit(":", 1)[1], "--workers", "1",
         "--uvicorn-opts", "--timeout-graceful-shutdown 2"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,  # its uvicorn worker is in the group
        env={**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},  # 7 GenAI job processes fewer
    )  # fmt: skip
    try:
        yield server
    finally:
        os.killpg(server.proc.pid, signal.SIGTERM)
        server.proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="session")
def mlflow_server(mlflow_server_process) -> str:
    """The session's real `mlflow server`, answering: its URL."""
    return mlflow_server_process.ready()


@pytest.fixture(scope="session")
def cycle_run(tmp_path_factory, jupyter_kernel, redis_server, mlflow_server_process):
    """One test-size cycle (`flywheel cycle --config configs/test.yaml`) into a temporary runs folder, tracked
    on the session's real MLflow server. Returns (runs folder, summary, run directory)."""
    runs = tmp_path_factory.mktemp("runs")
    # started while the server starts; its first MLflow call comes after seconds of imports (and retries)
    cycle = subprocess.Popen(
        [sys.executable, "-m", "flywheel.cli", "cycle", "--config", "configs/test.yaml",
         "--runs-dir", str(runs)],
        cwd=REPO, env={**os.environ, "MLFLOW_TRACKING_URI": str(mlflow_server_process)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        mlflow_server_process.ready()
        stdout, stderr = cycle.communicate(timeout=900)
    finally:
        if cycle.poll() is None:
            cycle.kill()
            cycle.wait()
    assert cycle.returncode == 0, stdout[-3000:] + stderr[-3000:]
    run_dir = Path(stdout.strip().splitlines()[-1])  # the run directory is the last line
    return runs, json.loads((run_dir / "summary.json").read_text()), run_dir


@pytest.fixture(scope="session")
def serve_app():
    """`with serve_app(app) as base_url:` serves an ASGI app with uvicorn on a free port, in a thread."""
    from flywheel.serve.runner import serve_in_thread

    return serve_in_thread


@pytest.fixture
def bench_script():
    """Runs a benchmark (`bench_script("bench/x.py", *args)`, `bench_script("-m", "bench", ...)`) and returns
    the last line it printed."""

    def run(*args: str, timeout: int = 600) -> str:
        done = subprocess.run(
            [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout.strip().splitlines()[-1]

    return run


@pytest.fixture(scope="session")
def demo_cycle(tmp_path_factory, jupyter_kernel, redis_server):
    """One whole demo cycle (`flywheel cycle --config configs/demo.yaml`: 1,800 interactions, the demo's real
    candidates trained at full size; ~7 min on 2 CPU cores) into a temporary runs folder, with its own
    Argilla state. Yields the run directory."""
    runs = tmp_path_factory.mktemp("demo-runs")
    env = {**os.environ, "FLYWHEEL_ARGILLA_HOME": str(runs / "argilla")}
    for name in ("ARGILLA_API_URL", "ARGILLA_API_KEY", "FLYWHEEL_STORE_URL"):
        env.pop(name, None)
    command = [sys.executable, "-m", "flywheel.cli", "cycle", "--config", "configs/demo.yaml"]
    done = subprocess.run(
        [*command, "--runs-dir", str(runs)], cwd=REPO, env=env, capture_output=True, text=True, timeout=3600
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def router_service(tmp_path_factory):
    """The real router service (`flywheel serve`'s app under uvicorn, in a background thread) on a free
    port, routing with a tiny trained TF-IDF candidate and logging to its own SQLite store. Yields the
    OpenAI base URL `http://127.0.0.1:PORT/v1` (a str; `.store` is the flywheel Store it logs to)."""
    from tiny_router import train_tiny_router

    from flywheel.core.registry import Registry
    from flywheel.core.store import Store
    from flywheel.serve.app import create_app
    from flywheel.serve.routing import RouterProvider
    from flywheel.serve.runner import serve_in_thread

    root = tmp_path_factory.mktemp("router_service")
    model = train_tiny_router(root / "tiny-tfidf")
    service_store = Store(f"sqlite:///{root / 'store.db'}")
    app = create_app(service_store, RouterProvider(Registry(service_store), default_model=model))
    with serve_in_thread(app) as base_url:
        url = _ServiceURL(base_url)
        url.store = service_store
        yield url


class _ServiceURL(str):
    store = None


@pytest.fixture(scope="session")
def pg_cluster():
    """One throwaway PostgreSQL server per session (tests/pgcluster.py); each test gets its own database."""
    from pgcluster import PgCluster, postgres_bindir

    bindir = postgres_bindir()
    if bindir is None:
        require_binary("/usr/lib/postgresql/15/bin/initdb", "PostgreSQL server for the store tests")
    cluster = PgCluster(bindir).start()
    yield cluster
    cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request, tmp_path):
    """A fresh store on each backend: a SQLite file, and a new database on the session's PostgreSQL."""
    from flywheel.core.store import Store

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("pg_cluster").create_database()
    store = Store(url)
    assert store.engine.dialect.name == request.param
    yield store
    store.engine.dispose()


@contextlib.contextmanager
def embedded_argilla(home):
    """The real embedded Argilla server (flywheel.argilla.server) with its state in `home`, started on
    a free port and stopped after; the Argilla environment variables are restored."""
    require_binary("redis-server", "Argilla's background jobs")
    from flywheel.argilla import server as argilla_server

    names = ("FLYWHEEL_ARGILLA_HOME", "ARGILLA_API_URL", "ARGILLA_API_KEY")
    saved = {k: os.environ.get(k) for k in names}
    os.environ["FLYWHEEL_ARGILLA_HOME"] = str(home)
    os.environ.pop("ARGILLA_API_URL", None)
    os.environ.pop("ARGILLA_API_KEY", None)
    try:
        yield argilla_server.up(port=0)
    finally:
        argilla_server.down()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def small_demo_world(folder, experts):
    """A small demo world (130 interactions, ~30% without feedback; one week) made in `folder` and ingested
    into its own store."""
    from flywheel.collect.ingest import ingest
    from flywheel.core.store import Store
    from flywheel.demo.generator import generate_demo

    generate_demo(folder, experts, n_interactions=130, weeks=1, seed=11)
    store = Store(f"sqlite:///{folder / 'store.db'}")
    ingest(store, [folder / "logs.jsonl"])
    return folder, store
