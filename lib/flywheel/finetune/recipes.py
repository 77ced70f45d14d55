"""A candidate's recipe becomes the trainer's and peft's own config objects, keys passed through unmapped.

As in alignment-handbook's recipes (read by trl's `TrlParser`), each key is a field of one of the classes:
transformers' `TrainingArguments` (encoder classifiers), setfit's `TrainingArguments` (setfit) or trl's
`SFTConfig` (causal LMs), plus peft's `LoraConfig` (method lora) or `PromptTuningConfig` (method
prompt_tuning); the scikit-learn kinds take a few documented keys (`CandidateConfig.SKLEARN_RECIPE_KEYS`).
The trainers build their config
objects from three layers: the workbench's defaults, the recipe, then the keys the workbench owns
(`output_dir`, `seed`, `data_seed`, the peft `task_type`). `HfArgumentParser.parse_dict` does the same split
but cannot build its argparse parser for `LoraConfig`'s field types, hence the few lines here.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any

from flywheel.core.config import CandidateConfig


def recipe_classes(candidate: CandidateConfig) -> tuple[type, ...]:
    """The config classes whose fields the candidate's recipe may set (zero- and few-shot candidates
    train nothing but are checked all the same: one may be a trained one's recipe with another method).
    Imported here: a run of scikit-learn students never pays for importing trl and peft."""
    if candidate.kind == "setfit":
        from setfit import TrainingArguments as SetFitArguments

        return (SetFitArguments,)
    if candidate.kind not in ("encoder_classifier", "causal_lm"):
        return ()
    from peft import LoraConfig, PromptTuningConfig
    from transformers import TrainingArguments
    from trl import SFTConfig

    trainer = SFTConfig if candidate.kind == "causal_lm" else TrainingArguments
    peft = {"lora": LoraConfig, "prompt_tuning": PromptTuningConfig}.get(candidate.method)
    return (trainer, peft) if peft else (trainer,)


def check_recipe(candidate: CandidateConfig) -> None:
    """Fail, naming the key, on a recipe key that none of the candidate's config classes has."""
    if candidate.kind in CandidateConfig.SKLEARN_RECIPE_KEYS:  # checked by the config's own validator
        CandidateConfig.model_validate(candidate.model_dump())
        return
    classes = recipe_classes(candidate)
    known = {field.name for cls in classes for field in dataclasses.fields(cls) if field.init}
    unknown = sorted(set(candidate.recipe) - known)
    if not unknown:
        return
    hints = {key: difflib.get_close_matches(key, known, n=2) for key in unknown}
    hint = "; ".join(f"{key}: did you mean {' or '.join(close)}?" for key, close in hints.items() if close)
    classes_named = ", ".join(cls.__name__ for cls in classes)
    raise ValueError(
        f"candidate {candidate.name}: unknown key(s) {unknown}: not a field of {classes_named} nor a "
        f"workbench key (flywheel.core.config.CandidateConfig){'. ' + hint if hint else ''}"
    )


def build_recipe(candidate: CandidateConfig, defaults: dict[str, Any], owned: dict[str, Any]) -> tuple:
    """One config object per class of `recipe_classes`, from `defaults`, then the recipe, then `owned`."""
    check_recipe(candidate)
    values = {**defaults, **candidate.recipe, **owned}
    return tuple(
        cls(
            **{
                field.name: _coerce(field, values[field.name])
                for field in dataclasses.fields(cls)
                if field.init and field.name in values
            }
        )
        for cls in recipe_classes(candidate)
    )


def _coerce(field: dataclasses.Field, value: Any) -> Any:
    """A number as the field's default is typed: YAML 1.1 reads `2e-3` as a string and the dataclasses take
    values as given (and `num_train_epochs: 4` stays the float 4.0 the trainer expects)."""
    default = field.default
    if isinstance(default, bool) or not isinstance(default, (int, float)) or isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise ValueError(f"{field.name}: {value!r} is not a number") from None
        return int(number) if isinstance(default, int) and number.is_integer() else number
    return float(value) if isinstance(default, float) and isinstance(value, int) else value
