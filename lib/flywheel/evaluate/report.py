"""Evaluate every model of the cycle, decide the promotion, and write summary.json."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from flywheel.core.config import Config
from flywheel.core.routers import load_router
from flywheel.core.runs import RunDir, atomic_write_json, now_iso
from flywheel.evaluate.metrics import confusion, per_expert_report
from flywheel.evaluate.plots import (
    plot_accuracy_vs_cost,
    plot_accuracy_vs_latency,
    plot_confusion,
    plot_per_expert,
)
from flywheel.evaluate.promote import PromotionRule, choose_promotion
from flywheel.evaluate.scoring import BASELINE, baseline_row, candidate_row, headline_table


@dataclass
class Evaluation:
    rows: list[dict]
    predictions: dict[str, list[str | None]]
    decision: dict
    rule: PromotionRule

    @property
    def table(self) -> pd.DataFrame:
        return headline_table(self.rows, self.decision["promoted"])


def evaluate_all(
    config: Config, test: pd.DataFrame, logs: pd.DataFrame, candidate_dirs: dict[str, Path]
) -> Evaluation:
    """Baseline from its logs, each candidate measured here; then the promotion rule."""
    baseline = baseline_row(test, logs, config.eval)
    rows = [baseline]
    predictions = {BASELINE: test["routed_expert"].tolist()}
    for name, folder in candidate_dirs.items():
        router = load_router(folder)
        row, predictions[name] = candidate_row(router, folder, test, predictions[BASELINE], config.eval)
        rows.append(row)
    rule = PromotionRule(max_drop_points=config.eval.max_drop_points, alpha=config.eval.alpha)
    decision = choose_promotion(baseline, rows[1:], rule)
    for row in rows:
        row["promoted"] = row["name"] == decision["promoted"]
    return Evaluation(rows, predictions, decision, rule)


def save_plots(
    run: RunDir, evaluation: Evaluation, test: pd.DataFrame, experts: list[str]
) -> dict[str, Path]:
    """The cycle's figures as PNGs in the run directory."""
    paths = {
        "accuracy_vs_cost": run.plot("accuracy_vs_cost.png"),
        "accuracy_vs_latency": run.plot("accuracy_vs_latency.png"),
    }
    plot_accuracy_vs_cost(evaluation.rows, paths["accuracy_vs_cost"])
    plot_accuracy_vs_latency(evaluation.rows, paths["accuracy_vs_latency"])
    truth = test["label"].tolist()
    for name, predicted in evaluation.predictions.items():
        matrix, columns = confusion(truth, predicted, experts)
        paths[f"confusion_{name}"] = run.plot(f"confusion_{name}.png")
        plot_confusion(matrix, experts, columns, f"Confusion: {name}", paths[f"confusion_{name}"])
        paths[f"per_expert_{name}"] = run.plot(f"per_expert_{name}.png")
        plot_per_expert(
            per_expert_report(truth, predicted, experts), f"Per expert: {name}", paths[f"per_expert_{name}"]
        )
    return paths


def save_predictions(run: RunDir, evaluation: Evaluation, test: pd.DataFrame) -> Path:
    frame = test[["id", "text", "label"]].copy()
    for name, predicted in evaluation.predictions.items():
        frame[f"pred_{name}"] = predicted
    path = run.artifact("eval", "predictions.parquet")
    frame.to_parquet(path)
    return path


def write_summary(run: RunDir, evaluation: Evaluation, ground_truth: dict) -> dict:
    """summary.json: baseline and candidates (accuracy with 95% CI, latency, cost per 1k), the promotion."""
    summary = {
        "cycle_id": run.cycle_id,
        "written_at": now_iso(),
        "ground_truth": ground_truth,
        "review": run.manifest().get("review"),
        "judges": run.results("02_triage").get("judges"),
        "baseline": evaluation.rows[0],
        "candidates": evaluation.rows[1:],
        "promoted": evaluation.decision["promoted"],
        "promotion": {**evaluation.decision, "rule": asdict(evaluation.rule)},
    }
    atomic_write_json(run.summary_path, summary)
    return summary


def record_promotion(
    run: RunDir, store, evaluation: Evaluation, candidate_dirs: dict[str, Path]
) -> dict | None:
    """Put the promoted candidate into the registry (the router service then serves it)."""
    from flywheel.core.registry import Registry, default_export_path

    name = evaluation.decision["promoted"]
    if name is None:
        return None
    row = next(r for r in evaluation.rows if r["name"] == name)
    metrics = {
        k: row[k] for k in ("accuracy", "ci_low", "ci_high", "n", "p50_ms", "cost_per_1k", "mcnemar_p")
    }
    config_name = run.manifest().get("config", {}).get("name", "default")
    registry = Registry(store, default_export_path(run.runs_root, config_name))
    entry = registry.promote(
        candidate_dirs[name], reason=evaluation.decision["reason"], metrics=metrics, cycle_id=run.cycle_id
    )
    return entry.as_dict()
