"""Training within a time budget, and the small seeded hyper-parameter search.

The rule (encoder classifiers, SetFit's body, causal LMs): the recipe's epochs or steps are an upper bound;
`TimeBudget` times `warmup_steps` optimizer steps after the first (which carries start-up costs), derives
from that seconds-per-step how many steps fit in `time_budget_s` (keeping `eval_share` of it for the
evaluations on the validation split), and stops the trainer there, evaluating (and saving) the model it stops
at, so `load_best_model_at_end` still picks the best validation score seen. Small training sets thus get
more epochs, large ones fewer.

Where the learning-rate schedule should span the steps that fit (encoder classifiers), `step_seconds` times
two forward/backward passes before training and the steps are planned up front: min(the recipe's epochs or
max_steps, budget x (1 - eval share) / seconds per step); `TimeBudget(estimate=False)` then only watches the
clock.

`min_epochs` (a recipe's floor) always runs: neither the estimate nor the clock stops training before it, so
what a model learns up to there does not depend on how busy the machine is; the budget trims only beyond.

`search` runs `search_trials` Optuna trials (TPE sampler, seeded) that split the budget between them; each
trial trains a model, returns its validation accuracy, and the best trial's folder is kept.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

from transformers import TrainerCallback


class TimeBudget(TrainerCallback):
    """Stops a transformers (or SetFit) trainer once the steps that fit in `seconds` are done."""

    def __init__(
        self,
        seconds: float | None,
        warmup_steps: int = 3,
        eval_share: float = 0.15,
        estimate: bool = True,
        min_epochs: float | None = None,
    ):
        self.seconds = seconds
        self.min_epochs = min_epochs
        self.estimate = estimate  # False: the steps were planned before training; only the clock stops it
        self.warmup_steps = warmup_steps
        self.eval_share = eval_share
        self.started: float | None = None
        self.seconds_per_step: float | None = None
        self.step_budget: int | None = None
        self.stopped_at: int | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self.started = time.perf_counter()
        self.first_step_done: float | None = None

    def on_step_end(self, args, state, control, **kwargs):
        if self.seconds is None or self.started is None:
            return control
        elapsed = time.perf_counter() - self.started
        if self.first_step_done is None:  # the first step carries start-up costs: timed apart
            self.first_step_done, self.first_step = elapsed, state.global_step
        elif self.estimate and state.global_step == self.first_step + self.warmup_steps:
            self.seconds_per_step = (elapsed - self.first_step_done) / self.warmup_steps
            left = self.seconds * (1 - self.eval_share) - self.first_step_done
            self.step_budget = max(state.global_step, self.first_step + int(left / self.seconds_per_step))
        over = self.step_budget is not None and state.global_step >= self.step_budget
        over = over or elapsed > self.seconds  # the estimate, or the clock when evaluations took longer
        epochs = getattr(state, "epoch", None) or 0
        if over and (not self.min_epochs or epochs >= self.min_epochs - 1e-9):  # the floor always runs
            self.stopped_at = state.global_step
            control.should_training_stop = True
            control.should_evaluate = args.eval_strategy != "no"
            control.should_save = args.save_strategy != "no"
        return control

    def record(self) -> dict:
        return {
            "time_budget_s": self.seconds,
            "min_epochs": self.min_epochs,
            "seconds_per_step_warmup": round(self.seconds_per_step, 3) if self.seconds_per_step else None,
            "step_budget": self.step_budget,
            "stopped_by_budget_at_step": self.stopped_at,
        }


def search(
    train_trial: Callable[[dict, Path, float | None], tuple[float, dict]],
    space: Callable,
    n_trials: int,
    budget_s: float | None,
    out_dir: Path,
    seed: int,
) -> tuple[dict, list[dict]]:
    """Optuna search: `space(trial) -> params`; `train_trial(params, folder, seconds) -> (validation
    accuracy, record)`. The trials share `budget_s`. The best trial's files become `out_dir`'s (the
    candidate); returns its record and every trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    per_trial = budget_s / n_trials if budget_s else None
    tried: list[dict] = []
    best: dict = {}

    def objective(trial):
        params = space(trial)
        folder = Path(out_dir) / "trials" / str(trial.number)
        score, record = train_trial(params, folder, per_trial)
        tried.append({**params, "validation_accuracy": score})
        if not best or score > best["score"]:
            if best:
                shutil.rmtree(best["folder"], ignore_errors=True)
            best.update(score=score, folder=folder, record=record)
        else:
            shutil.rmtree(folder, ignore_errors=True)
        return score

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=n_trials)
    for item in best["folder"].iterdir():
        shutil.move(str(item), Path(out_dir) / item.name)
    shutil.rmtree(Path(out_dir) / "trials", ignore_errors=True)
    return best["record"], tried


def step_seconds(model, batches: list[dict]) -> float:
    """Seconds of one forward/backward pass, timed on the second of two batches (the first warms up); the
    gradients are dropped, the weights untouched."""
    model.train()
    seconds = 0.0
    for i, batch in enumerate(batches[:2]):
        started = time.perf_counter()
        model(**batch).loss.backward()
        if i == 1 or len(batches) == 1:
            seconds = time.perf_counter() - started
    model.zero_grad(set_to_none=True)
    return seconds
