"""Who reviews, and the simulated expert panel of the demo.

The demo has no real subject-matter experts, so a simulated panel answers the review questions from
the demo's hidden truth, with a configurable error rate. It answers THROUGH THE REAL ARGILLA API: each
simulated expert is an Argilla annotator (`simulated-expert-1`, ...) who submits its answers with its own
API key, exactly as an expert does from the web UI; the answers then come back by the same pull as real
ones, stored as `origin="simulated"`, and the manifest says so. The hidden truth never becomes a label
any other way.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from flywheel.store import utcnow

OUT_OF_SCOPE = "out_of_scope"
AMBIGUOUS = "ambiguous"


def review_queue(interactions: pd.DataFrame, reviews: pd.DataFrame) -> pd.DataFrame:
    """Unsatisfactory interactions that no expert has answered yet."""
    unsatisfied = interactions[interactions["satisfied"].eq(False)]
    return unsatisfied[~unsatisfied["id"].isin(reviews["interaction_id"])]


class SimulatedPanel:
    """Experts who answer from the hidden truth, wrong with probability `error_rate`.

    Each answer depends only on (seed, interaction, reviewer), so answering in another order, or in two
    sittings after an outage, gives the same answers."""

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
        self.reviewers = [f"simulated-expert-{i + 1}" for i in range(size)]

    def decide(self, interaction_id: str, reviewer: str) -> dict[str, str] | None:
        """One simulated expert's answer to one interaction; None if the demo does not know it."""
        truth = self.truth.get(interaction_id)
        if truth is None:
            return None  # not a demo interaction (e.g. live traffic): real experts must answer it
        digest = hashlib.sha256(f"{self.seed}\0{interaction_id}\0{reviewer}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        expert = truth["true_expert"] or OUT_OF_SCOPE
        if rng.random() < self.error_rate:
            expert = str(rng.choice([e for e in self.experts if e != expert]))
        return {"correct_expert": expert, "cause": truth["cause"] if truth["cause"] != "none" else "other"}

    def answer(self, interaction_ids: list[str]) -> list[dict]:
        """Answers as store rows, without Argilla (for unit tests of the builder)."""
        rows = []
        for interaction_id in sorted(interaction_ids):
            for reviewer in self.reviewers:
                decision = self.decide(interaction_id, reviewer)
                if decision is not None:
                    rows.append(
                        {
                            "interaction_id": interaction_id,
                            "reviewer": reviewer,
                            **decision,
                            "origin": "simulated",
                            "reviewed_at": utcnow(),
                        }
                    )
        return rows

    def answer_in_argilla(self, session: Any) -> dict[str, int]:
        """Each simulated expert submits its answers to the records it has not answered yet, through the
        Argilla API with its own annotator account. Returns counts; safe to repeat (resumes)."""
        owner = session.client
        workspace = owner.workspaces(session.target.workspace)
        submitted = skipped = 0
        records = session._retry(
            lambda: list(session.dataset.records(with_suggestions=False, with_responses=True))
        )
        for reviewer in self.reviewers:
            user = session._retry(self._annotator, owner, workspace, reviewer)
            client = _client_as(owner, session.target.url, self._api_key(session, user))
            for record in records:
                if any(str(r.user_id) == str(user.id) for r in record.responses):
                    continue  # answered in an earlier sitting
                decision = self.decide(str(record.id), reviewer)
                if decision is None:
                    skipped += 1
                    continue
                session._retry(_submit, client, record._server_id, user.id, decision)
                submitted += 1
        return {"submitted": submitted, "not_in_demo_truth": skipped, "reviewers": len(self.reviewers)}

    @staticmethod
    def _annotator(owner: Any, workspace: Any, username: str) -> Any:
        import argilla as rg

        with warnings.catch_warnings():  # the SDK warns when the user does not exist yet: expected
            warnings.simplefilter("ignore")
            user = owner.users(username)
        if user is None:
            password = secrets.token_urlsafe(18)  # never used to log in: the panel works by API key
            user = rg.User(username=username, password=password, role="annotator", client=owner).create()
        if username not in [member.username for member in workspace.users]:
            user.add_to_workspace(workspace)
        return user

    @staticmethod
    def _api_key(session: Any, user: Any) -> str:
        # The SDK's user model drops the key; the owner reads it from the users endpoint.
        def read() -> str:
            response = session.client.api.http_client.get(f"/api/v1/users/{user.id}")
            response.raise_for_status()
            return response.json()["api_key"]

        return session._retry(read)


def _client_as(owner: Any, url: str, api_key: str) -> Any:
    """A client for a panel member that leaves the SDK's default client (the owner's) as it was."""
    import argilla as rg

    client = rg.Argilla(api_url=url, api_key=api_key, timeout=60)
    rg.Argilla._set_default(owner)
    return client


def _submit(client: Any, record_server_id: Any, user_id: Any, decision: dict[str, str]) -> None:
    from argilla._models import UserResponseModel

    values = {question: {"value": value} for question, value in decision.items()}
    model = UserResponseModel(values=values, status="submitted", user_id=user_id)
    client.api.records.create_record_response(record_server_id, model)
