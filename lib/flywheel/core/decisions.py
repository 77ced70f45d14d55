"""The production model's decision on each logged interaction, whoever answered it.

Until a small router is promoted, the production LLM decides every query: its decision is the logged
`routed_expert`. Once a small router serves (alone or as a cascade), `interactions.model` names who decided
each query, and the production model's decision on a sampled share of the queries a small router answered is
kept as a shadow decision (`shadow_decisions`, role `production`). Teacher labels and the eval's baseline
come only from these production decisions: a model is never trained or scored on labels derived from its own
decisions.

Which model is production: `split.production_model` when set, else the model that decided the earliest
logged interaction (the production LLM answered before any promotion; once a small router serves it decides
most queries, so "the most frequent model" would name the student). Logged interactions whose model is the
production model, or a model named by a production shadow decision (a cascade logs its deferrals under the
production endpoint's model name), are production-decided.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

NO_EXPERT = "unknown"  # a shadow decision naming no single expert, spelled as the router service logs it
PRODUCTION_ROLE = "production"


def production_model(interactions: pd.DataFrame, override: str | None = None) -> str | None:
    """The production model's name: `override` when given, else the model of the earliest logged
    interaction (by timestamp, then id); None for a store without interactions."""
    if override is not None:
        return override
    if interactions.empty:
        return None
    keys = [c for c in ("timestamp", "id") if c in interactions.columns]
    earliest = interactions.sort_values(keys, kind="stable").iloc[0]
    return str(earliest["model"])


def _production_shadow(shadow: pd.DataFrame | None) -> pd.DataFrame:
    if shadow is None or shadow.empty:
        return pd.DataFrame(columns=["interaction_id", "model", "decision"])
    if "role" in shadow.columns:
        shadow = shadow[shadow["role"].eq(PRODUCTION_ROLE)]
    # one decision per interaction: the store keeps one per (interaction, model); the first model's wins
    return shadow.sort_values(["interaction_id", "model"]).drop_duplicates("interaction_id")


def decided_by_production(
    interactions: pd.DataFrame, shadow: pd.DataFrame | None, production_model: str | None
) -> pd.Series:
    """Per interaction id: True where the production model itself answered (its decision is logged)."""
    names = {production_model} | set(_production_shadow(shadow)["model"])
    names.discard(None)
    return pd.Series(interactions["model"].isin(names).to_numpy(), index=interactions["id"].to_numpy())


def production_decisions(
    interactions: pd.DataFrame, shadow: pd.DataFrame | None, production_model: str | None
) -> pd.Series:
    """Per interaction id: `routed_expert` where the production model decided it, else the production shadow
    decision (NO_EXPERT where that named no expert), else None (no production decision is known)."""
    logged = decided_by_production(interactions, shadow, production_model)
    decisions = pd.Series(interactions["routed_expert"].to_numpy(), index=logged.index, dtype=object)
    decisions[~logged.to_numpy()] = None
    production_shadow = _production_shadow(shadow)
    in_shadow = production_shadow.set_index("interaction_id")["decision"]
    in_shadow = in_shadow.where(in_shadow.notna(), NO_EXPERT)
    fill = ~logged & logged.index.isin(in_shadow.index)
    decisions[fill.to_numpy()] = in_shadow.reindex(logged.index[fill.to_numpy()]).to_numpy()
    return decisions


@dataclass(frozen=True)
class ProductionDecisions:
    """Everything the ground truth and the eval need to know about the production model's decisions."""

    model: str | None
    decision: pd.Series  # by interaction id: the production model's decision, None where unknown
    logged: pd.Series  # by interaction id: True where the production model answered it itself

    @property
    def from_shadow(self) -> pd.Series:
        """By interaction id: True where the production decision comes from a shadow decision."""
        return self.decision.notna() & ~self.logged

    @classmethod
    def of(
        cls, interactions: pd.DataFrame, shadow: pd.DataFrame | None = None, override: str | None = None
    ) -> ProductionDecisions:
        """From the store's interactions (id, model, routed_expert, timestamp) and shadow decisions.
        An `override` that names no logged or shadow model is a clear error (a typo would silently leave
        every student-answered interaction without a teacher)."""
        model = production_model(interactions, override)
        if override is not None and not interactions.empty:
            seen = set(interactions["model"]) | set(_production_shadow(shadow)["model"])
            if override not in seen:
                raise ValueError(
                    f"split.production_model {override!r} decided no logged interaction and made no shadow "
                    f"decision; models in the store: {sorted(seen)}"
                )
        return cls(
            model=model,
            decision=production_decisions(interactions, shadow, model),
            logged=decided_by_production(interactions, shadow, model),
        )

    @classmethod
    def all_logged(cls, interactions: pd.DataFrame) -> ProductionDecisions:
        """Every interaction decided by the production model (logs from before any small router served,
        or a frame without a `model` column)."""
        ids = interactions["id"].to_numpy()
        known = "model" in interactions.columns and len(interactions) > 0
        return cls(
            model=str(interactions["model"].mode().iloc[0]) if known else None,
            decision=pd.Series(interactions["routed_expert"].to_numpy(), index=ids, dtype=object),
            logged=pd.Series(True, index=ids, dtype=bool),
        )

    def on(self, ids: pd.Series | list[str]) -> list[str | None]:
        """The production decisions of these interactions, in order (None: unknown)."""
        values = self.decision.reindex(list(ids))
        return [v if isinstance(v, str) else None for v in values]
