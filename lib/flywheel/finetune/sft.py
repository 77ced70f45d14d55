"""Causal-LM candidates: trl SFT on prompt/completion pairs (completion-only loss) with LoRA, full fine-tuning
or prompt tuning (peft); zero-shot and few-shot candidates that need no training.

The recipe's keys are `SFTConfig` and peft fields (flywheel.finetune.recipes); `sft_recipe` lays them over
the workbench's defaults. Hardware-aware defaults (`hardware_defaults`): on CPU fp32, activation
checkpointing off, torch threads = cores (`cpu_threads`); on a GPU bf16 (where supported) on the process's
own device, checkpointing only when the recipe asks. Without `max_steps` in the recipe, the trainer's
epochs (`num_train_epochs`, default 3) bound the steps and `time_budget_s` trims them
(flywheel.finetune.budget). Under `accelerate launch` (several GPUs) the Trainer runs
data-parallel; only the main process writes records. Checkpoints are saved every `save_steps`; a killed
training resumes from the last complete one.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pandas as pd
import torch
from datasets import Dataset
from peft import LoraConfig, PromptTuningInit, TaskType
from transformers import set_seed
from transformers.trainer_utils import get_last_checkpoint
from trl import SFTTrainer

from flywheel.core.config import CandidateConfig
from flywheel.core.devices import bf16_supported, compute_device, training_dtype
from flywheel.core.embeddings import embed
from flywheel.core.prompts import FewShotSelector, RoutingPrompt
from flywheel.core.routers import write_candidate_card
from flywheel.core.weights import load_causal_lm
from flywheel.finetune.budget import TimeBudget
from flywheel.finetune.plots import plot_loss
from flywheel.finetune.recipes import build_recipe


def hardware_defaults(candidate: CandidateConfig) -> dict:
    """Trainer settings that suit this process's device (its own GPU under `accelerate launch`)."""
    device = compute_device()
    accelerated = device.type != "cpu"
    return {
        "device": str(device),
        "dtype": training_dtype(),
        "bf16": bf16_supported(),
        "fp16": accelerated and not bf16_supported(),
        "gradient_checkpointing": bool(candidate.recipe.get("activation_checkpointing")),  # off unless asked
        "device_map": {"": device} if accelerated else None,
        "pin_memory": accelerated,
    }


def cpu_threads(n_parameters: int) -> int:
    """Torch threads for CPU training: $FLYWHEEL_TORCH_THREADS, else all cores — except for tiny models, whose
    ops are too short to share between threads (2 threads made a 0.1M-parameter model's step ~10x slower
    on this 2-core machine while other work ran)."""
    if os.environ.get("FLYWHEEL_TORCH_THREADS"):
        return int(os.environ["FLYWHEEL_TORCH_THREADS"])
    return 1 if n_parameters < 20_000_000 else (os.cpu_count() or 1)


def sft_dataset(train: pd.DataFrame, prompt: RoutingPrompt, tokenizer):
    """prompt/completion pairs: the rendered chat prompt, the expert name (trl appends EOS)."""
    return Dataset.from_dict(
        {
            "prompt": [prompt.render(tokenizer, t) for t in train["text"]],
            "completion": [prompt.completion(tokenizer, label) for label in train["label"]],
        }
    )


def last_checkpoint(folder: Path) -> Path | None:
    """transformers' newest checkpoint under folder, once complete: one killed while being saved (no
    trainer_state.json, which the Trainer writes last) is removed and the one before it taken."""
    folder = Path(folder)
    while folder.is_dir() and (found := get_last_checkpoint(folder)):
        if (Path(found) / "trainer_state.json").is_file():
            return Path(found)
        shutil.rmtree(found)
    return None


def sft_recipe(
    candidate: CandidateConfig,
    hardware: dict,
    output_dir: Path,
    seed: int,
    prompt: RoutingPrompt,
    tokenizer,
) -> tuple:
    """(SFTConfig, peft config or None) for the candidate: the workbench's defaults, its recipe on top."""
    defaults = {
        "logging_steps": 5,  # a loss curve for short runs
        "save_strategy": "steps",  # checkpoints to resume from
        "save_steps": 25,
        "save_total_limit": 2,
        "completion_only_loss": True,
        "packing": False,
        "activation_checkpointing": hardware["gradient_checkpointing"],  # trl's default (on) is slow on CPU
        "bf16": hardware["bf16"],
        "fp16": hardware["fp16"],
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": hardware["pin_memory"],
        "include_num_input_tokens_seen": "non_padding",
        "report_to": [],
        "disable_tqdm": False,
        # LoRA: every linear layer, alpha twice the rank
        "target_modules": "all-linear",
        "lora_alpha": 2 * candidate.recipe.get("r", LoraConfig.r),
        # prompt tuning: a soft prompt initialised from the system prompt's text
        "num_virtual_tokens": 16,
        "prompt_tuning_init": PromptTuningInit.TEXT,
        "prompt_tuning_init_text": prompt.system(),
        "tokenizer_name_or_path": getattr(tokenizer, "name_or_path", None),
    }
    owned = {
        "output_dir": str(output_dir),
        "seed": seed,
        "data_seed": seed,
        "max_length": candidate.max_length,
        "task_type": TaskType.CAUSAL_LM,
    }
    args, *peft = build_recipe(candidate, defaults, owned)
    return args, (peft[0] if peft else None)


def train_causal(
    candidate: CandidateConfig,
    train: pd.DataFrame,
    experts: dict[str, str],
    out_dir: Path,
    seed: int,
    callbacks: list | None = None,
) -> dict:
    """Train (or prepare, for zero/few-shot) one causal-LM candidate into out_dir; return its record."""
    prompt = RoutingPrompt(experts, style=candidate.prompt_style)
    card = {
        "kind": candidate.kind,
        "name": candidate.name,
        "labels": list(experts),
        "experts": experts,
        "source": candidate.model,
        "method": candidate.method,
        "prompt_style": candidate.prompt_style,
        "decision": candidate.decision,
        "max_length": candidate.max_length,
    }
    if candidate.method in ("zero_shot", "few_shot"):
        return _prepare_untrained(candidate, train, card, out_dir)
    return _train_sft(candidate, train, prompt, card, Path(out_dir), seed, callbacks or [])


def _prepare_untrained(candidate: CandidateConfig, train: pd.DataFrame, card: dict, out_dir: Path) -> dict:
    model, _ = load_causal_lm(candidate.model)
    parameters = sum(p.numel() for p in model.parameters())
    card.update(weights="source", parameters=parameters)
    if candidate.method == "few_shot":
        texts, labels = train["text"].tolist(), train["label"].tolist()
        FewShotSelector(texts, labels, embed(texts)).save(out_dir)
        card.update(few_shot_k=candidate.few_shot_k, few_shot_max_tokens=candidate.few_shot_max_tokens)
    write_candidate_card(out_dir, **card)
    return {"parameters": parameters, "trainable_parameters": 0, "steps": 0, "method": candidate.method}


def _train_sft(
    candidate: CandidateConfig,
    train: pd.DataFrame,
    prompt: RoutingPrompt,
    card: dict,
    out_dir: Path,
    seed: int,
    callbacks: list,
) -> dict:
    set_seed(seed)
    hw = hardware_defaults(candidate)
    model, tokenizer = load_causal_lm(candidate.model, dtype=hw["dtype"], device_map=hw["device_map"])
    if hw["device"] == "cpu":
        hw["threads"] = cpu_threads(sum(p.numel() for p in model.parameters()))
        torch.set_num_threads(hw["threads"])
    checkpoints = out_dir / "checkpoints"
    resume = last_checkpoint(checkpoints)
    args, config = sft_recipe(candidate, hw, checkpoints, seed, prompt, tokenizer)
    # a no-op without a budget
    budget = TimeBudget(candidate.time_budget_s, eval_share=0.0, min_epochs=candidate.min_epochs)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=sft_dataset(train, prompt, tokenizer),
        processing_class=tokenizer,
        peft_config=config,
        callbacks=[*callbacks, budget],
    )
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in trainer.model.parameters())
    if hw["device"].startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    seconds = time.perf_counter() - started
    if not trainer.is_world_process_zero():
        return {}

    final = trainer.model
    if candidate.method == "full":
        final.save_pretrained(out_dir / "model")
        tokenizer.save_pretrained(out_dir / "model")
        card.update(weights="model")
    else:
        final.save_pretrained(out_dir / "adapter")
        tokenizer.save_pretrained(out_dir / "adapter")
        card.update(weights="adapter")
    shutil.rmtree(checkpoints, ignore_errors=True)

    history = trainer.state.log_history
    losses = [(h["step"], h["loss"]) for h in history if "loss" in h]
    plot_loss(losses, candidate.name, out_dir / "training_curve.png")
    base_parameters = sum(p.numel() for n, p in final.named_parameters() if "lora_" not in n)
    card.update(parameters=base_parameters, trainable_parameters=trainable)
    write_candidate_card(out_dir, **card)
    tokens = trainer.state.num_input_tokens_seen
    record = {
        "parameters": base_parameters,
        "trainable_parameters": trainable,
        "total_parameters_in_training": total,
        "method": candidate.method,
        "steps": result.global_step,
        "final_loss": losses[-1][1] if losses else result.training_loss,
        "train_loss": result.training_loss,
        "samples_per_second": result.metrics.get("train_samples_per_second"),
        "tokens_seen": int(tokens),
        "tokens_per_second": round(tokens / seconds, 1) if seconds > 0 and not resume else None,
        "seconds_per_step": round(seconds / max(result.global_step - _step(resume), 1), 3),
        "resumed_from_checkpoint": resume.name if resume else None,
        "device": hw["device"],
        "threads": hw.get("threads"),
        "dtype": str(hw["dtype"]).replace("torch.", ""),
        "gradient_checkpointing": args.activation_checkpointing,
        **budget.record(),
        "loss_curve": losses,
    }
    if hw["device"].startswith("cuda"):
        record["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    (out_dir / "sft_history.json").write_text(json.dumps(history, indent=1) + "\n")
    return record


def _step(checkpoint: Path | None) -> int:
    return int(checkpoint.name.split("-")[-1]) if checkpoint else 0
