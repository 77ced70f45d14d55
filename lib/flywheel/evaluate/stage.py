"""Stage 4 in readable steps: score every model on the test split (the production router, each candidate,
each candidate deferring its least confident queries to production: a cascade, its threshold chosen on the
validation split), decide and register the promotion, plot, score the label-source ablation, then write the
predictions, summary.json and the typed `EvalResult`.

"baseline" is the model the production logs came from; the registry calls it "production"."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from flywheel.core.cascade import write_cascade
from flywheel.core.config import Config, load_config
from flywheel.core.decisions import ProductionDecisions
from flywheel.core.files import atomic_write_json
from flywheel.core.log_sources import log_source
from flywheel.core.registry import Entry, Registry, default_export_path
from flywheel.core.results import EvalResult, FinetuneResult, TriageResult, read_result
from flywheel.core.routers import load_router
from flywheel.core.runs import RunDir, now_iso
from flywheel.core.sharing import shareable
from flywheel.core.store import Store
from flywheel.evaluate.ablation import score_ablation
from flywheel.evaluate.cascades import cascade_name, cascade_row, choose_threshold
from flywheel.evaluate.metrics import confusion, per_expert_report
from flywheel.evaluate.plots import (
    plot_ablation,
    plot_accuracy_vs_cost,
    plot_accuracy_vs_latency,
    plot_confusion,
    plot_per_expert,
)
from flywheel.evaluate.promote import PromotionRule, choose_promotion
from flywheel.evaluate.scoring import (
    BASELINE,
    baseline_row,
    candidate_row,
    headline_table,
    logged_production,
    production_seconds,
)
from flywheel.evaluate.slices import Slices, read_hidden_truth

LOG_COLUMNS = ["id", "model", "latency_ms", "tokens_in", "tokens_out"]
REGISTRY_METRICS = (
    "accuracy", "ci_low", "ci_high", "n", "p50_ms", "cost_per_1k", "mcnemar_p", "agreement",
    "threshold", "deferral_share",
)  # fmt: skip


@dataclass
class Evaluation:
    """Every model scored on one test split, and the promotion rule's decision."""

    test: pd.DataFrame
    candidate_dirs: dict[str, Path]
    rows: list[dict]  # the baseline first, then the candidates, then the cascades
    predictions: dict[str, list[str | None]]
    decision: dict
    rule: PromotionRule
    cascades_skipped: dict[str, str] = field(default_factory=dict)  # per candidate: why it has no cascade
    ablation: pd.DataFrame | None = None  # the label-source ablation (score_ablation), None: not run

    @property
    def table(self) -> pd.DataFrame:
        return headline_table(self.rows, self.decision["promoted"])

    def rows_of(self, kind: str) -> list[dict]:
        """The rows of one kind: "production", "single" or "cascade"."""
        return [r for r in self.rows if r.get("kind") == kind]

    def cascade_table(self) -> pd.DataFrame:
        """One line per cascade: its student, threshold, deferral share and the upper bound of its accuracy
        drop (chosen on validation), and on test its deferral share, accuracy, cost per 1k and p50 latency."""
        columns = {
            "student": "student", "threshold": "threshold",
            "validation_deferral_share": "validation_deferral_share",
            "validation_drop_upper": "validation_drop_upper", "deferral_share": "test_deferral_share",
            "accuracy": "accuracy", "cost_per_1k": "cost_per_1k_usd", "p50_ms": "p50_ms",
        }  # fmt: skip
        rows = [
            {"cascade": r["name"], **{new: r.get(old) for old, new in columns.items()}}
            for r in self.rows_of("cascade")
        ]
        return pd.DataFrame(rows, columns=["cascade", *columns.values()]).set_index("cascade")

    def decision_text(self, registry_entry: Entry | None) -> str:
        """Why the decision went this way, why each other candidate was not promoted, which candidates have
        no cascade and why, and the registry."""
        lines = [self.decision["reason"]]
        lines += [f"  not promoted: {name}: {why}" for name, why in self.decision["rejected"].items()]
        lines += [f"  no cascade: {name}: {why}" for name, why in self.cascades_skipped.items()]
        lines.append(f"registry: {registry_entry.model_name if registry_entry else 'unchanged'}")
        if "next_step" in self.decision:
            lines.append(self.decision["next_step"])
        return "\n".join(lines)

    def result(self) -> EvalResult:
        table = self.table.reset_index().to_dict("records")
        return EvalResult(promoted=self.decision["promoted"], table=table)


def run_eval(run: RunDir, config: Config, store: Store) -> Evaluation:
    """Stage 4 on a run directory: the triage stage's test and validation splits, the finetune stage's
    candidates and ablation students, the store's logs and the production model's decisions (logged, or
    in shadow where a small router answered) and, where the source knows it (the demo), the hidden truth
    (scoring only)."""
    ground_truth = read_result(run, TriageResult).ground_truth
    finetune = read_result(run, FinetuneResult)
    splits = {name: ground_truth.load_split(name) for name in ("train", "validation", "test")}
    logs = store.interactions_frame([*LOG_COLUMNS, "routed_expert", "timestamp"])
    production = ProductionDecisions.of(logs, store.shadow_frame("production"), config.split.production_model)
    truth = read_hidden_truth(log_source(config.source.kind).hidden_truth(run))
    return evaluate_all(
        config,
        splits["test"],
        logs,
        finetune.candidate_dirs,
        validation=splits["validation"],
        train=splits["train"],
        hidden_truth=truth,
        ablation_dirs=finetune.ablation_dirs,
        production=production,
    )


def evaluate_all(
    config: Config,
    test: pd.DataFrame,
    logs: pd.DataFrame,
    candidate_dirs: dict[str, Path],
    *,
    validation: pd.DataFrame | None = None,
    train: pd.DataFrame | None = None,
    hidden_truth: pd.DataFrame | None = None,
    ablation_dirs: dict[str, Path] | None = None,
    production: ProductionDecisions | None = None,
) -> Evaluation:
    """Baseline from its logs, each candidate measured here, each candidate's cascade (needs `validation`
    and `config.eval.cascades`); then the promotion rule over candidates and cascades alike. With
    `hidden_truth` (read_hidden_truth) the rows also score against it, and with `train` too, on the
    unseen-template slice. `production`: the production model's decisions (ProductionDecisions.of the
    store); None: every logged decision of the test and validation items is production's (`routed_expert`).
    The baseline and cascades score on the test items with a production decision; cascade thresholds are
    chosen on the validation items with one."""
    eval_cfg = config.eval
    if production is None:
        production = logged_production(test, logs, validation)
    slices = Slices.build(test, train, hidden_truth)
    baseline = baseline_row(test, logs, eval_cfg, slices, production)
    rows, cascades, skipped = [baseline], [], {}
    predictions = {BASELINE: production.on(test["id"])}
    cascade_predictions = {}
    logged_seconds = production_seconds(test, logs, production)
    no_validation = "no validation split to choose its threshold on"
    if validation is not None and not validation.empty:  # thresholds where a deferral's outcome is known
        no_validation = "no validation item has a production decision to choose its threshold on"
        validation_production = production.on(validation["id"])
        validation = validation[[p is not None for p in validation_production]]
        validation_production = [p for p in validation_production if p is not None]
    texts = test["text"].tolist()
    for name, folder in candidate_dirs.items():
        router = load_router(folder)
        proba = _proba(router, texts) if eval_cfg.cascades else None
        known = None if proba is None else [router.labels[i] for i in proba.argmax(axis=1)]
        row, predictions[name], seconds = candidate_row(
            router, folder, test, predictions[BASELINE], eval_cfg, slices, predictions=known
        )
        rows.append(row)
        if not eval_cfg.cascades:
            continue
        if proba is None:
            skipped[name] = "it gives no per-expert probabilities to threshold"
            continue
        if validation is None or validation.empty:
            skipped[name] = no_validation
            continue
        choice = choose_threshold(
            _proba(router, validation["text"].tolist()),
            list(router.labels),
            validation["label"].tolist(),
            validation_production,
            eval_cfg.cascade_target_points,
            eval_cfg.cascade_confidence,
        )
        if choice.threshold is None:
            skipped[name] = choice.reason
            continue
        cascade, cascade_predictions[cascade_name(name)] = cascade_row(
            row, seconds, proba, list(router.labels), choice, test, logged_seconds, baseline, slices,
            eval_cfg.alpha, production=predictions[BASELINE],
        )  # fmt: skip
        cascades.append(cascade)
    rows += cascades
    predictions.update(cascade_predictions)
    rule = PromotionRule(
        max_drop_points=eval_cfg.max_drop_points, alpha=eval_cfg.alpha, cost_tie_share=eval_cfg.cost_tie_share
    )
    decision = choose_promotion(baseline, rows[1:], rule)
    for row in rows:
        row["promoted"] = row["name"] == decision["promoted"]
    ablation = score_ablation(ablation_dirs, test, eval_cfg.alpha) if ablation_dirs else None
    return Evaluation(test, dict(candidate_dirs), rows, predictions, decision, rule, skipped, ablation)


def _proba(router, texts: list[str]) -> np.ndarray | None:
    """The router's per-expert probabilities, None when it has none (an endpoint, a generating LM)."""
    if not hasattr(router, "predict_proba") or not hasattr(router, "labels"):
        return None
    try:
        return np.asarray(router.predict_proba(texts), dtype=float)
    except ValueError:  # e.g. a causal LM that decides by generation: no score per expert
        return None


def record_promotion(
    run: RunDir, store: Store, evaluation: Evaluation, promote_via: str | None = None
) -> Entry | None:
    """Put the promoted router into the registry (the router service then serves it): a candidate's own
    folder, or for a cascade a cascade folder (`artifacts/cascades/<name>`: the student and its threshold).

    With `promote_via` "shadow" (default: the run's `eval.promote_via`) it goes in shadow instead: the
    service logs its decisions beside the router in service for a week, then it is promoted or rejected
    (`flywheel run`). The decision (and so summary.json) records which (`registry_event`, `next_step`)."""
    name = evaluation.decision["promoted"]
    if name is None:
        return None
    if promote_via is None:  # a run directory without its config (tests) promotes at once
        configured = run.config_path.exists()
        promote_via = load_config(run.config_path).eval.promote_via if configured else "registry"
    if promote_via not in ("registry", "shadow"):
        raise ValueError(f"promote_via is 'registry' or 'shadow', got {promote_via!r}")
    row = next(r for r in evaluation.rows if r["name"] == name)
    folder = evaluation.candidate_dirs.get(name)
    if row.get("kind") == "cascade":
        student_dir = evaluation.candidate_dirs[row["student"]]
        folder = write_cascade(run.artifact("cascades", name), student_dir, row["threshold"], name)
    config_name = run.manifest().get("config", {}).get("name", "default")
    registry = Registry(store, default_export_path(run.runs_root, config_name))
    record = registry.shadow if promote_via == "shadow" else registry.promote
    entry = record(
        folder,
        reason=evaluation.decision["reason"],
        metrics={key: row[key] for key in REGISTRY_METRICS if row.get(key) is not None},
        cycle_id=run.cycle_id,
    )
    evaluation.decision["registry_event"] = entry.event
    if entry.event == "shadow":
        evaluation.decision["next_step"] = (
            f"{entry.model_name} goes to its shadow week: the router service logs its decisions beside the "
            "router in service, without answering with them; it is promoted only if its agreement and "
            "accuracy on that week's reviewed items hold"
        )
    return entry


def save_plots(run: RunDir, evaluation: Evaluation, experts: list[str]) -> dict[str, Path]:
    """The cycle's figures as PNGs in the run directory: accuracy against cost and latency (cascades
    marked apart), per model its confusion matrix (`confusion_<name>`) and per-expert scores
    (`per_expert_<name>`), and the label-source ablation (`ablation`) when there is one."""
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
    if evaluation.ablation is not None and not evaluation.ablation.empty:
        paths["ablation"] = run.plot("ablation.png")
        plot_ablation(evaluation.ablation, paths["ablation"])
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
    """summary.json: the ground truth and judges (from triage), the review, baseline, candidates and cascades
    (accuracy with 95% CI, agreement, latency, cost per 1k; hidden-truth and unseen-template keys where the
    source knows them), the candidates without a cascade and why, the label-source ablation and the
    promotion with its rule."""
    triage = read_result(run, TriageResult)
    summary = {
        "cycle_id": run.cycle_id,
        "written_at": now_iso(),
        "ground_truth": triage.ground_truth.model_dump(mode="json"),
        "review": run.manifest().get("review"),
        "judges": triage.judges,
        "baseline": evaluation.rows[0],
        "candidates": evaluation.rows_of("single"),
        "cascades": evaluation.rows_of("cascade"),
        "cascades_skipped": evaluation.cascades_skipped,
        "ablation": None
        if evaluation.ablation is None
        else evaluation.ablation.reset_index().to_dict("records"),
        "promoted": evaluation.decision["promoted"],
        "promotion": {**evaluation.decision, "rule": asdict(evaluation.rule)},
    }
    summary = shareable(summary, run.path)  # meant for sharing: no machine paths
    atomic_write_json(run.summary_path, summary)
    return summary
