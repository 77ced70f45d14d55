"""The slow tier: the demo cycle as `make cycle` runs it (configs/demo.yaml, seed 7), with the demo's real
candidates (TF-IDF, frozen MiniLM + logistic regression, MiniLM fine-tuned) trained and evaluated at full size
on the unbiased (audited) test split, and their cascades.

The data pipeline is deterministic (the audit sample is seeded by the config's seed and the store), so its
counts are exact. Accuracies are asserted in bands around the figures the README reports (CPU, 2026-12-02:
production 99.0%, TF-IDF 83.0%, MiniLM + LR 85.7%, fine-tuned MiniLM 91.2% (87.8% when a busy machine cut it
to 2 epochs), the three-student vote 93.5%; its cascade, held to a 90% bound on validation, 98.6% deferring
35%, 2.8x cheaper (2.6x on a busy machine)). The fine-tuned MiniLM trains
within a time budget, so a slower or busier machine trains it fewer steps: its band (and the vote's) is
wider."""

import json

import pytest

from flywheel.core.config import REPO_ROOT, load_config
from flywheel.core.runs import STAGES

ACCURACY_BANDS = {
    "baseline": (0.96, 1.0),
    "tfidf-logreg": (0.79, 0.87),
    "embedding-logreg": (0.82, 0.90),
    "minilm-l6-full": (0.86, 0.96),
    "vote-3": (0.90, 0.97),
}


@pytest.fixture(scope="module")
def summary(demo_cycle):
    return json.loads((demo_cycle / "summary.json").read_text())


def test_every_stage_ran_and_the_ground_truth_has_the_demo_sizes(demo_cycle, summary):
    manifest = json.loads((demo_cycle / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert [manifest["stages"][s]["status"] for s in STAGES] == ["done"] * 4
    truth = summary["ground_truth"]
    sizes = (truth["interactions"], truth["train"], truth["validation"], truth["test"], truth["audited"])
    assert sizes == (1800, 1065, 112, 294, 406)
    assert summary["review"]["simulated"] is True
    assert manifest["audit"]["progress"] == {"completed": 450, "pending": 0, "total": 450}


def test_accuracies_fall_in_the_demo_bands(summary):
    rows = {"baseline": summary["baseline"], **{c["name"]: c for c in summary["candidates"]}}
    demo = load_config(REPO_ROOT / "configs" / "demo.yaml")
    assert set(rows) == {"baseline"} | {c.name for c in demo.candidates} == set(ACCURACY_BANDS)
    for name, (low, high) in ACCURACY_BANDS.items():
        assert low <= rows[name]["accuracy"] <= high, (name, rows[name]["accuracy"])
        assert rows[name]["n"] == 294  # paired: every model on the same test items


def test_the_unbiased_test_measures_production_as_the_hidden_truth_does(summary):
    """The audit's labels (majority of three simulated experts who err at 5%) score the production router
    within a point of its accuracy against the hidden truth on the same items (issue #13's goal)."""
    baseline = summary["baseline"]
    assert abs(baseline["accuracy"] - baseline["hidden_truth_accuracy"]) <= 0.01
    assert baseline["agreement"] == 1.0


def test_the_best_student_learns_rather_than_memorises(summary):
    """The best single student is >= 90% overall, and >= 85% on test questions whose template no training
    question has."""
    best = max(summary["candidates"], key=lambda c: c["accuracy"])
    assert best["accuracy"] >= 0.90
    assert best["unseen_template_n"] >= 100
    assert best["unseen_template_accuracy"] >= 0.85
    tfidf = next(c for c in summary["candidates"] if c["name"] == "tfidf-logreg")
    assert tfidf["unseen_template_accuracy"] < best["unseen_template_accuracy"]


def test_only_a_cascade_is_promoted_within_the_rule_at_a_fraction_of_the_cost(summary):
    """The demo's story: no single small router is within 2 points of production; a student deferring its
    least confident queries (threshold chosen on validation, held to its bound) is, at >= 2.5x lower cost
    (measured 2.6-2.8x; the verdict issue's goal of 3x is not met since thresholds are held to the bound)."""
    assert all(c["name"] in summary["promotion"]["rejected"] for c in summary["candidates"])
    baseline = summary["baseline"]
    costs = {c["name"]: c["cost_per_1k"] for c in summary["candidates"]}
    assert max(costs.values()) < baseline["cost_per_1k"] / 50  # a single student: >= 50x cheaper
    promoted = next(c for c in summary["cascades"] if c["name"] == summary["promoted"])
    assert promoted["accuracy"] >= baseline["accuracy"] - 0.02
    assert promoted["cost_per_1k"] <= baseline["cost_per_1k"] / 2.5
    assert 0 < promoted["deferral_share"] < 1
    assert (
        promoted["validation_drop_upper"]
        <= load_config(REPO_ROOT / "configs" / "demo.yaml").eval.max_drop_points / 100
    )


def test_each_label_source_adds_accuracy(summary):
    """The ablation: the cheap student trained on expert labels only, + satisfied teacher labels, + all."""
    ablation = {row["subset"]: row for row in summary["ablation"]}
    sizes = [ablation[s]["train_examples"] for s in ("expert", "expert+teacher_satisfied", "all")]
    assert sizes == sorted(sizes) and sizes[-1] == summary["ground_truth"]["train"]
    assert ablation["expert"]["accuracy"] < ablation["all"]["accuracy"]
