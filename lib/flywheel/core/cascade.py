"""Cascades: a small router that answers when it is confident and defers the rest to the production model.

`cascade_decisions` is the one rule the evaluation (on logged production decisions) and the router service
(calling the production endpoint) share. A promoted cascade is a candidate folder like any other
(`write_cascade`: candidate.json of kind "cascade" and the student's folder under `student/`); `load_router`
gives it back as a `CascadeRouter` once it is handed the production router (the service builds that from
`serve.production_endpoint`).

flywheel.core.routers imports this module (load_router's cascade branch), so this one imports nothing from it:
it reads and writes the candidate card itself and is handed the student's loader."""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

CASCADE = "cascade"  # the candidate kind
STUDENT_FOLDER = "student"
CARD = "candidate.json"


class _Decider(Protocol):  # routers.Router
    name: str

    def predict(self, texts: list[str]) -> list[str | None]: ...


class _Scorer(_Decider, Protocol):  # routers.ScoringRouter
    labels: list[str]

    def predict_proba(self, texts: list[str]) -> np.ndarray: ...


class NoProductionRouter(ValueError):
    """A cascade loaded without the production router it defers to."""


def cascade_decisions(
    proba: np.ndarray, labels: Sequence[str], threshold: float, fallback: Sequence[str | None]
) -> tuple[list[str | None], np.ndarray]:
    """Per query: the student's most likely label where its probability is at least `threshold`, else the
    fallback's decision (the production model's). Returns the decisions and the boolean deferral mask."""
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 2 or proba.shape[1] != len(labels):
        raise ValueError(f"proba must be (queries, {len(labels)} labels), got {proba.shape}")
    if len(fallback) != len(proba):
        raise ValueError(f"{len(fallback)} fallback decisions for {len(proba)} queries")
    deferred = proba.max(axis=1) < threshold
    best = proba.argmax(axis=1)
    decisions = [fallback[i] if deferred[i] else labels[best[i]] for i in range(len(proba))]
    return decisions, deferred


def write_cascade(folder: Path, student_dir: Path, threshold: float, name: str) -> Path:
    """Make `folder` a cascade candidate: a copy of the trained student under `student/` and candidate.json
    {"kind": "cascade", "name", "threshold", "student", "labels", ...}. Returns the folder."""
    folder, student_dir = Path(folder), Path(student_dir)
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"a cascade threshold is a probability, got {threshold}")
    if not (student_dir / CARD).is_file():
        raise FileNotFoundError(f"not a trained candidate (no {CARD}): {student_dir}")
    student_card = json.loads((student_dir / CARD).read_text())
    if student_card["kind"] == CASCADE:
        raise ValueError(f"{student_dir} is a cascade already; a cascade's student is a single router")
    labels = student_card.get("labels")
    if not labels:
        raise ValueError(f"{student_dir}: the student's card names no labels (a router that scores them)")
    target = folder / STUDENT_FOLDER
    if target.exists():  # re-written by a re-run: never a mix of two students
        shutil.rmtree(target)
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(student_dir, target)
    card = {
        "kind": CASCADE,
        "name": name,
        "threshold": float(threshold),
        "student": STUDENT_FOLDER,
        "student_name": student_card.get("name"),
        "student_kind": student_card["kind"],
        "labels": list(labels),
        "parameters": student_card.get("parameters"),
    }
    (folder / CARD).write_text(json.dumps(card, indent=2, sort_keys=True) + "\n")  # as routers' cards
    return folder


@dataclass(frozen=True)
class CascadeOutcome:
    """One `decide` call: per query the decision, whether it was deferred and which model decided. With
    `error` set the production router failed: the deferred queries have no decision (None), and must not
    be answered."""

    decisions: list[str | None]
    deferred: np.ndarray
    models: list[str]
    error: Exception | None = None


class CascadeRouter:
    """The student answers where its top probability reaches `threshold`; the production router decides the
    rest, asked for those queries only."""

    def __init__(self, name: str, student: _Scorer, threshold: float, production: _Decider):
        if not hasattr(student, "predict_proba"):
            raise ValueError(f"the cascade's student {student.name!r} gives no probabilities (predict_proba)")
        self.name = name
        self.student = student
        self.threshold = float(threshold)
        self.production = production
        self.labels = list(student.labels)
        self.last_deferred = 0  # deferred queries in the latest call
        self.counts = {"queries": 0, "deferred": 0, "production_failures": 0}
        self._lock = threading.Lock()

    def decide(self, texts: list[str]) -> CascadeOutcome:
        """Decide a batch, calling the production router for the deferred queries only; a production failure
        is returned (not raised), so that the confident queries of the batch can still be answered."""
        if not texts:
            return CascadeOutcome([], np.zeros(0, dtype=bool), [])
        proba = np.asarray(self.student.predict_proba(texts), dtype=float)
        _, deferred = cascade_decisions(proba, self.labels, self.threshold, [None] * len(texts))
        asked = [t for t, d in zip(texts, deferred, strict=True) if d]
        fallback: list[str | None] = [None] * len(texts)
        error = None
        if asked:
            try:
                answers = iter(self.production.predict(asked))
                fallback = [next(answers) if d else None for d in deferred]
            except Exception as err:  # the endpoint's errors vary by client; the caller decides what to say
                error = err
        decisions, deferred = cascade_decisions(proba, self.labels, self.threshold, fallback)
        models = [self.production.name if d else self.student.name for d in deferred]
        with self._lock:
            self.last_deferred = int(deferred.sum())
            self.counts["queries"] += len(texts)
            self.counts["deferred"] += self.last_deferred
            self.counts["production_failures"] += error is not None
        return CascadeOutcome(decisions, deferred, models, error)

    def predict(self, texts: list[str]) -> list[str | None]:
        """The cascade's decisions; raises when the production router failed (never a student answer below
        the threshold in its place)."""
        outcome = self.decide(texts)
        if outcome.error is not None:
            raise outcome.error
        return outcome.decisions

    def describe(self) -> dict:
        """What /health reports: the parts, the threshold and the deferrals so far."""
        with self._lock:
            counts = dict(self.counts)
        share = counts["deferred"] / counts["queries"] if counts["queries"] else None
        return {
            "student": self.student.name,
            "threshold": self.threshold,
            "production": self.production.name,
            **counts,
            "deferred_share": share,
        }


def load_cascade(
    folder: Path, card: dict, production: _Decider | None, load_student: Callable[[Path], _Decider]
) -> CascadeRouter:
    """The cascade in `folder` (its card already read), deferring to `production`; `load_student` is
    routers.load_router."""
    if production is None:
        raise NoProductionRouter(
            f"{card['name']!r} is a cascade (student {card.get('student_name')!r}, threshold "
            f"{card['threshold']}): "
            "it defers its least confident queries to the production model, so serve.production_endpoint "
            "must be configured"
        )
    student = load_student(Path(folder) / card.get("student", STUDENT_FOLDER))
    return CascadeRouter(card["name"], student, card["threshold"], production)
