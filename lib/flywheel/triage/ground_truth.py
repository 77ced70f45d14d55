"""The versioned ground-truth dataset that fine-tuning and evaluation use.

Three splits, and where each label comes from:

- **test** and **validation**: audit items only (`audit_items` in the store: a random sample of each
  cycle's interactions, blind to the feedback and to the production router's decision), labelled by the
  majority of the audit's experts. Never a label derived from the production router, so the production
  router and the candidates are scored on equal terms. An item keeps its audit split forever: once in test,
  it never enters training. Audit items whose majority is a tie, "ambiguous" or out of scope are left out.
- **train**: every other logged interaction. The triage experts' majority label where there is one (`expert`),
  else the production router's decision as a teacher label (`teacher_satisfied`: the user was satisfied;
  `teacher_no_feedback`: the user said nothing), weighted by `teacher_weight`. Unsatisfied interactions no
  expert answered are left out, as are training texts that duplicate, exactly or nearly, a test or
  validation text (the leakage check), and exact duplicates within training (the expert-labelled copy stays).

Teacher labels are production decisions only (`flywheel.core.decisions`): the logged decision where the
production model answered, else its shadow decision. An interaction a small router answered without a
production shadow decision gets no teacher label (counted as `no_teacher_decision` in the card): a model is
never trained on labels derived from its own decisions.

Text is PII-masked.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from flywheel.core.decisions import ProductionDecisions
from flywheel.core.embeddings import embed as embed_texts
from flywheel.core.files import atomic_path, atomic_write_json
from flywheel.core.labels import AMBIGUOUS, majority_labels
from flywheel.core.results import GroundTruthRef

SPLITS = ("train", "validation", "test")
SPLIT_COLUMNS = [
    "id",
    "text",
    "label",
    "label_source",
    "weight",
    "routed_expert",
    "timestamp",
    "tokens_in",
    "tokens_out",
]
AUDIT = "audit"
EXPERT = "expert"
TEACHER_SATISFIED = "teacher_satisfied"
TEACHER_NO_FEEDBACK = "teacher_no_feedback"
SOURCE_PRIORITY = {AUDIT: 0, EXPERT: 1, TEACHER_SATISFIED: 2, TEACHER_NO_FEEDBACK: 3}  # kept on a duplicate


@dataclass
class GroundTruth:
    version: str
    folder: Path
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    card: dict

    def ref(self) -> GroundTruthRef:
        """What the stage result records: version, folder and counts (later stages load splits from it)."""
        return GroundTruthRef(version=self.version, folder=self.folder, **self.card["counts"])


def words_only(text: str) -> str:
    """Lowercased words, every punctuation mark and run of whitespace as one space: texts that differ only
    in these are duplicates (and one in each split would leak)."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


def _task(reviews: pd.DataFrame, task: str) -> pd.DataFrame:
    if "task" not in reviews.columns:  # a store from before the audit: every answer was a triage answer
        return reviews if task == "triage" else reviews.iloc[0:0]
    return reviews[reviews["task"].eq(task)]


def production_of(
    interactions: pd.DataFrame, shadow: pd.DataFrame | None = None, production_model: str | None = None
) -> ProductionDecisions:
    """The production decisions behind teacher labels: from `model` and the production shadow decisions;
    a frame without a `model` column holds only production-decided logs."""
    if "model" not in interactions.columns:
        return ProductionDecisions.all_logged(interactions)
    return ProductionDecisions.of(interactions, shadow, production_model)


def label_interactions(
    interactions: pd.DataFrame,
    reviews: pd.DataFrame,
    experts: list[str],
    audit: pd.DataFrame | None = None,
    teacher_labels: tuple[str, ...] | list[str] = ("satisfied", "no_feedback"),
    teacher_weight: float = 1.0,
    production: ProductionDecisions | None = None,
) -> pd.DataFrame:
    """Every interaction with a usable label: its `split` (the audit's for audit items, else train), `label`,
    `label_source` and `weight`. Audit items take only the audit experts' majority, other items the triage
    experts' majority, else the production model's decision where `teacher_labels` allows (`production`,
    default: `production_of(interactions)`); `teacher_from_shadow` marks teacher labels from a shadow
    decision."""
    frame = _label_all(interactions, reviews, audit, teacher_labels, teacher_weight, production)
    return frame[frame["label"].isin(experts)]  # drops unlabelled, ambiguous, out-of-scope and pending ones


def _label_all(
    interactions: pd.DataFrame,
    reviews: pd.DataFrame,
    audit: pd.DataFrame | None,
    teacher_labels: tuple[str, ...] | list[str],
    teacher_weight: float,
    production: ProductionDecisions | None,
) -> pd.DataFrame:
    """label_interactions before dropping the unusable: `no_teacher_decision` names the teacher source an
    interaction would have had, were a production decision known."""
    production = production if production is not None else production_of(interactions)
    audit = audit if audit is not None else pd.DataFrame(columns=["interaction_id", "split"])
    audit_split = audit.set_index("interaction_id")["split"]
    audit_votes = majority_labels(_task(reviews, AUDIT)).set_index("interaction_id")["label"]
    triage_votes = majority_labels(_task(reviews, "triage")).set_index("interaction_id")["label"]

    frame = interactions.rename(columns={"query_masked": "text"}).copy()
    frame["split"] = frame["id"].map(audit_split).fillna("train")
    frame["label"] = None
    frame["label_source"] = None
    frame["weight"] = 1.0
    audited = frame["split"].ne("train")
    frame.loc[audited, "label"] = frame.loc[audited, "id"].map(audit_votes)
    frame.loc[audited, "label_source"] = AUDIT
    reviewed = ~audited & frame["id"].isin(triage_votes.index)
    frame.loc[reviewed, "label"] = frame.loc[reviewed, "id"].map(triage_votes)
    frame.loc[reviewed, "label_source"] = EXPERT
    rest = ~audited & ~reviewed
    teachers = {
        TEACHER_SATISFIED: rest & frame["satisfied"].eq(True) & ("satisfied" in teacher_labels),
        TEACHER_NO_FEEDBACK: rest & frame["satisfied"].isna() & ("no_feedback" in teacher_labels),
    }
    teacher = frame["id"].map(production.decision)
    from_shadow = frame["id"].map(production.from_shadow).fillna(False).astype(bool)
    frame["teacher_from_shadow"] = False
    frame["no_teacher_decision"] = None
    for source, mask in teachers.items():
        frame.loc[mask & teacher.isna(), "no_teacher_decision"] = source
        mask = mask & teacher.notna()
        frame.loc[mask, "label"] = teacher[mask]
        frame.loc[mask, "label_source"] = source
        frame.loc[mask, "weight"] = teacher_weight
        frame.loc[mask, "teacher_from_shadow"] = from_shadow[mask]
    return frame


def cross_split_near_duplicates(train_emb: np.ndarray, test_emb: np.ndarray, threshold: float) -> int:
    """How many train/test pairs are at least this similar (the leakage check; 0 after removal)."""
    if len(train_emb) == 0 or len(test_emb) == 0:
        return 0
    return int((test_emb @ train_emb.T >= threshold).sum())


def build_ground_truth(
    interactions: pd.DataFrame,
    reviews: pd.DataFrame,
    experts: list[str],
    out_root: Path,
    audit: pd.DataFrame,
    seed: int,
    teacher_labels: tuple[str, ...] | list[str] = ("satisfied", "no_feedback"),
    teacher_weight: float = 1.0,
    near_duplicate_threshold: float | None = None,
    embed=None,
    shadow: pd.DataFrame | None = None,
    production_model: str | None = None,
) -> GroundTruth:
    """`audit`: the store's audit items (interaction_id, split). `embed(texts) -> normalised vectors`
    (default: MiniLM) serves the near-duplicate threshold, if set. `shadow`: the store's shadow decisions
    (only role `production` is used); `production_model`: `split.production_model` (None: the model of the
    earliest logged interaction)."""
    production = production_of(interactions, shadow, production_model)
    every = _label_all(interactions, reviews, audit, teacher_labels, teacher_weight, production)
    labelled = every[every["label"].isin(experts)]
    no_teacher = {
        source: int(every["no_teacher_decision"].eq(source).sum())
        for source in (TEACHER_SATISFIED, TEACHER_NO_FEEDBACK)
    }
    if not labelled["split"].eq("test").any():
        raise ValueError(
            "no expert-labelled audit item in the test split: the unbiased test comes only from the audit "
            "(set audit.size > 0 and let the experts answer the audit dataset)"
        )
    labelled = labelled.assign(
        norm=labelled["text"].map(words_only),
        priority=labelled["label_source"].map(SOURCE_PRIORITY),
    ).sort_values(["priority", "id"])
    held_out = labelled[labelled["split"].ne("train")]
    train = labelled[labelled["split"].eq("train")]
    test_norms = set(held_out.loc[held_out["split"].eq("test"), "norm"])
    # Validation never repeats a test text: thresholds chosen on it must not have seen test.
    validation_dupes = held_out["split"].eq("validation") & held_out["norm"].isin(test_norms)
    held_out = held_out[~validation_dupes]
    exact_leaks = train["norm"].isin(set(held_out["norm"]))
    train = train[~exact_leaks]
    within_train = train["norm"].duplicated(keep="first")  # sorted by label source: the best label stays
    train = train[~within_train]

    near_removed, near_leaks = 0, None
    if near_duplicate_threshold is not None and len(train):
        vectors = np.asarray((embed or embed_texts)(train["text"].tolist() + held_out["text"].tolist()))
        train_vec, held_vec = vectors[: len(train)], vectors[len(train) :]
        near = (train_vec @ held_vec.T >= near_duplicate_threshold).any(axis=1)
        near_removed = int(near.sum())
        train, train_vec = train[~near], train_vec[~near]
        near_leaks = cross_split_near_duplicates(train_vec, held_vec, near_duplicate_threshold)

    splits = {
        "train": train,
        "validation": held_out[held_out["split"].eq("validation")],
        "test": held_out[held_out["split"].eq("test")],
    }
    splits = {name: s.sort_values("id")[SPLIT_COLUMNS].reset_index(drop=True) for name, s in splits.items()}
    leaks = set(splits["train"]["text"].map(words_only)) & set(
        pd.concat([splits["validation"], splits["test"]])["text"].map(words_only)
    )
    if leaks or near_leaks:
        raise AssertionError(f"{len(leaks)} texts and {near_leaks} near-duplicate pairs straddle the splits")

    digest = hashlib.sha256()
    for name, frame in splits.items():
        for row in frame[["id", "text", "label", "weight"]].itertuples(index=False):
            digest.update(f"{name}\0{row.id}\0{row.text}\0{row.label}\0{row.weight}\n".encode())
    version = digest.hexdigest()[:12]
    folder = Path(out_root) / version
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in splits.items():
        _save_split(frame, folder / f"{name}.parquet")

    card = {
        "version": version,
        "counts": {
            "interactions": len(interactions),
            "labelled": len(labelled),
            "audited": len(held_out),
            "duplicates_removed": int(exact_leaks.sum() + within_train.sum() + validation_dupes.sum())
            + near_removed,
            "exact_duplicates_removed": int(exact_leaks.sum() + within_train.sum() + validation_dupes.sum()),
            "near_duplicates_removed": near_removed,
            **{name: len(frame) for name, frame in splits.items()},
        },
        "label_sources": {
            name: frame["label_source"].value_counts().to_dict() for name, frame in splits.items()
        },
        "weights": {"expert": 1.0, "audit": 1.0, "teacher": teacher_weight},
        "teacher_labels": list(teacher_labels),
        "teacher_decisions": {
            "production_model": production.model,
            "production_decided_interactions": int(production.logged.sum()),
            "shadow_decisions": int(production.from_shadow.sum()),
            # satisfied / unrated interactions a small router answered with no production shadow decision
            "no_teacher_decision": sum(no_teacher.values()),
            "no_teacher_decision_by_source": no_teacher,
            "from_shadow_by_source": {  # teacher labels kept in train that came from a shadow decision
                source: int(train.loc[train["label_source"].eq(source), "teacher_from_shadow"].sum())
                for source in (TEACHER_SATISFIED, TEACHER_NO_FEEDBACK)
            },
        },
        "audit": _audit_card(interactions, reviews, audit, experts),
        "per_expert": pd.crosstab(
            pd.concat([f["label"] for f in splits.values()]),
            [name for name, f in splits.items() for _ in range(len(f))],
        ).to_dict(orient="index"),
        "leakage_check": {
            "train_texts_duplicating_test_or_validation_removed": int(exact_leaks.sum()),
            "train_texts_near_test_or_validation_removed": near_removed,
            "validation_texts_duplicating_test_removed": int(validation_dupes.sum()),
            "normalised_texts_in_train_and_held_out": len(leaks),
            "near_duplicate_pairs_across_splits": near_leaks,
            "near_duplicate_threshold": near_duplicate_threshold,
            "passed": not leaks and not near_leaks,
        },
        "split": {
            "test_and_validation": "audit items labelled by the majority of the audit's experts",
            "train": "other interactions: triage experts' label, else the production router's decision "
            f"({', '.join(teacher_labels) or 'no teacher labels'})",
            "seed": seed,
        },
        "pii": "text is the PII-masked query",
    }
    atomic_write_json(folder / "card.json", card)
    return GroundTruth(version, folder, splits["train"], splits["validation"], splits["test"], card)


def _audit_card(
    interactions: pd.DataFrame, reviews: pd.DataFrame, audit: pd.DataFrame, experts: list[str]
) -> dict:
    """What the audit gave: items per split, answered, and how the experts' majority came out."""
    votes = majority_labels(_task(reviews, AUDIT))
    votes = votes[votes["interaction_id"].isin(set(interactions["id"]))]
    label = votes["label"]
    return {
        "items": audit["split"].value_counts().to_dict() if len(audit) else {},
        "answered": len(votes),
        "answers_per_item": float(votes["reviewers"].mean()) if len(votes) else None,
        "unanimous_share": float(votes["agreement"].eq(1.0).mean()) if len(votes) else None,
        "in_catalog": int(label.isin(experts).sum()),
        "ambiguous_or_tied": int(label.eq(AMBIGUOUS).sum()),
        "other_answers": int((~label.isin([*experts, AMBIGUOUS])).sum()),  # out of scope
    }


def _save_split(frame: pd.DataFrame, path: Path) -> None:
    """A Hugging Face dataset in Parquet, so `datasets.load_dataset('parquet', ...)` reads it."""
    from datasets import Dataset

    with atomic_path(path) as tmp:
        Dataset.from_pandas(frame, preserve_index=False).to_parquet(str(tmp))
