"""A tiny trained router (TF-IDF + logistic regression on a handful of phrases per demo expert), so a test or
a benchmark can start a real router service in about a second. Tests import it as `tiny_router` (like
pgcluster.py); benchmarks as `tests.tiny_router` from the repository root."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from flywheel.core.config import CandidateConfig
from flywheel.finetune.train import train_candidate

TINY_EXAMPLES = {
    "hr_benefits": [
        "how much parental leave do I get",
        "enroll in the health insurance plan",
        "dental cover",
    ],
    "payroll_equity": ["when do my RSU grants vest", "my pay slip is missing", "where is my tax form W-2"],
    "finance_earnings": [
        "when is the next earnings call",
        "what was revenue last quarter",
        "annual guidance",
    ],
    "it_help": ["vpn is not connecting", "reset my password please", "install software on my laptop"],
    "product_docs": ["SDK release notes", "driver API documentation", "where are the product docs"],
    "travel_expenses": ["submit an expense report", "book a business flight", "corporate card reimbursement"],
    "facilities": ["book a meeting room", "my badge does not open the door", "parking at the office"],
}


def train_tiny_router(folder: str | Path, name: str = "tiny-tfidf", seed: int = 7) -> Path:
    """Train the tiny TF-IDF router into `folder` (a trained candidate folder with candidate.json)."""
    rows = [(text, label) for label, texts in TINY_EXAMPLES.items() for text in texts]
    train = pd.DataFrame(rows, columns=["text", "label"])
    candidate = CandidateConfig(name=name, kind="tfidf_logreg")
    train_candidate(candidate, train, list(TINY_EXAMPLES), Path(folder), seed)
    return Path(folder)


# Questions near the tiny router's training phrases (it is confident) and far from all of them (it is unsure).
NEAR_AND_FAR_QUESTIONS = [
    "vpn is not connecting",
    "reset my password please",
    "submit an expense report",
    "book a meeting room",
    "when do my RSU grants vest",
    "when is the next earnings call",
    "enroll in the health insurance plan",
    "hello",
    "what should I do next",
    "is it going to rain tomorrow",
    "who won the game yesterday",
    "the thing is broken again",
]
