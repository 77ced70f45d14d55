"""SmolLM2-135M LoRA SFT step time on this CPU: a naive setup against the tuned one, side by side in one run.

naive: the long system prompt (every expert with its description, ~235 tokens with the question), every
       sequence padded to max_length 256 (128 would truncate the completion away), trl's default settings
       (gradient checkpointing on);
short: the short system prompt (expert names only, ~70 tokens), dynamic padding to the longest sequence in
       the batch, max_length 96, gradient checkpointing off, torch threads = cores;
tuned: as short, with the minimal system prompt (no catalog, ~35 tokens) and batches grouped by length —
       the demo's fine-tuning recipe.

All three: LoRA r=8 on all linear layers, batch 8, fp32, the same examples. Prints one JSON line; seconds
per step are the median over the timed steps after `--warmup` steps. The figures hold for the machine as it
was during the run: on a shared machine, rerun when it is quiet (target: tuned <= 3 s/step at batch 8; here
naive 22.1, short 4.1, tuned 2.5 s/step).

    python bench/sft_step.py                   # 3 warm-up + 8 timed steps each (~6 min on 2 quiet cores)
    python bench/sft_step.py --steps 2 --warmup 1 --batch 2   # quick smoke
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import time

import pandas as pd


def examples(n: int) -> pd.DataFrame:
    """The latest demo ground truth's train split when there is one, else a small built-in set."""
    found = sorted(glob.glob("runs/*/artifacts/ground_truth/*/train.parquet"), key=os.path.getmtime)
    if found:
        return pd.read_parquet(found[-1])[["text", "label"]].head(n)
    rows = [
        ("my laptop will not boot after the update", "it_help"),
        ("how much parental leave do I get", "hr_benefits"),
        ("when is the next earnings call", "finance_earnings"),
        ("my badge does not open the garage door", "facilities"),
    ]
    return pd.DataFrame(rows * (n // len(rows) + 1), columns=["text", "label"]).head(n)


def measure(setup: str, train: pd.DataFrame, experts: dict, args) -> dict:
    import torch
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from flywheel.core.prompts import RoutingPrompt
    from flywheel.core.weights import load_causal_lm
    from flywheel.finetune.sft import sft_dataset

    naive = setup == "naive"
    torch.set_num_threads(os.cpu_count() or 1)
    model, tokenizer = load_causal_lm("smollm2-135m-instruct")
    prompt = RoutingPrompt(experts, style={"naive": "long", "short": "short", "tuned": "minimal"}[setup])
    data = sft_dataset(train, prompt, tokenizer)
    stamps: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, *a, **k):
            stamps.append(time.perf_counter())

    settings = dict(
        output_dir=f"/tmp/sft_step_{setup}",
        max_steps=args.warmup + args.steps,
        per_device_train_batch_size=args.batch,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        logging_steps=1000,
        disable_tqdm=True,
        seed=0,
        include_num_input_tokens_seen="non_padding",
        bf16=False,  # fp32 on the CPU in both setups
    )
    if naive:  # trl defaults (gradient checkpointing on), every sequence padded to max_length
        settings.update(max_length=256, pad_to_multiple_of=256)  # the long prompt is ~235 tokens
    else:
        settings.update(max_length=96, activation_checkpointing=False)
    if setup == "tuned":
        settings.update(train_sampling_strategy="group_by_length")
    trainer = SFTTrainer(
        model=model,
        args=SFTConfig(**settings),
        train_dataset=data,
        processing_class=tokenizer,
        peft_config=LoraConfig(r=8, lora_alpha=16, target_modules="all-linear", task_type="CAUSAL_LM"),
        callbacks=[Clock()],
    )
    started = time.perf_counter()
    trainer.train()
    steps = [b - a for a, b in zip([started, *stamps], stamps, strict=False)][args.warmup :]
    prompt_tokens = statistics.mean(len(tokenizer(p).input_ids) for p in data["prompt"][:64])
    return {
        "seconds_per_step": round(statistics.median(steps), 3),
        "mean_prompt_tokens": round(prompt_tokens, 1),
        "gradient_checkpointing": bool(trainer.args.activation_checkpointing),
        "padded_to": 256 if naive else "longest in batch",
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--config", default="configs/demo.yaml")
    args = parser.parse_args()

    from flywheel.core.config import load_config

    experts = load_config(args.config).experts
    train = examples(args.batch * (args.steps + args.warmup))
    result = {
        "model": "smollm2-135m-instruct",
        "method": "lora r=8 all-linear",
        "batch": args.batch,
        "cpu_count": os.cpu_count(),
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    for setup in ("naive", "short", "tuned"):
        result[setup] = measure(setup, train, experts, args)
    for setup in ("naive", "short"):
        result[f"{setup}_over_tuned"] = round(
            result[setup]["seconds_per_step"] / result["tuned"]["seconds_per_step"], 2
        )
    result["load_average_1m_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
