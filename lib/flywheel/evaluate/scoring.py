"""Score the baseline and each candidate on the test split: accuracy, paired test, latency, cost."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from flywheel.core.config import EvalConfig
from flywheel.core.routers import Router, model_size
from flywheel.evaluate.cost import cost_per_1k_from_hardware, cost_per_1k_from_tokens
from flywheel.evaluate.metrics import accuracy_with_ci, latency_stats, mcnemar_paired

BASELINE = "baseline"
THROUGHPUT_BATCH = 32


def baseline_row(test: pd.DataFrame, logs: pd.DataFrame, eval_cfg: EvalConfig) -> dict:
    """The production model, judged by its logged decisions, logged latency and logged tokens."""
    logged = logs.set_index("id").loc[test["id"]]
    prices = eval_cfg.prices
    row = {
        "name": BASELINE,
        "model": str(logged["model"].mode().iloc[0]),
        **accuracy_with_ci(test["label"].tolist(), test["routed_expert"].tolist(), alpha=eval_cfg.alpha),
        **_latency((logged["latency_ms"] / 1000).tolist()),
        "cost_per_1k": cost_per_1k_from_tokens(
            logged["tokens_in"].mean(),
            logged["tokens_out"].mean(),
            prices.baseline_usd_per_m_tokens_in,
            prices.baseline_usd_per_m_tokens_out,
        ),
        "cost_basis": prices.baseline_note,
        "latency_source": "logged",
        "is_baseline": True,
    }
    return row


def _latency(seconds: list[float]) -> dict:
    stats = latency_stats(seconds)
    stats["latency_samples"] = stats.pop("n")  # "n" is the number of scored items
    return stats


@contextmanager
def single_cpu_thread():
    """Batch-1 queries are timed on one CPU thread: a small model's ops are too short to share, and
    with two threads one busy core elsewhere on the machine made each query ~30x slower here."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def time_router(router: Router, texts: list[str], n_queries: int, warmup: int) -> dict:
    """Per-query latency at batch 1 after warm-up, and throughput at a larger batch."""
    seconds = []
    with single_cpu_thread():
        for text in texts[:warmup]:
            router.predict([text])
        for text in tqdm(texts[:n_queries], desc=f"latency {router.name}", leave=False):
            started = time.perf_counter()
            router.predict([text])
            seconds.append(time.perf_counter() - started)
    batch = (texts * (THROUGHPUT_BATCH // max(len(texts), 1) + 1))[:THROUGHPUT_BATCH]
    started = time.perf_counter()
    router.predict(batch)
    throughput = len(batch) / (time.perf_counter() - started)
    return {
        **_latency(seconds),
        "throughput_qps": round(throughput, 1),
        "seconds_per_query": float(np.mean(seconds)),
    }


def candidate_row(
    router: Router, folder: Path, test: pd.DataFrame, baseline_pred: list[str], eval_cfg: EvalConfig
) -> tuple[dict, list[str | None]]:
    texts = test["text"].tolist()
    truth = test["label"].tolist()
    predictions = router.predict(texts)
    timing = time_router(router, texts, eval_cfg.latency_queries, eval_cfg.warmup_queries)
    paired = mcnemar_paired(truth, baseline_pred, predictions)
    row = {
        "name": router.name,
        **accuracy_with_ci(truth, predictions, alpha=eval_cfg.alpha),
        **timing,
        **time_to_first_token(router, texts, eval_cfg.ttft_queries),
        **candidate_cost(router, timing["seconds_per_query"], eval_cfg),
        "latency_source": "measured here, batch 1",
        "mcnemar_p": paired["p_value"],
        "only_baseline_correct": paired["a_only_correct"],
        "only_candidate_correct": paired["b_only_correct"],
        **model_size(folder),
        "is_baseline": False,
    }
    return row, predictions


def time_to_first_token(router: Router, texts: list[str], n_queries: int) -> dict:
    """p50 time to the first generated token at batch 1 (causal LMs only: their prompt's forward pass)."""
    if not hasattr(router, "first_token_seconds") or n_queries == 0:
        return {}
    with single_cpu_thread():
        router.first_token_seconds(texts[0])  # warm-up
        seconds = [router.first_token_seconds(t) for t in texts[:n_queries]]
    return {"ttft_p50_ms": round(1000 * float(np.median(seconds)), 2)}


def candidate_cost(router: Router, seconds_per_query: float, eval_cfg: EvalConfig) -> dict:
    """An endpoint with token prices: its reported usage x the prices. Else the measured seconds per query
    x the hardware price (for an endpoint without prices, that is only the client's wait: say so)."""
    prices = getattr(router, "prices", (None, None))
    tokens = router.mean_tokens() if hasattr(router, "mean_tokens") else None
    if None not in prices and tokens is not None:
        return {
            "cost_per_1k": cost_per_1k_from_tokens(*tokens, *prices),
            "cost_basis": router.price_note,
            "mean_tokens_in": round(tokens[0], 1),
            "mean_tokens_out": round(tokens[1], 1),
        }
    basis = eval_cfg.prices.hardware_note
    if hasattr(router, "mean_tokens"):
        basis = "client wait x local hardware price (set the endpoint's token prices for its real cost)"
    return {
        "cost_per_1k": cost_per_1k_from_hardware(seconds_per_query, eval_cfg.prices.hardware_usd_per_hour),
        "cost_basis": basis,
    }


def headline_table(rows: list[dict], promoted: str | None) -> pd.DataFrame:
    """One line per model: accuracy ± CI, p50 latency, cost per 1k, size, difference to baseline."""
    baseline_acc = next(r["accuracy"] for r in rows if r["is_baseline"])
    table = pd.DataFrame(
        {
            "model": r["name"],
            "accuracy": r["accuracy"],
            "ci95": f"[{r['ci_low']:.3f}, {r['ci_high']:.3f}]",
            "vs_baseline_points": round(100 * (r["accuracy"] - baseline_acc), 1),
            "mcnemar_p": r.get("mcnemar_p"),
            "p50_ms": r["p50_ms"],
            "ttft_p50_ms": r.get("ttft_p50_ms"),
            "cost_per_1k_usd": r["cost_per_1k"],
            "parameters": r.get("parameters"),
            "promoted": r["name"] == promoted,
        }
        for r in rows
    )
    return table.set_index("model")
