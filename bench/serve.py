"""Serve latency overhead: the same router called in-process vs through the HTTP service.

    .venv/bin/python bench/serve.py [--n 200] [--warmup 10] [--model runs/<cycle>/artifacts/candidates/X]

Median per-query time at batch 1 after warm-up of (a) `router.predict([q])` in this process, (b) a raw HTTP
round trip to `POST /v1/chat/completions` (httpx, keep-alive), (c) the same through the `openai` client. The
service runs under uvicorn in a background thread of this process, logging each request to a throwaway
SQLite store (so (b) includes the store write). Without --model a tiny TF-IDF router is trained first.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from openai import OpenAI

from flywheel.core.registry import Registry
from flywheel.core.routers import load_router
from flywheel.core.store import Store
from flywheel.serve.app import create_app
from flywheel.serve.routing import RouterProvider
from flywheel.serve.runner import serve_in_thread

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: its tests/ helpers
from tests.tiny_router import TINY_EXAMPLES, train_tiny_router

QUESTIONS = [text for texts in TINY_EXAMPLES.values() for text in texts]


def median_ms(call, n: int, warmup: int) -> float:
    times = []
    for i in range(warmup + n):
        question = QUESTIONS[i % len(QUESTIONS)]
        started = time.perf_counter()
        call(question)
        if i >= warmup:
            times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="timed requests per path")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--model", type=Path, help="trained candidate folder (default: a tiny TF-IDF router)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or train_tiny_router(Path(tmp) / "tiny-tfidf")
        router = load_router(model)
        in_process = median_ms(lambda q: router.predict([q]), args.n, args.warmup)

        store = Store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        app = create_app(store, RouterProvider(Registry(store), default_model=model))
        started = time.perf_counter()
        with serve_in_thread(app) as base_url:
            start_s = time.perf_counter() - started
            with httpx.Client(base_url=base_url, timeout=30) as http:

                def raw(question: str) -> None:
                    body = {"model": "router", "messages": [{"role": "user", "content": question}]}
                    http.post("/chat/completions", json=body).raise_for_status()

                http_ms = median_ms(raw, args.n, args.warmup)
            client = OpenAI(base_url=base_url, api_key="unused", max_retries=0)

            def sdk(question: str) -> None:
                client.chat.completions.create(
                    model="router", messages=[{"role": "user", "content": question}]
                )

            openai_ms = median_ms(sdk, args.n, args.warmup)
        logged = store.interactions_frame(["latency_ms"])["latency_ms"]

    print(
        json.dumps(
            {
                "model": router.name,
                "n": args.n,
                "warmup": args.warmup,
                "in_process_predict_ms_p50": round(in_process, 3),
                "http_round_trip_ms_p50": round(http_ms, 3),
                "openai_client_ms_p50": round(openai_ms, 3),
                "overhead_ms_p50": round(http_ms - in_process, 3),
                "server_side_latency_ms_p50": round(float(logged.median()), 3),
                "server_start_s": round(start_s, 3),
                "logged_interactions": len(logged),
                "python": sys.version.split()[0],
                "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
            }
        )
    )


if __name__ == "__main__":
    main()
