import numpy as np
import pandas as pd
import pytest

from flywheel.core.labels import majority_labels
from flywheel.triage.ground_truth import build_ground_truth, label_interactions, words_only

EXPERTS = ["it_help", "hr_benefits", "facilities"]
COLUMNS = ["id", "query_masked", "routed_expert", "satisfied", "timestamp", "tokens_in", "tokens_out"]


def frame(rows):
    return pd.DataFrame(rows, columns=COLUMNS)


def answers(rows):
    """(interaction_id, reviewer, correct_expert, task)"""
    frame = pd.DataFrame(rows, columns=["interaction_id", "reviewer", "correct_expert", "task"])
    return frame.assign(cause=None)


def audit(pairs):
    return pd.DataFrame(pairs, columns=["interaction_id", "split"])


def test_majority_vote_and_ties():
    votes = majority_labels(
        answers(
            [
                ("a", "r1", "it_help", "triage"),
                ("a", "r2", "it_help", "triage"),
                ("a", "r3", "facilities", "triage"),
                ("b", "r1", "it_help", "triage"),
                ("b", "r2", "facilities", "triage"),
            ]
        )
    ).set_index("interaction_id")
    assert votes["label"].to_dict() == {"a": "it_help", "b": "ambiguous"}
    assert votes.loc["a", "agreement"] == pytest.approx(2 / 3)


def test_every_label_says_where_it_came_from():
    interactions = frame(
        [
            ("sat", "vpn down", "it_help", True, None, 1, 1),
            ("silent", "dental plan", "hr_benefits", None, None, 1, 1),
            ("fixed", "badge broken", "it_help", False, None, 1, 1),
            ("oos", "tell me a joke", "hr_benefits", False, None, 1, 1),
            ("pending", "dental claim", "hr_benefits", False, None, 1, 1),
            ("tie", "parking", "it_help", False, None, 1, 1),
            ("audited", "new laptop", "facilities", True, None, 1, 1),
            ("audit-pending", "desk booking", "facilities", True, None, 1, 1),
        ]
    )
    reviews = answers(
        [
            ("fixed", "r1", "facilities", "triage"),
            ("oos", "r1", "out_of_scope", "triage"),
            ("tie", "r1", "facilities", "triage"),
            ("tie", "r2", "it_help", "triage"),
            ("audited", "r1", "it_help", "audit"),
            ("audited", "r2", "it_help", "audit"),
            ("audited", "r3", "facilities", "audit"),
        ]
    )
    items = audit([("audited", "test"), ("audit-pending", "validation")])
    labelled = label_interactions(interactions, reviews, EXPERTS, items, teacher_weight=0.5).set_index("id")
    # an audit item takes only the audit's majority: never the router's decision, even when satisfied
    assert labelled["label"].to_dict() == {
        "sat": "it_help",
        "silent": "hr_benefits",
        "fixed": "facilities",
        "audited": "it_help",
    }
    assert labelled["label_source"].to_dict() == {
        "sat": "teacher_satisfied",
        "silent": "teacher_no_feedback",
        "fixed": "expert",
        "audited": "audit",
    }
    assert labelled["weight"].to_dict() == {"sat": 0.5, "silent": 0.5, "fixed": 1.0, "audited": 1.0}
    assert labelled["split"].to_dict() == {
        "sat": "train",
        "silent": "train",
        "fixed": "train",
        "audited": "test",
    }
    only_satisfied = label_interactions(interactions, reviews, EXPERTS, items, teacher_labels=["satisfied"])
    assert "silent" not in set(only_satisfied["id"])


def _world(n=90):
    rows, pairs, votes = [], [], []
    for i in range(n):
        expert = EXPERTS[i % 3]
        rows.append(
            (f"ix-{i:03d}", f"question {i} about {expert}", expert, True, pd.Timestamp("2026-09-08"), 5, 1)
        )
        if i % 3 == 0:  # a third audited: alternately test and validation
            pairs.append((f"ix-{i:03d}", "test" if i % 2 == 0 else "validation"))
            votes += [(f"ix-{i:03d}", f"r{k}", expert, "audit") for k in range(3)]
    return rows, audit(pairs), answers(votes)


def test_test_and_validation_come_only_from_the_audit(tmp_path):
    rows, items, reviews = _world()
    truth = build_ground_truth(frame(rows), reviews, EXPERTS, tmp_path, audit=items, seed=0)
    assert set(truth.test["label_source"]) == {"audit"} and set(truth.validation["label_source"]) == {"audit"}
    assert set(truth.test["id"]) == set(items.loc[items["split"].eq("test"), "interaction_id"])
    assert set(truth.validation["id"]) == set(items.loc[items["split"].eq("validation"), "interaction_id"])
    assert set(truth.train["id"]).isdisjoint(items["interaction_id"])
    assert len(truth.train) == 60
    assert truth.card["counts"] | {} == {
        "interactions": 90,
        "labelled": 90,
        "audited": 30,
        "duplicates_removed": 0,
        "exact_duplicates_removed": 0,
        "near_duplicates_removed": 0,
        "train": 60,
        "validation": 15,
        "test": 15,
    }
    assert truth.ref().validation == 15
    for split in ("train", "validation", "test"):
        assert (truth.folder / f"{split}.parquet").is_file()
    again = build_ground_truth(frame(rows), reviews, EXPERTS, tmp_path / "again", audit=items, seed=0)
    assert again.version == truth.version
    moved = items.assign(split=items["split"].map({"test": "validation", "validation": "test"}))
    other = build_ground_truth(frame(rows), reviews, EXPERTS, tmp_path / "other", audit=moved, seed=0)
    assert other.version != truth.version


def test_no_audited_test_item_is_a_clear_error(tmp_path):
    rows, _, _ = _world()
    with pytest.raises(ValueError, match="audit"):
        build_ground_truth(frame(rows), answers([]), EXPERTS, tmp_path, audit=audit([]), seed=0)


def test_training_texts_duplicating_held_out_ones_are_removed(tmp_path):
    rows, items, reviews = _world()
    test_id = items.loc[items["split"].eq("test"), "interaction_id"].iloc[0]
    test_text = next(r[1] for r in rows if r[0] == test_id)
    rows.append(("copy-1", test_text.upper() + "!!", "it_help", True, pd.Timestamp("2026-09-09"), 5, 1))
    rows.append(("twin-a", "printer jam", "it_help", True, pd.Timestamp("2026-09-09"), 5, 1))
    rows.append(("twin-b", "Printer jam?", "it_help", False, pd.Timestamp("2026-09-09"), 5, 1))
    reviews = pd.concat([reviews, answers([("twin-b", "r1", "facilities", "triage")])])
    truth = build_ground_truth(frame(rows), reviews, EXPERTS, tmp_path, audit=items, seed=0)
    assert "copy-1" not in set(truth.train["id"])
    twins = truth.train[truth.train["id"].str.startswith("twin")]
    assert twins[["id", "label_source"]].values.tolist() == [["twin-b", "expert"]]  # the expert's copy stays
    check = truth.card["leakage_check"]
    assert check["train_texts_duplicating_test_or_validation_removed"] == 1 and check["passed"]
    assert set(truth.train["text"].map(words_only)).isdisjoint(truth.test["text"].map(words_only))


def test_near_duplicates_of_held_out_texts_leave_training(tmp_path):
    rows, items, reviews = _world(60)
    vectors = {}
    for i, row in enumerate(rows):
        base = np.zeros(128)
        base[i] = 1.0
        vectors[row[1]] = base
    held_out = items["interaction_id"].tolist()
    for k, interaction_id in enumerate(held_out[:5]):  # five paraphrases, each ~0.995 like a held-out text
        i = int(interaction_id.split("-")[1])
        text = f"paraphrase {k}"
        rows.append((f"para-{k}", text, EXPERTS[i % 3], True, pd.Timestamp("2026-09-09"), 5, 1))
        near = np.zeros(128)
        near[i], near[127 - k] = 1.0, 0.1
        vectors[text] = near / np.linalg.norm(near)

    def embed(texts):
        return np.array([vectors[t] for t in texts])

    truth = build_ground_truth(
        frame(rows),
        reviews,
        EXPERTS,
        tmp_path,
        audit=items,
        seed=0,
        near_duplicate_threshold=0.95,
        embed=embed,
    )
    assert truth.card["counts"]["near_duplicates_removed"] == 5
    assert not truth.train["id"].str.startswith("para").any()
    assert truth.card["leakage_check"]["near_duplicate_pairs_across_splits"] == 0
