import pandas as pd
import pytest

from flywheel.triage.ground_truth import build_ground_truth, label_interactions, majority_labels, words_only

EXPERTS = ["it_help", "hr_benefits", "facilities"]


def frame(rows):
    return pd.DataFrame(
        rows,
        columns=["id", "query_masked", "routed_expert", "satisfied", "timestamp", "tokens_in", "tokens_out"],
    )


def reviews(rows):
    return pd.DataFrame(rows, columns=["interaction_id", "reviewer", "correct_expert", "cause"])


def test_majority_vote_and_ties():
    votes = majority_labels(
        reviews(
            [
                ("a", "r1", "it_help", "routing"),
                ("a", "r2", "it_help", "routing"),
                ("a", "r3", "facilities", "routing"),
                ("b", "r1", "it_help", "routing"),
                ("b", "r2", "facilities", "routing"),
            ]
        )
    ).set_index("interaction_id")["label"]
    assert votes.to_dict() == {"a": "it_help", "b": "ambiguous"}


def test_labels_come_from_feedback_or_experts_never_elsewhere():
    interactions = frame(
        [
            ("sat", "vpn down", "it_help", True, None, 1, 1),
            ("fixed", "badge broken", "it_help", False, None, 1, 1),
            ("oos", "tell me a joke", "hr_benefits", False, None, 1, 1),
            ("pending", "dental plan", "hr_benefits", False, None, 1, 1),
            ("tie", "parking", "it_help", False, None, 1, 1),
        ]
    )
    answers = reviews(
        [
            ("fixed", "r1", "facilities", "routing"),
            ("oos", "r1", "out_of_scope", "out_of_scope"),
            ("tie", "r1", "facilities", "routing"),
            ("tie", "r2", "it_help", "routing"),
        ]
    )
    labelled = label_interactions(interactions, answers, EXPERTS).set_index("id")
    assert labelled["label"].to_dict() == {"sat": "it_help", "fixed": "facilities"}
    assert labelled["label_source"].to_dict() == {"sat": "feedback", "fixed": "expert"}


def test_split_is_stratified_versioned_and_leak_free(tmp_path):
    rows = []
    for i in range(90):
        expert = EXPERTS[(i // 2) % 3]
        text = f"Question {i // 2} about {expert}"  # every text appears twice, with other punctuation
        rows.append(
            (f"ix-{i:03d}", text + ("?" if i % 2 else ""), expert, True, pd.Timestamp("2026-09-08"), 5, 1)
        )
    truth = build_ground_truth(frame(rows), reviews([]), EXPERTS, tmp_path, test_size=0.4, seed=0)
    assert truth.card["counts"]["duplicates_removed"] == 45
    assert len(truth.train) + len(truth.test) == 45
    assert truth.card["leakage_check"]["passed"]
    assert set(truth.train["text"].map(words_only)).isdisjoint(truth.test["text"].map(words_only))
    assert truth.test["label"].value_counts().max() - truth.test["label"].value_counts().min() <= 1
    again = build_ground_truth(frame(rows), reviews([]), EXPERTS, tmp_path / "again", test_size=0.4, seed=0)
    assert again.version == truth.version
    other = build_ground_truth(frame(rows), reviews([]), EXPERTS, tmp_path / "other", test_size=0.4, seed=1)
    assert other.version != truth.version
    assert (truth.folder / "train.parquet").is_file() and (truth.folder / "card.json").is_file()


def test_too_few_examples_of_an_expert_is_a_clear_error(tmp_path):
    rows = [(f"ix-{i}", f"q {i}", "it_help", True, None, 1, 1) for i in range(5)]
    rows.append(("lonely", "only one", "facilities", True, None, 1, 1))
    with pytest.raises(ValueError, match="least populated class"):
        build_ground_truth(frame(rows), reviews([]), EXPERTS, tmp_path, test_size=0.4, seed=0)


def test_near_duplicates_are_removed_so_none_straddles_the_split(tmp_path):
    import numpy as np

    rows, vectors = [], {}
    for i in range(60):
        expert = EXPERTS[i % 3]
        text = f"how do I fix thing {i} for {expert}"
        rows.append((f"ix-{i:03d}", text, expert, True, pd.Timestamp("2026-09-08"), 5, 1))
        base = np.zeros(64)
        base[i] = 1.0
        vectors[text] = base
    # Ten paraphrases, each nearly identical (cosine ~0.995) to an original of the same expert.
    for i in range(10):
        expert = EXPERTS[i % 3]
        text = f"fix thing {i} please ({expert})"
        rows.append((f"ix-p{i:02d}", text, expert, True, pd.Timestamp("2026-09-09"), 5, 1))
        near = np.zeros(64)
        near[i], near[63 - i] = 1.0, 0.1
        vectors[text] = near / np.linalg.norm(near)

    def embed(texts):
        return np.array([vectors[t] for t in texts])

    truth = build_ground_truth(
        frame(rows),
        reviews([]),
        EXPERTS,
        tmp_path,
        test_size=0.4,
        seed=0,
        near_duplicate_threshold=0.95,
        embed=embed,
    )
    counts = truth.card["counts"]
    assert counts["near_duplicates_removed"] == 10
    assert counts["exact_duplicates_removed"] == 0
    assert len(truth.train) + len(truth.test) == 60
    assert not any(text.startswith("fix thing") for text in pd.concat([truth.train, truth.test])["text"])
    assert truth.card["leakage_check"]["near_duplicate_pairs_across_splits"] == 0
