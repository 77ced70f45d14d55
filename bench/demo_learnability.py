"""Does the demo world tell learning from memorising? Prints one JSON line.

Generates a demo world (seeded), holds out in-scope questions, trains two small routers on others with the
hidden true labels, and reports accuracy overall and on held-out questions whose phrasebook template never
occurs in training (the "unseen template" slice, from `template` in hidden_truth.jsonl):

- word (1-2) + char_wb (2-5) TF-IDF + LogisticRegression(C=10): memorises templates well;
- frozen MiniLM embeddings (flywheel.core.embeddings.embed) + LogisticRegression(C=10): has to generalise.

    python bench/demo_learnability.py                     # 1,800 interactions, 400 held out, 1,200 train
    python bench/demo_learnability.py --no-minilm --seeds 7 8 9
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
from collections import Counter
from pathlib import Path

import yaml
from pydantic import ValidationError

from flywheel.core.schema import Interaction
from flywheel.demo.generator import generate_demo

REPO = Path(__file__).resolve().parents[1]


def load_world(folder: Path) -> list[dict]:
    """In-scope good interactions: query, true expert, template and style."""
    queries: dict[str, str] = {}
    for line in (folder / "logs.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            ix = Interaction.model_validate(json.loads(line))
        except (json.JSONDecodeError, ValidationError, TypeError):
            continue
        queries.setdefault(ix.id, ix.query)
    rows = []
    for line in (folder / "hidden_truth.jsonl").read_text(encoding="utf-8").splitlines():
        t = json.loads(line)
        if t["true_expert"] is not None and t["id"] in queries:
            rows.append({"text": queries[t["id"]], "label": t["true_expert"], "template": t.get("template")})
    return rows


def _accuracy(pred: list[str], rows: list[dict]) -> float | None:
    if not rows:
        return None
    return round(sum(p == r["label"] for p, r in zip(pred, rows, strict=True)) / len(rows), 4)


def measure(rows: list[dict], n_test: int, n_train: int, seed: int, minilm: bool) -> dict:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    rng = random.Random(seed)
    order = list(range(len(rows)))
    rng.shuffle(order)
    test = [rows[i] for i in order[:n_test]]
    train = [rows[i] for i in order[n_test : n_test + n_train]]
    seen_templates = {r["template"] for r in train}
    unseen = [r["template"] is not None and r["template"] not in seen_templates for r in test]

    def report(pred: list[str]) -> dict:
        return {
            "overall": _accuracy(pred, test),
            "seen_template": _accuracy(
                [p for p, u in zip(pred, unseen, strict=True) if not u],
                [r for r, u in zip(test, unseen, strict=True) if not u],
            ),
            "unseen_template": _accuracy(
                [p for p, u in zip(pred, unseen, strict=True) if u],
                [r for r, u in zip(test, unseen, strict=True) if u],
            ),
        }

    x_train, y_train = [r["text"] for r in train], [r["label"] for r in train]
    x_test = [r["text"] for r in test]
    tfidf = make_pipeline(
        make_union(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
        ),
        LogisticRegression(C=10, max_iter=3000),
    )
    tfidf.fit(x_train, y_train)
    result = {
        "train": len(train),
        "test": len(test),
        "templates_in_train": len(seen_templates),
        "unseen_template_share": round(sum(unseen) / len(test), 4),
        "tfidf_logreg": report(list(tfidf.predict(x_test))),
    }
    if minilm:
        from flywheel.core.embeddings import embed

        vectors = embed(x_train + x_test)
        lr = LogisticRegression(C=10, max_iter=3000).fit(vectors[: len(train)], y_train)
        result["minilm_logreg"] = report(list(lr.predict(vectors[len(train) :])))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-interactions", type=int, default=1800)
    parser.add_argument("--seeds", type=int, nargs="+", default=[7], help="world seeds")
    parser.add_argument("--test", type=int, default=400)
    parser.add_argument("--train", type=int, default=1200)
    parser.add_argument("--split-seed", type=int, default=0)
    parser.add_argument("--no-minilm", action="store_true")
    args = parser.parse_args()
    experts = yaml.safe_load((REPO / "configs" / "demo.yaml").read_text())["experts"]
    results = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            meta = generate_demo(tmp, experts, n_interactions=args.n_interactions, seed=seed)
            rows = load_world(Path(tmp))
        result = measure(rows, args.test, args.train, args.split_seed, not args.no_minilm)
        result["templates_in_world"] = len(Counter(r["template"] for r in rows))
        result |= {"seed": seed, "production_accuracy_in_scope": meta["production_accuracy_in_scope"]}
        results.append(result)
    summary = {"bench": "demo_learnability", "n_interactions": args.n_interactions, "results": results}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
