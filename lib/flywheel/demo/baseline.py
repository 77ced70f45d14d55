"""How hard is the demo's routing task? A TF-IDF + logistic-regression router as a yardstick.

The demo is only interesting if a bag-of-words model trained on the true labels routes clearly worse than
the production LLM; the data card and the tests use this measurement to check that.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from flywheel.core.schema import Interaction


def _queries(logs_path: Path | str) -> dict[str, str]:
    """id -> routed question of every valid log line (malformed lines skipped, first copy of a duplicate)."""
    queries: dict[str, str] = {}
    with open(logs_path, encoding="utf-8") as f:
        for line in f:
            try:
                ix = Interaction.model_validate(json.loads(line))
            except (json.JSONDecodeError, ValidationError, TypeError):
                continue
            queries.setdefault(ix.id, ix.query)
    return queries


def tfidf_baseline_accuracy(logs_path: Path | str, truth_path: Path | str, seed: int = 0) -> float:
    """Test accuracy of TF-IDF (1-2 grams) + logistic regression on a stratified 60/40 split of in-scope.

    Labels are the hidden true experts, so this is an upper bound on what the bag-of-words approach could
    reach with perfect labels.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline

    queries = _queries(logs_path)
    texts, labels = [], []
    with open(truth_path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row["true_expert"] is not None and row["id"] in queries:
                texts.append(queries[row["id"]])
                labels.append(row["true_expert"])
    x_train, x_test, y_train, y_test = train_test_split(
        texts, labels, test_size=0.4, stratify=labels, random_state=seed
    )
    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True), LogisticRegression(max_iter=1000)
    )
    model.fit(x_train, y_train)
    return float(model.score(x_test, y_test))
