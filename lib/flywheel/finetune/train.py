"""Train one candidate router on the ground-truth train split and record how it went.

The trainers of the transformers kinds (encoder, SetFit, causal LM) are imported when a candidate of their
kind trains: importing trl, peft and the transformers Trainer takes ~5 s, which a flywheel cycle of
scikit-learn students would otherwise pay every week.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pandas as pd

from flywheel.core.config import CandidateConfig
from flywheel.core.memory import peak_rss_mb
from flywheel.core.results import TriageResult, read_result
from flywheel.core.routers import load_router, write_candidate_card
from flywheel.finetune.ensemble import train_ensemble
from flywheel.finetune.linear import train_linear
from flywheel.finetune.recipes import check_recipe

__all__ = ["finetune_run", "select_candidates", "train_all", "train_candidate"]


def train_candidate(
    candidate: CandidateConfig,
    train: pd.DataFrame,
    experts: list[str] | dict[str, str],
    out_dir: Path,
    seed: int,
    callbacks: list | None = None,
    validation: pd.DataFrame | None = None,
) -> dict:
    """Train, save into out_dir (with candidate.json) and return the training record.

    `experts`: the catalog (name -> description; a list of names also works). `validation` (expert labels)
    drives early stopping, model selection and searches; it is never trained on. A causal-LM candidate
    killed mid-training resumes from its last checkpoint; other half-written candidates are retrained.
    Every record has train_examples, validation_accuracy, chosen (the step, epoch or C kept), search (what
    a search tried) and train_seconds."""
    out_dir = Path(out_dir)
    catalog = dict(experts) if isinstance(experts, dict) else dict.fromkeys(experts, "")
    experts = list(catalog)
    resumable = candidate.kind == "causal_lm" and _resumable_causal_lm(out_dir)
    if out_dir.exists() and not resumable:
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if candidate.kind == "causal_lm":
        from flywheel.finetune.sft import train_causal

        record = train_causal(candidate, train, catalog, out_dir, seed, callbacks)
        if not record:  # not the main process of a multi-GPU launch: it writes nothing
            return record
        if validation is not None and record["trainable_parameters"]:  # cheap enough once trained
            predicted = load_router(out_dir).predict(validation["text"].tolist())
            record["validation_accuracy"] = _accuracy(predicted, validation)
        record.setdefault("chosen", {"step": record.get("steps")})
    elif candidate.kind in ("tfidf_logreg", "embedding_logreg"):
        record = train_linear(candidate, train, experts, out_dir, seed, validation)
    elif candidate.kind == "setfit":
        from flywheel.finetune.setfit_student import train_setfit

        record = train_setfit(candidate, train, experts, out_dir, seed, validation)
    elif candidate.kind == "encoder_classifier":
        from flywheel.finetune.encoder import train_encoder

        record = train_encoder(candidate, train, experts, out_dir, seed, validation)
    elif candidate.kind == "ensemble":  # its members were trained before it, beside it
        member_dirs = {name: out_dir.parent / name for name in candidate.members or []}
        record = train_ensemble(candidate, experts, out_dir, member_dirs, validation)
    elif candidate.kind == "endpoint":  # hosted elsewhere: nothing to train, only how to reach it
        write_candidate_card(
            out_dir,
            kind="endpoint",
            name=candidate.name,
            experts=catalog,
            endpoint=candidate.endpoint.model_dump(),
        )
        record = {"parameters": None, "trainable_parameters": 0}
    else:  # the config schema already limits kinds; this guards future ones
        raise ValueError(f"unknown candidate kind {candidate.kind!r}")
    record.setdefault("validation_accuracy", None)
    record.setdefault("search", [])
    record.update(
        name=candidate.name,
        kind=candidate.kind,
        train_examples=len(train),
        validation_examples=0 if validation is None else len(validation),
        train_seconds=round(time.perf_counter() - started, 2),
        peak_rss_mb=round(peak_rss_mb(), 1),
    )
    (out_dir / "training.json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
    return record


def _resumable_causal_lm(out_dir: Path) -> bool:
    from flywheel.finetune.sft import last_checkpoint

    return last_checkpoint(out_dir / "checkpoints") is not None


def _accuracy(predicted: list, frame: pd.DataFrame) -> float:
    return round(float((pd.Series(predicted, index=frame.index) == frame["label"]).mean()), 4)


def train_all(
    candidates: list[CandidateConfig],
    train: pd.DataFrame,
    experts: list[str] | dict[str, str],
    out_root: Path,
    seed: int,
    validation: pd.DataFrame | None = None,
) -> dict:
    """Train every candidate; one already trained in this run (training.json present) is not redone."""
    records = {}
    for candidate in candidates:
        folder = Path(out_root) / candidate.name
        done = folder / "training.json"
        if done.is_file():
            records[candidate.name] = {**json.loads(done.read_text()), "resumed": True}
            continue
        records[candidate.name] = train_candidate(
            candidate, train, experts, folder, seed, validation=validation
        )
    return records


def training_table(records: dict) -> pd.DataFrame:
    columns = [
        "kind",
        "parameters",
        "trainable_parameters",
        "train_examples",
        "method",
        "steps",
        "chosen",
        "validation_accuracy",
        "final_loss",
        "train_seconds",
        "seconds_per_step",
        "samples_per_second",
        "tokens_per_second",
        "peak_rss_mb",
    ]
    return pd.DataFrame.from_dict(records, orient="index").reindex(columns=columns)


def select_candidates(
    candidates: list[CandidateConfig], only: list[str] | None = None, overrides: dict | None = None
) -> list[CandidateConfig]:
    """The candidates to train: `only` these names (all when empty), with per-candidate `overrides`
    ({name: {field: value}}, e.g. from notebook parameters or `--set name.field=value`), re-validated."""
    names = [c.name for c in candidates]
    unknown = sorted(set(only or []).union(overrides or {}) - set(names))
    if unknown:
        raise ValueError(f"unknown candidates {unknown}; the config has {names}")
    chosen = [
        CandidateConfig.model_validate({**c.model_dump(), **(overrides or {}).get(c.name, {})})
        for c in candidates
        if not only or c.name in only
    ]
    for candidate in chosen:  # a wrong key fails here, before the first candidate trains
        check_recipe(candidate)
    return chosen


def load_splits(run) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The ground truth's train split and its validation split (None for a ground truth made before
    validation splits existed)."""
    ground_truth = read_result(run, TriageResult).ground_truth
    train = ground_truth.load_split("train")
    has_validation = (
        getattr(ground_truth, "validation", 0) and (ground_truth.folder / "validation.parquet").is_file()
    )
    return train, ground_truth.load_split("validation") if has_validation else None


def finetune_run(run, config, only: list[str] | None = None, overrides: dict | None = None) -> dict:
    """Stage 3 on a run directory: train the chosen candidates on the ground-truth train split, the
    validation split for early stopping and selection. The notebook and `python -m flywheel.finetune` (also
    under `accelerate launch`, several GPUs) both call this."""
    train, validation = load_splits(run)
    candidates = select_candidates(config.candidates, only, overrides)
    return train_all(
        candidates, train, dict(config.experts), run.artifact("candidates"), config.seed, validation
    )
