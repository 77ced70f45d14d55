"""Training real candidates on a small separable routing task."""

import subprocess
import sys

import pandas as pd
import pytest
from conftest import ROUTING_PHRASES

from flywheel.core.config import CandidateConfig
from flywheel.core.routers import load_router
from flywheel.core.weights import resolve_model_source
from flywheel.finetune.train import train_all, train_candidate

EXPERTS = ["it_help", "hr_benefits", "facilities"]
PHRASES = ROUTING_PHRASES


def task(repeats: int) -> pd.DataFrame:
    rows = [
        (f"{p} {suffix}", e)
        for e, ps in PHRASES.items()
        for p in ps
        for suffix in ["please", "asap", "?"][:repeats]
    ]
    return pd.DataFrame(rows, columns=["text", "label"])


def test_tfidf_candidate_learns_and_reloads(tmp_path):
    data = task(3)
    record = train_candidate(
        CandidateConfig(name="tfidf", kind="tfidf_logreg"), data, EXPERTS, tmp_path / "c", 0
    )
    router = load_router(tmp_path / "c")
    assert router.predict(["laptop will not boot", "parental leave", "parking hours"]) == EXPERTS
    assert record["parameters"] > 0 and record["train_examples"] == len(data)


def test_minilm_classifier_fine_tunes_from_the_wheel(tmp_path):
    assert (resolve_model_source("minilm-l6") / "model.safetensors").is_file()
    candidate = CandidateConfig(
        name="minilm",
        kind="encoder_classifier",
        model="minilm-l6",
        max_steps=30,
        learning_rate=3e-4,
        per_device_train_batch_size=12,
        warmup_steps=0.1,
        weight_decay=0.01,
    )
    data = task(3)
    record = train_candidate(candidate, data, EXPERTS, tmp_path / "m", seed=0)
    losses = [loss for _, loss in record["loss_curve"]]
    assert losses[-1] < 0.5 * losses[0], losses
    router = load_router(tmp_path / "m")
    predictions = router.predict(data["text"].tolist())
    accuracy = (pd.Series(predictions) == data["label"]).mean()
    assert accuracy >= 0.9, accuracy
    assert (tmp_path / "m" / "training_curve.png").stat().st_size > 1000


def test_trained_candidates_are_not_retrained(tmp_path):
    candidates = [CandidateConfig(name="tfidf", kind="tfidf_logreg")]
    first = train_all(candidates, task(2), EXPERTS, tmp_path, seed=0)
    again = train_all(candidates, task(2), EXPERTS, tmp_path, seed=0)
    assert "resumed" not in first["tfidf"] and again["tfidf"]["resumed"]


def test_a_scikit_learn_candidate_trains_without_importing_the_transformers_trainers(tmp_path):
    """The finetune stage imports trl, peft and the transformers Trainer only for candidates that need them
    (~5 s a cycle): a fresh interpreter trains a TF-IDF student and checks what it imported."""
    script = f"""
import sys
import pandas as pd
from flywheel.core.config import CandidateConfig
from flywheel.finetune.stage import run_finetune
from flywheel.finetune.train import select_candidates, train_candidate
words = ("alpha", "beta")
rows = [{{"text": f"{{word}} question {{i}}", "label": word}} for i in range(20) for word in words]
candidate = CandidateConfig(name="tfidf", kind="tfidf_logreg", cv=2)
select_candidates([candidate])
train_candidate(candidate, pd.DataFrame(rows), list(words), {str(tmp_path)!r} + "/m", seed=0)
print(sorted(m for m in ("trl", "peft", "setfit", "transformers.trainer") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_unknown_model_source_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="unknown model source"):
        resolve_model_source("no-such-model")
