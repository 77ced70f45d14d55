"""Expert review in Argilla (SDK v2): the review dataset, push, pull, agreement, and the pause for experts.

Two datasets per store, one per task, in the config's workspace (their names are derived from the config
name and the store URL unless `review.dataset` names the triage one; the audit's is that name + "-audit"):

- triage: each record is one unsatisfactory interaction (record id = interaction id) with the PII-masked
  question, the routed expert, the answer excerpt and the user's comment; the experts answer two
  questions: the correct expert (the catalog + "ambiguous" + "out_of_scope") and the cause. A judge's
  verdict, when given, becomes suggestions with scores. `review.experts_per_record` experts answer each.
- audit: the blind audit sample (`flywheel.core.audit`). Each record shows the PII-masked question only
  (no routed expert, answer, comment, feedback or judge) and asks only for the correct expert;
  `audit.experts_per_record` experts answer each. Its answers are stored with task "audit" and no cause.

Argilla's task distribution (min_submitted) gives each record its number of experts, so with more than one
their agreement is measured (Cohen's and Fleiss' kappa).

Push sends only records that are not on the server yet; pull reads submitted answers into the store's
`reviews` table. Every Argilla call (push, pull, the simulated panel, bulk import) retries with exponential
backoff (`retrying`), and all of them are idempotent, so an outage in the middle loses and doubles nothing:
run them again.

Answers that already exist outside Argilla (a team's labels, answers from code) come in through
`import_labels` (`flywheel review import FILE`): each row is submitted as its reviewer's own answer, by the
same path an expert's browser takes, so `pull` brings it back like any other answer. The owner's key cannot
do that for someone else, and a user's key gets `ForbiddenError` where it lacks rights: see
`ReviewSession.annotator`.

The embedded server (`flywheel.core.argilla_login.up()`: started when it is not running) is used unless the
environment variables named by `review.argilla_url_env` / `review.argilla_api_key_env` point at a team's own
Argilla.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import re
import secrets
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from flywheel.core import argilla_login
from flywheel.core.config import REPO_ROOT, load_config
from flywheel.core.labels import AMBIGUOUS, CAUSES, OUT_OF_SCOPE
from flywheel.core.log_sources import SIMULATED_PREFIX
from flywheel.core.store import Store, utcnow

QUESTION_EXPERT = "correct_expert"
QUESTION_CAUSE = "cause"
TRIAGE, AUDIT = "triage", "audit"  # the review tasks (the `task` of a stored answer)
AWAITING_REVIEW = "awaiting_review"
EXCERPT_CHARS = 1500
BULK_RESPONSES = 100  # the most answers Argilla 2.8 takes in one bulk request


@dataclass
class ReviewTarget:
    """Which Argilla, and where in it. The API key never shows in a repr or a notebook."""

    url: str
    api_key: str = field(repr=False)
    workspace: str
    dataset: str
    embedded: bool
    credentials: str | None = None  # where the embedded server's login is kept

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "api_key"}


@dataclass
class PushReport:
    queued: int
    already_pushed: int
    pushed: int
    seconds: float

    @property
    def records_per_s(self) -> float | None:
        return round(self.pushed / self.seconds, 1) if self.pushed and self.seconds > 0 else None


@dataclass
class PullReport:
    records: int
    answers: int
    added: int
    seconds: float

    @property
    def records_per_s(self) -> float | None:
        return round(self.records / self.seconds, 1) if self.records and self.seconds > 0 else None


# --- transient failures: retried with backoff ------------------------------------------------------------
def _transient(error: BaseException) -> bool:
    import httpx
    from argilla._exceptions import ArgillaAPIError

    if isinstance(error, httpx.TransportError):  # refused, reset, timed out: the server is down or restarting
        return True
    if isinstance(error, ArgillaAPIError):
        return (getattr(error, "status_code", None) or 500) >= 500
    return isinstance(error, ConnectionError | TimeoutError)


def retrying(max_seconds: float = 120.0, log: Callable[[str], None] | None = None) -> Retrying:
    """Exponential backoff (0.5 s doubling to 10 s) on transient errors for up to `max_seconds`."""

    def before_sleep(state: Any) -> None:
        if log:
            log(f"Argilla unreachable ({state.outcome.exception().__class__.__name__}), retrying")

    return Retrying(
        retry=retry_if_exception(_transient),
        wait=wait_exponential(multiplier=0.5, max=10),
        stop=stop_after_delay(max_seconds),
        before_sleep=before_sleep,
        reraise=True,
    )


# --- dataset definition ---------------------------------------------------------------------------
def review_queue(
    interactions: pd.DataFrame, reviews: pd.DataFrame, exclude_ids: Iterable[str] | None = None
) -> pd.DataFrame:
    """Unsatisfactory interactions that no expert has answered in triage yet, less `exclude_ids`."""
    if "task" in reviews:
        reviews = reviews[reviews["task"].eq(TRIAGE)]
    unsatisfied = interactions[interactions["satisfied"].eq(False)]
    queue = unsatisfied[~unsatisfied["id"].isin(reviews["interaction_id"])]
    if exclude_ids is not None:
        queue = queue[~queue["id"].astype(str).isin({str(i) for i in exclude_ids})]
    return queue


def expert_labels(experts: Iterable[str]) -> list[str]:
    return [*experts, AMBIGUOUS, OUT_OF_SCOPE]


def review_settings(experts: Iterable[str], experts_per_record: int = 1) -> Any:
    import argilla as rg

    return rg.Settings(
        guidelines=(
            "Each record is an employee question whose answer the user did not like. Say which expert agent "
            "should have answered it (or 'ambiguous' / 'out_of_scope'), and what went wrong. A judge's "
            "suggestion may be pre-filled: check it, do not trust it."
        ),
        fields=[
            rg.TextField(name="question", title="Question (PII-masked)", use_markdown=False),
            rg.TextField(name="routed_expert", title="Routed to"),
            rg.TextField(name="answer_excerpt", title="Answer excerpt", required=False),
            rg.TextField(name="user_comment", title="User comment", required=False),
            rg.TextField(name="judge_rationale", title="Judge's rationale", required=False),
        ],
        questions=[
            rg.LabelQuestion(
                name=QUESTION_EXPERT,
                title="Which expert should have answered?",
                labels=expert_labels(experts),
            ),
            rg.LabelQuestion(name=QUESTION_CAUSE, title="What went wrong?", labels=list(CAUSES)),
        ],
        metadata=[
            rg.IntegerMetadataProperty(name="logged_at", title="Logged at (unix seconds)"),
            rg.TermsMetadataProperty(name="logged_day", title="Day"),
            rg.TermsMetadataProperty(name="routed_to", title="Routed to"),
            rg.FloatMetadataProperty(name="judge_confidence", title="Judge confidence"),
            rg.TermsMetadataProperty(name="judge_cause", title="Judge's cause"),
        ],
        distribution=rg.TaskDistribution(min_submitted=experts_per_record),
    )


def audit_settings(experts: Iterable[str], experts_per_record: int = 3) -> Any:
    """The blind audit: the masked question, one question (the expert), nothing that hints at the answer."""
    import argilla as rg

    return rg.Settings(
        guidelines=(
            "A blind audit: each record is an employee question drawn at random from the logs, whatever the "
            "user thought of the answer. Say which expert agent should answer it (or 'ambiguous' / "
            "'out_of_scope'). You are not shown where it was routed, the answer or any feedback, on purpose: "
            "answer from the question alone, without asking the other experts. Your answers make the test "
            "set that decides whether a smaller router may replace the production one."
        ),
        fields=[rg.TextField(name="question", title="Question (PII-masked)", use_markdown=False)],
        questions=[
            rg.LabelQuestion(
                name=QUESTION_EXPERT,
                title="Which expert should answer this question?",
                labels=expert_labels(experts),
            )
        ],
        metadata=[
            rg.IntegerMetadataProperty(name="logged_at", title="Logged at (unix seconds)"),
            rg.TermsMetadataProperty(name="logged_day", title="Day"),
        ],
        distribution=rg.TaskDistribution(min_submitted=experts_per_record),
    )


def task_settings(task: str, experts: Iterable[str], experts_per_record: int) -> Any:
    if task == TRIAGE:
        return review_settings(experts, experts_per_record)
    if task == AUDIT:
        return audit_settings(experts, experts_per_record)
    raise ValueError(f"unknown review task {task!r} (one of: {TRIAGE}, {AUDIT})")


def task_questions(task: str) -> list[str]:
    return [QUESTION_EXPERT, QUESTION_CAUSE] if task == TRIAGE else [QUESTION_EXPERT]


def default_dataset_name(config_name: str, store_url: str, task: str = TRIAGE) -> str:
    """One review dataset per store and task: the same interaction ids in two stores never mix."""
    kind = "review" if task == TRIAGE else task
    return f"{config_name}-{kind}-{hashlib.sha256(store_url.encode()).hexdigest()[:8]}"


def dataset_name(config: Any, store_url: str, task: str = TRIAGE) -> str:
    """The task's dataset: `review.dataset` (+ "-audit" for the audit) or the store's default."""
    named = config.review.dataset
    if named:
        return named if task == TRIAGE else f"{named}-{task}"
    return default_dataset_name(config.name, store_url, task)


def normalise_verdicts(verdicts: Any) -> dict[str, dict[str, Any]]:
    """Judge verdicts by interaction id, from a DataFrame or a list of dicts with keys interaction_id (or id),
    cause, suggested_expert (or expert), confidence, rationale and optionally judge."""
    if verdicts is None:
        return {}
    rows = verdicts.to_dict("records") if isinstance(verdicts, pd.DataFrame) else list(verdicts)
    table = {}
    for row in rows:
        key = row.get("interaction_id", row.get("id"))
        if key is None:
            raise ValueError("a verdict needs an interaction_id (or id)")
        table[str(key)] = {
            "cause": row.get("cause"),
            "expert": row.get("suggested_expert", row.get("expert")),
            "confidence": row.get("confidence"),
            "rationale": row.get("rationale"),
            "judge": row.get("judge") or "judge",
        }
    return table


def _clean(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


def audit_records(queue: pd.DataFrame) -> list[Any]:
    """Blind audit records: the masked question and when it was logged, nothing else."""
    import argilla as rg

    records = []
    for row in queue.itertuples(index=False):
        stamp = pd.Timestamp(row.timestamp)
        records.append(
            rg.Record(
                id=str(row.id),
                fields={"question": row.query_masked},
                metadata={"logged_at": int(stamp.timestamp()), "logged_day": stamp.strftime("%Y-%m-%d")},
            )
        )
    return records


def to_records(queue: pd.DataFrame, experts: Iterable[str], verdicts: Any = None) -> list[Any]:
    """Argilla records for the interactions in `queue` (store columns), with the judge's suggestions."""
    import argilla as rg

    labels = set(expert_labels(experts))
    by_id = normalise_verdicts(verdicts)
    records = []
    for row in queue.itertuples(index=False):
        verdict = by_id.get(str(row.id), {})
        confidence = _clean(verdict.get("confidence"))
        confidence = None if confidence is None else float(confidence)
        stamp = pd.Timestamp(row.timestamp)
        metadata = {
            "logged_at": int(stamp.timestamp()),
            "logged_day": stamp.strftime("%Y-%m-%d"),
            "routed_to": row.routed_expert,
            "judge_confidence": confidence,
            "judge_cause": _clean(verdict.get("cause")),
        }
        suggestions = []
        expert = _clean(verdict.get("expert"))
        if expert in labels:
            suggestions.append(
                rg.Suggestion(QUESTION_EXPERT, expert, score=confidence, agent=verdict["judge"])
            )
        cause = _clean(verdict.get("cause"))
        if cause in CAUSES:
            suggestions.append(rg.Suggestion(QUESTION_CAUSE, cause, score=confidence, agent=verdict["judge"]))
        records.append(
            rg.Record(
                id=str(row.id),
                fields={
                    "question": row.query_masked,
                    "routed_expert": row.routed_expert,
                    "answer_excerpt": (_clean(getattr(row, "answer_excerpt", None)) or "")[:EXCERPT_CHARS]
                    or None,
                    "user_comment": _clean(getattr(row, "comment", None)) or None,
                    "judge_rationale": _clean(verdict.get("rationale")) or None,
                },
                metadata={k: v for k, v in metadata.items() if v is not None},
                suggestions=suggestions,
            )
        )
    return records


# --- the session: one dataset on one server -----------------------------------------------------------------
class ReviewSession:
    """One task's review dataset (triage or audit) on an Argilla server, as its owner (or a team member
    with rights to it)."""

    def __init__(
        self,
        target: ReviewTarget,
        experts: list[str],
        experts_per_record: int = 1,
        retry_seconds: float = 120.0,
        log: Callable[[str], None] = print,
        task: str = TRIAGE,
    ):
        if task not in (TRIAGE, AUDIT):
            raise ValueError(f"unknown review task {task!r} (one of: {TRIAGE}, {AUDIT})")
        self.target = target
        self.task = task
        self.experts = list(experts)
        self.experts_per_record = experts_per_record
        self.retry_seconds = retry_seconds
        self.log = log
        self.client = self._retry(self._connect)
        self.dataset = self._retry(self._open_dataset)

    def __repr__(self) -> str:
        return f"ReviewSession({self.target.url}, dataset={self.target.dataset!r}, task={self.task!r})"

    def _retry(self, fn: Callable[..., Any], *args: Any) -> Any:
        return retrying(self.retry_seconds, self.log)(fn, *args)

    def _connect(self) -> Any:
        import argilla as rg

        client = rg.Argilla(api_url=self.target.url, api_key=self.target.api_key, timeout=60)
        client.me  # noqa: B018  (checks the key now, not at the first push)
        return client

    def _open_dataset(self) -> Any:
        import argilla as rg

        with _quiet():  # the SDK warns when a lookup finds nothing: here that is expected
            workspace = self.client.workspaces(self.target.workspace)
        if workspace is None:
            workspace = rg.Workspace(name=self.target.workspace, client=self.client).create()
        with _quiet():
            dataset = self.client.datasets(name=self.target.dataset, workspace=workspace)
        if dataset is None:
            dataset = rg.Dataset(
                name=self.target.dataset,
                workspace=workspace,
                settings=task_settings(self.task, self.experts, self.experts_per_record),
                client=self.client,
            ).create()
        questions = [q.name for q in dataset.settings.questions]
        if questions != task_questions(self.task):
            raise ValueError(
                f"dataset {self.target.dataset!r} asks {questions}, not the {self.task} questions "
                f"{task_questions(self.task)}; set review.dataset to a new name"
            )
        labels = dataset.settings.questions[QUESTION_EXPERT].labels
        if list(labels) != expert_labels(self.experts):
            raise ValueError(
                f"review dataset {self.target.dataset!r} has expert labels {labels}, but the config's "
                f"catalog gives {expert_labels(self.experts)}; set review.dataset to a new name"
            )
        return dataset

    # --- push -----------------------------------------------------------------------------------------
    def pushed_ids(self) -> set[str]:
        """Interaction ids already on the server (its records' external ids)."""

        def read() -> set[str]:
            return {str(r.id) for r in self.dataset.records(with_suggestions=False, with_responses=False)}

        return self._retry(read)

    def push(self, queue: pd.DataFrame, verdicts: Any = None, batch_size: int = 100) -> PushReport:
        """Send the interactions in `queue` (store columns) that are not on the server yet, in batches;
        resumable. The audit is blind: it takes no verdicts."""
        if self.task == AUDIT and verdicts is not None:
            raise ValueError("the audit is blind: push its queue without the judges' verdicts")
        started = time.perf_counter()
        already = self.pushed_ids()
        todo = queue[~queue["id"].astype(str).isin(already)]
        records = audit_records(todo) if self.task == AUDIT else to_records(todo, self.experts, verdicts)
        for start in range(0, len(records), batch_size):
            batch = records[start : start + batch_size]
            # An upsert by external id: a batch that reached the server before an outage is not doubled.
            self._retry(lambda b=batch: self.dataset.records.log(b, batch_size=len(b)))
        return PushReport(
            queued=len(queue),
            already_pushed=len(queue) - len(todo),
            pushed=len(records),
            seconds=round(time.perf_counter() - started, 3),
        )

    # --- answering as a user (the simulated panel, bulk import) ---------------------------------------------
    def records_with_responses(self) -> list[Any]:
        return self._retry(lambda: list(self.dataset.records(with_suggestions=False, with_responses=True)))

    def annotator(self, username: str) -> tuple[Any, Any]:
        """(user id, a client with that user's API key) for answering as `username`, creating it as an
        annotator and adding it to the dataset's workspace when needed.

        Why this way (checked against Argilla 2.8): a response is stored under the user whose key sent it
        (the owner posting one with another `user_id` gets it stored as its own), so each reviewer answers
        with its own key. An annotator outside the dataset's workspace gets `ForbiddenError` (403) for
        answering; and an annotator may not upsert records, so answering through `dataset.records.log(...)`
        (the SDK's usual way to send responses) is `ForbiddenError` even for a member. Hence: membership,
        then `POST /records/{id}/responses` (`submit_as`)."""
        import argilla as rg

        def find_or_create() -> Any:
            with _quiet():  # the SDK warns when a lookup finds nothing: expected
                workspace = self.client.workspaces(self.target.workspace)
                user = self.client.users(username)
            if user is None:
                password = secrets.token_urlsafe(18)  # never used to log in: answers go by API key
                user = rg.User(username=username, password=password, role="annotator", client=self.client)
                user = user.create()
            if username not in [member.username for member in workspace.users]:
                user.add_to_workspace(workspace)
            return user

        def api_key(user_id: Any) -> str:
            # The SDK's user model drops the key; the owner reads it from the users endpoint.
            response = self.client.api.http_client.get(f"/api/v1/users/{user_id}")
            response.raise_for_status()
            return response.json()["api_key"]

        user = self._retry(find_or_create)
        key = self._retry(api_key, user.id)
        return user.id, self._retry(_client_as, self.client, self.target.url, key)

    def submit_as(self, client: Any, record_server_id: Any, user_id: Any, answer: dict[str, str]) -> None:
        """One submitted answer to one record, as the user whose client this is; retried, and a retry
        that finds its first attempt arrived (409) is done."""
        self._retry(_submit, client, record_server_id, user_id, answer)

    def submit_many_as(self, client: Any, answers: list[tuple[Any, dict[str, str]]]) -> int:
        """Submitted answers to many records, as the user whose client this is, through Argilla's bulk
        upsert (`POST /api/v1/me/responses/bulk`, up to 100 a request: one request instead of one per
        record). An upsert, so a retried batch changes nothing; a record the server refuses is an error."""
        for start in range(0, len(answers), BULK_RESPONSES):
            batch = answers[start : start + BULK_RESPONSES]
            self._retry(_submit_bulk, client, batch)
        return len(answers)

    # --- pull -----------------------------------------------------------------------------------------
    def usernames(self) -> dict[str, str]:
        return self._retry(lambda: {str(u.id): u.username for u in self.client.users})

    def answers(self, simulated_reviewers: Iterable[str] = ()) -> tuple[pd.DataFrame, int]:
        """Submitted answers, one row per (interaction, reviewer), with this session's task (an audit
        answer has no cause); and how many records were read."""

        def read() -> tuple[list[dict], int]:
            names = self.usernames()
            simulated = set(simulated_reviewers)
            rows, n_records = [], 0
            for record in self.dataset.records(with_suggestions=False, with_responses=True):
                n_records += 1
                by_user: dict[str, dict[str, Any]] = {}
                for response in record.responses:
                    if str(response.status) not in ("submitted", "ResponseStatus.submitted"):
                        continue
                    by_user.setdefault(str(response.user_id), {})[response.question_name] = response.value
                for user_id, values in by_user.items():
                    if QUESTION_EXPERT not in values:
                        continue
                    reviewer = names.get(user_id, user_id)
                    rows.append(
                        {
                            "interaction_id": str(record.id),
                            "reviewer": reviewer,
                            "correct_expert": values[QUESTION_EXPERT],
                            "cause": (values.get(QUESTION_CAUSE) or "other") if self.task == TRIAGE else None,
                            "origin": "simulated" if reviewer in simulated else "argilla",
                            "reviewed_at": utcnow(),
                            "task": self.task,
                        }
                    )
            return rows, n_records

        rows, n_records = self._retry(read)
        columns = ["interaction_id", "reviewer", "correct_expert", "cause", "origin", "reviewed_at", "task"]
        return pd.DataFrame(rows, columns=columns), n_records

    def pull(self, store: Store, simulated_reviewers: Iterable[str] = ()) -> PullReport:
        """Submitted answers into the store's `reviews` table under this session's task (new ones only);
        safe to repeat."""
        started = time.perf_counter()
        frame, n_records = self.answers(simulated_reviewers)
        known = set(store.hashes_for_ids(frame["interaction_id"])) if len(frame) else set()
        frame = frame[frame["interaction_id"].isin(known)]  # records of another store are not ours
        rows = [{**row, "cause": _clean(row["cause"])} for row in frame.to_dict("records")]
        added = store.add_reviews(rows, task=self.task)
        return PullReport(
            records=n_records,
            answers=len(frame),
            added=added,
            seconds=round(time.perf_counter() - started, 3),
        )

    def progress(self) -> dict[str, int]:
        """Records on the server: total, completed (enough submitted answers), pending."""
        raw = self._retry(self.dataset.progress)
        return {k: int(raw.get(k, 0)) for k in ("total", "completed", "pending")}


def _client_as(owner: Any, url: str, api_key: str) -> Any:
    """A client for one reviewer that leaves the SDK's default client (the owner's) as it was."""
    import argilla as rg

    client = rg.Argilla(api_url=url, api_key=api_key, timeout=60)
    rg.Argilla._set_default(owner)
    return client


def _submit_bulk(client: Any, batch: list[tuple[Any, dict[str, str]]]) -> None:
    from argilla._exceptions._api import api_error_handler

    items = [
        {
            "record_id": str(record_server_id),
            "status": "submitted",
            "values": {question: {"value": value} for question, value in answer.items()},
        }
        for record_server_id, answer in batch
    ]

    @api_error_handler  # HTTP errors as the SDK's ArgillaAPIError, which `retrying` understands
    def post() -> Any:
        response = client.api.http_client.post("/api/v1/me/responses/bulk", json={"items": items})
        response.raise_for_status()
        return response

    response = post()
    refused = [item["error"]["detail"] for item in response.json()["items"] if item.get("error")]
    if refused:
        raise ValueError(f"Argilla refused {len(refused)} of {len(items)} answers, e.g. {refused[0]}")


def _submit(client: Any, record_server_id: Any, user_id: Any, answer: dict[str, str]) -> None:
    from argilla._exceptions import ConflictError
    from argilla._models import UserResponseModel

    values = {question: {"value": value} for question, value in answer.items()}
    model = UserResponseModel(values=values, status="submitted", user_id=user_id)
    # 409: this user's answer is there already (an earlier attempt arrived before its reply was lost)
    with contextlib.suppress(ConflictError):
        client.api.records.create_record_response(record_server_id, model)


def open_review(
    config: Any, store: Store, log: Callable[[str], None] = print, task: str = TRIAGE
) -> ReviewSession:
    """The review session of one task (triage or audit) for a cycle: a team's Argilla when its URL and key
    are in the environment, otherwise the embedded server (started here if it is not running)."""
    review = config.review
    dataset = dataset_name(config, store.url, task)
    url = os.environ.get(review.argilla_url_env)
    if url:
        api_key = os.environ.get(review.argilla_api_key_env)
        if not api_key:
            raise RuntimeError(f"{review.argilla_url_env} is set but {review.argilla_api_key_env} is not")
        target = ReviewTarget(url.rstrip("/"), api_key, review.workspace, dataset, embedded=False)
    else:
        info = argilla_login.up(log=log)
        how = f"started in {info.seconds:.1f} s" if info.started else "already running"
        log(f"embedded Argilla {how} at {info.url}; login in {info.credentials_path}")
        target = ReviewTarget(
            info.url,
            info.api_key,
            review.workspace,
            dataset,
            embedded=True,
            credentials=str(info.credentials_path),
        )
    per_record = config.audit.experts_per_record if task == AUDIT else review.experts_per_record
    return ReviewSession(target, list(config.experts), per_record, log=log, task=task)


# --- agreement and the pause ----------------------------------------------------------------------
def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)


def agreement(reviews: pd.DataFrame, column: str = QUESTION_EXPERT) -> dict[str, Any]:
    """Inter-expert agreement on items answered by two or more experts: observed agreement, Fleiss' kappa
    (statsmodels; over the items with the most common number of raters) and Cohen's kappa per pair of
    experts on the items they share (scikit-learn). One task's answers at a time (`reviews_frame(task=)`):
    a reviewer who answered an item in both tasks would otherwise count once."""
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

    if "task" in reviews and reviews["task"].nunique() > 1:
        raise ValueError(f"agreement needs one task's answers, got {sorted(reviews['task'].unique())}")

    result: dict[str, Any] = {"items_with_overlap": 0, "observed_agreement": None, "fleiss_kappa": None}
    result["cohen_kappa"] = {}
    if reviews.empty:
        return result
    table = reviews.pivot_table(index="interaction_id", columns="reviewer", values=column, aggfunc="first")
    raters = table.notna().sum(axis=1)
    overlap = table[raters >= 2]
    result["items_with_overlap"] = len(overlap)
    if overlap.empty:
        return result
    result["observed_agreement"] = round(
        float(overlap.apply(lambda r: r.dropna().nunique() == 1, axis=1).mean()), 4
    )
    modal = int(raters[raters >= 2].mode().iloc[0])
    same = overlap[overlap.notna().sum(axis=1) == modal]
    labels = sorted(set(same.stack()))
    codes = same.apply(lambda r: [labels.index(v) for v in r.dropna()], axis=1, result_type="expand")
    with _quiet():
        counts, _ = aggregate_raters(codes.to_numpy())
        result["fleiss_kappa"] = _finite(fleiss_kappa(counts)) if len(labels) > 1 else None
    for a, b in itertools.combinations(table.columns, 2):
        shared = table[[a, b]].dropna()
        if len(shared) >= 2:
            with _quiet():
                kappa = cohen_kappa_score(shared[a], shared[b])
            result["cohen_kappa"][f"{a}~{b}"] = _finite(kappa)
    return result


class _quiet:
    def __enter__(self) -> None:

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *exc: Any) -> None:
        self._catch.__exit__(*exc)


def awaiting_review(mode: str, progress: dict[str, int]) -> bool:
    """In `wait` mode the cycle pauses while any pushed record lacks its experts' answers."""
    return mode == "wait" and progress.get("pending", 0) > 0


def pause_for_review(run: Any, session: ReviewSession) -> None:
    """Mark the triage stage `awaiting_review`: the runner stops the cycle after this notebook."""
    run.set_stage("02_triage", status=AWAITING_REVIEW)
    print(
        f"awaiting expert review in Argilla ({session.target.url}, dataset {session.target.dataset!r}); "
        f"when the experts are done: flywheel cycle --resume {run.path}"
    )


# --- bulk import: answers that exist outside Argilla ------------------------------------------------------
ID_COLUMNS = ("interaction_id", "id")
EXPERT_COLUMNS = ("expert", "correct_expert")
DEFAULT_REVIEWER = "imported"
# Argilla's rule for usernames (argilla_server's USER_USERNAME_REGEX): letters, digits, - and _
USERNAME = re.compile(r"^(?![-_])[A-Za-z0-9_-]+$")


@dataclass
class ImportReport:
    rows: int  # rows read from the file
    submitted: int  # answers submitted to Argilla now
    already: int  # the same answer was there already (a re-import)
    pushed: int  # records that were not in the review dataset yet and were pushed first
    rejected: int  # rows not imported; each with its reason in the rejects file
    reviewers: list[str]
    rejects_path: str | None
    reasons: dict[str, int]  # rejected rows by reason (first words of the reason)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_label_rows(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows, unreadable lines) from a CSV, JSONL or Parquet file; each row carries its `row` number
    (the line in a CSV or JSONL file, counting the header; the 1-based row in a Parquet file)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    bad: list[dict[str, Any]] = []
    if suffix in (".jsonl", ".ndjson", ".json"):
        rows = []
        with open(path, encoding="utf-8", errors="replace") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    value = json.loads(line)
                except json.JSONDecodeError as err:
                    bad.append({"row": number, "raw": line.strip()[:200], "reason": f"not JSON ({err.msg})"})
                    continue
                if not isinstance(value, dict):
                    bad.append({"row": number, "raw": line.strip()[:200], "reason": "not a JSON object"})
                    continue
                rows.append({**value, "row": number})
        return rows, bad
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            first = 2  # line 1 is the header
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
            first = 1
        else:
            raise ValueError(f"{path}: unknown label file type {suffix!r} (use .csv, .jsonl or .parquet)")
    except (OSError, ValueError, pd.errors.ParserError) as err:
        if isinstance(err, ValueError) and "unknown label file type" in str(err):
            raise
        raise ValueError(f"{path}: cannot read it as {suffix[1:]}: {err}") from err
    rows = [{**row, "row": first + i} for i, row in enumerate(frame.to_dict("records"))]
    return rows, bad


def _text(row: dict[str, Any], names: Iterable[str]) -> str | None:
    for name in names:
        value = _clean(row.get(name))
        if value is not None and str(value).strip():
            return str(value).strip()
    return None


def validate_label_rows(
    rows: list[dict[str, Any]], experts: list[str], known_ids: set[str], default_reviewer: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(answers to import, rejected rows with a reason). An answer is (interaction_id, reviewer,
    correct_expert, cause, row). Rows with the same interaction and reviewer: identical ones are imported
    once (the others reported as duplicates); conflicting ones are all rejected."""
    labels = expert_labels(experts)
    good: list[dict[str, Any]] = []
    rejected: list[dict[str, Any]] = []
    for row in rows:
        interaction_id = _text(row, ID_COLUMNS)
        expert = _text(row, EXPERT_COLUMNS)
        cause = _text(row, ("cause",))
        reviewer = _text(row, ("reviewer",)) or default_reviewer
        if interaction_id is None:
            reason = "no interaction_id"
        elif expert is None:
            reason = "no expert"
        elif expert not in labels:
            reason = f"unknown expert {expert!r} (one of: {', '.join(labels)})"
        elif cause is None:
            reason = f"no cause (one of: {', '.join(CAUSES)})"
        elif cause not in CAUSES:
            reason = f"unknown cause {cause!r} (one of: {', '.join(CAUSES)})"
        elif not USERNAME.match(reviewer):
            reason = f"reviewer {reviewer!r} is not a valid Argilla username (letters, digits, - and _)"
        elif reviewer.startswith(SIMULATED_PREFIX):
            reason = f"reviewer {reviewer!r}: names starting {SIMULATED_PREFIX!r} are the simulated panel's"
        elif interaction_id not in known_ids:
            reason = f"unknown interaction id {interaction_id!r} (not in the store)"
        else:
            reason = None
        if reason:
            rejected.append({**row, "reason": reason})
            continue
        good.append(
            {
                "interaction_id": interaction_id,
                "reviewer": reviewer,
                "correct_expert": expert,
                "cause": cause,
                "row": row["row"],
                "source": row,
            }
        )
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for answer in good:
        by_key.setdefault((answer["interaction_id"], answer["reviewer"]), []).append(answer)
    answers = []
    for (interaction_id, reviewer), group in by_key.items():
        first = group[0]
        rows_named = ", ".join(str(a["row"]) for a in group)
        if len({(a["correct_expert"], a["cause"]) for a in group}) > 1:
            for answer in group:
                reason = f"conflicting answers for {interaction_id!r} by {reviewer!r} (rows {rows_named})"
                rejected.append({**answer["source"], "reason": reason})
            continue
        answers.append(first)
        for answer in group[1:]:
            rejected.append({**answer["source"], "reason": f"duplicate of row {first['row']}"})
    return answers, rejected


def import_labels(
    session: ReviewSession,
    store: Store,
    path: Path,
    default_reviewer: str = DEFAULT_REVIEWER,
    rejects_path: Path | None = None,
) -> ImportReport:
    """Submit the answers in a label file (interaction id -> expert, cause, optional reviewer) to the
    review dataset, each as its reviewer's own answer (an annotator account per reviewer), so that `pull`
    brings them back like any expert's. Records not in the dataset yet are pushed first. Every bad row is
    written with its reason to `rejects_path` (default: FILE.rejects.jsonl beside the file). Idempotent:
    an answer already there is counted as `already`; one that differs from the reviewer's earlier answer
    in Argilla is rejected, never overwritten."""
    if session.task != TRIAGE:
        raise ValueError(f"label import fills the triage dataset, not the {session.task} one")
    path = Path(path)
    rows, unreadable = read_label_rows(path)
    ids = {i for row in rows if (i := _text(row, ID_COLUMNS))}
    known = set(store.hashes_for_ids(ids)) if ids else set()
    answers, rejected = validate_label_rows(rows, session.experts, known, default_reviewer)
    rejected = unreadable + rejected

    wanted = {a["interaction_id"] for a in answers}
    pushed = 0
    missing = wanted - session.pushed_ids()
    if missing:
        interactions = store.interactions_frame()
        pushed = session.push(interactions[interactions["id"].astype(str).isin(missing)]).pushed
    records = {str(r.id): r for r in session.records_with_responses() if str(r.id) in wanted}

    submitted = already = 0
    reviewers = sorted({a["reviewer"] for a in answers})
    for reviewer in reviewers:
        mine = [a for a in answers if a["reviewer"] == reviewer]
        user_id, client = session.annotator(reviewer)
        for answer in mine:
            record = records[answer["interaction_id"]]
            earlier = _answer_of(record, user_id)
            wanted_values = {QUESTION_EXPERT: answer["correct_expert"], QUESTION_CAUSE: answer["cause"]}
            if earlier is not None:
                if earlier == {**wanted_values, "status": "submitted"}:
                    already += 1
                else:
                    shown = ", ".join(f"{k}={v}" for k, v in earlier.items())
                    reason = f"{reviewer!r} answered otherwise in Argilla ({shown}); change it there"
                    rejected.append({**answer["source"], "reason": reason})
                continue
            session.submit_as(client, record._server_id, user_id, wanted_values)
            submitted += 1

    rejects_path = Path(rejects_path) if rejects_path else path.with_name(path.name + ".rejects.jsonl")
    if rejected:
        rejected.sort(key=lambda r: r["row"])
        with open(rejects_path, "w", encoding="utf-8") as f:
            for row in rejected:
                f.write(json.dumps({k: _clean(v) for k, v in row.items()}, default=str) + "\n")
    else:
        rejects_path.unlink(missing_ok=True)  # a stale list from an earlier import would mislead
    reasons: dict[str, int] = {}
    for row in rejected:
        key = row["reason"].split(" (")[0].split(" '")[0]
        reasons[key] = reasons.get(key, 0) + 1
    return ImportReport(
        rows=len(rows) + len(unreadable),
        submitted=submitted,
        already=already,
        pushed=pushed,
        rejected=len(rejected),
        reviewers=reviewers,
        rejects_path=str(rejects_path) if rejected else None,
        reasons=reasons,
    )


def _answer_of(record: Any, user_id: Any) -> dict[str, Any] | None:
    """A user's answer to a record as {question: value, ..., "status": ...}; None if it has none."""
    values: dict[str, Any] = {}
    for response in record.responses:
        if str(response.user_id) == str(user_id):
            values[response.question_name] = response.value
            values["status"] = str(getattr(response.status, "value", response.status))
    return values or None


def review_cli() -> Any:  # built on demand so that importing this module does not need typer
    import typer

    app = typer.Typer(help="Expert review in Argilla: bring in labels you have.", no_args_is_help=True)
    opt = typer.Option
    # Options as defaults (B008): this module's annotations are strings, evaluated in its globals.

    @app.command("import")
    def import_command(
        file: Path = typer.Argument(..., help="CSV/JSONL/Parquet: interaction_id,expert,cause,reviewer"),  # noqa: B008
        config: Path | None = opt(None, "--config", "-c", help="cycle config (default: demo)"),  # noqa: B008
        store: str | None = opt(None, help="SQLAlchemy URL (default: the config's store)"),
        runs_dir: Path = opt(Path("runs"), help="where the config's default store lives"),  # noqa: B008
        reviewer: str = opt(DEFAULT_REVIEWER, help="Argilla user for rows without a reviewer"),
        rejects: Path | None = opt(None, help="where bad rows go (default: FILE.rejects.jsonl)"),  # noqa: B008
        pull: bool = opt(True, help="then pull the review dataset's answers into the store"),
    ) -> None:
        """Submit labels as the reviewers' own answers in the review dataset, then pull them into the store;
        prints one JSON line of counts. Bad rows go to the rejects file with a reason; safe to repeat."""
        cfg = load_config(config or REPO_ROOT / "configs" / "demo.yaml")
        the_store = Store(store or cfg.store_url(runs_dir))
        echo = lambda message: typer.echo(message, err=True)  # noqa: E731
        try:
            with argilla_login.stopped_after_if_started(echo):  # a server this command started stops after
                session = open_review(cfg, the_store, log=echo)
                report = import_labels(session, the_store, file, reviewer, rejects)
                simulated = [n for n in session.usernames().values() if n.startswith(SIMULATED_PREFIX)]
                pulled = session.pull(the_store, simulated) if pull else None
        except (FileNotFoundError, ValueError, argilla_login.ArgillaServerError) as err:
            typer.echo(str(err), err=True)
            raise typer.Exit(1) from None
        out = report.as_dict()
        if pulled is not None:
            out["pulled"] = {"answers": pulled.answers, "added": pulled.added}
        if report.rejected:
            echo(f"{report.rejected} rows not imported; reasons in {report.rejects_path}")
        typer.echo(json.dumps(out))

    return app
