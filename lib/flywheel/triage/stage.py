"""The triage stage in readable steps, as notebook 02 runs them:

    triage = Triage(open_stage(run_dir, config_path))
    triage.sample_audit()   # a random, blind sample of new interactions for the audit (the unbiased test)
    triage.judge()          # the judges' verdicts become suggestions for the experts
    triage.select()         # within `review.budget`: which records the experts review, by which policy
    triage.push()           # the chosen records (no budget: every unanswered unsatisfactory one) and the
                            # audit sample to Argilla
    triage.answer_simulated()  # review.mode simulate: the log source's simulated panels answer
    triage.pull()           # the experts' answers into the store; pauses the stage in `wait` mode
    triage.plot_causes(); triage.score_judges(); triage.build_ground_truth()
    triage.record()         # results/02_triage.json (TriageResult)

Two Argilla datasets: triage (unsatisfactory interactions, with the judge's suggestion: why did it go wrong?)
and the audit (a sample blind to the feedback and to the router's decision: which expert should answer?).
Audit items are not triaged: they are labelled by the audit's experts and held out from training forever.

With `review.budget` set, at most that many records per cycle (audit and triage together) go to the experts,
chosen by the policies in `review.policies` (flywheel.triage.budget); each chosen record is written to the
store's `review_selections` with its policy, and the result says what each policy bought. Without a budget
the audit sample and the whole queue go, as before (recorded as policies `audit` and `unsatisfied`).

While the review is awaited (`review.mode: wait` with answers pending in either dataset), the steps after
`pull` do nothing and return None, and the result records only the review's progress; the cycle runner
stops after the stage.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from flywheel.core.audit import sample_audit
from flywheel.core.cascade import CASCADE, STUDENT_FOLDER
from flywheel.core.context import StageContext
from flywheel.core.files import atomic_write_json
from flywheel.core.log_sources import SimulatedPanel, log_source
from flywheel.core.registry import Registry
from flywheel.core.results import PolicyYield, ReviewBudget, ReviewSummary, TriageResult, write_result
from flywheel.core.routers import load_router, read_candidate_card
from flywheel.triage import budget as budgeting
from flywheel.triage.ground_truth import GroundTruth, build_ground_truth
from flywheel.triage.judge_scoring import score_cycle, scores_frame
from flywheel.triage.judges import JudgeRun, judge_suggestions, run_judges, save_verdicts
from flywheel.triage.plots import plot_causes
from flywheel.triage.review import (
    PullReport,
    PushReport,
    ReviewSession,
    agreement,
    awaiting_review,
    open_review,
    pause_for_review,
    review_queue,
)


class Triage:
    def __init__(self, stage: StageContext, log: Callable[[str], None] = print):
        self.run, self.config, self.store = stage.run, stage.config, stage.store
        self.experts = stage.experts
        self.log = log
        self.source = log_source(self.config.source.kind)
        self.interactions = self.store.interactions_frame()
        self.answers = self.store.reviews_frame()  # both tasks
        self.audit = self.store.audit_frame()
        audited = set(self.audit["interaction_id"])
        self.queue = review_queue(self.interactions, self.answers, exclude_ids=audited)
        self.sampled: list[dict] = []
        self.review_items: pd.DataFrame | None = None  # the triage records chosen for this cycle's review
        self.budget: ReviewBudget | None = None
        self.audit_session: ReviewSession | None = None
        self.audit_pushed: PushReport | None = None
        self.audit_panel: SimulatedPanel | None = None
        self.audit_progress: dict[str, int] = {}
        self.judged: JudgeRun | None = None
        self.verdicts: pd.DataFrame | None = None  # one suggestion per interaction for the review dataset
        self.session: ReviewSession | None = None
        self.pushed: PushReport | None = None
        self.panel: SimulatedPanel | None = None
        self.progress: dict[str, int] = {}
        self.agreement: dict = {}
        self.waiting = False
        self.causes: pd.Series | None = None
        self.judge_scores: list[dict] | None = None
        self.ground_truth: GroundTruth | None = None

    @property
    def simulated(self) -> bool:
        return self.config.review.mode == "simulate"

    @property
    def reviews(self) -> pd.DataFrame:
        """The triage experts' answers (the audit's are in `answers` too)."""
        if "task" not in self.answers.columns:
            return self.answers
        return self.answers[self.answers["task"].eq("triage")]

    def sample_audit(self) -> pd.DataFrame:
        """`audit.size` interactions not audited before, stratified by week and blind to the feedback and to
        the router's decision, each assigned to test or validation for good; counts per week and split."""
        audit = self.config.audit
        if self.audit["cycle_id"].eq(self.run.cycle_id).any():  # a resumed stage: sampled already
            self.sampled = self.audit[self.audit["cycle_id"].eq(self.run.cycle_id)].to_dict("records")
            return self._sample_table()
        review = self.config.review
        self.sampled = sample_audit(
            self.interactions,
            set(self.audit["interaction_id"]),
            size=budgeting.audit_sample_size(audit.size, review.budget, review.policies),
            validation_share=audit.validation_share,
            seed=self.config.seed,
            cycle_id=self.run.cycle_id,
            newest_weeks=audit.newest_weeks,
        )
        self.store.add_audit_items(self.sampled)
        chosen = {budgeting.AUDIT: [(row["interaction_id"], None) for row in self.sampled]}
        self.store.add_review_selections(self._selection_rows(chosen))
        self.audit = self.store.audit_frame()
        self.queue = self.queue[~self.queue["id"].isin(set(self.audit["interaction_id"]))]
        return self._sample_table()

    def _sample_table(self) -> pd.DataFrame:
        if not self.sampled:
            return pd.DataFrame(columns=["test", "validation"])
        sampled = pd.DataFrame(self.sampled).merge(
            self.interactions[["id", "timestamp"]], left_on="interaction_id", right_on="id"
        )
        week = pd.to_datetime(sampled["timestamp"], utc=True).dt.strftime("%G-W%V")
        return pd.crosstab(week.rename("week"), sampled["split"])

    def _audit_queue(self) -> pd.DataFrame:
        return self.interactions[self.interactions["id"].isin(set(self.audit["interaction_id"]))]

    def _selection_rows(self, chosen: dict[str, list[tuple[str, float | None]]]) -> list[dict]:
        allocation = budgeting.Allocation(self.config.review.budget or 0, {}, chosen)
        return allocation.rows(self.run.cycle_id)

    def judge(self) -> pd.DataFrame:
        """The judges named in `judges.run` on the unanswered unsatisfactory interactions; their verdicts
        are saved as an artifact. Returns each judge's run statistics."""
        self.judged = run_judges(
            self.config, self.interactions, self.queue, cache_dir=self.run.runs_root / "embedding-cache"
        )
        save_verdicts(self.judged.verdicts, self.run.artifact("triage", "judge_verdicts.parquet"))
        self.verdicts = judge_suggestions(self.judged.verdicts)
        return pd.DataFrame(self.judged.stats).T

    def select(self) -> pd.DataFrame:
        """The triage records the experts review this cycle, each written to the store's `review_selections`
        with its policy and priority. Without `review.budget`: the whole queue (policy `unsatisfied`). With
        one: the audit sample drawn by `sample_audit` counts first, then the policies fill the rest
        (flywheel.triage.budget; a resumed stage keeps its first choice). Returns records per policy."""
        review, cycle_id = self.config.review, self.run.cycle_id
        selections = self.store.review_selections_frame()
        this_cycle = selections[selections["cycle_id"].eq(cycle_id)]
        chosen_triage = this_cycle[this_cycle["task"].eq("triage")]
        plan = (self.run.manifest().get("review_budget") or {}) if not chosen_triage.empty else {}
        if review.budget is None:
            self.review_items = self.queue
            chosen = {budgeting.UNSATISFIED: [(str(i), None) for i in self.queue["id"]]}
            self.store.add_review_selections(self._selection_rows(chosen))
            plan = {}
        elif not chosen_triage.empty and plan.get("cycle_id") == cycle_id:  # resumed: chosen already
            order = chosen_triage.assign(rank=chosen_triage["policy"].map(budgeting.REVIEW_POLICIES.index))
            order = order.sort_values(["rank", "score", "interaction_id"], ascending=[True, False, True])
            by_id = self.interactions.set_index("id")
            self.review_items = by_id.loc[order["interaction_id"]].reset_index()
        else:
            this_audit = this_cycle[this_cycle["task"].eq("audit")]["interaction_id"].tolist()
            ranked: dict[str, list[tuple[str, float | None]]] = {
                budgeting.AUDIT: [(i, None) for i in this_audit],
                budgeting.JUDGE_FLAG: budgeting.rank_judge_flags(self.queue, self.verdicts),
                budgeting.UNSATISFIED: budgeting.rank_unsatisfied(self.queue),
            }
            earlier = set(selections[selections["cycle_id"].ne(cycle_id)]["interaction_id"])
            skipped = {}
            if budgeting.UNCERTAINTY in review.policies:
                ranked[budgeting.UNCERTAINTY], why = self._rank_uncertainty(earlier | set(this_audit))
                if why:
                    skipped[budgeting.UNCERTAINTY] = why
            allocation = budgeting.allocate(review.budget, review.policies, ranked, skipped, exclude=earlier)
            self.store.add_review_selections(allocation.rows(cycle_id))
            triage_ids = allocation.ids(task="triage")
            by_id = self.interactions.set_index("id")
            self.review_items = by_id.loc[triage_ids].reset_index() if triage_ids else self.queue.iloc[0:0]
            plan = allocation.summary()
        selections = self.store.review_selections_frame()
        counts = selections[selections["cycle_id"].eq(cycle_id)]["policy"].value_counts()
        listed = review.policies if review.budget is not None else (budgeting.AUDIT, budgeting.UNSATISFIED)
        self.budget = ReviewBudget(
            budget=review.budget,
            policies=dict(review.policies) if review.budget is not None else {},
            quotas=plan.get("quotas", {}),
            spent={p: int(counts.get(p, 0)) for p in budgeting.REVIEW_POLICIES if p in listed or p in counts},
            reassigned=plan.get("reassigned", {}),
            skipped=plan.get("skipped", {}),
        )
        self.run.update_manifest(review_budget={"cycle_id": cycle_id, **self.budget.model_dump()})
        return pd.Series(self.budget.spent, name="records", dtype=int).rename_axis("policy").to_frame()

    def _rank_uncertainty(self, excluded: set) -> tuple[list[tuple[str, float]], str | None]:
        """Candidates ranked by the promoted router's doubt about the production decision, or why not."""
        entry = Registry(self.store).current()
        if entry is None:
            return [], "no promoted router: the production model serves"
        folder = Path(entry.artifact_path)
        try:
            if read_candidate_card(folder)["kind"] == CASCADE:
                folder = folder / STUDENT_FOLDER  # its student's probabilities decide what it answers itself
            router = load_router(folder)
        except FileNotFoundError as err:
            return [], f"promoted router {entry.model_name} cannot be loaded: {err}"
        if not hasattr(router, "predict_proba") or getattr(router, "decision", "score") != "score":
            return [], f"promoted router {entry.model_name} gives no probabilities"
        candidates = budgeting.uncertainty_candidates(
            self.interactions, self.answers, set(self.audit["interaction_id"]), excluded
        )
        if candidates.empty:
            return [], None
        proba = router.predict_proba(candidates["query_masked"].fillna("").astype(str).tolist())
        reference = budgeting.reference_decisions(candidates, self.store.shadow_frame("production"))
        scores = budgeting.uncertainty_scores(proba, router.labels, reference)
        return budgeting.rank_uncertainty(candidates["id"].tolist(), scores), None

    def push(self) -> dict[str, PushReport]:
        """The chosen triage records (`select`; with the judges' suggestions) and the audit sample, each to
        its dataset."""
        if self.review_items is None:
            self.select()
        self.session = open_review(self.config, self.store, log=self.log)
        self.pushed = self.session.push(self.review_items, self.verdicts)
        self.audit_session = open_review(self.config, self.store, log=self.log, task="audit")
        self.audit_pushed = self.audit_session.push(self._audit_queue())
        return {"triage": self.pushed, "audit": self.audit_pushed}

    def answer_simulated(self) -> dict[str, int] | None:
        """In `review.mode: simulate`, the log source's simulated experts answer through the Argilla API as
        annotators; counts of what they submitted. None in `wait` mode (real experts answer)."""
        if not self.simulated:
            return None
        self.panel = self.source.simulated_panel(self.config, self.run)
        self.audit_panel = self.source.simulated_panel(self.config, self.run, task="audit")
        if self.panel is None or self.audit_panel is None:
            raise ValueError(
                f"review.mode=simulate needs a log source with a simulated expert panel (the demo); "
                f"source.kind={self.config.source.kind!r} has none: use review.mode=wait"
            )
        triage = self.panel.answer_in_argilla(self.session)
        audit = self.audit_panel.answer_in_argilla(self.audit_session)
        return {f"triage_{k}": v for k, v in triage.items()} | {f"audit_{k}": v for k, v in audit.items()}

    def pull(self) -> PullReport:
        """The experts' answers into the store, the review recorded in the manifest (push and pull counts
        add up over the stage's attempts); in `wait` mode with answers pending, the stage pauses."""
        pulled = self.session.pull(self.store, self.panel.reviewers if self.panel else ())
        audit_reviewers = self.audit_panel.reviewers if self.audit_panel else ()
        audit_pulled = self.audit_session.pull(self.store, audit_reviewers)
        self.progress = self.session.progress()
        self.audit_progress = self.audit_session.progress()
        self.answers = self.store.reviews_frame()
        self.agreement = agreement(self.reviews)
        audit_answers = self.answers[self.answers["task"].eq("audit")]
        self.run.update_manifest(
            audit={
                "size_per_cycle": self.config.audit.size,
                "experts_per_record": self.config.audit.experts_per_record,
                "validation_share": self.config.audit.validation_share,
                "sampled_this_cycle": len(self.sampled),
                "items": self.audit["split"].value_counts().to_dict(),
                "argilla": self.audit_session.target.describe(),
                "push": {
                    "records": self.audit_pushed.pushed,
                    "records_per_s": self.audit_pushed.records_per_s,
                },
                "pull": {"answers_added": audit_pulled.added},
                "progress": self.audit_progress,
                "agreement": agreement(audit_answers),
            }
        )
        review = self.config.review
        self.run.record_review(
            {
                "mode": review.mode,
                "simulated": self.simulated,
                "error_rate": review.simulated_error_rate if self.simulated else None,
                "experts_per_record": review.experts_per_record,
                "argilla": self.session.target.describe(),
                "push": {"records": self.pushed.pushed, "records_per_s": self.pushed.records_per_s},
                "pull": {"answers_added": pulled.added, "records_per_s": pulled.records_per_s},
                "progress": self.progress,
                "agreement": self.agreement,
            }
        )
        self._record_yield()
        self.waiting = any(awaiting_review(review.mode, p) for p in (self.progress, self.audit_progress))
        for session, progress in ((self.session, self.progress), (self.audit_session, self.audit_progress)):
            if awaiting_review(review.mode, progress):
                pause_for_review(self.run, session)
        return pulled

    def _record_yield(self) -> None:
        """What each policy bought this cycle (records answered, routing errors found), in the manifest."""
        if self.budget is None:
            self.select()  # a stage driven without `select` (push was called on a fresh object)
        selections = self.store.review_selections_frame()
        mine = selections[selections["cycle_id"].eq(self.run.cycle_id)]
        bought = budgeting.policy_yield(mine, self.answers, self.interactions)
        self.budget.bought = {policy: PolicyYield(**row) for policy, row in bought.items()}
        self.run.update_manifest(review_budget={"cycle_id": self.run.cycle_id, **self.budget.model_dump()})

    def plot_causes(self) -> Figure | None:
        """The experts' answers on the cause, as `plots/review_causes.png`."""
        if self.waiting:
            return None
        self.causes = self.reviews.drop_duplicates("interaction_id")["cause"].value_counts()
        return plot_causes(self.causes, self.run.plot("review_causes.png"))

    def score_judges(self) -> pd.DataFrame | None:
        """Each judge against the experts and, where the source knows it (the demo), the hidden truth;
        saved as `artifacts/triage/judge_scores.json`."""
        if self.waiting:
            return None
        truth_path = self.source.hidden_truth(self.run)
        self.judge_scores = score_cycle(self.judged.verdicts, self.reviews, self.interactions, truth_path)
        scores_path = self.run.artifact("triage", "judge_scores.json")
        atomic_write_json(scores_path, {"stats": self.judged.stats, "scores": self.judge_scores})
        return scores_frame(self.judge_scores)

    def build_ground_truth(self) -> pd.DataFrame | None:
        """The versioned ground truth under `artifacts/ground_truth/<version>/`; prints its version, counts
        and leakage check, returns the counts per expert and split."""
        if self.waiting:
            return None
        split = self.config.split
        self.ground_truth = build_ground_truth(
            self.interactions,
            self.answers,
            self.experts,
            self.run.artifact("ground_truth"),
            audit=self.audit,
            seed=self.config.seed,
            teacher_labels=split.teacher_labels,
            teacher_weight=split.teacher_weight,
            near_duplicate_threshold=split.near_duplicate_threshold,
            shadow=self.store.shadow_frame("production"),  # teacher labels where a small router answered
            production_model=split.production_model,
        )
        card = self.ground_truth.card
        print(f"version {self.ground_truth.version}: {card['counts']}")
        print("label sources:", card["label_sources"])
        print("audit:", card["audit"])
        print("leakage check:", card["leakage_check"])
        return pd.DataFrame(card["per_expert"]).T

    def result(self) -> TriageResult:
        review = ReviewSummary(
            mode=self.config.review.mode,
            simulated=self.simulated,
            progress=self.progress,
            agreement=self.agreement,
            audit_progress=self.audit_progress,
            audit_agreement=(self.run.manifest().get("audit") or {}).get("agreement", {}),
        )
        finished = not self.waiting
        return TriageResult(
            reviewed=int(self.answers["interaction_id"].nunique()),
            review=review,
            awaiting_review=self.waiting,
            causes={k: int(v) for k, v in self.causes.items()} if finished else None,
            judges=self.judge_scores if finished else None,
            ground_truth=self.ground_truth.ref() if finished else None,
            review_budget=self.budget,
        )

    def record(self) -> TriageResult:
        """`results/02_triage.json`, what finetune and eval read."""
        result = self.result()
        write_result(self.run, result)
        return result
