"""SetFit students (the `setfit` library) on a local sentence encoder (MiniLM by default; nothing from the
Hub): contrastive fine-tuning of the body on sentence pairs, then a logistic-regression head.

The recipe's keys are `setfit.TrainingArguments` fields. SetFit's pair sampling grows with the square of
the training set, so the body trains for `max_steps` batches of pairs: the recipe's, else
`PAIRS_PER_EXAMPLE` x train examples / batch size; `TimeBudget` trims that to `time_budget_s`, keeping
`HEAD_SHARE` of it for embedding the train split and fitting the head. The validation split scores the
result (and the `search_trials` Optuna trials over the body learning rate); example weights are not used
(SetFit's losses and head take none).
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path

import pandas as pd

from flywheel.core.config import CandidateConfig
from flywheel.core.devices import compute_device
from flywheel.core.routers import SetFitRouter, write_candidate_card
from flywheel.core.weights import resolve_model_source
from flywheel.finetune.budget import TimeBudget, search
from flywheel.finetune.recipes import build_recipe

PAIRS_PER_EXAMPLE = 4
HEAD_SHARE = 0.25


def setfit_arguments(candidate: CandidateConfig, n_train: int, output_dir: Path, seed: int):
    defaults = {
        "batch_size": 16,
        "num_epochs": 1,
        "max_length": candidate.max_length,
        "show_progress_bar": False,
        "report_to": "none",
        "logging_steps": 10,
        "save_strategy": "no",
        "eval_strategy": "no",  # scored on validation after training: pair evaluation is costly
    }
    batch = int(candidate.recipe.get("batch_size", defaults["batch_size"]))
    if "max_steps" not in candidate.recipe and "num_iterations" not in candidate.recipe:
        defaults["max_steps"] = max(1, math.ceil(PAIRS_PER_EXAMPLE * n_train / batch))
    (args,) = build_recipe(candidate, defaults, {"output_dir": str(output_dir), "seed": seed})
    return args


def train_setfit(
    candidate: CandidateConfig,
    train: pd.DataFrame,
    experts: list[str],
    out_dir: Path,
    seed: int,
    validation: pd.DataFrame | None = None,
) -> dict:
    if not candidate.search_trials or validation is None:
        return _train_once(candidate, train, experts, out_dir, seed, validation, candidate.time_budget_s)

    def space(trial) -> dict:
        return {"body_learning_rate": trial.suggest_float("body_learning_rate", 5e-6, 1e-4, log=True)}

    def train_trial(params: dict, folder: Path, seconds: float | None) -> tuple[float, dict]:
        trial = CandidateConfig.model_validate({**candidate.model_dump(), **params})
        folder.mkdir(parents=True, exist_ok=True)
        record = _train_once(trial, train, experts, folder, seed, validation, seconds)
        return record["validation_accuracy"], record

    budget_s = candidate.time_budget_s
    record, tried = search(train_trial, space, candidate.search_trials, budget_s, out_dir, seed)
    return {**record, "search": tried}


def _train_once(
    candidate: CandidateConfig,
    train: pd.DataFrame,
    experts: list[str],
    out_dir: Path,
    seed: int,
    validation: pd.DataFrame | None,
    budget_s: float | None,
) -> dict:
    from datasets import Dataset
    from setfit import SetFitModel, Trainer

    source = candidate.model or "minilm-l6"
    model = SetFitModel.from_pretrained(
        str(resolve_model_source(source)),
        local_files_only=True,
        device=str(compute_device()),
        head_params={"max_iter": 2000},
    )
    args = setfit_arguments(candidate, len(train), out_dir / "checkpoints", seed)
    budget = TimeBudget(
        budget_s * (1 - HEAD_SHARE) if budget_s else None, eval_share=0.0, min_epochs=candidate.min_epochs
    )
    data = Dataset.from_dict({"text": train["text"].tolist(), "label": train["label"].astype(str).tolist()})
    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[budget])
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    model.save_pretrained(str(out_dir / "model"))
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
    parameters = sum(p.numel() for p in model.model_body.parameters())
    write_candidate_card(
        out_dir,
        kind="setfit",
        name=candidate.name,
        labels=experts,
        source=source,
        max_length=candidate.max_length,
        parameters=parameters,
    )
    steps = trainer.st_trainer.state.global_step
    accuracy = None
    if validation is not None:
        router = SetFitRouter(candidate.name, out_dir / "model", experts)
        predicted = pd.Series(router.predict(validation["text"].tolist()), index=validation.index)
        accuracy = round(float((predicted == validation["label"].astype(str)).mean()), 4)
    losses = [(h["step"], h["loss"]) for h in trainer.st_trainer.state.log_history if "loss" in h]
    return {
        "parameters": parameters,
        "trainable_parameters": parameters,
        "steps": steps,
        "max_steps": args.max_steps,
        "chosen": {"step": steps, "body_learning_rate": args.body_learning_rate},
        "validation_accuracy": accuracy,
        "seconds_per_step": round(seconds / max(steps, 1), 3),
        "example_weights": "not used",
        **budget.record(),
        "loss_curve": losses,
    }
