"""Train one candidate router on the ground-truth train split and record how it went."""

from __future__ import annotations

import json
import resource
import shutil
import time
from pathlib import Path

import joblib
import pandas as pd
from datasets import Dataset
from peft import LoraConfig, TaskType, get_peft_model
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    Trainer,
    set_seed,
)

from flywheel.core.config import CandidateConfig
from flywheel.core.devices import bf16_supported, on_accelerator
from flywheel.core.results import TriageResult, read_result
from flywheel.core.routers import write_candidate_card
from flywheel.core.weights import resolve_model_source
from flywheel.finetune.plots import plot_loss
from flywheel.finetune.recipes import build_recipe, check_recipe
from flywheel.finetune.sft import last_checkpoint, train_causal


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB): in a notebook that trains several
    candidates it is the peak over all of them up to this one."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def train_candidate(
    candidate: CandidateConfig,
    train: pd.DataFrame,
    experts: list[str] | dict[str, str],
    out_dir: Path,
    seed: int,
    callbacks: list | None = None,
) -> dict:
    """Train, save into out_dir (with candidate.json) and return the training record.

    `experts`: the catalog (name -> description; a list of names also works). A causal-LM candidate killed
    mid-training resumes from its last checkpoint; other half-written candidates are retrained."""
    out_dir = Path(out_dir)
    catalog = dict(experts) if isinstance(experts, dict) else dict.fromkeys(experts, "")
    experts = list(catalog)
    resumable = candidate.kind == "causal_lm" and last_checkpoint(out_dir / "checkpoints") is not None
    if out_dir.exists() and not resumable:
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if candidate.kind == "causal_lm":
        record = train_causal(candidate, train, catalog, out_dir, seed, callbacks)
        if not record:  # not the main process of a multi-GPU launch: it writes nothing
            return record
    elif candidate.kind == "tfidf_logreg":
        record = _train_tfidf(candidate, train, out_dir, seed)
    elif candidate.kind == "encoder_classifier":
        record = _train_encoder(candidate, train, experts, out_dir, seed)
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
    record.update(
        name=candidate.name,
        kind=candidate.kind,
        train_examples=len(train),
        train_seconds=round(time.perf_counter() - started, 2),
        peak_rss_mb=round(peak_rss_mb(), 1),
    )
    (out_dir / "training.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def _train_tfidf(candidate: CandidateConfig, train: pd.DataFrame, out_dir: Path, seed: int) -> dict:
    pipeline = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1),
        LogisticRegression(max_iter=2000, C=10.0, random_state=seed),
    )
    pipeline.fit(train["text"].tolist(), train["label"].tolist())
    joblib.dump(pipeline, out_dir / "pipeline.joblib")
    parameters = int(pipeline[-1].coef_.size + pipeline[-1].intercept_.size)
    write_candidate_card(out_dir, kind=candidate.kind, name=candidate.name, parameters=parameters)
    return {"parameters": parameters, "trainable_parameters": parameters}


def _train_encoder(
    candidate: CandidateConfig, train: pd.DataFrame, experts: list[str], out_dir: Path, seed: int
) -> dict:
    set_seed(seed)
    source = resolve_model_source(candidate.model or "minilm-l6")
    label2id = {name: i for i, name in enumerate(experts)}
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = AutoModelForSequenceClassification.from_pretrained(
        source, num_labels=len(experts), id2label=dict(enumerate(experts)), label2id=label2id
    )
    args, *lora = encoder_recipe(candidate, out_dir / "checkpoints", seed)
    if lora:
        model = get_peft_model(model, lora[0])
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())

    data = Dataset.from_dict({"text": train["text"].tolist(), "label": [label2id[x] for x in train["label"]]})
    data = data.map(
        lambda batch: tokenizer(batch["text"], truncation=True, max_length=candidate.max_length),
        batched=True,
        remove_columns=["text"],
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=data,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    result = trainer.train()
    if candidate.method == "lora":
        model = model.merge_and_unload()  # a plain classifier folder: loads without peft
    model.save_pretrained(out_dir / "model")
    tokenizer.save_pretrained(out_dir / "model")
    shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)

    losses = [(h["step"], h["loss"]) for h in trainer.state.log_history if "loss" in h]
    plot_loss(losses, candidate.name, out_dir / "training_curve.png")
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
    return {
        "parameters": total,
        "trainable_parameters": trainable,
        "steps": result.global_step,
        "final_loss": losses[-1][1] if losses else result.training_loss,
        "train_loss": result.training_loss,
        "samples_per_second": result.metrics.get("train_samples_per_second"),
        "loss_curve": losses,
    }


def encoder_recipe(candidate: CandidateConfig, output_dir: Path, seed: int) -> tuple:
    """(TrainingArguments, LoraConfig for method lora) for an encoder classifier: the workbench's defaults,
    its recipe on top."""
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
    owned = {"output_dir": str(output_dir), "seed": seed, "data_seed": seed, "task_type": TaskType.SEQ_CLS}
    return build_recipe(candidate, defaults, owned)


def train_all(
    candidates: list[CandidateConfig],
    train: pd.DataFrame,
    experts: list[str] | dict[str, str],
    out_root: Path,
    seed: int,
) -> dict:
    """Train every candidate; one already trained in this run (training.json present) is not redone."""
    records = {}
    for candidate in candidates:
        folder = Path(out_root) / candidate.name
        done = folder / "training.json"
        if done.is_file():
            records[candidate.name] = {**json.loads(done.read_text()), "resumed": True}
            continue
        records[candidate.name] = train_candidate(candidate, train, experts, folder, seed)
    return records


def training_table(records: dict) -> pd.DataFrame:
    columns = [
        "kind",
        "parameters",
        "trainable_parameters",
        "train_examples",
        "method",
        "steps",
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


def finetune_run(run, config, only: list[str] | None = None, overrides: dict | None = None) -> dict:
    """Stage 3 on a run directory: train the chosen candidates on the ground-truth train split. The notebook
    and `python -m flywheel.finetune` (also under `accelerate launch`, several GPUs) both call this."""
    train = read_result(run, TriageResult).ground_truth.load_split("train")
    candidates = select_candidates(config.candidates, only, overrides)
    return train_all(candidates, train, dict(config.experts), run.artifact("candidates"), seed=config.seed)
