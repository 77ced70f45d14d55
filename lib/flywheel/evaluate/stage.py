"""Stage 4 in readable steps: score every model on the test split, decide and register the promotion, plot,
then write the predictions, summary.json and the typed `EvalResult`.

"baseline" is the model the production logs came from; the registry calls it "production"."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from flywheel.core.config import Config
from flywheel.core.files import atomic_write_json
from flywheel.core.registry import Entry, Registry, default_export_path
from flywheel.core.results import EvalResult, FinetuneResult, TriageResult, read_result
from flywheel.core.routers import load_router
from flywheel.core.runs import RunDir, now_iso
from flywheel.core.store import Store
from flywheel.evaluate.metrics import confusion, per_expert_report
from flywheel.evaluate.plots import (
    plot_accuracy_vs_cost,
    plot_accuracy_vs_latency,
    plot_confusion,
    plot_per_expert,
)
from flywheel.evaluate.promote import PromotionRule, choose_promotion
from flywheel.evaluate.scoring import BASELINE, baseline_row, candidate_row, headline_table

LOG_COLUMNS = ["id", "model", "latency_ms", "tokens_in", "tokens_out"]
REGISTRY_METRICS = ("accuracy", "ci_low", "ci_high", "n", "p50_ms", "cost_per_1k", "mcnemar_p")


@dataclass
class Evaluation:
    """Every model scored on one test split, and the promotion rule's decision."""

    test: pd.DataFrame
    candidate_dirs: dict[str, Path]
    rows: list[dict]  # the baseline first, then the candidates
    predictions: dict[str, list[str | None]]
    decision: dict
    rule: PromotionRule

    @property
    def table(self) -> pd.DataFrame:
        return headline_table(self.rows, self.decision["promoted"])

    def decision_text(self, registry_entry: Entry | None) -> str:
        """Why the decision went this way, why each other candidate was not promoted, and the registry."""
        lines = [self.decision["reason"]]
        lines += [f"  not promoted: {name}: {why}" for name, why in self.decision["rejected"].items()]
        lines.append(f"registry: {registry_entry.model_name if registry_entry else 'unchanged'}")
        return "\n".join(lines)

    def result(self) -> EvalResult:
        table = self.table.reset_index().to_dict("records")
        return EvalResult(promoted=self.decision["promoted"], table=table)


def run_eval(run: RunDir, config: Config, store: Store) -> Evaluation:
    """Stage 4 on a run directory: the triage stage's test split, the finetune stage's candidates and the
    store's logs of the production model."""
    test = read_result(run, TriageResult).ground_truth.load_split("test")
    candidate_dirs = read_result(run, FinetuneResult).candidate_dirs
    logs = store.interactions_frame(LOG_COLUMNS)
    return evaluate_all(config, test, logs, candidate_dirs)


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
    return Evaluation(test, dict(candidate_dirs), rows, predictions, decision, rule)


def record_promotion(run: RunDir, store: Store, evaluation: Evaluation) -> Entry | None:
    """Put the promoted candidate into the registry (the router service then serves it)."""
    name = evaluation.decision["promoted"]
    if name is None:
        return None
    row = next(r for r in evaluation.rows if r["name"] == name)
    config_name = run.manifest().get("config", {}).get("name", "default")
    registry = Registry(store, default_export_path(run.runs_root, config_name))
    return registry.promote(
        evaluation.candidate_dirs[name],
        reason=evaluation.decision["reason"],
        metrics={key: row[key] for key in REGISTRY_METRICS},
        cycle_id=run.cycle_id,
    )


def save_plots(run: RunDir, evaluation: Evaluation, experts: list[str]) -> dict[str, Path]:
    """The cycle's figures as PNGs in the run directory: accuracy against cost and latency, and per model
    its confusion matrix (`confusion_<name>`) and per-expert scores (`per_expert_<name>`)."""
    paths = {
        "accuracy_vs_cost": run.plot("accuracy_vs_cost.png"),
        "accuracy_vs_latency": run.plot("accuracy_vs_latency.png"),
    }
    plot_accuracy_vs_cost(evaluation.rows, paths["accuracy_vs_cost"])
    plot_accuracy_vs_latency(evaluation.rows, paths["accuracy_vs_latency"])
    truth = evaluation.test["label"].tolist()
    for name, predicted in evaluation.predictions.items():
        matrix, columns = confusion(truth, predicted, experts)
        paths[f"confusion_{name}"] = run.plot(f"confusion_{name}.png")
        plot_confusion(matrix, experts, columns, f"Confusion: {name}", paths[f"confusion_{name}"])
        paths[f"per_expert_{name}"] = run.plot(f"per_expert_{name}.png")
        plot_per_expert(
            per_expert_report(truth, predicted, experts), f"Per expert: {name}", paths[f"per_expert_{name}"]
        )
    return paths


def save_predictions(run: RunDir, evaluation: Evaluation) -> Path:
    """Each test item with its true label and every model's prediction (`pred_<name>`), as Parquet."""
    frame = evaluation.test[["id", "text", "label"]].copy()
    for name, predicted in evaluation.predictions.items():
        frame[f"pred_{name}"] = predicted
    path = run.artifact("eval", "predictions.parquet")
    frame.to_parquet(path)
    return path


def write_summary(run: RunDir, evaluation: Evaluation) -> dict:
    """summary.json: the ground truth and judges (from triage), the review, baseline and candidates (accuracy
    with 95% CI, latency, cost per 1k) and the promotion with its rule."""
    triage = read_result(run, TriageResult)
    summary = {
        "cycle_id": run.cycle_id,
        "written_at": now_iso(),
        "ground_truth": triage.ground_truth.model_dump(mode="json"),
        "review": run.manifest().get("review"),
        "judges": triage.judges,
        "baseline": evaluation.rows[0],
        "candidates": evaluation.rows[1:],
        "promoted": evaluation.decision["promoted"],
        "promotion": {**evaluation.decision, "rule": asdict(evaluation.rule)},
    }
    atomic_write_json(run.summary_path, summary)
    return summary
