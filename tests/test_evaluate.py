"""Stage 4 evaluation core: metrics, cost, promotion rule and plots, against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import chi2

from flywheel.core.accuracy import accuracy_with_ci
from flywheel.core.cost import cost_per_1k_from_tokens
from flywheel.evaluate.cost import cost_per_1k_from_hardware
from flywheel.evaluate.metrics import (
    confusion,
    latency_stats,
    mcnemar_paired,
    per_expert_report,
)
from flywheel.evaluate.plots import (
    pareto_frontier,
    plot_accuracy_vs_cost,
    plot_accuracy_vs_latency,
    plot_confusion,
    plot_per_expert,
)
from flywheel.evaluate.promote import PromotionRule, choose_promotion

Z_975 = 1.959963984540054  # standard normal quantile for a two-sided 95% interval

LABELS = ["hr", "it", "finance"]
TRUE = ["hr", "hr", "it", "it", "finance"]
PRED = ["hr", "it", "it", None, "hr"]


def wilson(correct: int, n: int, z: float = Z_975) -> tuple[float, float]:
    """Wilson score interval written out from the formula."""
    p = correct / n
    denom = 1 + z**2 / n
    center = (p + z**2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return center - half, center + half


# --- metrics ------------------------------------------------------------------------------------------


def test_accuracy_with_wilson_ci_8_of_10():
    y_true = ["a"] * 10
    y_pred = ["a"] * 8 + ["b", "b"]
    result = accuracy_with_ci(y_true, y_pred)
    low, high = wilson(8, 10)
    assert result["accuracy"] == pytest.approx(0.8)
    assert result["n"] == 10
    assert result["correct"] == 8
    assert result["ci_low"] == pytest.approx(low, abs=1e-9)
    assert result["ci_high"] == pytest.approx(high, abs=1e-9)
    assert (result["ci_low"], result["ci_high"]) == pytest.approx((0.4902, 0.9433), abs=1e-4)


def test_accuracy_counts_none_as_wrong_and_alpha_widens_interval():
    result = accuracy_with_ci(["a", "b", "a", "b"], ["a", None, None, "b"])
    assert result["correct"] == 2
    assert result["accuracy"] == pytest.approx(0.5)
    wide = accuracy_with_ci(["a", "b", "a", "b"], ["a", None, None, "b"], alpha=0.01)
    assert wide["ci_low"] < result["ci_low"]
    assert wide["ci_high"] > result["ci_high"]


def test_accuracy_rejects_mismatched_or_empty_input():
    with pytest.raises(ValueError, match="length mismatch"):
        accuracy_with_ci(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="no items"):
        accuracy_with_ci([], [])


def test_mcnemar_exact_all_discordance_one_way():
    # 4 items both right, 6 items only B right: exact two-sided p = 2 * 0.5**6
    y_true = ["x"] * 10
    pred_a = ["x"] * 4 + ["y"] * 6
    pred_b = ["x"] * 10
    result = mcnemar_paired(y_true, pred_a, pred_b)
    assert result["a_only_correct"] == 0
    assert result["b_only_correct"] == 6
    assert result["exact"] is True
    assert result["p_value"] == pytest.approx(0.03125)


def test_mcnemar_exact_one_vs_five():
    # discordant 1 vs 5: p = 2 * (C(6,0) + C(6,1)) / 2**6 = 14 / 64
    y_true = ["x"] * 6
    pred_a = ["x"] + [None] * 5
    pred_b = ["y"] + ["x"] * 5
    result = mcnemar_paired(y_true, pred_a, pred_b)
    assert (result["a_only_correct"], result["b_only_correct"]) == (1, 5)
    assert result["p_value"] == pytest.approx(14 / 64)


def test_mcnemar_chi2_with_continuity_correction_from_25_discordant():
    # 20 items only A right, 10 only B right, 5 both right
    y_true = ["x"] * 35
    pred_a = ["x"] * 20 + ["y"] * 10 + ["x"] * 5
    pred_b = ["y"] * 20 + ["x"] * 10 + ["x"] * 5
    result = mcnemar_paired(y_true, pred_a, pred_b)
    expected_stat = (abs(20 - 10) - 1) ** 2 / 30
    assert result["exact"] is False
    assert result["statistic"] == pytest.approx(expected_stat)
    assert result["p_value"] == pytest.approx(chi2.sf(expected_stat, df=1))


def test_mcnemar_no_discordant_pairs_gives_p_one():
    result = mcnemar_paired(["x", "y", "z"], ["x", "q", "z"], ["x", None, "z"])
    assert result["a_only_correct"] == 0
    assert result["b_only_correct"] == 0
    assert result["p_value"] == 1.0


def test_per_expert_report_tiny_case():
    report = per_expert_report(TRUE, PRED, LABELS)
    assert list(report.index) == LABELS
    assert list(report.columns) == ["precision", "recall", "f1", "support"]
    # hr: predicted twice, right once; 2 true -> P 0.5, R 0.5
    assert report.loc["hr", ["precision", "recall", "f1"]].tolist() == pytest.approx([0.5, 0.5, 0.5])
    # it: predicted twice, right once; the None lowers recall only
    assert report.loc["it", ["precision", "recall", "f1"]].tolist() == pytest.approx([0.5, 0.5, 0.5])
    # finance: never predicted -> zero_division gives 0
    assert report.loc["finance", ["precision", "recall", "f1"]].tolist() == [0.0, 0.0, 0.0]
    assert report["support"].tolist() == [2, 2, 1]


def test_confusion_with_unparsed_column():
    matrix, cols = confusion(TRUE, PRED, LABELS)
    assert cols == ["hr", "it", "finance", "(unparsed)"]
    assert matrix.shape == (3, 4)
    expected = [
        [1, 1, 0, 0],  # hr
        [0, 1, 0, 1],  # it
        [1, 0, 0, 0],  # finance
    ]
    np.testing.assert_array_equal(matrix, expected)


def test_confusion_without_unparsed_is_square():
    matrix, cols = confusion(["hr", "it"], ["it", "it"], LABELS)
    assert cols == LABELS
    assert matrix.shape == (3, 3)
    np.testing.assert_array_equal(matrix, [[0, 1, 0], [0, 1, 0], [0, 0, 0]])


def test_confusion_rejects_unknown_true_label():
    with pytest.raises(ValueError, match="not in labels"):
        confusion(["legal"], ["hr"], LABELS)


def test_latency_stats_percentiles_in_ms():
    stats = latency_stats([0.1, 0.2, 0.3, 0.4, 1.0])
    assert stats["n"] == 5
    assert stats["p50_ms"] == pytest.approx(300.0)
    assert stats["p95_ms"] == pytest.approx(880.0)  # linear: 400 + 0.8 * (1000 - 400)
    assert stats["mean_ms"] == pytest.approx(400.0)
    with pytest.raises(ValueError):
        latency_stats([])


# --- cost ---------------------------------------------------------------------------------------------


def test_cost_from_hardware():
    # 0.8 s/query on a $3.60/h machine: 1000 * 0.8 s = 800 s = 2/9 h -> $0.80
    assert cost_per_1k_from_hardware(0.8, 3.6) == pytest.approx(0.8)
    assert cost_per_1k_from_hardware(0.05, 2.0) == pytest.approx(1000 * 0.05 / 3600 * 2.0)


def test_cost_from_tokens():
    # 500 in at $3/M and 10 out at $15/M per query, 1000 queries: 1.5 + 0.15
    assert cost_per_1k_from_tokens(500, 10, 3.0, 15.0) == pytest.approx(1.65)
    with pytest.raises(ValueError, match="mean_tokens_in"):
        cost_per_1k_from_tokens(-1, 10, 3.0, 15.0)


# --- promotion ----------------------------------------------------------------------------------------

BASELINE = {"name": "prod-llm", "accuracy": 0.90, "cost_per_1k": 5.0}


def cand(name: str, accuracy: float, cost: float, p: float | None = 0.5) -> dict:
    return {"name": name, "accuracy": accuracy, "cost_per_1k": cost, "mcnemar_p": p}


def test_cheapest_eligible_wins():
    candidates = [
        cand("lora-big", 0.91, 0.50, p=0.3),
        cand("lora-small", 0.89, 0.10),
        cand("tiny", 0.85, 0.01, p=0.001),  # 5 points down
    ]
    result = choose_promotion(BASELINE, candidates, PromotionRule())
    assert result["promoted"] == "lora-small"
    assert result["eligible"] == ["lora-small", "lora-big"]
    assert set(result["rejected"]) == {"tiny"}
    assert "points below" in result["rejected"]["tiny"]
    assert "lora-small" in result["reason"]


def test_tie_on_cost_goes_to_accuracy_then_name():
    tie_acc = [cand("b", 0.89, 0.1), cand("a", 0.895, 0.1)]
    assert choose_promotion(BASELINE, tie_acc, PromotionRule())["promoted"] == "a"
    tie_both = [cand("beta", 0.89, 0.1), cand("alpha", 0.89, 0.1)]
    result = choose_promotion(BASELINE, tie_both, PromotionRule())
    assert result["promoted"] == "alpha"
    assert result["eligible"] == ["alpha", "beta"]


def test_costs_within_the_tie_share_go_to_the_more_accurate():
    # 1% of the baseline's $5.0 per 1k: $0.05; "b" is $0.04 dearer than "a" but more accurate
    close = [cand("a", 0.885, 0.10), cand("b", 0.895, 0.14), cand("c", 0.91, 0.16)]
    result = choose_promotion(BASELINE, close, PromotionRule())
    assert result["promoted"] == "b"  # "c" is $0.06 dearer than the cheapest: not a tie
    assert result["eligible"] == ["b", "a", "c"]
    assert "b is the most accurate of the eligible candidates within $0.05 per 1k" in result["reason"]
    assert choose_promotion(BASELINE, close, PromotionRule(cost_tie_share=0.0))["promoted"] == "a"
    assert choose_promotion(BASELINE, close, PromotionRule(cost_tie_share=0.02))["promoted"] == "c"


def test_nobody_qualifies():
    candidates = [cand("weak", 0.70, 0.1), cand("pricey", 0.95, 9.0)]
    result = choose_promotion(BASELINE, candidates, PromotionRule())
    assert result["promoted"] is None
    assert result["eligible"] == []
    assert "no candidate meets" in result["reason"]
    assert "not cheaper" in result["rejected"]["pricey"]


def test_no_candidates_at_all():
    result = choose_promotion(BASELINE, [], PromotionRule())
    assert result["promoted"] is None
    assert "no candidates" in result["reason"]


def test_within_two_points_but_significantly_worse_is_rejected():
    candidates = [cand("close-but-worse", 0.885, 0.1, p=0.01), cand("ok", 0.885, 0.2, p=0.2)]
    result = choose_promotion(BASELINE, candidates, PromotionRule())
    assert "significantly worse" in result["rejected"]["close-but-worse"]
    assert result["promoted"] == "ok"


def test_better_than_baseline_is_eligible_regardless_of_p():
    result = choose_promotion(BASELINE, [cand("better", 0.95, 0.2, p=0.001)], PromotionRule())
    assert result["promoted"] == "better"
    assert result["rejected"] == {}


def test_exactly_max_drop_is_allowed_and_rule_is_configurable():
    at_edge = [cand("edge", 0.88, 0.1)]
    assert choose_promotion(BASELINE, at_edge, PromotionRule())["promoted"] == "edge"
    assert choose_promotion(BASELINE, at_edge, PromotionRule(max_drop_points=1.0))["promoted"] is None
    strict = PromotionRule(alpha=0.6)  # p = 0.5 now counts as significant
    assert choose_promotion(BASELINE, at_edge, strict)["promoted"] is None


def test_duplicate_candidate_names_are_an_error():
    with pytest.raises(ValueError, match="unique"):
        choose_promotion(BASELINE, [cand("x", 0.9, 1.0), cand("x", 0.9, 2.0)], PromotionRule())


# --- plots --------------------------------------------------------------------------------------------

ROWS = [
    {"name": "prod-llm", "accuracy": 0.90, "ci_low": 0.86, "ci_high": 0.93, "cost_per_1k": 5.0,
     "p50_ms": 900.0, "promoted": False, "is_baseline": True},
    {"name": "lora-small", "accuracy": 0.89, "ci_low": 0.85, "ci_high": 0.92, "cost_per_1k": 0.1,
     "p50_ms": 80.0, "promoted": True, "is_baseline": False},
    {"name": "few-shot", "accuracy": 0.60, "ci_low": 0.55, "ci_high": 0.65, "cost_per_1k": 0.4,
     "p50_ms": 300.0, "promoted": False, "is_baseline": False},
    {"name": "classifier", "accuracy": 0.80, "ci_low": 0.75, "ci_high": 0.84, "cost_per_1k": 0.02,
     "p50_ms": 5.0, "promoted": False, "is_baseline": False},
]  # fmt: skip


def test_pareto_frontier():
    assert pareto_frontier(ROWS) == ["classifier", "lora-small", "prod-llm"]
    same_cost = [
        {"name": "a", "accuracy": 0.8, "cost_per_1k": 1.0},
        {"name": "b", "accuracy": 0.7, "cost_per_1k": 1.0},  # same cost, less accurate: dominated
        {"name": "c", "accuracy": 0.8, "cost_per_1k": 2.0},  # costlier, no more accurate: dominated
    ]
    assert pareto_frontier(same_cost) == ["a"]
    assert pareto_frontier(ROWS, x_key="p50_ms") == ["classifier", "lora-small", "prod-llm"]


def _is_png(path) -> bool:
    return path.stat().st_size > 1000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_accuracy_vs_cost_and_latency_write_png(tmp_path):
    fig = plot_accuracy_vs_cost(ROWS, tmp_path / "cost.png")
    assert _is_png(tmp_path / "cost.png")
    ax = fig.axes[0]
    assert ax.get_xscale() == "log"
    labels = [t.get_text() for t in ax.texts]
    assert "lora-small (promoted)" in labels
    assert "prod-llm (baseline)" in labels
    fig = plot_accuracy_vs_latency(ROWS, tmp_path / "sub" / "latency.png")
    assert _is_png(tmp_path / "sub" / "latency.png")
    assert fig.axes[0].get_xscale() == "log"


def test_plot_accuracy_vs_cost_rejects_nonpositive_cost():
    rows = [dict(ROWS[0], cost_per_1k=0.0)]
    with pytest.raises(ValueError, match="> 0"):
        plot_accuracy_vs_cost(rows)


def test_plot_confusion_and_per_expert_write_png(tmp_path):
    matrix, cols = confusion(TRUE, PRED, LABELS)
    plot_confusion(matrix, LABELS, cols, "confusion", tmp_path / "confusion.png")
    assert _is_png(tmp_path / "confusion.png")
    with pytest.raises(ValueError, match="shape"):
        plot_confusion(matrix, LABELS, LABELS, "bad")
    fig = plot_per_expert(per_expert_report(TRUE, PRED, LABELS), "per expert", tmp_path / "experts.png")
    assert _is_png(tmp_path / "experts.png")
    assert len(fig.axes[0].patches) == 3 * len(LABELS)


def test_plot_confusion_labels_each_count_and_no_unparsed_row():
    matrix, cols = confusion(TRUE, PRED, LABELS)
    assert cols[-1] == "(unparsed)"  # the case that needs a row cut off the square display
    ax = plot_confusion(matrix, LABELS, cols, "confusion").axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == LABELS
    assert [t.get_text() for t in ax.get_xticklabels()] == cols
    assert sorted(t.get_text() for t in ax.texts) == sorted(str(n) for n in matrix.ravel())
