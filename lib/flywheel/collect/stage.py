"""The collect stage in readable steps, as notebook 01 runs them:

collect = Collect(open_stage(run_dir, config_path))
collect.ingest()          # the log source's files into the store (quarantine, PII masking)
collect.quarantine()      # what could not be ingested, and why
collect.masked_samples()  # questions that had PII, masked
collect.signals()         # implicit signals (retry, rephrase, escalation)
collect.weekly(); collect.drift()   # traffic, satisfaction and drift per week, with plots
collect.status()          # what `flywheel status` says; the cycle is marked as collected
collect.record()          # results/01_collect.json (CollectResult)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from flywheel.collect.drift import cycle_status, plot_drift, store_drift
from flywheel.collect.ingest import IngestReport, ingest_with_config
from flywheel.collect.signals import compute_signals, signal_summary
from flywheel.collect.summary import masked_samples, plot_weekly, quarantine_report, weekly_summary
from flywheel.core.context import StageContext
from flywheel.core.log_sources import input_hashes, log_source
from flywheel.core.results import CollectResult, CycleStatus, write_result

PII_PLACEHOLDER = r"\[[A-Z_]+\]"
DRIFT_COLUMNS = [
    "start",
    "interactions",
    "satisfaction_rate",
    "routing_error_rate",
    "p_satisfaction",
    "p_mix",
    "moved",
]


class Collect:
    def __init__(self, stage: StageContext):
        self.run, self.config, self.store = stage.run, stage.config, stage.store
        self.source = log_source(self.config.source.kind)
        self.files: list[Path] = []
        self.report: IngestReport | None = None

    def ingest(self) -> dict[str, int]:
        """The log source's files into the store; `read = accepted + duplicates + quarantined` holds."""
        self.files = self.source.log_files(self.config, self.run)
        self.report = ingest_with_config(self.store, self.files, self.config)
        assert self.report.reconciles(), self.report
        self.quarantined = self.store.quarantine_frame()
        self.interactions = self.store.interactions_frame(
            ["id", "timestamp", "routed_expert", "satisfied", "query_masked"]
        )
        return self.report.as_dict()

    def quarantine(self) -> pd.DataFrame:
        """Quarantined records per file and kind of reason."""
        return quarantine_report(self.quarantined)

    def masked_samples(self, n: int = 8) -> pd.DataFrame:
        """A sample of questions that had PII, as masked (never the raw text)."""
        masked = self.interactions["query_masked"].str.contains(PII_PLACEHOLDER).sum()
        print(f"{masked} of {len(self.interactions)} questions had PII masked; a sample:")
        return masked_samples(self.interactions, n=n, seed=self.config.seed)

    def signals(self) -> pd.DataFrame:
        """The implicit signals of the whole store, derived again (they replace the stored ones)."""
        self.implicit_signals = compute_signals(
            self.store, self.config.collect.signals, cache_dir=self.run.runs_root / "embedding-cache"
        )
        return self.implicit_signals

    def signal_summary(self) -> pd.DataFrame:
        """Per kind: how many interactions carry it, and the satisfied share among those rated."""
        return signal_summary(self.store)

    def weekly(self) -> pd.DataFrame:
        """Interactions, satisfied share and traffic mix per week; plotted as `plots/weekly_traffic.png`."""
        self.weekly_table = weekly_summary(self.interactions)
        plot_weekly(self.weekly_table, self.run.plot("weekly_traffic.png"))
        return self.weekly_table

    def drift(self) -> pd.DataFrame:
        """Each week against the earlier ones; plotted as `plots/drift.png`."""
        self.drift_table = store_drift(self.store, self.config.collect.drift)
        plot_drift(self.drift_table, self.run.plot("drift.png"))
        return self.drift_table[DRIFT_COLUMNS]

    def status(self) -> dict[str, Any]:
        """What `flywheel status` says before this cycle; then the cycle is marked as collected (the next
        status counts feedback from here) and the input files' hashes go into the manifest."""
        self.status_before = cycle_status(self.store, self.config.collect)
        self.store.mark_cycle(self.run.cycle_id)
        self.run.update_manifest(inputs=input_hashes(self.files))
        return self.status_before

    def result(self) -> CollectResult:
        drift = self.drift_table
        return CollectResult(
            ingest=self.report.as_dict(),
            interactions_in_store=len(self.interactions),
            quarantined_in_store=len(self.quarantined),
            satisfied_share=round(float(self.interactions["satisfied"].mean()), 4),
            weeks=len(self.weekly_table),
            implicit_signals=self.implicit_signals["kind"].value_counts().to_dict(),
            drift_flagged_windows=[w for w, flagged in drift["flagged"].items() if flagged],
            status_before_cycle=CycleStatus.model_validate(self.status_before),
        )

    def record(self) -> CollectResult:
        """`results/01_collect.json`."""
        result = self.result()
        write_result(self.run, result)
        return result
