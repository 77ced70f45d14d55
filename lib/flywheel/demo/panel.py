"""The demo's simulated expert panel.

The demo has no real subject-matter experts, so a simulated panel answers the review questions from
the demo's hidden truth, with a configurable error rate; the same code answers the triage dataset (expert
and cause) and the blind audit (the expert only: it submits the questions the dataset asks). It answers
THROUGH THE REAL ARGILLA API: each simulated expert is an Argilla annotator (`simulated-expert-1`, ...)
who submits its answers with its own API key, exactly as an expert does from the web UI; the answers
then come back by the same pull as real ones, stored as `origin="simulated"`, and the manifest says so.
The hidden truth never becomes a label any other way.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from flywheel.core.labels import OUT_OF_SCOPE
from flywheel.core.log_sources import SIMULATED_PREFIX
from flywheel.core.store import utcnow


class SimulatedPanel:
    """Experts who answer from the hidden truth, wrong with probability `error_rate`.

    Each answer depends only on (seed, interaction, reviewer, task), so answering in another order, or in
    two sittings after an outage, gives the same answers; each reviewer errs independently of the others,
    and of its own answer to the same interaction in the other task."""

    def __init__(self, truth_path: Path, experts: list[str], error_rate: float, seed: int, size: int = 1):
        if not Path(truth_path).is_file():
            raise FileNotFoundError(
                f"review.mode=simulate needs the demo's hidden truth ({truth_path}); "
                "it exists only for source.kind=demo"
            )
        self.truth = {row["id"]: row for row in map(json.loads, Path(truth_path).read_text().splitlines())}
        self.experts = list(experts)
        self.error_rate = error_rate
        self.seed = seed
        self.reviewers = [f"{SIMULATED_PREFIX}{i + 1}" for i in range(size)]

    def decide(self, interaction_id: str, reviewer: str, task: str = "triage") -> dict[str, str] | None:
        """One simulated expert's answer to one interaction in one task; None if the demo does not know it."""
        truth = self.truth.get(interaction_id)
        if truth is None:
            return None  # not a demo interaction (e.g. live traffic): real experts must answer it
        # triage keeps the key it had before the audit existed, so its answers stay as they were
        key = f"{self.seed}\0{interaction_id}\0{reviewer}" + ("" if task == "triage" else f"\0{task}")
        digest = hashlib.sha256(key.encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        expert = truth["true_expert"] or OUT_OF_SCOPE
        if rng.random() < self.error_rate:
            expert = str(rng.choice([e for e in self.experts if e != expert]))
        return {"correct_expert": expert, "cause": truth["cause"] if truth["cause"] != "none" else "other"}

    def answer(self, interaction_ids: list[str], task: str = "triage") -> list[dict]:
        """Answers as store rows, without Argilla (for unit tests of the builder); audit rows have no
        cause."""
        rows = []
        for interaction_id in sorted(interaction_ids):
            for reviewer in self.reviewers:
                decision = self.decide(interaction_id, reviewer, task)
                if decision is not None:
                    if task != "triage":
                        decision["cause"] = None
                    rows.append(
                        {
                            "interaction_id": interaction_id,
                            "reviewer": reviewer,
                            **decision,
                            "origin": "simulated",
                            "reviewed_at": utcnow(),
                            "task": task,
                        }
                    )
        return rows

    def answer_in_argilla(self, session: Any) -> dict[str, int]:
        """Each simulated expert submits its answers to the records it has not answered yet, through the
        Argilla API with its own annotator account (`session.annotator`), to the questions the session's
        dataset asks, as an answer in the session's task. Every call retries through an outage as push
        and pull do; returns counts; safe to repeat (resumes)."""
        submitted = skipped = 0
        task = getattr(session, "task", "triage")
        asked = {question.name for question in session.dataset.settings.questions}
        records = session.records_with_responses()
        for reviewer in self.reviewers:
            user_id, client = session.annotator(reviewer)
            answers = []
            for record in records:
                if any(str(r.user_id) == str(user_id) for r in record.responses):
                    continue  # answered in an earlier sitting
                decision = self.decide(str(record.id), reviewer, task)
                if decision is None:
                    skipped += 1
                    continue
                answer = {question: value for question, value in decision.items() if question in asked}
                answers.append((record._server_id, answer))
            submitted += session.submit_many_as(client, answers)  # in bulk: one request per 100 answers
        return {"submitted": submitted, "not_in_demo_truth": skipped, "reviewers": len(self.reviewers)}
