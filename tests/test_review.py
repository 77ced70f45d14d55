"""The review dataset's records, verdicts as suggestions, agreement and the pause rule (no server needed)."""

import json

import pandas as pd
import pytest

from flywheel.core.config import ReviewConfig
from flywheel.core.labels import majority_labels
from flywheel.demo.panel import SimulatedPanel
from flywheel.triage.review import (
    QUESTION_CAUSE,
    QUESTION_EXPERT,
    ReviewSession,
    ReviewTarget,
    agreement,
    audit_records,
    awaiting_review,
    dataset_name,
    default_dataset_name,
    expert_labels,
    normalise_verdicts,
    review_queue,
    to_records,
)

EXPERTS = ["it_help", "hr_benefits", "facilities"]


def queue(n=3):
    return pd.DataFrame(
        {
            "id": [f"ix-{i}" for i in range(n)],
            "timestamp": pd.to_datetime(["2026-09-08T10:15:02Z"] * n, utc=True),
            "query_masked": [f"my badge <PERSON> {i}" for i in range(n)],
            "routed_expert": ["it_help"] * n,
            "answer_excerpt": ["Restart the VPN client."] * n,
            "comment": [None, "wrong team", float("nan")][:n],
        }
    )


def test_records_carry_masked_text_and_the_judges_verdict_as_scored_suggestions():
    verdicts = pd.DataFrame(
        [
            {
                "interaction_id": "ix-1",
                "cause": "routing",
                "suggested_expert": "facilities",
                "confidence": 0.8,
                "rationale": "badges belong to facilities",
            },
            {"interaction_id": "ix-2", "cause": "nonsense", "suggested_expert": "nobody", "confidence": 0.1},
        ]
    )
    records = {r.id: r for r in to_records(queue(), EXPERTS, verdicts)}
    assert set(records) == {"ix-0", "ix-1", "ix-2"}
    plain = records["ix-0"]
    assert plain.fields["question"] == "my badge <PERSON> 0"
    assert plain.fields["user_comment"] is None
    assert len(plain.suggestions) == 0
    assert "judge_confidence" not in plain.metadata
    judged = records["ix-1"]
    suggestions = {s.question_name: s for s in judged.suggestions}
    assert suggestions[QUESTION_EXPERT].value == "facilities"
    assert suggestions[QUESTION_EXPERT].score == pytest.approx(0.8)
    assert suggestions[QUESTION_CAUSE].value == "routing"
    assert judged.metadata["judge_confidence"] == pytest.approx(0.8)
    assert judged.metadata["logged_day"] == "2026-09-08"
    assert judged.fields["judge_rationale"] == "badges belong to facilities"
    assert len(records["ix-2"].suggestions) == 0  # labels outside the questions are not suggested


def test_verdicts_as_a_list_of_dicts_and_missing_ids():
    table = normalise_verdicts([{"id": "a", "cause": "routing", "expert": "it_help", "confidence": 0.5}])
    assert table["a"]["expert"] == "it_help"
    with pytest.raises(ValueError, match="interaction_id"):
        normalise_verdicts([{"cause": "routing"}])
    assert normalise_verdicts(None) == {}


def test_agreement_reports_fleiss_and_cohen_kappa():
    rows = []
    for i, (a, b) in enumerate([("x", "x"), ("y", "y"), ("x", "y"), ("z", "z"), ("y", "y"), ("x", "x")]):
        rows += [(f"i{i}", "r1", a), (f"i{i}", "r2", b)]
    rows.append(("solo", "r1", "x"))
    reviews = pd.DataFrame(rows, columns=["interaction_id", "reviewer", "correct_expert"])
    result = agreement(reviews)
    assert result["items_with_overlap"] == 6
    assert result["observed_agreement"] == pytest.approx(5 / 6, abs=1e-4)
    from sklearn.metrics import cohen_kappa_score

    expected = cohen_kappa_score(["x", "y", "x", "z", "y", "x"], ["x", "y", "y", "z", "y", "x"])
    assert result["cohen_kappa"]["r1~r2"] == pytest.approx(expected, abs=1e-4)
    assert 0 < result["fleiss_kappa"] < 1


def test_agreement_without_overlap():
    reviews = pd.DataFrame([("a", "r1", "x")], columns=["interaction_id", "reviewer", "correct_expert"])
    assert agreement(reviews)["items_with_overlap"] == 0
    assert agreement(reviews.iloc[:0])["fleiss_kappa"] is None


def test_only_wait_mode_pauses_and_only_while_records_are_pending():
    assert awaiting_review("wait", {"total": 3, "completed": 1, "pending": 2})
    assert not awaiting_review("wait", {"total": 3, "completed": 3, "pending": 0})
    assert not awaiting_review("simulate", {"total": 3, "completed": 0, "pending": 3})


def test_config_knows_both_modes_and_rejects_others():
    assert ReviewConfig(mode="wait").argilla_url_env == "ARGILLA_API_URL"
    with pytest.raises(ValueError):
        ReviewConfig(mode="later")


def test_secrets_stay_out_of_reprs_and_descriptions():
    target = ReviewTarget("http://127.0.0.1:6900", "secret-key-123", "ws", "ds", embedded=True)
    assert "secret-key-123" not in repr(target)
    assert "secret-key-123" not in json.dumps(target.describe())


def test_one_dataset_per_store():
    assert default_dataset_name("demo", "sqlite:///a.db") != default_dataset_name("demo", "sqlite:///b.db")
    assert expert_labels(["a"]) == ["a", "ambiguous", "out_of_scope"]


def test_one_audit_dataset_per_store_beside_the_triage_one():
    from types import SimpleNamespace

    config = SimpleNamespace(name="demo", review=SimpleNamespace(dataset=None))
    triage, audit = dataset_name(config, "sqlite:///a.db"), dataset_name(config, "sqlite:///a.db", "audit")
    assert triage == default_dataset_name("demo", "sqlite:///a.db")  # unchanged for its users
    assert audit.startswith("demo-audit-") and audit[-8:] == triage[-8:]
    config.review.dataset = "team-review"
    assert dataset_name(config, "x") == "team-review"
    assert dataset_name(config, "x", "audit") == "team-review-audit"
    with pytest.raises(ValueError, match="unknown review task"):
        ReviewSession(
            ReviewTarget("http://127.0.0.1:1", "k", "ws", "ds", embedded=True), EXPERTS, task="vibes"
        )


def test_audit_records_show_the_masked_question_and_nothing_that_hints_at_the_answer():
    records = audit_records(queue())
    assert [r.id for r in records] == ["ix-0", "ix-1", "ix-2"]
    for record in records:
        assert set(record.fields) == {"question"}
        assert record.fields["question"].startswith("my badge <PERSON>")
        assert set(record.metadata) == {"logged_at", "logged_day"}
        assert not record.suggestions


def test_review_queue_counts_triage_answers_only_and_can_leave_items_out():
    interactions = pd.DataFrame({"id": ["a", "b", "c", "d"], "satisfied": [False, False, True, False]})
    reviews = pd.DataFrame(
        {"interaction_id": ["a", "b"], "reviewer": ["r1", "r1"], "task": ["triage", "audit"]}
    )
    assert review_queue(interactions, reviews)["id"].tolist() == ["b", "d"]
    assert review_queue(interactions, reviews, exclude_ids={"d"})["id"].tolist() == ["b"]
    assert review_queue(interactions, reviews.drop(columns="task"))["id"].tolist() == ["d"]  # older frames


def test_agreement_of_three_raters_and_one_task_at_a_time():
    rows = []
    answers = [("x", "x", "x"), ("y", "y", "x"), ("z", "z", "z"), ("x", "x", "x"), ("y", "y", "y")]
    for i, trio in enumerate(answers):
        rows += [(f"i{i}", f"r{k + 1}", label, "audit") for k, label in enumerate(trio)]
    reviews = pd.DataFrame(rows, columns=["interaction_id", "reviewer", "correct_expert", "task"])
    result = agreement(reviews)
    assert result["items_with_overlap"] == 5
    assert result["observed_agreement"] == pytest.approx(4 / 5)
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    codes = [[{"x": 0, "y": 1, "z": 2}[v] for v in trio] for trio in answers]
    assert result["fleiss_kappa"] == pytest.approx(fleiss_kappa(aggregate_raters(codes)[0]), abs=1e-4)
    assert set(result["cohen_kappa"]) == {"r1~r2", "r1~r3", "r2~r3"}
    mixed = pd.concat([reviews, reviews.assign(task="triage")])
    with pytest.raises(ValueError, match="one task"):
        agreement(mixed)


def test_simulated_answers_do_not_depend_on_order_and_respect_the_error_rate(tmp_path):
    truth = tmp_path / "hidden_truth.jsonl"
    lines = [{"id": f"ix-{i}", "true_expert": "it_help", "cause": "routing"} for i in range(400)]
    truth.write_text("\n".join(json.dumps(line) for line in lines))
    panel = SimulatedPanel(truth, EXPERTS, error_rate=0.2, seed=7, size=2)
    ids = [line["id"] for line in lines]
    first = panel.answer(ids)
    again = SimulatedPanel(truth, EXPERTS, error_rate=0.2, seed=7, size=2).answer(list(reversed(ids)))
    key = ["interaction_id", "reviewer", "correct_expert"]
    assert [[r[k] for k in key] for r in first] == [[r[k] for k in key] for r in again]
    wrong = sum(r["correct_expert"] != "it_help" for r in first) / len(first)
    assert 0.14 < wrong < 0.26
    assert {r["origin"] for r in first} == {"simulated"}
    assert panel.decide("not-in-the-demo", "simulated-expert-1") is None
    labels = majority_labels(pd.DataFrame(first))
    assert len(labels) == 400
