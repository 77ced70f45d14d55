"""The online gate: a router fails only when its week's audited accuracy is significantly below the floor; a
shadow candidate passes only when its accuracy reaches the floor and it agrees with the router in service;
too few audited items give no verdict."""

import pandas as pd

from flywheel.weeks.gate import agreement_between, costs_more, judge


def week(n_right: int, n_wrong: int) -> tuple[pd.Series, pd.Series]:
    ids = [f"ix-{i}" for i in range(n_right + n_wrong)]
    labels = pd.Series(["it_help"] * len(ids), index=ids)
    decisions = pd.Series(["it_help"] * n_right + ["facilities"] * n_wrong, index=ids)
    return decisions, labels


def test_too_few_audited_items_give_no_verdict():
    decisions, labels = week(3, 5)
    verdict = judge("r", decisions, labels, floor=0.95, min_reviewed=20)
    assert verdict.passed is None and verdict.reviewed == 8 and "no verdict" in verdict.reason


def test_a_router_fails_only_when_significantly_below_the_floor():
    near = judge("r", *week(45, 5), floor=0.95, min_reviewed=20)  # 90% on 50: the CI reaches 95%
    assert near.passed is True and near.accuracy == 0.9 and near.ci_high > 0.95
    far = judge("r", *week(35, 15), floor=0.95, min_reviewed=20)  # 70% on 50
    assert far.passed is False and far.ci_high < 0.95 and "below the gate" in far.reason


def test_only_items_with_both_a_decision_and_a_label_count():
    decisions, labels = week(30, 0)
    decisions = pd.concat([decisions, pd.Series(["x"] * 10, index=[f"other-{i}" for i in range(10)])])
    decisions.iloc[:5] = None  # no decision logged for these
    verdict = judge("r", decisions, labels, floor=0.5, min_reviewed=20)
    assert verdict.reviewed == 25 and verdict.accuracy == 1.0


def test_a_shadow_candidate_must_agree_with_the_router_in_service():
    decisions, labels = week(50, 0)
    verdict = judge("c", decisions, labels, floor=0.9, min_reviewed=20, agreement=0.6, min_agreement=0.85)
    assert verdict.passed is False and "agrees with the router in service on 60.0%" in verdict.reason
    verdict = judge("c", decisions, labels, floor=0.9, min_reviewed=20, agreement=0.9, min_agreement=0.85)
    assert verdict.passed is True


def test_agreement_is_over_the_ids_both_decided():
    a = pd.Series(["x", "y", "z", None], index=["1", "2", "3", "4"])
    b = pd.Series(["x", "n", "z", "w"], index=["1", "2", "3", "4"])
    assert agreement_between(a, b) == 2 / 3
    assert agreement_between(a, pd.Series(["x"], index=["9"])) is None


def test_a_candidate_is_promoted_on_its_accuracy_not_on_the_benefit_of_the_doubt():
    """90% on 50 items against a 95% floor: a router in service keeps serving, a candidate waits."""
    kept = judge("r", *week(45, 5), floor=0.95, min_reviewed=20)
    waits = judge("c", *week(45, 5), floor=0.95, min_reviewed=20, to_promote=True)
    assert kept.passed is True
    assert waits.passed is None and waits.accuracy == 0.9 and "not surely below" in waits.reason
    holds = judge("c", *week(48, 2), floor=0.95, min_reviewed=20, to_promote=True)  # 96%
    assert holds.passed is True
    far = judge("c", *week(35, 15), floor=0.95, min_reviewed=20, to_promote=True)
    assert far.passed is False


def test_a_candidate_dearer_than_the_router_in_service_beyond_a_tie_costs_more():
    assert costs_more(0.12, 0.03, production=0.2, tie_share=0.01)
    assert not costs_more(0.031, 0.03, production=0.2, tie_share=0.01)  # within 1% of production's $0.2
    assert not costs_more(0.02, 0.03, production=0.2, tie_share=0.01)
    assert not costs_more(0.12, None, production=0.2, tie_share=0.01)
