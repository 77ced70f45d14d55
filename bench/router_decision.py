"""Router decision time: label scoring against greedy generation for a fine-tuned causal-LM candidate, at
batch 1 and batch 32, side by side in one run, with their accuracies on the test split. Prints one JSON line.

Four ways, on the same loaded model:
- score:         decisive-token label scoring over the cached system prefix (the workbench's default);
- score_full:    every token of every name plus end-of-turn, whole prompt each time (the earlier default);
- generate:      transformers greedy `generate` over the same cached system prefix;
- generate_full: transformers `generate` on the whole prompt each time (what a plain setup does).

Batch 1 is timed on one CPU thread (as the eval stage times candidates); batch 32 on all cores.

    python bench/router_decision.py --candidate runs/<id>/artifacts/candidates/smollm2-lora \
        --test runs/<id>/artifacts/ground_truth/<version>/test.parquet
    python bench/router_decision.py --candidate <folder> --test <parquet> --n 16 --batch1-queries 4   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import pandas as pd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidate", required=True, help="a trained causal_lm candidate folder")
    parser.add_argument("--test", required=True, help="test split (parquet with text, label)")
    parser.add_argument("--n", type=int, default=0, help="score only the first n test items (0: all)")
    parser.add_argument("--batch1-queries", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()

    import torch

    from flywheel.core.inference import CausalLMRouter
    from flywheel.core.routers import load_router

    test = pd.read_parquet(args.test)
    if args.n:
        test = test.head(args.n)
    texts, truth = test["text"].tolist(), test["label"].tolist()
    router = load_router(args.candidate)
    plain = CausalLMRouter(
        router.name,
        router.model,
        router.tokenizer,
        router.prompt,
        label_scoring="full",
        cache_system_prefix=False,
    )
    ways = {
        "score": (router, "score"),
        "score_full": (plain, "score"),
        "generate": (router, "generate"),
        "generate_full": (plain, "generate"),
    }
    result = {
        "candidate": router.name,
        "items": len(texts),
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    for way, (way_router, decision) in ways.items():
        way_router.decision = decision
        cores = os.cpu_count() or 1
        torch.set_num_threads(cores)
        way_router.batch_size = 32
        started = time.perf_counter()
        predictions = way_router.predict(texts)
        batch32 = (time.perf_counter() - started) / len(texts)
        torch.set_num_threads(1)
        way_router.batch_size = 1
        for text in texts[: args.warmup]:
            way_router.predict([text])
        seconds = []
        for text in texts[: args.batch1_queries]:
            started = time.perf_counter()
            way_router.predict([text])
            seconds.append(time.perf_counter() - started)
        torch.set_num_threads(cores)
        result[way] = {
            "accuracy": round(sum(p == t for p, t in zip(predictions, truth, strict=True)) / len(truth), 4),
            "unparseable": sum(p is None for p in predictions),
            "batch1_p50_ms": round(1000 * statistics.median(seconds), 1),
            "batch32_ms_per_query": round(1000 * batch32, 1),
        }
    for batch in ("batch1_p50_ms", "batch32_ms_per_query"):
        for way in ("generate", "generate_full", "score_full"):
            result[f"{way}_over_score_{batch.split('_')[0]}"] = round(
                result[way][batch] / result["score"][batch], 2
            )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
