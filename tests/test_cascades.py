"""Cascades in the eval stage (threshold on validation only, least deferral, cost and latency arithmetic,
promotion), the hidden-truth and unseen-template slices, and the label-source ablation: with stand-in
routers whose probabilities are planted per text."""

import json

import numpy as np
import pandas as pd
import pytest

import flywheel.evaluate.ablation as ablation_module
import flywheel.evaluate.stage as stage_module
from flywheel.core.config import load_config
from flywheel.core.registry import Registry, default_export_path
from flywheel.core.routers import read_candidate_card, write_candidate_card
from flywheel.core.runs import RunDir
from flywheel.evaluate.ablation import score_ablation
from flywheel.evaluate.cascades import ThresholdChoice, cascade_row, choose_threshold, paired_drop_upper
from flywheel.evaluate.plots import plot_ablation, plot_accuracy_vs_cost
from flywheel.evaluate.promote import PromotionRule, choose_promotion
from flywheel.evaluate.slices import Slices, read_hidden_truth
from flywheel.evaluate.stage import Evaluation, evaluate_all, record_promotion

LABELS = ["a", "b"]
BASE = load_config("configs/test.yaml")
# Ten planted validation items are too few for a confidence bound (tests below check the bound apart): the
# stage's mechanics are checked with the point-estimate rule.
CONFIG = BASE.model_copy(
    update={
        "experts": {"a": "", "b": ""},
        "eval": BASE.eval.model_copy(update={"cascade_confidence": None}),
    }
)


class PlantedRouter:
    """Per text: the planted decision and its probability (the other label gets the rest)."""

    def __init__(self, name: str, planted: dict[str, tuple[str, float]]):
        self.name, self.planted, self.labels = name, planted, LABELS

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            label, p = self.planted[text]
            rows.append([p, 1 - p] if label == "a" else [1 - p, p])
        return np.array(rows)

    def predict(self, texts: list[str]) -> list[str | None]:
        return [self.planted[t][0] for t in texts]


class DecidingRouter:
    """A router that decides but gives no probabilities (like an endpoint)."""

    def __init__(self, name: str, planted: dict[str, tuple[str, float]]):
        self.name, self.planted = name, planted

    def predict(self, texts: list[str]) -> list[str | None]:
        return [self.planted[t][0] for t in texts]


def items(prefix: str, truth: list[str], routed: list[str]) -> pd.DataFrame:
    ids = [f"{prefix}{i}" for i in range(len(truth))]
    return pd.DataFrame({"id": ids, "text": ids, "label": truth, "routed_expert": routed})


def planted(prefix: str, truth: list[str], confidences: list[float], wrong: set[int]) -> dict:
    other = {"a": "b", "b": "a"}
    return {
        f"{prefix}{i}": (other[t] if i in wrong else t, c)
        for i, (t, c) in enumerate(zip(truth, confidences, strict=True))
    }


def logs_for(*frames: pd.DataFrame) -> pd.DataFrame:
    ids = pd.concat(frames)["id"]
    return pd.DataFrame({"id": ids, "model": "big", "latency_ms": 1000.0, "tokens_in": 200, "tokens_out": 4})


@pytest.fixture
def planted_student(tmp_path, monkeypatch):
    """A student folder (candidate.json) that `load_router` in the eval stage answers with `routers[name]`."""
    routers = {}

    def make(router) -> dict:
        folder = tmp_path / "candidates" / router.name
        folder.mkdir(parents=True)
        write_candidate_card(folder, kind="tfidf_logreg", name=router.name, labels=LABELS, parameters=10)
        routers[str(folder)] = router
        return {router.name: folder}

    monkeypatch.setattr(stage_module, "load_router", lambda folder: routers[str(folder)])
    return make


# --- the threshold, on validation only ----------------------------------------------------------------------
VAL_TRUTH = ["a", "b"] * 5
VAL_CONF = [0.55, 0.65, 0.75, 0.8, 0.85, 0.9, 0.92, 0.95, 0.97, 0.99]
TEST_TRUTH = ["b", "a"] * 5
TEST_CONF = [0.6, 0.9, 0.8, 0.85, 0.75, 0.92, 0.95, 0.97, 0.98, 0.99]


def test_least_deferral_within_the_margin():
    # production 10/10 on validation; the student errs on its two least confident items: defer those two
    proba = PlantedRouter("s", planted("v", VAL_TRUTH, VAL_CONF, {0, 1})).predict_proba(
        [f"v{i}" for i in range(10)]
    )
    choice = choose_threshold(proba, LABELS, VAL_TRUTH, VAL_TRUTH, max_drop_points=2.0)
    assert choice.threshold == pytest.approx(0.70)  # midway between the 2nd and 3rd confidence
    assert (choice.deferral_share, choice.accuracy, choice.production_accuracy) == (0.2, 1.0, 1.0)
    # a 10-point margin tolerates one error: defer only the least confident item
    loose = choose_threshold(proba, LABELS, VAL_TRUTH, VAL_TRUTH, max_drop_points=10.0)
    assert loose.threshold == pytest.approx(0.60) and loose.deferral_share == 0.1
    # a 20-point margin tolerates both: the student alone, no cascade
    alone = choose_threshold(proba, LABELS, VAL_TRUTH, VAL_TRUTH, max_drop_points=20.0)
    assert alone.threshold is None and "no deferral needed" in alone.reason


def test_no_threshold_but_deferring_everything_is_skipped_with_the_reason():
    # tied confidences cannot be split, and half the student's answers are wrong
    proba = np.array([[0.6, 0.4]] * 10)
    choice = choose_threshold(proba, LABELS, ["a", "b"] * 5, ["a", "b"] * 5, max_drop_points=2.0)
    assert choice.threshold is None
    assert "only deferring every validation query" in choice.reason


def student_proba(wrong: set[int], n: int) -> np.ndarray:
    """Item i (truth "a") answered with confidence rising with i; wrong on the items in `wrong`."""
    confidence = 0.5 + 0.49 * (np.arange(n) + 1) / (n + 1)
    first = np.where([i in wrong for i in range(n)], 1 - confidence, confidence)
    return np.column_stack([first, 1 - first])


def test_the_paired_drop_bound_is_agresti_min():
    # b = 3 items only production gets right, c = 1 only the cascade, n = 100; by hand: cells + 1/2,
    # drop (3.5 - 1.5) / 102 = 0.0196, variance (5 - 2**2 / 102) / 102**2, z(0.9) = 1.2816 -> 0.0476
    assert paired_drop_upper(np.array([3]), np.array([1]), 100, 1.2816)[0] == pytest.approx(0.0476, abs=1e-4)
    # no discordant item: the bound is still above zero, and narrows as n grows
    small, large = (paired_drop_upper(np.array([0]), np.array([0]), n, 1.2816)[0] for n in (50, 500))
    assert 0 < large < small


def test_the_confidence_bound_defers_more_than_the_point_estimate():
    # 200 items production gets right; the student errs on its 10 least confident and on one confident item
    n, truth = 200, ["a"] * 200
    proba = student_proba(set(range(10)) | {150}, n)
    point = choose_threshold(proba, LABELS, truth, truth, max_drop_points=2.0)
    bound = choose_threshold(proba, LABELS, truth, truth, max_drop_points=2.0, confidence=0.9)
    assert point.deferral_share == 7 / n  # 4 errors left: 2.0% <= 2 points
    assert bound.deferral_share == 10 / n  # the bound needs every unconfident error deferred
    assert bound.drop_upper == pytest.approx(
        paired_drop_upper(np.array([1]), np.array([0]), n, 1.2816)[0], 1e-3
    )
    assert bound.drop_upper <= 0.02 < paired_drop_upper(np.array([2]), np.array([0]), n, 1.2816)[0]
    # the same errors on fewer items: wider bounds, more deferral or none
    few = choose_threshold(student_proba({0, 1, 2, 30}, 40), LABELS, ["a"] * 40, ["a"] * 40, 2.0, 0.9)
    assert few.threshold is None and "only deferring every validation query" in few.reason


def test_a_lucky_threshold_below_a_failing_one_is_not_chosen():
    """1000 items: production is wrong on the 10 least confident (the student right), the student wrong on
    the next 10. The student alone ties production (its bound passes a 1-point margin), but deferring
    production's 10 misses fails it: deferrals are tested from most to least, so the search stops above
    that failure."""
    n = 1000
    truth = ["a"] * n
    production = ["b"] * 10 + ["a"] * (n - 10)
    proba = student_proba(set(range(10, 20)), n)
    assert choose_threshold(proba, LABELS, truth, production, 1.0).threshold is None  # point: student alone
    alone, at_ten = paired_drop_upper(np.array([10, 10]), np.array([10, 0]), n, 1.2816)
    assert alone <= 0.01 < at_ten
    choice = choose_threshold(proba, LABELS, truth, production, max_drop_points=1.0, confidence=0.9)
    assert choice.deferral_share == 14 / n  # 6 student errors left: the first deferral above the failures
    assert choice.drop_upper <= 0.01 and choice.accuracy == pytest.approx(0.984)


def test_threshold_is_chosen_on_validation_not_on_test(planted_student):
    """On test the student also errs at confidence 0.9: a threshold chosen on test would defer that too
    (≈ 0.91); the validation's choice, 0.70, does not, so the cascade loses that item on test."""
    validation = items("v", VAL_TRUTH, VAL_TRUTH)
    test = items("t", TEST_TRUTH, TEST_TRUTH)
    router = PlantedRouter(
        "student",
        {**planted("v", VAL_TRUTH, VAL_CONF, {0, 1}), **planted("t", TEST_TRUTH, TEST_CONF, {0, 1})},
    )
    test_choice = choose_threshold(
        router.predict_proba(test["text"].tolist()), LABELS, TEST_TRUTH, TEST_TRUTH, max_drop_points=2.0
    )
    assert test_choice.threshold == pytest.approx(0.91)  # what tuning on test would have picked

    evaluation = evaluate_all(CONFIG, test, logs_for(test), planted_student(router), validation=validation)
    cascade = evaluation.rows_of("cascade")[0]
    assert cascade["name"] == "student+defer" and cascade["student"] == "student"
    assert cascade["threshold"] == pytest.approx(0.70)
    assert cascade["validation_deferral_share"] == 0.2
    assert cascade["deferral_share"] == 0.1  # only the 0.6 item falls below 0.70 on test
    assert cascade["accuracy"] == 0.9  # the 0.9 item, answered by the student, is wrong
    assert cascade["agreement"] == 0.9
    assert evaluation.predictions["student+defer"][:2] == ["b", "b"]  # deferred: production's; answered
    assert "student+defer" in evaluation.table.index
    assert evaluation.table.loc["student+defer", "deferral_share"] == 0.1
    chosen = evaluation.cascade_table().loc["student+defer"]
    assert (chosen["threshold"], chosen["validation_deferral_share"]) == (pytest.approx(0.70), 0.2)


def test_students_without_probabilities_or_validation_get_no_cascade(planted_student):
    test = items("t", TEST_TRUTH, TEST_TRUTH)
    plants = planted("t", TEST_TRUTH, TEST_CONF, set())
    dirs = {
        **planted_student(DecidingRouter("decider", plants)),
        **planted_student(PlantedRouter("p", plants)),
    }
    evaluation = evaluate_all(CONFIG, test, logs_for(test), dirs)
    assert evaluation.rows_of("cascade") == []
    assert "no per-expert probabilities" in evaluation.cascades_skipped["decider"]
    assert "no validation split" in evaluation.cascades_skipped["p"]
    assert "no cascade: decider" in evaluation.decision_text(None)


# --- cost and latency ---------------------------------------------------------------------------------------
def test_cascade_cost_and_latency_arithmetic():
    test = items("t", ["a", "a", "b", "b"], ["a", "a", "b", "a"])
    proba = np.array([[0.55, 0.45], [0.9, 0.1], [0.4, 0.6], [0.05, 0.95]])  # the 1st and 3rd defer at 0.7
    student = {"name": "s", "cost_per_1k": 0.01, "cost_basis": "hardware", "parameters": 5}
    baseline = {"cost_per_1k": 1.0, "cost_basis": "tokens"}
    row, decisions = cascade_row(
        student,
        [0.001, 0.003],  # measured student seconds, reused in turn
        proba,
        LABELS,
        ThresholdChoice(0.7, 0.5, 1.0, 1.0),
        test,
        np.array([1.0, 2.0, 3.0, 4.0]),  # production's logged seconds
        baseline,
        Slices(),
        0.05,
    )
    assert decisions == ["a", "a", "b", "b"] and row["accuracy"] == 1.0
    assert row["deferral_share"] == 0.5
    assert row["cost_per_1k"] == pytest.approx(0.01 + 0.5 * 1.0)
    per_query_ms = [1001.0, 3.0, 3001.0, 3.0]
    assert row["p50_ms"] == pytest.approx(np.median(per_query_ms))
    assert row["mean_ms"] == pytest.approx(np.mean(per_query_ms))
    assert row["agreement"] == 0.75  # the 4th: production said a, the student b
    assert "logged latency on deferred" in row["latency_source"]


# --- promotion ----------------------------------------------------------------------------------------------
def test_promotion_picks_the_cheapest_eligible_cascade():
    baseline = {"name": "baseline", "accuracy": 0.95, "cost_per_1k": 1.0}
    rows = [
        {"name": "s", "kind": "single", "accuracy": 0.85, "cost_per_1k": 0.01, "mcnemar_p": 0.001},
        {
            "name": "s+defer",
            "kind": "cascade",
            "accuracy": 0.94,
            "cost_per_1k": 0.4,
            "mcnemar_p": 0.5,
            "deferral_share": 0.3,
        },
        {"name": "big+defer", "kind": "cascade", "accuracy": 0.95, "cost_per_1k": 0.6, "mcnemar_p": 1.0},
    ]
    decision = choose_promotion(baseline, rows, PromotionRule())
    assert decision["promoted"] == "s+defer"
    assert "a cascade: defers 30% of the test queries to baseline" in decision["reason"]
    assert decision["eligible"] == ["s+defer", "big+defer"]
    assert "points below" in decision["rejected"]["s"]


def test_promoting_a_cascade_writes_its_folder_and_registers_it(tmp_path, store):
    student = tmp_path / "candidates" / "s"
    student.mkdir(parents=True)
    write_candidate_card(student, kind="tfidf_logreg", name="s", labels=LABELS, parameters=10)
    row = {
        "name": "s+defer", "kind": "cascade", "student": "s", "threshold": 0.7, "deferral_share": 0.3,
        "accuracy": 0.94, "ci_low": 0.9, "ci_high": 0.96, "n": 100, "p50_ms": 2.0, "cost_per_1k": 0.4,
        "mcnemar_p": 0.5, "agreement": 0.97,
    }  # fmt: skip
    decision = {"promoted": "s+defer", "reason": "cheapest eligible", "eligible": ["s+defer"], "rejected": {}}
    evaluation = Evaluation(pd.DataFrame(), {"s": student}, [{"name": "baseline"}, row], {}, decision, None)
    run = RunDir(tmp_path / "runs" / "c-1")
    entry = record_promotion(run, store, evaluation)
    folder = run.path / "artifacts" / "cascades" / "s+defer"
    card = read_candidate_card(folder)
    assert (card["kind"], card["threshold"], card["student_name"]) == ("cascade", 0.7, "s")
    assert entry.artifact_path == str(folder.resolve()) and entry.model_name == "s+defer"
    assert entry.metrics["threshold"] == 0.7 and entry.metrics["deferral_share"] == 0.3
    assert Registry(store, default_export_path(run.runs_root, "default")).current().seq == entry.seq


# --- hidden truth and the unseen-template slice -------------------------------------------------------------
def write_truth(path, rows: list[dict]):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_unseen_template_slice_and_hidden_truth_scores(tmp_path):
    train = pd.DataFrame({"id": ["r0", "r1", "r2"]})
    test = items("t", ["a", "b", "b", "a"], ["a", "b", "a", "a"])
    truth = read_hidden_truth(
        write_truth(
            tmp_path / "truth.jsonl",
            [
                {"id": "r0", "true_expert": "a", "template": "T1"},
                {"id": "r1", "true_expert": "b", "template": "T2"},
                {"id": "r2", "true_expert": "b"},  # a record without a template
                {"id": "t0", "true_expert": "a", "template": "T1"},  # seen in training
                {"id": "t1", "true_expert": None, "template": "T3"},  # unseen, and out of scope
                {"id": "t2", "true_expert": "a", "template": "T4"},  # unseen
            ],  # t3: not in the hidden truth at all
        )
    )
    slices = Slices.build(test, train, truth)
    assert slices.unseen_template.tolist() == [False, True, True, False]
    assert slices.hidden_truth == ["a", "out_of_scope", "a", None]
    scores = slices.scores(["a", "b", "a", "a"], test["label"].tolist(), alpha=0.05)
    # unseen items t1, t2 against the test labels (b, b): b right, a wrong
    assert (scores["unseen_template_accuracy"], scores["unseen_template_n"]) == (0.5, 2)
    assert scores["unseen_template_ci_low"] < 0.5 < scores["unseen_template_ci_high"]
    # hidden truth on the items it covers (t0, t1, t2): a right, out of scope wrong, a right
    assert (scores["hidden_truth_accuracy"], scores["hidden_truth_n"]) == (pytest.approx(2 / 3), 3)


def test_hidden_truth_columns_only_where_the_source_knows_it(tmp_path, planted_student):
    test = items("t", TEST_TRUTH, TEST_TRUTH)
    validation = items("v", VAL_TRUTH, VAL_TRUTH)
    router = PlantedRouter(
        "student",
        {**planted("v", VAL_TRUTH, VAL_CONF, {0, 1}), **planted("t", TEST_TRUTH, TEST_CONF, {0, 1})},
    )
    dirs = planted_student(router)
    plain = evaluate_all(CONFIG, test, logs_for(test), dirs, validation=validation)
    hidden_keys = {"hidden_truth_accuracy", "unseen_template_accuracy", "unseen_template_n"}
    assert not hidden_keys & set(plain.table.columns)
    assert not any(k.startswith(("hidden_truth", "unseen_template")) for r in plain.rows for k in r)

    # a world written before templates: hidden-truth accuracy, no unseen slice; t9 truly is "b" (routed a)
    rows = [{"id": i, "true_expert": label} for i, label in zip(test["id"], TEST_TRUTH, strict=True)]
    rows[-1]["true_expert"] = "b"
    truth = read_hidden_truth(write_truth(tmp_path / "truth.jsonl", rows))
    known = evaluate_all(
        CONFIG, test, logs_for(test), dirs, validation=validation, train=test.head(0), hidden_truth=truth
    )
    assert "hidden_truth_accuracy" in known.table and "unseen_template_accuracy" not in known.table
    baseline = known.rows[0]
    assert (baseline["accuracy"], baseline["hidden_truth_accuracy"], baseline["hidden_truth_n"]) == (
        1.0,
        0.9,
        10,
    )
    assert known.rows_of("cascade")[0]["hidden_truth_accuracy"] == 0.8


def test_cascades_have_their_own_marker_on_the_plots(tmp_path):
    rows = [
        {"name": "baseline", "accuracy": 0.95, "ci_low": 0.9, "ci_high": 0.97, "cost_per_1k": 1.0,
         "is_baseline": True, "kind": "production"},
        {"name": "s+defer", "accuracy": 0.94, "ci_low": 0.9, "ci_high": 0.96, "cost_per_1k": 0.4,
         "kind": "cascade", "deferral_share": 0.3},
    ]  # fmt: skip
    fig = plot_accuracy_vs_cost(rows, tmp_path / "cost.png")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(label.startswith("cascade") for label in labels)
    assert any(t.get_text() == "s+defer (defers 30%)" for t in fig.axes[0].texts)


# --- the label-source ablation ------------------------------------------------------------------------------
def test_ablation_table_scores_each_subset_on_test(tmp_path, monkeypatch):
    test = items("t", TEST_TRUTH, TEST_TRUTH)
    dirs, routers = {}, {}
    for subset, wrong, n in [("expert", {0, 1, 2}, 120), ("expert+satisfied", {0}, 700)]:
        folder = tmp_path / subset
        folder.mkdir()
        (folder / "training.json").write_text(json.dumps({"train_examples": n}))
        dirs[subset] = folder
        routers[str(folder)] = PlantedRouter(subset, planted("t", TEST_TRUTH, TEST_CONF, wrong))
    monkeypatch.setattr(ablation_module, "load_router", lambda folder: routers[str(folder)])
    table = score_ablation(dirs, test)
    assert list(table.index) == ["expert", "expert+satisfied"]
    assert table["train_examples"].tolist() == [120, 700]
    assert table["accuracy"].tolist() == [0.7, 0.9]
    assert (table["ci_low"] < table["accuracy"]).all() and (table["accuracy"] < table["ci_high"]).all()
    assert table["n"].tolist() == [10, 10]
    assert score_ablation({}, test).empty
    plot_ablation(table, tmp_path / "ablation.png")
    assert (tmp_path / "ablation.png").read_bytes().startswith(b"\x89PNG")


def test_a_perfect_accuracy_plots_although_its_wilson_bound_rounds_below_it(tmp_path):
    """Wilson's upper bound at 100% is 1 - 1e-16: a negative error bar, which matplotlib refuses."""
    perfect = {"accuracy": 1.0, "ci_low": 0.95, "ci_high": 1.0 - 1e-16}
    rows = [
        {"name": "baseline", **perfect, "cost_per_1k": 0.2, "promoted": False, "is_baseline": True},
        {"name": "s+defer", **perfect, "cost_per_1k": 0.1, "promoted": True, "is_baseline": False,
         "kind": "cascade", "deferral_share": 0.5},
    ]  # fmt: skip
    plot_accuracy_vs_cost(rows, tmp_path / "cost.png")
    table = pd.DataFrame([{"subset": "all", **perfect, "train_examples": 10}]).set_index("subset")
    plot_ablation(table, tmp_path / "ablation.png")
    assert (tmp_path / "cost.png").stat().st_size > 0 and (tmp_path / "ablation.png").stat().st_size > 0
