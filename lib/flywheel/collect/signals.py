"""Implicit feedback, derived from the stored interactions after ingestion.

Within one session, an interaction followed soon (within `collect.signals.window_minutes`) by another
question of the same user gets a signal that its answer did not settle the matter:

- **retry**: the follow-up is the same question again (equal after lower-casing and collapsing spaces);
- **rephrase**: the follow-up says the same thing in other words: the cosine similarity of their MiniLM
  sentence embeddings (mean pooling, `collect.signals.model`) is at least `rephrase_similarity`;
- **escalation**: the follow-up asks for a person ("can I talk to a human?"), or the interaction's own
  comment does (`collect.signals.escalation_pattern`).

The signal is stored on the earlier interaction, with the follow-up's id as `related_id`, in the
`implicit_signals` table (recomputed whole each time: it is derived data). Texts are the PII-masked queries.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from flywheel.core.embeddings import Embedder
from flywheel.core.store import Store, utcnow

KINDS = ("retry", "rephrase", "escalation")
_SPACES = re.compile(r"\s+")


def casefold_spacing_end_punct(text: str) -> str:
    """Lowercased, runs of whitespace as one space, trailing `?!. ` dropped: a question asked again that
    differs only in these is a retry."""
    return _SPACES.sub(" ", text.strip().lower()).rstrip("?!. ")


def follow_up_pairs(frame: pd.DataFrame, window_minutes: float) -> pd.DataFrame:
    """Consecutive interactions of one session, the second within the window: columns `id`, `next_id`,
    `query`, `next_query`, `gap_s`."""
    ordered = frame.sort_values(["session_id", "timestamp", "id"])
    nxt = ordered.groupby("session_id").shift(-1)
    gap = (nxt["timestamp"] - ordered["timestamp"]).dt.total_seconds()
    keep = nxt["id"].notna() & (gap <= window_minutes * 60)
    return pd.DataFrame(
        {
            "id": ordered.loc[keep, "id"],
            "next_id": nxt.loc[keep, "id"],
            "query": ordered.loc[keep, "query_masked"],
            "next_query": nxt.loc[keep, "query_masked"],
            "gap_s": gap[keep],
        }
    ).reset_index(drop=True)


def derive_signals(
    frame: pd.DataFrame,
    window_minutes: float = 10.0,
    rephrase_similarity: float = 0.75,
    escalation_pattern: str = "",
    model_source: str | Path = "minilm-l6",
    cache_dir: str | Path | None = None,
) -> pd.DataFrame:
    """The implicit signals of a frame of interactions (`id`, `timestamp`, `session_id`, `query_masked`,
    `comment`): one row per (interaction_id, kind) with `related_id`, `score` and `detail`. Embeddings are
    kept in `cache_dir` (the runs' embedding cache, shared with the judges): every cycle derives the signals
    of the whole store again, and only the new questions need embedding."""
    asks_person = re.compile(escalation_pattern, re.IGNORECASE) if escalation_pattern else None
    pairs = follow_up_pairs(frame, window_minutes)
    rows: dict[tuple[str, str], dict] = {}

    def add(interaction_id: str, kind: str, related: str | None, score: float | None, detail: str) -> None:
        rows.setdefault(
            (interaction_id, kind),
            {
                "interaction_id": interaction_id,
                "kind": kind,
                "related_id": related,
                "score": score,
                "detail": detail,
            },
        )

    asked = pairs["query"].map(casefold_spacing_end_punct)
    same = asked == pairs["next_query"].map(casefold_spacing_end_punct)
    for pair in pairs[same].itertuples(index=False):
        add(pair.id, "retry", pair.next_id, 1.0, f"asked again after {pair.gap_s:.0f} s")
    others = pairs[~same]
    if len(others):
        texts = sorted(set(others["query"]) | set(others["next_query"]))
        encoded = Embedder(str(model_source), cache_dir=cache_dir).encode(texts)
        vectors = dict(zip(texts, encoded, strict=True))
        for pair in others.itertuples(index=False):
            similarity = float(vectors[pair.query] @ vectors[pair.next_query])
            if similarity >= rephrase_similarity:
                add(
                    pair.id,
                    "rephrase",
                    pair.next_id,
                    round(similarity, 4),
                    f"rephrased after {pair.gap_s:.0f} s",
                )
    if asks_person is not None:
        for pair in pairs.itertuples(index=False):
            if asks_person.search(pair.next_query):
                add(pair.id, "escalation", pair.next_id, None, "the follow-up asks for a person")
        comments = frame[frame["comment"].notna()]
        for row in comments.itertuples(index=False):
            if asks_person.search(row.comment):
                add(row.id, "escalation", None, None, "the comment asks for a person")
    columns = ["interaction_id", "kind", "related_id", "score", "detail"]
    return pd.DataFrame(list(rows.values()), columns=columns)


def compute_signals(store: Store, signals_config, cache_dir: str | Path | None = None) -> pd.DataFrame:
    """Derive the implicit signals of everything in the store and replace the stored ones."""
    frame = store.interactions_frame(["id", "timestamp", "session_id", "query_masked", "comment"])
    signals = derive_signals(
        frame,
        signals_config.window_minutes,
        signals_config.rephrase_similarity,
        signals_config.escalation_pattern,
        signals_config.model,
        cache_dir,
    )
    now = utcnow()
    records = [
        {**{k: (None if pd.isna(v) else v) for k, v in row.items()}, "computed_at": now}
        for row in signals.to_dict("records")
    ]
    store.replace_signals(records)
    return signals


def signal_summary(store: Store) -> pd.DataFrame:
    """Per kind: how many interactions carry it, and the satisfied share among those rated."""
    signals = store.signals_frame()
    frame = store.interactions_frame(["id", "satisfied"])
    merged = signals.merge(frame, left_on="interaction_id", right_on="id", how="left")
    table = pd.DataFrame(
        {
            "interactions": merged.groupby("kind").size(),
            "satisfied_share": merged.groupby("kind")["satisfied"].apply(
                lambda s: s.dropna().astype(float).mean()
            ),
        }
    )
    return table.reindex(list(KINDS)).fillna({"interactions": 0}).astype({"interactions": int})
