"""Stage 3 in readable steps: what will train, the training, and the typed `FinetuneResult` the eval stage
reads (`python -m flywheel.finetune` trains through the same `finetune_run`)."""

from __future__ import annotations

from pathlib import Path

from flywheel.core.config import Config
from flywheel.core.results import FinetuneResult, TriageResult, read_result
from flywheel.core.runs import RunDir
from flywheel.finetune.ablation import ablation_candidate, train_ablation
from flywheel.finetune.train import finetune_run, load_splits, select_candidates

CURVE_FILE = "training_curve.png"
CURVES = ("loss_curve",)  # long lists kept in each candidate's training.json only


def training_plan(run: RunDir, config: Config, only_candidates: list[str], candidate_overrides: dict) -> str:
    """The ground-truth version and, one line each, the candidates that will train."""
    lines = [f"ground truth {read_result(run, TriageResult).ground_truth.version}"]
    lines += [
        f"  {candidate.name}: {candidate.kind} {candidate.model or ''} {candidate.method}"
        for candidate in select_candidates(config.candidates, only_candidates, candidate_overrides)
    ]
    return "\n".join(lines)


def run_finetune(
    run: RunDir, config: Config, only_candidates: list[str], candidate_overrides: dict
) -> FinetuneResult:
    """Train the chosen candidates on the ground-truth train split (one trained earlier in this run is
    kept), then the label-source ablation (config `ablation`); their records without the loss curves,
    which are PNGs beside each candidate."""
    ablated = ablation_candidate(config)  # a wrong name fails before anything trains
    records = finetune_run(run, config, only_candidates, candidate_overrides)
    candidate_dirs = {name: run.artifact("candidates", name) for name in records}
    ablation_dirs = {}
    if ablated is not None:
        train, validation = load_splits(run)
        ablation_dirs = train_ablation(
            ablated,
            train,
            validation,
            dict(config.experts),
            run.artifact("ablation"),
            config.seed,
            full_folder=candidate_dirs.get(ablated.name),
        )
    return FinetuneResult(
        candidates={
            name: {key: value for key, value in record.items() if key not in CURVES}
            for name, record in records.items()
        },
        candidate_dirs=candidate_dirs,
        ablation_dirs=ablation_dirs,
    )


def training_curves(result: FinetuneResult) -> list[Path]:
    """The loss-curve PNGs of the candidates that trained (zero- and few-shot ones have none)."""
    curves = [folder / CURVE_FILE for folder in result.candidate_dirs.values()]
    return [curve for curve in curves if curve.is_file()]
