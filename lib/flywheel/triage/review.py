"""Expert review in Argilla (SDK v2): the review dataset, push, pull, agreement, and the pause for experts.

One dataset per store (its name is derived from the config name and the store URL unless
`review.dataset` names it), in the config's workspace. Each record is one unsatisfactory interaction
(record id = interaction id) with the PII-masked question, the routed expert, the answer excerpt and the
user's comment; the experts answer two questions: the correct expert (the catalog + "ambiguous" +
"out_of_scope") and the cause. A judge's verdict, when given, becomes suggestions with scores.
`review.experts_per_record` experts answer each record (Argilla's task distribution, min_submitted), so
with more than one their agreement is measured (Cohen's and Fleiss' kappa).

Push sends only records that are not on the server yet; pull reads submitted answers into the store's
`reviews` table. Both retry with exponential backoff and are idempotent, so an outage in the middle
loses and doubles nothing: run them again.

The embedded server (`argilla_server.up()`) is used unless the environment variables named by
`review.argilla_url_env` / `review.argilla_api_key_env` point at a team's own Argilla.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd
from tenacity import Retrying, retry_if_exception, stop_after_delay, wait_exponential

from flywheel.store import Store, utcnow
from flywheel.triage.panel import AMBIGUOUS, OUT_OF_SCOPE

QUESTION_EXPERT = "correct_expert"
QUESTION_CAUSE = "cause"
CAUSES = ("routing", "retrieval", "generation", OUT_OF_SCOPE, "other")
AWAITING_REVIEW = "awaiting_review"
EXCERPT_CHARS = 1500


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
        return getattr(error, "status_code", 500) >= 500
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


def default_dataset_name(config_name: str, store_url: str) -> str:
    """One review dataset per store: the same interaction ids in two stores never mix."""
    return f"{config_name}-review-{hashlib.sha256(store_url.encode()).hexdigest()[:8]}"


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
    """The review dataset on an Argilla server, as its owner (or a team member with rights to it)."""

    def __init__(
        self,
        target: ReviewTarget,
        experts: list[str],
        experts_per_record: int = 1,
        retry_seconds: float = 120.0,
        log: Callable[[str], None] = print,
    ):
        self.target = target
        self.experts = list(experts)
        self.experts_per_record = experts_per_record
        self.retry_seconds = retry_seconds
        self.log = log
        self.client = self._retry(self._connect)
        self.dataset = self._retry(self._open_dataset)

    def __repr__(self) -> str:
        return f"ReviewSession({self.target.url}, dataset={self.target.dataset!r})"

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
                settings=review_settings(self.experts, self.experts_per_record),
                client=self.client,
            ).create()
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
        """Send the interactions in `queue` that are not on the server yet, in batches; resumable."""
        started = time.perf_counter()
        already = self.pushed_ids()
        todo = queue[~queue["id"].astype(str).isin(already)]
        records = to_records(todo, self.experts, verdicts)
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

    # --- pull -----------------------------------------------------------------------------------------
    def usernames(self) -> dict[str, str]:
        return self._retry(lambda: {str(u.id): u.username for u in self.client.users})

    def answers(self, simulated_reviewers: Iterable[str] = ()) -> tuple[pd.DataFrame, int]:
        """Submitted answers, one row per (interaction, reviewer); and how many records were read."""

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
                            "cause": values.get(QUESTION_CAUSE) or "other",
                            "origin": "simulated" if reviewer in simulated else "argilla",
                            "reviewed_at": utcnow(),
                        }
                    )
            return rows, n_records

        rows, n_records = self._retry(read)
        columns = ["interaction_id", "reviewer", "correct_expert", "cause", "origin", "reviewed_at"]
        return pd.DataFrame(rows, columns=columns), n_records

    def pull(self, store: Store, simulated_reviewers: Iterable[str] = ()) -> PullReport:
        """Submitted answers into the store's `reviews` table (new ones only); safe to repeat."""
        started = time.perf_counter()
        frame, n_records = self.answers(simulated_reviewers)
        known = set(store.hashes_for_ids(frame["interaction_id"])) if len(frame) else set()
        frame = frame[frame["interaction_id"].isin(known)]  # records of another store are not ours
        added = store.add_reviews(frame.to_dict("records"))
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


def open_review(config: Any, store: Store, log: Callable[[str], None] = print) -> ReviewSession:
    """The review session for a cycle: a team's Argilla when its URL and key are in the environment,
    otherwise the embedded server (started here if it is not running)."""
    review = config.review
    dataset = review.dataset or default_dataset_name(config.name, store.url)
    url = os.environ.get(review.argilla_url_env)
    if url:
        api_key = os.environ.get(review.argilla_api_key_env)
        if not api_key:
            raise RuntimeError(f"{review.argilla_url_env} is set but {review.argilla_api_key_env} is not")
        target = ReviewTarget(url.rstrip("/"), api_key, review.workspace, dataset, embedded=False)
    else:
        from flywheel.triage import argilla_server

        info = argilla_server.up(log=log)
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
    return ReviewSession(target, list(config.experts), review.experts_per_record, log=log)


# --- agreement and the pause ----------------------------------------------------------------------
def _finite(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)


def agreement(reviews: pd.DataFrame, column: str = QUESTION_EXPERT) -> dict[str, Any]:
    """Inter-expert agreement on items answered by two or more experts: observed agreement, Fleiss' kappa
    (statsmodels; over the items with the most common number of raters) and Cohen's kappa per pair of
    experts on the items they share (scikit-learn)."""
    from sklearn.metrics import cohen_kappa_score
    from statsmodels.stats.inter_rater import aggregate_raters, fleiss_kappa

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
        import warnings

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
