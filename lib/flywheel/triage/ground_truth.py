"""The versioned ground-truth dataset that fine-tuning and evaluation use.

Labels: a satisfactory interaction keeps its routed expert; a reviewed one takes the experts' majority
answer (ties, "ambiguous" and out-of-scope are excluded). Text is PII-masked. Exact duplicates (after
normalising case, spaces and punctuation) are collapsed before the split, so no pair straddles it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from flywheel.core.embeddings import embed as embed_texts
from flywheel.core.files import atomic_path, atomic_write_json
from flywheel.core.labels import AMBIGUOUS
from flywheel.core.results import GroundTruthRef

SPLIT_COLUMNS = [
    "id",
    "text",
    "label",
    "label_source",
    "routed_expert",
    "timestamp",
    "tokens_in",
    "tokens_out",
]


@dataclass
class GroundTruth:
    version: str
    folder: Path
    train: pd.DataFrame
    test: pd.DataFrame
    card: dict

    def ref(self) -> GroundTruthRef:
        """What the stage result records: version, folder and counts (later stages load splits from it)."""
        return GroundTruthRef(version=self.version, folder=self.folder, **self.card["counts"])


def words_only(text: str) -> str:
    """Lowercased words, every punctuation mark and run of whitespace as one space: texts that differ only
    in these are duplicates (and one in each split would leak)."""
    return re.sub(r"\s+", " ", re.sub(r"[^\w\s]", " ", text.lower())).strip()


def majority_labels(reviews: pd.DataFrame) -> pd.DataFrame:
    """One label per reviewed interaction: the experts' majority; a tie becomes ambiguous."""
    if reviews.empty:
        return pd.DataFrame(columns=["interaction_id", "label", "reviewers"])
    rows = []
    for interaction_id, group in reviews.groupby("interaction_id"):
        counts = group["correct_expert"].value_counts()
        tie = len(counts) > 1 and counts.iloc[0] == counts.iloc[1]
        rows.append(
            {
                "interaction_id": interaction_id,
                "label": AMBIGUOUS if tie else counts.index[0],
                "reviewers": len(group),
            }
        )
    return pd.DataFrame(rows)


def label_interactions(interactions: pd.DataFrame, reviews: pd.DataFrame, experts: list[str]) -> pd.DataFrame:
    """Every interaction with a usable label, and where the label came from."""
    voted = majority_labels(reviews).set_index("interaction_id")["label"]
    frame = interactions.copy()
    frame["label"] = None
    frame["label_source"] = None
    satisfied = frame["satisfied"].eq(True) & ~frame["id"].isin(voted.index)
    frame.loc[satisfied, "label"] = frame.loc[satisfied, "routed_expert"]
    frame.loc[satisfied, "label_source"] = "feedback"
    reviewed = frame["id"].isin(voted.index)
    frame.loc[reviewed, "label"] = frame.loc[reviewed, "id"].map(voted)
    frame.loc[reviewed, "label_source"] = "expert"
    usable = frame["label"].isin(experts)  # drops unreviewed, ambiguous and out-of-scope
    return frame[usable].rename(columns={"query_masked": "text"})


def near_duplicate_groups(embeddings: np.ndarray, threshold: float) -> np.ndarray:
    """A group id per row: rows linked by cosine similarity >= threshold (transitively) share one."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    similar = embeddings @ embeddings.T >= threshold
    return connected_components(csr_matrix(similar), directed=False)[1]


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
    test_size: float,
    seed: int,
    near_duplicate_threshold: float | None = None,
    embed=None,
) -> GroundTruth:
    """`embed(texts) -> normalised vectors` (default: MiniLM) serves the near-duplicate threshold, if set."""
    labelled = label_interactions(interactions, reviews, experts)
    labelled = labelled.assign(norm=labelled["text"].map(words_only))
    deduped = labelled.drop_duplicates("norm", keep="first")
    exact_removed = len(labelled) - len(deduped)
    near_removed = 0
    if near_duplicate_threshold is not None and len(deduped):
        vectors = np.asarray((embed or embed_texts)(deduped["text"].tolist()))
        groups = near_duplicate_groups(vectors, near_duplicate_threshold)
        keep = ~pd.Series(groups).duplicated().to_numpy()  # the first text of each group stays
        near_removed = int((~keep).sum())
        deduped, vectors = deduped[keep], vectors[keep]
        by_id = dict(zip(deduped["id"], vectors, strict=True))
    train, test = train_test_split(deduped, test_size=test_size, stratify=deduped["label"], random_state=seed)
    train = train.sort_values("id")[SPLIT_COLUMNS].reset_index(drop=True)
    test = test.sort_values("id")[SPLIT_COLUMNS].reset_index(drop=True)
    leaks = set(train["text"].map(words_only)) & set(test["text"].map(words_only))
    if leaks:
        raise AssertionError(f"{len(leaks)} normalised texts are in both splits")
    near_leaks = None
    if near_duplicate_threshold is not None:
        near_leaks = cross_split_near_duplicates(
            np.array([by_id[i] for i in train["id"]]),
            np.array([by_id[i] for i in test["id"]]),
            near_duplicate_threshold,
        )
        if near_leaks:
            raise AssertionError(f"{near_leaks} near-duplicate pairs straddle the split")

    digest = hashlib.sha256()
    for split, frame in (("train", train), ("test", test)):
        for row in frame[["id", "text", "label"]].itertuples(index=False):
            digest.update(f"{split}\0{row.id}\0{row.text}\0{row.label}\n".encode())
    version = digest.hexdigest()[:12]
    folder = Path(out_root) / version
    folder.mkdir(parents=True, exist_ok=True)
    _save_split(train, folder / "train.parquet")
    _save_split(test, folder / "test.parquet")

    card = {
        "version": version,
        "counts": {
            "interactions": len(interactions),
            "labelled": len(labelled),
            "duplicates_removed": exact_removed + near_removed,
            "exact_duplicates_removed": exact_removed,
            "near_duplicates_removed": near_removed,
            "train": len(train),
            "test": len(test),
        },
        "label_sources": labelled["label_source"].value_counts().to_dict(),
        "per_expert": pd.crosstab(
            pd.concat([train["label"], test["label"]]), ["train"] * len(train) + ["test"] * len(test)
        ).to_dict(orient="index"),
        "leakage_check": {
            "normalised_texts_in_both_splits": len(leaks),
            "near_duplicate_pairs_across_splits": near_leaks,
            "near_duplicate_threshold": near_duplicate_threshold,
            "passed": not leaks and not near_leaks,
        },
        "split": {"test_size": test_size, "seed": seed, "stratified_by": "label"},
        "pii": "text is the PII-masked query",
    }
    atomic_write_json(folder / "card.json", card)
    return GroundTruth(version, folder, train, test, card)


def _save_split(frame: pd.DataFrame, path: Path) -> None:
    """A Hugging Face dataset in Parquet, so `datasets.load_dataset('parquet', ...)` reads it."""
    from datasets import Dataset

    with atomic_path(path) as tmp:
        Dataset.from_pandas(frame, preserve_index=False).to_parquet(str(tmp))
