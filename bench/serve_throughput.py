"""Router service throughput: requests/s and latency at 32 concurrent clients, every answer logged once.

    .venv/bin/python bench/serve_throughput.py                       # 6,000 requests per run
    .venv/bin/python bench/serve_throughput.py --requests 500        # a quick check
    .venv/bin/python bench/serve_throughput.py --old-lib /tmp/orig/lib   # also an older checkout's service

Each run starts a service in its own process on a free port, routing with a tiny TF-IDF router (decides in
~0.5 ms) and logging to a fresh SQLite store, and drives it from another process with `--clients`
keep-alive connections, each sending its next request as soon as the last is answered. The questions are
the seeded demo world's (about 5% hold PII, some of it names: the masker's NER pass runs on those). Runs:

- `bare`: the same router behind a bare FastAPI endpoint that logs nothing: the in-run baseline, the most
  any service can get out of this machine with this router, uvicorn and FastAPI;
- `flywheel`: `flywheel serve` as users start it (config `--config`);
- `flywheel+ingest`: the same while `flywheel ingest` writes `--ingest-records` demo records into the same
  store from a third process;
- `old` (with `--old-lib`): `flywheel serve` from another checkout's `lib/` (e.g. the previous release).

For each: requests/s, p50/p99 latency in ms, status counts, and whether the store holds exactly one row per
answered (200) request and none for the others. Absolute figures depend on what else the machine runs
(load generator and service share its cores), so compare the ratios (`vs_bare`) measured side by side.
The load generator speaks raw HTTP/1.1 over asyncio streams: an HTTP client library would cost more CPU
than the service under test and measure itself. Prints one JSON object.
"""

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROUTE_PATH = "/v1/chat/completions"


# --- the load generator (a child process) -----------------------------------------------------------


def _request_bytes(port: int, question: str) -> bytes:
    body = json.dumps({"model": "router", "messages": [{"role": "user", "content": question}]}).encode()
    head = (
        f"POST {ROUTE_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {os.environ.get('FLYWHEEL_SERVE_API_KEY', 'none')}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, str | None]:
    """(status, X-Interaction-Id) of one HTTP/1.1 response with a Content-Length."""
    status = int((await reader.readline()).split()[1])
    length, interaction_id = 0, None
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "x-interaction-id":
            interaction_id = value.strip()
    await reader.readexactly(length)
    return status, interaction_id


async def _drive(port: int, questions: list[str], clients: int, requests: int, warmup: int) -> dict:
    requests_bytes = [_request_bytes(port, q) for q in questions]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    ids: list[str] = []
    counter = iter(range(warmup + requests))
    measured_from = time.perf_counter()

    async def client() -> None:
        nonlocal measured_from
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in counter:
            started = time.perf_counter()
            if i == warmup:  # the clock starts when the warm-up requests are sent
                measured_from = started
            writer.write(requests_bytes[i % len(requests_bytes)])
            status, interaction_id = await _read_response(reader)
            if i >= warmup:
                latencies.append(1000 * (time.perf_counter() - started))
            statuses[status] = statuses.get(status, 0) + 1
            if status == 200 and interaction_id:
                ids.append(interaction_id)
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - measured_from
    latencies.sort()
    return {
        "requests": len(latencies),
        "wall_s": round(wall, 3),
        "total_wall_s": round(time.perf_counter() - started, 3),
        "req_per_s": round(len(latencies) / wall, 1),
        "p50_ms": round(statistics.median(latencies), 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 2),
        "max_ms": round(latencies[-1], 2),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "ids": ids,
    }


def load_child(args: argparse.Namespace) -> None:
    questions = json.loads(Path(args.questions).read_text())
    result = asyncio.run(_drive(args.port, questions, args.clients, args.requests, args.warmup))
    Path(args.out).write_text(json.dumps(result))


# --- the bare baseline service (a child process) ---------------------------------------------------


def bare_child(args: argparse.Namespace) -> None:
    """The router behind a bare FastAPI endpoint: parse, route, answer; no validation, no log."""
    import uvicorn
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse

    from flywheel.core.routers import load_router

    router = load_router(args.model)
    app = FastAPI()

    @app.post(ROUTE_PATH)
    async def route(request: Request) -> JSONResponse:
        body = await request.json()
        expert = router.predict([body["messages"][-1]["content"]])[0]
        answer = {"id": "chatcmpl-bare", "object": "chat.completion", "model": router.name}
        answer["choices"] = [{"index": 0, "message": {"role": "assistant", "content": expert}}]
        return JSONResponse(answer)

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


# --- the parent: set up, run each scenario, check the store ----------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.log_path.read_text()[-2000:]
            raise RuntimeError(f"the service exited with {proc.returncode}: {output}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                if json.load(reply).get("status") == "ok":
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("the service did not become healthy")


def demo_questions(folder: Path) -> list[str]:
    """The last user message of each valid record of the seeded demo world."""
    from flywheel.core.config import load_config
    from flywheel.demo.generator import generate_demo

    config = load_config(REPO / "configs" / "demo.yaml")
    generate_demo(folder, config.experts, n_interactions=1200, weeks=6, seed=7)
    questions = []
    for line in (folder / "logs.jsonl").read_text().splitlines():
        try:
            record = json.loads(line)
            users = [m for m in record["request"]["messages"] if m.get("role") == "user"]
            text = users[-1]["content"]
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            continue
        if isinstance(text, str) and text.strip():
            questions.append(text)
    return questions


def service_cpu_s(pid: int) -> float:
    import psutil  # installed with ipykernel

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def stored_serve_ids(store_path: Path) -> list[str]:
    import sqlite3

    with sqlite3.connect(store_path) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM interactions WHERE source = 'serve'")]


def run_scenario(name: str, args: argparse.Namespace, work: Path, questions_file: Path, model: Path) -> dict:
    port = free_port()
    store_path = work / f"{name}.db"
    env = {**os.environ, "FLYWHEEL_TORCH_THREADS": "1"}
    if name == "bare":
        command = [sys.executable, __file__, "_bare", "--model", str(model), "--port", str(port)]
    else:
        config = args.config
        if name.startswith("old"):  # its own config: an older config schema may lack newer settings
            config = Path(args.old_lib).resolve().parent / "configs" / args.config.name
        command = [sys.executable, "-m", "flywheel.cli", "serve", "--config", str(config)]
        command += ["--store", f"sqlite:///{store_path}", "--runs-dir", str(work / f"runs-{name}")]
        command += ["--default-model", str(model), "--port", str(port), "--host", "127.0.0.1"]
        if name.startswith("old"):
            env["PYTHONPATH"] = str(Path(args.old_lib).resolve())
    log_path = work / f"{name}-service.log"  # a file, not a pipe: a full pipe would stall the service
    with open(log_path, "w") as log_file:
        service = subprocess.Popen(command, cwd=REPO, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    service.log_path = log_path
    ingest = None
    try:
        wait_healthy(port, service)
        if name.endswith("+ingest"):
            ingest = subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "_ingest",
                    str(work / "ingest.jsonl"),
                    "--store",
                    f"sqlite:///{store_path}",
                    "--config",
                    str(args.config),
                ],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=open(work / f"{name}-ingest.err", "w"),  # noqa: SIM115 (closed with the folder)
                text=True,
            )
        out = work / f"{name}.json"
        load = [sys.executable, __file__, "_load", "--port", str(port), "--questions", str(questions_file)]
        load += ["--clients", str(args.clients), "--requests", str(args.requests)]
        load += ["--warmup", str(args.warmup), "--out", str(out)]
        cpu_before = service_cpu_s(service.pid)
        subprocess.run(load, check=True, cwd=REPO)
        cpu_used = service_cpu_s(service.pid) - cpu_before
        result = json.loads(out.read_text())
        if name != "bare":
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as reply:
                health = json.load(reply)
            if "routing" in health:  # how many requests one predict call and one commit served
                routing, written = health["routing"], health["log"]
                result["route_batch_mean"] = round(routing["questions"] / max(1, routing["batches"]), 1)
                result["commit_batch_mean"] = round(written["committed"] / max(1, written["batches"]), 1)
        # CPU time per request is what the service costs, whatever else the machine runs meanwhile
        answered_total = sum(result["statuses"].values())
        result["service_cpu_ms_per_request"] = round(1000 * cpu_used / answered_total, 3)
        if ingest is not None:
            result["ingest_still_running_at_end"] = ingest.poll() is None
            ingest_out, _ = ingest.communicate(timeout=600)
            lines = ingest_out.strip().splitlines()
            errors = (work / f"{name}-ingest.err").read_text()[-1000:]
            result["ingest"] = json.loads(lines[-1]) if lines else {"error": errors}
    finally:
        service.terminate()
        service.wait(timeout=60)
        if ingest is not None and ingest.poll() is None:
            ingest.kill()
    answered = result.pop("ids")
    if name != "bare":
        stored = stored_serve_ids(store_path)
        result["logged_rows"] = len(stored)
        result["answered_200"] = len(answered)
        result["every_answer_logged_once"] = sorted(stored) == sorted(answered) and len(set(answered)) == len(
            answered
        )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6000, help="timed requests per run")
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--ingest-records", type=int, default=20000)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "demo.yaml")
    parser.add_argument("--old-lib", help="also measure `flywheel serve` from this lib/ folder")
    parser.add_argument("--only", nargs="+", help="run only these scenarios")
    args = parser.parse_args()

    sys.path.insert(0, str(REPO))
    from tests.tiny_router import train_tiny_router

    from bench.ingest import write_records

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = train_tiny_router(work / "tiny-tfidf")
        questions_file = work / "questions.json"
        questions_file.write_text(json.dumps(demo_questions(work / "demo")))
        write_records(work / "ingest.jsonl", args.ingest_records)
        names = ["bare", "flywheel", "flywheel+ingest"] + (["old", "old+ingest"] if args.old_lib else [])
        names = [n for n in names if not args.only or n in args.only]
        results = {}
        for name in names:
            results[name] = run_scenario(name, args, work, questions_file, model)
            print(f"[serve_throughput] {name}: {json.dumps(results[name])}", file=sys.stderr, flush=True)
    bare = results.get("bare", {}).get("req_per_s")
    for name, result in results.items():
        if name != "bare" and bare:
            result["vs_bare"] = round(result["req_per_s"] / bare, 3)
    summary = {
        "clients": args.clients,
        "requests": args.requests,
        "results": results,
        "goal": ">= 1,000 req/s and p99 <= 50 ms at 32 clients on 2 cores, every answer logged once",
        "python": sys.version.split()[0],
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}",
    }
    if "old" in results and "flywheel" in results:
        summary["flywheel_vs_old"] = round(results["flywheel"]["req_per_s"] / results["old"]["req_per_s"], 2)
    print(json.dumps(summary))


def ingest_child(args: argparse.Namespace) -> None:
    """What `flywheel ingest FILE --store URL --config C` runs; prints its counts."""
    from flywheel.collect.ingest import ingest_with_config
    from flywheel.core.config import load_config
    from flywheel.core.store import Store

    report = ingest_with_config(Store(args.store), [args.path], load_config(args.config), progress=False)
    print(json.dumps(report.as_dict()))


def child_main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    load = sub.add_parser("_load")
    load.add_argument("--port", type=int, required=True)
    load.add_argument("--questions", required=True)
    load.add_argument("--clients", type=int, default=32)
    load.add_argument("--requests", type=int, default=1000)
    load.add_argument("--warmup", type=int, default=100)
    load.add_argument("--out", required=True)
    bare = sub.add_parser("_bare")
    bare.add_argument("--model", required=True)
    bare.add_argument("--port", type=int, required=True)
    ingest = sub.add_parser("_ingest")
    ingest.add_argument("path")
    ingest.add_argument("--store", required=True)
    ingest.add_argument("--config", required=True)
    args = parser.parse_args()
    {"_load": load_child, "_bare": bare_child, "_ingest": ingest_child}[args.role](args)


if __name__ == "__main__":
    child_main() if len(sys.argv) > 1 and sys.argv[1] in ("_load", "_bare", "_ingest") else main()
