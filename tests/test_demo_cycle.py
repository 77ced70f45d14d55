"""The slow tier: the demo cycle as `make cycle` runs it (configs/demo.yaml, seed 7), with the demo's real
candidates (TF-IDF, MiniLM fine-tuned, SmolLM2-135M with LoRA) trained and evaluated at full size.

The data pipeline is deterministic, so its counts are exact; accuracies are asserted in bands around the
figures the README reports (CPU: 94.3% baseline, 74.0% TF-IDF, 83.5% MiniLM, 83.7% SmolLM2) that allow for
another machine's floating point (a GPU) but not for a broken stage."""

import json

import pytest

from flywheel.core.config import REPO_ROOT, load_config
from flywheel.core.runs import STAGES

ACCURACY_BANDS = {
    "baseline": (0.92, 0.97),
    "tfidf-logreg": (0.70, 0.78),
    "minilm-l6-full": (0.79, 0.88),
    "smollm2-lora": (0.79, 0.88),
}


@pytest.fixture(scope="module")
def summary(demo_cycle):
    return json.loads((demo_cycle / "summary.json").read_text())


def test_every_stage_ran_and_the_ground_truth_has_the_demo_sizes(demo_cycle, summary):
    manifest = json.loads((demo_cycle / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert [manifest["stages"][s]["status"] for s in STAGES] == ["done"] * 4
    truth = summary["ground_truth"]
    assert (truth["interactions"], truth["train"], truth["test"]) == (1200, 552, 369)
    assert summary["review"]["simulated"] is True


def test_accuracies_fall_in_the_demo_bands(summary):
    rows = {"baseline": summary["baseline"], **{c["name"]: c for c in summary["candidates"]}}
    demo = load_config(REPO_ROOT / "configs" / "demo.yaml")
    assert set(rows) == {"baseline"} | {c.name for c in demo.candidates} == set(ACCURACY_BANDS)
    for name, (low, high) in ACCURACY_BANDS.items():
        assert low <= rows[name]["accuracy"] <= high, (name, rows[name]["accuracy"])
        assert rows[name]["n"] == 369  # paired: every model on the same test items


def test_the_small_models_are_cheaper_and_none_is_promoted(summary):
    """The demo's story: each small router costs a fraction of the large model, and each is still more than
    the rule's 2 points below it, so production keeps serving."""
    costs = {c["name"]: c["cost_per_1k"] for c in summary["candidates"]}
    assert costs["tfidf-logreg"] < costs["minilm-l6-full"] < costs["smollm2-lora"]
    assert costs["smollm2-lora"] < summary["baseline"]["cost_per_1k"] / 10
    assert summary["promoted"] is None
    assert set(summary["promotion"]["rejected"]) == set(costs)


def test_the_smollm2_adapter_trained_at_demo_size(demo_cycle):
    folder = demo_cycle / "artifacts" / "candidates" / "smollm2-lora"
    card = json.loads((folder / "candidate.json").read_text())
    assert card["weights"] == "adapter" and card["source"] == "smollm2-135m-instruct"
    assert (folder / "adapter" / "adapter_model.safetensors").is_file()
    training = json.loads((folder / "training.json").read_text())
    assert (training["steps"], training["train_examples"]) == (120, 552)
    assert training["final_loss"] < 0.5 * training["loss_curve"][0][1], training["loss_curve"]
