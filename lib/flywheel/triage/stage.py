"""The triage stage in readable steps, as notebook 02 runs them:

    triage = Triage(open_stage(run_dir, config_path))
    triage.judge()          # the judges' verdicts become suggestions for the experts
    triage.push()           # unanswered unsatisfactory interactions to Argilla
    triage.answer_simulated()  # review.mode simulate: the log source's simulated panel answers
    triage.pull()           # the experts' answers into the store; pauses the stage in `wait` mode
    triage.plot_causes(); triage.score_judges(); triage.build_ground_truth()
    triage.record()         # results/02_triage.json (TriageResult)

While the review is awaited (`review.mode: wait` with answers pending), the steps after `pull` do nothing
and return None, and the result records only the review's progress; the cycle runner stops after the stage.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd
from matplotlib.figure import Figure

from flywheel.core.context import StageContext
from flywheel.core.files import atomic_write_json
from flywheel.core.log_sources import SimulatedPanel, log_source
from flywheel.core.results import ReviewSummary, TriageResult, write_result
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
        self.reviews = self.store.reviews_frame()
        self.queue = review_queue(self.interactions, self.reviews)
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

    def judge(self) -> pd.DataFrame:
        """The judges named in `judges.run` on the unanswered unsatisfactory interactions; their verdicts
        are saved as an artifact. Returns each judge's run statistics."""
        self.judged = run_judges(
            self.config, self.interactions, self.queue, cache_dir=self.run.runs_root / "embedding-cache"
        )
        save_verdicts(self.judged.verdicts, self.run.artifact("triage", "judge_verdicts.parquet"))
        self.verdicts = judge_suggestions(self.judged.verdicts)
        return pd.DataFrame(self.judged.stats).T

    def push(self) -> PushReport:
        self.session = open_review(self.config, self.store, log=self.log)
        self.pushed = self.session.push(self.queue, self.verdicts)
        return self.pushed

    def answer_simulated(self) -> dict[str, int] | None:
        """In `review.mode: simulate`, the log source's simulated experts answer through the Argilla API as
        annotators; counts of what they submitted. None in `wait` mode (real experts answer)."""
        if not self.simulated:
            return None
        self.panel = self.source.simulated_panel(self.config, self.run)
        if self.panel is None:
            raise ValueError(
                f"review.mode=simulate needs a log source with a simulated expert panel (the demo); "
                f"source.kind={self.config.source.kind!r} has none: use review.mode=wait"
            )
        return self.panel.answer_in_argilla(self.session)

    def pull(self) -> PullReport:
        """The experts' answers into the store, the review recorded in the manifest (push and pull counts
        add up over the stage's attempts); in `wait` mode with answers pending, the stage pauses."""
        pulled = self.session.pull(self.store, self.panel.reviewers if self.panel else ())
        self.progress = self.session.progress()
        self.reviews = self.store.reviews_frame()
        self.agreement = agreement(self.reviews)
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
        self.waiting = awaiting_review(review.mode, self.progress)
        if self.waiting:
            pause_for_review(self.run, self.session)
        return pulled

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
        self.ground_truth = build_ground_truth(
            self.interactions,
            self.reviews,
            self.experts,
            self.run.artifact("ground_truth"),
            test_size=self.config.split.test_size,
            seed=self.config.seed,
            near_duplicate_threshold=self.config.split.near_duplicate_threshold,
        )
        card = self.ground_truth.card
        print(f"version {self.ground_truth.version}: {card['counts']}")
        print("leakage check:", card["leakage_check"])
        return pd.DataFrame(card["per_expert"]).T

    def result(self) -> TriageResult:
        review = ReviewSummary(
            mode=self.config.review.mode,
            simulated=self.simulated,
            progress=self.progress,
            agreement=self.agreement,
        )
        finished = not self.waiting
        return TriageResult(
            reviewed=int(self.reviews["interaction_id"].nunique()),
            review=review,
            awaiting_review=self.waiting,
            causes={k: int(v) for k, v in self.causes.items()} if finished else None,
            judges=self.judge_scores if finished else None,
            ground_truth=self.ground_truth.ref() if finished else None,
        )

    def record(self) -> TriageResult:
        """`results/02_triage.json`, what finetune and eval read."""
        result = self.result()
        write_result(self.run, result)
        return result
