"""Encoder classifiers (MiniLM, full or LoRA) with transformers' Trainer: evaluated on the validation split
every epoch (or every `eval_steps` when the recipe says so), early stopping on validation accuracy
(`EarlyStoppingCallback`, patience `PATIENCE` evaluations) and the best evaluated model kept
(`load_best_model_at_end`); the number of steps fits `time_budget_s` (flywheel.finetune.budget). Example
weights below 1 (teacher labels) weight the cross-entropy; with all weights equal the Trainer's own loss."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from peft import LoraConfig, TaskType, get_peft_model
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    EarlyStoppingCallback,
    Trainer,
    set_seed,
)

from flywheel.core.config import CandidateConfig
from flywheel.core.devices import bf16_supported, on_accelerator
from flywheel.core.routers import write_candidate_card
from flywheel.core.weights import resolve_model_source
from flywheel.finetune.budget import TimeBudget, search, step_seconds
from flywheel.finetune.linear import weights
from flywheel.finetune.plots import plot_loss
from flywheel.finetune.recipes import build_recipe

PATIENCE = 2
EVAL_SHARE = 0.15  # of the time budget, kept for the evaluations on the validation split


class WeightedLossTrainer(Trainer):
    """Cross-entropy weighted by each training example's `weight` column."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        weight = inputs.pop("weight", None)
        if weight is None:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        per_example = torch.nn.functional.cross_entropy(outputs.logits, labels, reduction="none")
        loss = (per_example * weight).sum() / weight.sum()
        return (loss, outputs) if return_outputs else loss


def encoder_recipe(
    candidate: CandidateConfig, output_dir: Path, seed: int, validation: bool = False
) -> tuple:
    """(TrainingArguments, LoraConfig for method lora) for an encoder classifier: the workbench's defaults,
    its recipe on top. With a validation split: evaluate and save (the model only) at the same strategy,
    keep the best by validation accuracy."""
    defaults = {
        "logging_steps": 5,  # a loss curve for short runs
        "save_strategy": "no",  # a half-trained encoder is retrained: quicker than resuming
        "bf16": bf16_supported(),
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": on_accelerator(),
        "report_to": [],
        "disable_tqdm": True,
        "lora_alpha": 2 * candidate.recipe.get("r", LoraConfig.r),
    }
    if validation:
        strategy = candidate.recipe.get("eval_strategy", "epoch")
        defaults.update(
            eval_strategy=strategy,
            save_strategy=strategy,
            save_steps=candidate.recipe.get("eval_steps", 500),
            save_only_model=True,
            save_total_limit=1,
            load_best_model_at_end=True,
            metric_for_best_model="accuracy",
            per_device_eval_batch_size=64,
        )
    owned = {"output_dir": str(output_dir), "seed": seed, "data_seed": seed, "task_type": TaskType.SEQ_CLS}
    return build_recipe(candidate, defaults, owned)


def _accuracy(prediction) -> dict:
    return {"accuracy": float((np.argmax(prediction.predictions, -1) == prediction.label_ids).mean())}


def train_encoder(
    candidate: CandidateConfig,
    train: pd.DataFrame,
    experts: list[str],
    out_dir: Path,
    seed: int,
    validation: pd.DataFrame | None = None,
) -> dict:
    """Train (with `search_trials` Optuna trials on learning rate and batch size when validation is given),
    save into out_dir and return the record."""
    if not candidate.search_trials or validation is None:
        return _train_once(candidate, train, experts, out_dir, seed, validation, candidate.time_budget_s)

    def space(trial) -> dict:
        return {
            "learning_rate": trial.suggest_float("learning_rate", 2e-5, 3e-4, log=True),
            "per_device_train_batch_size": trial.suggest_categorical(
                "per_device_train_batch_size", [8, 16, 32]
            ),
        }

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
    set_seed(seed)
    source = resolve_model_source(candidate.model or "minilm-l6")
    label2id = {name: i for i, name in enumerate(experts)}
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=len(experts), id2label=dict(enumerate(experts)), label2id=label2id
    )
    args, *lora = encoder_recipe(candidate, out_dir / "checkpoints", seed, validation is not None)
    if lora:
        model = get_peft_model(model, lora[0])
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())

    def dataset(frame: pd.DataFrame, with_weights: bool) -> Dataset:
        columns = {"text": frame["text"].tolist(), "label": [label2id[x] for x in frame["label"]]}
        if with_weights:
            columns["weight"] = weights(frame).astype(np.float32).tolist()
        return Dataset.from_dict(columns).map(
            lambda batch: tokenizer(batch["text"], truncation=True, max_length=candidate.max_length),
            batched=True,
            remove_columns=["text"],
        )

    weighted = len(set(weights(train))) > 1
    if weighted:
        args.remove_unused_columns = False  # keep `weight` for the loss
    train_data = dataset(train, weighted)
    collator = DataCollatorWithPadding(tokenizer)
    planned = _plan_steps(model, args, train_data, collator, budget_s, candidate.min_epochs)
    budget = TimeBudget(budget_s, estimate=False, min_epochs=candidate.min_epochs)
    callbacks = [budget]
    if validation is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=PATIENCE))
    trainer = (WeightedLossTrainer if weighted else Trainer)(
        model=model,
        args=args,
        train_dataset=train_data,
        eval_dataset=dataset(validation, False) if validation is not None else None,
        data_collator=collator,
        processing_class=tokenizer,
        compute_metrics=_accuracy if validation is not None else None,
        callbacks=callbacks,
    )
    result = trainer.train()
    model = trainer.model
    if candidate.method == "lora":
        model = model.merge_and_unload()  # a plain classifier folder: loads without peft
    model.save_pretrained(out_dir / "model")
    tokenizer.save_pretrained(out_dir / "model")
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)

    history = trainer.state.log_history
    losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evaluations = [(h["step"], round(h["eval_accuracy"], 4)) for h in history if "eval_accuracy" in h]
    plot_loss(losses, candidate.name, out_dir / "training_curve.png", evaluations)
    write_candidate_card(
        out_dir,
        kind=candidate.kind,
        name=candidate.name,
        labels=experts,
        max_length=candidate.max_length,
        parameters=total,
        source=str(candidate.model),
        method=candidate.method,
    )
    best_step = trainer.state.best_global_step if evaluations else None
    return {
        "parameters": total,
        "trainable_parameters": trainable,
        "steps": result.global_step,
        "epochs": round(trainer.state.epoch or 0, 2),
        "chosen": {"step": best_step, "epoch": _epoch_at(history, best_step)},
        "validation_accuracy": round(trainer.state.best_metric, 4) if evaluations else None,
        "validation_curve": evaluations,
        "weighted_loss": weighted,
        "final_loss": losses[-1][1] if losses else result.training_loss,
        "train_loss": result.training_loss,
        "samples_per_second": result.metrics.get("train_samples_per_second"),
        "seconds_per_step": round(result.metrics["train_runtime"] / max(result.global_step, 1), 3),
        **budget.record(),
        **planned,
        "loss_curve": losses,
    }


def _plan_steps(
    model, args, data: Dataset, collator, budget_s: float | None, min_epochs: float | None = None
) -> dict:
    """Set args.max_steps to what fits in the budget, but never under `min_epochs` (the rule:
    flywheel.finetune.budget), so the warm-up and decay of the learning rate span the steps that will run."""
    if not budget_s:
        return {}
    per_batch = args.per_device_train_batch_size
    batches = [collator([data[j] for j in range(i, min(i + per_batch, len(data)))]) for i in (0, per_batch)]
    device = next(model.parameters()).device
    batches = [{k: v.to(device) for k, v in b.items() if k != "weight"} for b in batches if len(b["labels"])]
    seconds = step_seconds(model, batches) * args.gradient_accumulation_steps
    epoch_steps = math.ceil(len(data) / (per_batch * args.gradient_accumulation_steps))
    recipe_steps = args.max_steps if args.max_steps > 0 else math.ceil(args.num_train_epochs * epoch_steps)
    fit = max(1, int(budget_s * (1 - EVAL_SHARE) / max(seconds, 1e-6)))
    floor = math.ceil((min_epochs or 0) * epoch_steps)
    args.max_steps = min(recipe_steps, max(fit, floor))
    planned = {"planned_steps": args.max_steps, "recipe_steps": recipe_steps, "fits_in_budget": fit}
    return {**planned, "step_seconds_measured": round(seconds, 3)}


def _epoch_at(history: list[dict], step: int | None) -> float | None:
    return next((round(h["epoch"], 2) for h in history if h.get("step") == step and "epoch" in h), None)
