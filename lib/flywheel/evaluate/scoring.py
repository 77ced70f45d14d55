"""Score the baseline and each candidate on the test split: accuracy, paired test, agreement with production,
latency, cost (and, where the source knows it, the hidden-truth and unseen-template slices).

The baseline is the production model judged by its own decisions (`flywheel.core.decisions`): logged where it
answered, else asked in shadow. Once a small router serves, some test items have neither: the baseline row is
scored on the `baseline_n` items that have one (`baseline_missing` left out), the paired test and agreement
compare on those shared items, and every other model still scores on all test items. Its latency and cost
come only from interactions the production model answered itself."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from flywheel.core.accuracy import accuracy_with_ci
from flywheel.core.config import EvalConfig
from flywheel.core.cost import cost_per_1k_from_tokens
from flywheel.core.decisions import ProductionDecisions
from flywheel.core.routers import Router, model_size
from flywheel.evaluate.cost import cost_per_1k_from_hardware
from flywheel.evaluate.metrics import latency_stats, mcnemar_paired
from flywheel.evaluate.slices import Slices, agreement

BASELINE = "baseline"
THROUGHPUT_BATCH = 32


def logged_production(
    test: pd.DataFrame, logs: pd.DataFrame, *frames: pd.DataFrame | None
) -> ProductionDecisions:
    """Every logged decision of these items is the production model's (logs from before a small router
    served): their `routed_expert`, the model most of the test items' logs name."""
    items = pd.concat([f[["id", "routed_expert"]] for f in (test, *frames) if f is not None])
    ids = items["id"].to_numpy()
    model = logs.set_index("id").loc[test["id"], "model"].mode().iloc[0]
    return ProductionDecisions(
        model=str(model),
        decision=pd.Series(items["routed_expert"].to_numpy(), index=ids, dtype=object),
        logged=pd.Series(True, index=ids, dtype=bool),
    )


def production_logs(
    test: pd.DataFrame, logs: pd.DataFrame, production: ProductionDecisions
) -> tuple[pd.DataFrame, str]:
    """The logs the baseline's latency and tokens come from, and where from: the test items the production
    model answered itself, else (it answered none) every interaction it answered."""
    by_id = logs.set_index("id")
    answered = production.logged.reindex(test["id"], fill_value=False).to_numpy(dtype=bool)
    if answered.any():
        return by_id.loc[test["id"][answered]], "logged"
    answered_anywhere = production.logged.reindex(by_id.index, fill_value=False).to_numpy(dtype=bool)
    if not answered_anywhere.any():
        raise ValueError(
            f"no logged interaction was answered by the production model {production.model!r}: its latency "
            "and cost are unknown (set split.production_model to its name in the logs)"
        )
    return by_id[answered_anywhere], "logged (production-answered interactions outside the test split)"


def production_seconds(test: pd.DataFrame, logs: pd.DataFrame, production: ProductionDecisions) -> np.ndarray:
    """Per test item, the production model's latency in seconds: logged where it answered the item, else its
    median logged latency (a deferred query it never saw would take about that)."""
    own, _ = production_logs(test, logs, production)
    answered = production.logged.reindex(test["id"], fill_value=False).to_numpy(dtype=bool)
    logged = logs.set_index("id")["latency_ms"].reindex(test["id"]).to_numpy(dtype=float)
    return np.where(answered, logged, float(own["latency_ms"].median())) / 1000


def baseline_row(
    test: pd.DataFrame,
    logs: pd.DataFrame,
    eval_cfg: EvalConfig,
    slices: Slices | None = None,
    production: ProductionDecisions | None = None,
) -> dict:
    """The production model, judged by its own decisions (`production`; default: every test item's logged
    decision) on the test items that have one, with the latency and tokens of the interactions it answered."""
    production = production if production is not None else logged_production(test, logs)
    decisions = production.on(test["id"])
    known = np.array([d is not None for d in decisions], dtype=bool)
    if not known.any():
        raise ValueError(
            f"none of the {len(test)} test items has a production decision (logged, or asked in shadow): "
            "the baseline cannot be scored"
        )
    truth = [label for label, k in zip(test["label"], known, strict=True) if k]
    decided = [d for d in decisions if d is not None]
    logged, latency_source = production_logs(test, logs, production)
    prices = eval_cfg.prices
    row = {
        "name": BASELINE,
        "kind": "production",
        "model": production.model,
        **accuracy_with_ci(truth, decided, alpha=eval_cfg.alpha),
        "baseline_n": int(known.sum()),  # test items with a production decision: the paired tests' items
        "baseline_missing": int((~known).sum()),  # test items a small router answered, unseen by production
        "agreement": 1.0,
        **(slices or Slices()).subset(known).scores(decided, truth, eval_cfg.alpha),
        **_latency((logged["latency_ms"] / 1000).tolist()),
        "cost_per_1k": cost_per_1k_from_tokens(
            logged["tokens_in"].mean(),
            logged["tokens_out"].mean(),
            prices.baseline_usd_per_m_tokens_in,
            prices.baseline_usd_per_m_tokens_out,
        ),
        "cost_basis": prices.baseline_note,
        "latency_source": latency_source,
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
    """Per-query latency at batch 1 after warm-up, and throughput at a larger batch; `seconds` holds the
    timed queries' latencies (a cascade adds the production router's to them)."""
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
        "seconds": seconds,
    }


def candidate_row(
    router: Router,
    folder: Path,
    test: pd.DataFrame,
    baseline_pred: list[str],
    eval_cfg: EvalConfig,
    slices: Slices | None = None,
    predictions: list[str | None] | None = None,
) -> tuple[dict, list[str | None], list[float]]:
    """A candidate run here on the test items: its row, its decisions and its measured batch-1 seconds.
    `predictions`: its decisions when already known (the argmax of its probabilities), else predicted.
    `baseline_pred`: the production decisions, None where unknown: the paired test and the agreement compare
    on the items that have one."""
    texts = test["text"].tolist()
    truth = test["label"].tolist()
    if predictions is None:
        predictions = router.predict(texts)
    timing = time_router(router, texts, eval_cfg.latency_queries, eval_cfg.warmup_queries)
    seconds = timing.pop("seconds")
    shared = [i for i, p in enumerate(baseline_pred) if p is not None]
    shared_production = [baseline_pred[i] for i in shared]
    shared_predictions = [predictions[i] for i in shared]
    paired = mcnemar_paired([truth[i] for i in shared], shared_production, shared_predictions)
    row = {
        "name": router.name,
        "kind": "single",
        **accuracy_with_ci(truth, predictions, alpha=eval_cfg.alpha),
        "agreement": agreement(shared_predictions, shared_production),
        **(slices or Slices()).scores(predictions, truth, eval_cfg.alpha),
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
    return row, predictions, seconds


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


def _ci(row: dict, prefix: str = "") -> str | None:
    low, high = row.get(f"{prefix}ci_low"), row.get(f"{prefix}ci_high")
    return None if low is None or high is None else f"[{low:.3f}, {high:.3f}]"


def headline_table(rows: list[dict], promoted: str | None) -> pd.DataFrame:
    """One line per model (cascades too): accuracy ± CI, difference to baseline, paired test, agreement with
    production, deferral share (cascades), p50 latency, cost per 1k, size; and where the source knows them,
    accuracy against the hidden truth and on unseen templates (n and CI): columns only when some row has
    them."""
    baseline_acc = next(r["accuracy"] for r in rows if r["is_baseline"])
    hidden = any("hidden_truth_accuracy" in r for r in rows)
    unseen = any("unseen_template_accuracy" in r for r in rows)
    records = []
    for r in rows:
        record = {
            "model": r["name"],
            "accuracy": r["accuracy"],
            "ci95": _ci(r),
            "vs_baseline_points": round(100 * (r["accuracy"] - baseline_acc), 1),
            "mcnemar_p": r.get("mcnemar_p"),
            "agreement": r.get("agreement"),
            "deferral_share": r.get("deferral_share"),
            "p50_ms": r["p50_ms"],
            "ttft_p50_ms": r.get("ttft_p50_ms"),
            "cost_per_1k_usd": r["cost_per_1k"],
            "parameters": r.get("parameters"),
        }
        if hidden:
            record["hidden_truth_accuracy"] = r.get("hidden_truth_accuracy")
        if unseen:
            record["unseen_template_accuracy"] = r.get("unseen_template_accuracy")
            record["unseen_template_ci95"] = _ci(r, "unseen_template_")
            record["unseen_template_n"] = r.get("unseen_template_n")
        record["promoted"] = r["name"] == promoted
        records.append(record)
    return pd.DataFrame(records).set_index("model")
