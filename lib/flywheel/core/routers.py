"""Routers (predictors), shared by fine-tuning, evaluation and the router service.

A trained candidate is a folder with `candidate.json` ({"kind", "name", "labels", ...}) and its weights;
`load_router(folder)` gives back something with `.predict(texts) -> list[expert | None]`.

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


def write_candidate_card(folder: Path, **card) -> None:
    (folder / "candidate.json").write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")


def read_candidate_card(folder: Path) -> dict:
    path = Path(folder) / "candidate.json"
    if not path.is_file():
        raise FileNotFoundError(f"not a trained candidate (no candidate.json): {folder}")
    return json.loads(path.read_text())


class TfidfRouter:
    """TF-IDF features + logistic regression: the cheapest sensible router."""

    def __init__(self, name: str, pipeline):
        self.name = name
        self.pipeline = pipeline

    def predict(self, texts: list[str]) -> list[str | None]:
        return [str(label) for label in self.pipeline.predict(texts)]


class EncoderRouter:
    """A sequence-classification encoder (e.g. MiniLM): argmax over the expert labels."""

    def __init__(self, name: str, folder: Path, labels: list[str], max_length: int, batch_size: int = 32):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.name = name
        self.labels = labels
        self.max_length = max_length
        self.batch_size = batch_size
        self.device = compute_device()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder).to(self.device).eval()

    def predict(self, texts: list[str]) -> list[str | None]:
        import torch

        out: list[str | None] = []
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
            out.extend(self.labels[i] for i in np.asarray(logits.argmax(-1).cpu()))
        return out


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


def load_router(folder: str | Path) -> Router:
    folder = Path(folder)
    card = read_candidate_card(folder)
    if card["kind"] == "tfidf_logreg":
        import joblib

        return TfidfRouter(card["name"], joblib.load(folder / "pipeline.joblib"))
    if card["kind"] == "encoder_classifier":
        return EncoderRouter(card["name"], folder / "model", card["labels"], card["max_length"])
    if card["kind"] == "causal_lm":
        return load_causal_router(folder, card)
    if card["kind"] == "endpoint":
        return EndpointRouter(card["name"], card["endpoint"], card["experts"])
    raise ValueError(f"{folder}: unknown candidate kind {card['kind']!r}")


def model_size(folder: str | Path) -> dict:
    """Bytes on disk of a candidate folder and its parameter count when the card records it."""
    folder = Path(folder)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return {"bytes_on_disk": size, "parameters": read_candidate_card(folder).get("parameters")}
