"""The linear students: word + character TF-IDF, or frozen sentence embeddings, under a logistic regression
whose C is chosen by seeded, stratified cross-validation on the train split (`LogisticRegressionCV`, weighted
by each example's `weight`).

`search_trials` > 0 adds a small seeded random search (scikit-learn's `ParameterSampler`) over the feature
settings (TF-IDF) or the class weighting (embeddings), each setting scored on the validation split; C stays
chosen by cross-validation inside each.
"""

from __future__ import annotations

import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import ParameterSampler, StratifiedKFold
from sklearn.pipeline import FeatureUnion, Pipeline

from flywheel.core.config import CandidateConfig
from flywheel.core.embeddings import embed
from flywheel.core.routers import write_candidate_card

DEFAULT_CS = [0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0]
# search_trials: what the random search may change (its first trial is always the recipe as given)
TFIDF_SPACE = {
    "ngram_range": [(1, 1), (1, 2), (1, 3)],
    "char_ngram_range": [(2, 4), (2, 5), (3, 6)],
    "min_df": [1, 2],
    "sublinear_tf": [True, False],
}
EMBEDDING_SPACE = {"class_weight": [None, "balanced"]}


def weights(frame: pd.DataFrame) -> np.ndarray:
    """Per-example weights (1 where the frame has no `weight` column: older ground truths)."""
    if "weight" not in frame:
        return np.ones(len(frame))
    return frame["weight"].fillna(1.0).to_numpy(dtype=float)


def _logreg(recipe: dict, n_labels_min: int, seed: int) -> LogisticRegressionCV:
    folds = max(2, min(int(recipe.get("cv", 5)), n_labels_min))  # every fold needs each label
    return LogisticRegressionCV(
        Cs=recipe.get("Cs", DEFAULT_CS),
        cv=StratifiedKFold(folds, shuffle=True, random_state=seed),
        max_iter=recipe.get("max_iter", 2000),
        class_weight=recipe.get("class_weight"),
        scoring="accuracy",
        solver="newton-cg",  # 4-5x quicker than lbfgs on these features (measured on the demo split)
        l1_ratios=(0.0,),  # plain L2
        use_legacy_attributes=False,  # C_ a float, scores_ (folds, l1_ratios, Cs)
        random_state=seed,
        n_jobs=1,
    )


def tfidf_pipeline(recipe: dict, n_labels_min: int, seed: int) -> Pipeline:
    """Word (1-2) and character (char_wb 2-5) TF-IDF side by side, then the logistic regression."""
    shared = {"min_df": recipe.get("min_df", 1), "sublinear_tf": recipe.get("sublinear_tf", True)}
    features = FeatureUnion(
        [
            ("word", TfidfVectorizer(ngram_range=tuple(recipe.get("ngram_range", (1, 2))), **shared)),
            (
                "char",
                TfidfVectorizer(
                    analyzer="char_wb", ngram_range=tuple(recipe.get("char_ngram_range", (2, 5))), **shared
                ),
            ),
        ]
    )
    return Pipeline([("features", features), ("logreg", _logreg(recipe, n_labels_min, seed))])


def cv_scores(logreg: LogisticRegressionCV) -> dict[str, float]:
    """Mean cross-validated accuracy per C tried (the same for every class: one multinomial model)."""
    scores = logreg.scores_.mean(axis=0)[0]
    return {f"{c:g}": round(float(s), 4) for c, s in zip(logreg.Cs_, scores, strict=True)}


def train_linear(
    candidate: CandidateConfig,
    train: pd.DataFrame,
    labels: list[str],
    out_dir: Path,
    seed: int,
    validation: pd.DataFrame | None = None,
) -> dict:
    """Fit, save (pipeline.joblib or head.joblib + the embedding model's name) and return the record."""
    kind = candidate.kind
    n_labels_min = int(train["label"].value_counts().min())
    texts, y, w = train["text"].tolist(), train["label"].astype(str).to_numpy(), weights(train)
    source = candidate.model or "minilm-l6"
    if kind == "embedding_logreg":
        started = time.perf_counter()
        features = embed(texts, source, max_length=candidate.max_length)
        embed_seconds = time.perf_counter() - started
        val_features = (
            embed(validation["text"].tolist(), source, max_length=candidate.max_length)
            if validation is not None
            else None
        )

    def fit(recipe: dict):
        if kind == "tfidf_logreg":
            model = tfidf_pipeline(recipe, n_labels_min, seed)
            model.fit(texts, y, logreg__sample_weight=w)
            return model, model[-1]
        model = _logreg(recipe, n_labels_min, seed)
        model.fit(features, y, sample_weight=w)
        return model, model

    def validation_accuracy(model) -> float | None:
        if validation is None:
            return None
        inputs = validation["text"].tolist() if kind == "tfidf_logreg" else val_features
        return round(float((model.predict(inputs) == validation["label"].astype(str).to_numpy()).mean()), 4)

    trials = [candidate.recipe]
    if candidate.search_trials and validation is not None:
        space = TFIDF_SPACE if kind == "tfidf_logreg" else EMBEDDING_SPACE
        sampled = ParameterSampler(space, n_iter=candidate.search_trials, random_state=seed)
        trials += [{**candidate.recipe, **params} for params in sampled]
    tried, best = [], None
    for recipe in trials:
        model, logreg = fit(recipe)
        score = validation_accuracy(model)
        settings = {k: v for k, v in recipe.items() if k in TFIDF_SPACE or k in EMBEDDING_SPACE}
        tried.append(
            {
                **settings,
                "C": float(logreg.C_),
                "cv_accuracy": cv_scores(logreg),
                "validation_accuracy": score,
            }
        )
        if best is None or (score is not None and score > best[2]):
            best = (model, logreg, score if score is not None else -1.0, recipe)
    model, logreg, score, recipe = best

    parameters = int(logreg.coef_.size + logreg.intercept_.size)
    card = {"kind": kind, "name": candidate.name, "labels": labels, "parameters": parameters}
    if kind == "tfidf_logreg":
        joblib.dump(model, out_dir / "pipeline.joblib")
    else:
        joblib.dump(model, out_dir / "head.joblib")
        card.update(source=source, max_length=candidate.max_length)
    write_candidate_card(out_dir, **card)
    record = {
        "parameters": parameters,
        "trainable_parameters": parameters,
        "chosen": {"C": float(logreg.C_), **{k: v for k, v in recipe.items() if k != "Cs"}},
        "validation_accuracy": score if validation is not None else None,
        "search": tried,
    }
    if kind == "embedding_logreg":
        record["embed_seconds"] = round(embed_seconds, 2)
    return record
