"""The blind audit sample: each cycle, a random sample of the interactions not audited before goes to the
experts, and the unbiased test and validation splits are drawn from their answers.

The sample is stratified by ISO week (each week's share of the sample is its share of the interactions
not audited yet) and blind: it reads only each interaction's id and timestamp, never its feedback or the
production router's decision. An item keeps the split it was given for good (the store keeps the first),
so a test item stays held out across cycles.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

SAMPLE_COLUMNS = ("id", "timestamp")  # all the sample may see of an interaction


def week_quotas(counts: pd.Series, size: int) -> pd.Series:
    """`size` spread over the weeks in proportion to `counts` (largest remainders; ties to the earlier
    week), so each week's quota is within 1 of its exact share."""
    total = int(counts.sum())
    if size >= total:
        return counts.copy()
    exact = counts * size / total
    quotas = np.floor(exact).astype(int)
    left = size - int(quotas.sum())
    remainders = (exact - quotas).to_numpy()
    order = np.lexsort((np.arange(len(remainders)), -remainders))  # largest first, then week order
    quotas.iloc[order[:left]] += 1
    return quotas


def sample_audit(
    interactions: pd.DataFrame,
    audited_ids: set,
    size: int,
    validation_share: float,
    seed: int,
    cycle_id: str,
    newest_weeks: int | None = None,
) -> list[dict[str, Any]]:
    """Up to `size` interactions not in `audited_ids`, stratified by ISO week of `timestamp` and drawn with
    an RNG seeded by the config's seed and the ids available (so the same store gives the same sample in
    every run, and a later cycle, with new interactions, another one); exactly round(n * validation_share)
    of the n drawn get split "validation", the others "test". With `newest_weeks`, only the interactions of
    the newest that many ISO weeks are drawn from (the traffic a gate judges; the splits then weight recent
    weeks more than their share of all traffic). Returns store rows (interaction_id, split,
    cycle_id, sampled_at); the same inputs give the same sample, whatever the frame's row order or other
    columns."""
    frame = interactions.loc[:, list(SAMPLE_COLUMNS)].copy()  # blind: nothing else is read
    frame["id"] = frame["id"].astype(str)
    frame = frame[~frame["id"].isin({str(i) for i in audited_ids})].drop_duplicates("id")
    if size <= 0 or frame.empty:
        return []
    frame = frame.sort_values("id", kind="stable")
    iso = pd.to_datetime(frame["timestamp"], utc=True).dt.isocalendar()
    frame["week"] = iso["year"].astype(int) * 100 + iso["week"].astype(int)
    if newest_weeks is not None:
        frame = frame[frame["week"].isin(sorted(frame["week"].unique())[-newest_weeks:])]
    digest = hashlib.sha256("\0".join([str(seed), *frame["id"]]).encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))

    ids_by_week = {week: group["id"].tolist() for week, group in frame.groupby("week", sort=True)}
    quotas = week_quotas(pd.Series({week: len(ids) for week, ids in ids_by_week.items()}), size)
    chosen: list[str] = []
    for week, ids in ids_by_week.items():
        picked = rng.choice(len(ids), size=int(quotas[week]), replace=False)
        chosen += [ids[i] for i in sorted(picked)]

    n_validation = round(len(chosen) * validation_share)
    validation = {chosen[i] for i in rng.permutation(len(chosen))[:n_validation]}
    sampled_at = datetime.now(UTC)
    return [
        {
            "interaction_id": interaction_id,
            "split": "validation" if interaction_id in validation else "test",
            "cycle_id": cycle_id,
            "sampled_at": sampled_at,
        }
        for interaction_id in chosen
    ]
