"""Routers (predictors), shared by fine-tuning, evaluation and the router service.

A trained candidate is a folder with `candidate.json` ({"kind", "name", "labels", ...}) and its weights;
`load_router(folder)` gives back something with `.predict(texts) -> list[expert | None]`. Every router that
scores (all but endpoint ones) also has `labels` and `predict_proba(texts) -> [n, len(labels)]` (rows sum to
1), which cascades threshold; `predict` is its argmax.

torch, transformers and joblib are imported where used: the CLI imports this module (through the registry)
at start-up.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np

from flywheel.core.devices import compute_device
from flywheel.core.endpoints import EndpointChatModel
from flywheel.core.inference import load_causal_router
from flywheel.core.prompts import RoutingPrompt, parse_expert


class Router(Protocol):
    name: str

    def predict(self, texts: list[str]) -> list[str | None]: ...


class ScoringRouter(Router, Protocol):
    labels: list[str]

    def predict_proba(self, texts: list[str]) -> np.ndarray: ...


def align_proba(proba: np.ndarray, classes, labels: list[str]) -> np.ndarray:
    """Columns of a classifier's `proba` (ordered by its `classes`) put in `labels` order; a label the
    classifier never saw in training gets probability 0."""
    out = np.zeros((len(proba), len(labels)), dtype=np.float64)
    index = {label: i for i, label in enumerate(labels)}
    for column, cls in enumerate(classes):
        out[:, index[str(cls)]] = proba[:, column]
    return out


def softmax(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class _ProbaRouter:
    """`predict` as the argmax of `predict_proba`."""

    labels: list[str]

    def predict(self, texts: list[str]) -> list[str | None]:
        if not len(texts):
            return []
        return [self.labels[i] for i in self.predict_proba(texts).argmax(axis=1)]


ENSEMBLE_MEMBERS = "members"  # an ensemble folder keeps a copy of each member, so it travels whole


def write_candidate_card(folder: Path, **card) -> None:
    (folder / "candidate.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")


def read_candidate_card(folder: Path) -> dict:
    path = Path(folder) / "candidate.json"
    if not path.is_file():
        raise FileNotFoundError(f"not a trained candidate (no candidate.json): {folder}")
    return json.loads(path.read_text())


class TfidfRouter(_ProbaRouter):
    """TF-IDF features + logistic regression: the cheapest sensible router."""

    def __init__(self, name: str, pipeline, labels: list[str] | None = None):
        self.name = name
        self.pipeline = pipeline
        self.labels = list(labels or [str(c) for c in pipeline.classes_])  # older cards have no labels

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return align_proba(self.pipeline.predict_proba(list(texts)), self.pipeline.classes_, self.labels)


class EmbeddingRouter(_ProbaRouter):
    """Frozen sentence embeddings (flywheel.core.embeddings, the model named in the card) + a scikit-learn
    classifier head."""

    def __init__(self, name: str, head, labels: list[str], source: str, max_length: int):
        self.name = name
        self.head = head
        self.labels = labels
        self.source = source
        self.max_length = max_length

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        from flywheel.core.embeddings import embed

        vectors = embed(list(texts), self.source, max_length=self.max_length)
        return align_proba(self.head.predict_proba(vectors), self.head.classes_, self.labels)


class SetFitRouter(_ProbaRouter):
    """A SetFit model (contrastively fine-tuned sentence encoder + logistic-regression head)."""

    def __init__(self, name: str, folder: Path, labels: list[str], batch_size: int = 64):
        from setfit import SetFitModel

        self.name = name
        self.labels = labels
        self.batch_size = batch_size
        self.model = SetFitModel.from_pretrained(
            str(folder), local_files_only=True, device=str(compute_device())
        )

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        proba = self.model.predict_proba(list(texts), batch_size=self.batch_size, as_numpy=True)
        return align_proba(proba, self.model.model_head.classes_, self.labels)


class EncoderRouter(_ProbaRouter):
    """A sequence-classification encoder (e.g. MiniLM): softmax over the expert labels' logits."""

    def __init__(self, name: str, folder: Path, labels: list[str], max_length: int, batch_size: int = 32):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.name = name
        self.labels = labels
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = compute_device()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder).to(self.device).eval()

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        import torch

        out = []
        for start in range(0, len(texts), self.batch_size):
            batch = self.tokenizer(
                texts[start : start + self.batch_size],
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            ).to(self.device)
            with torch.inference_mode():
                logits = self.model(**batch).logits
            out.append(torch.softmax(logits.float(), -1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.labels)))


class EnsembleRouter(_ProbaRouter):
    """Soft voting: the weighted mean of its members' probabilities (each put in the ensemble's label
    order). Its cost is every member's: each query runs them all."""

    def __init__(self, name: str, members: list, weights: list[float], labels: list[str]):
        missing = [m.name for m in members if not hasattr(m, "predict_proba")]
        if missing:
            raise ValueError(f"{name}: members {missing} give no probabilities (predict_proba)")
        self.name = name
        self.members = members
        self.weights = np.asarray(weights, dtype=np.float64) / float(np.sum(weights))
        self.labels = list(labels)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        total = np.zeros((len(texts), len(self.labels)), dtype=np.float64)
        for weight, member in zip(self.weights, self.members, strict=True):
            total += weight * align_proba(member.predict_proba(texts), member.labels, self.labels)
        return total


class EndpointRouter:
    """A model behind any OpenAI-compatible endpoint, asked to route by generation (the long prompt with
    the catalog's descriptions); an answer naming no single expert is None, counted wrong."""

    def __init__(self, name: str, endpoint: dict, experts: dict[str, str]):
        self.name = name
        self.prompt = RoutingPrompt(experts, style="long")
        self.client = EndpointChatModel(
            endpoint["base_url"],
            endpoint["model"],
            api_key_env=endpoint.get("api_key_env"),
            timeout_s=endpoint.get("timeout_s", 60.0),
            max_tokens=16,
        )
        self.prices = (endpoint.get("usd_per_m_tokens_in"), endpoint.get("usd_per_m_tokens_out"))
        self.price_note = endpoint.get("price_note") or "the endpoint's configured token prices"

    def predict(self, texts: list[str]) -> list[str | None]:
        return [parse_expert(self.client.complete(self.prompt.messages(t)), self.prompt.names) for t in texts]

    def mean_tokens(self) -> tuple[float, float] | None:
        """Mean prompt and completion tokens per request the endpoint reported so far (None: it did not)."""
        usage = self.client.usage
        counted = usage["requests"] - usage["without_usage"]
        if counted == 0:
            return None
        return usage["prompt_tokens"] / counted, usage["completion_tokens"] / counted


def load_router(folder: str | Path, production: Router | None = None) -> Router:
    """The router in a candidate folder; a cascade also needs the `production` router it defers to."""
    folder = Path(folder)
    card = read_candidate_card(folder)
    if card["kind"] == "cascade":
        from flywheel.core.cascade import load_cascade  # cascade.py imports this module

        return load_cascade(folder, card, production, load_router)
    if card["kind"] == "tfidf_logreg":
        import joblib

        return TfidfRouter(card["name"], joblib.load(folder / "pipeline.joblib"), card.get("labels"))
    if card["kind"] == "embedding_logreg":
        import joblib

        head = joblib.load(folder / "head.joblib")
        return EmbeddingRouter(card["name"], head, card["labels"], card["source"], card["max_length"])
    if card["kind"] == "setfit":
        return SetFitRouter(card["name"], folder / "model", card["labels"])
    if card["kind"] == "encoder_classifier":
        return EncoderRouter(card["name"], folder / "model", card["labels"], card["max_length"])
    if card["kind"] == "causal_lm":
        return load_causal_router(folder, card)
    if card["kind"] == "endpoint":
        return EndpointRouter(card["name"], card["endpoint"], card["experts"])
    if card["kind"] == "ensemble":
        members = [load_router(folder / ENSEMBLE_MEMBERS / name) for name in card["members"]]
        return EnsembleRouter(card["name"], members, card["weights"], card["labels"])
    raise ValueError(f"{folder}: unknown candidate kind {card['kind']!r}")


def model_size(folder: str | Path) -> dict:
    """Bytes on disk of a candidate folder and its parameter count when the card records it."""
    folder = Path(folder)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return {"bytes_on_disk": size, "parameters": read_candidate_card(folder).get("parameters")}
