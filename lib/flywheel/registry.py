"""The promotion registry: which trained router is in production, how it got there, and how to undo it.

An append-only event log in the store (`promotions` table, SQLAlchemy Core, SQLite or PostgreSQL) with a
JSON export beside the runs. Each `promote` pushes a trained candidate folder (one with `candidate.json`)
with its metrics, cycle id, time and reason; each `rollback` pops the current entry and restores the one
promoted before it, recorded as its own event. Replaying the log gives the stack of promotions; its top is
`current()`.

Promoting the artifact that is already current is a no-op (re-running a cycle does not stack duplicates).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from flywheel.models import read_candidate_card
from flywheel.runs import atomic_write_json
from flywheel.store import Store, metadata, utcnow

promotions = sa.Table(
    "promotions",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event", sa.String(20), nullable=False),  # "promote" | "rollback"
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("artifact_path", sa.Text, nullable=False),
    sa.Column("metrics_json", sa.Text, nullable=False),
    sa.Column("cycle_id", sa.String(200)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # rollback events: the promotion undone and the promotion restored (its model fields are copied)
    sa.Column("undoes_seq", sa.Integer),
    sa.Column("restores_seq", sa.Integer),
)


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (e.g. a rollback with nothing before)."""


@dataclass(frozen=True)
class Entry:
    """One event of the registry. For a rollback the model fields are those of the restored promotion."""

    seq: int
    event: Literal["promote", "rollback"]
    model_name: str
    artifact_path: str
    metrics: dict[str, Any] = field(default_factory=dict)
    cycle_id: str | None = None
    reason: str = ""
    created_at: datetime | None = None
    undoes_seq: int | None = None
    restores_seq: int | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat() if self.created_at else None
        return data


def _entry(row: Any) -> Entry:
    created = row.created_at
    if created is not None and created.tzinfo is None:  # SQLite hands back naive datetimes
        created = created.replace(tzinfo=UTC)
    return Entry(
        seq=row.seq,
        event=row.event,
        model_name=row.model_name,
        artifact_path=row.artifact_path,
        metrics=json.loads(row.metrics_json),
        cycle_id=row.cycle_id,
        reason=row.reason,
        created_at=created,
        undoes_seq=row.undoes_seq,
        restores_seq=row.restores_seq,
    )


def _events(conn: sa.Connection) -> list[Entry]:
    return [_entry(r) for r in conn.execute(sa.select(promotions).order_by(promotions.c.seq))]


def default_export_path(runs_root: str | Path, config_name: str) -> Path:
    """Where the CLI and the service write the JSON export: beside the per-config SQLite store."""
    return Path(runs_root) / f"registry-{config_name}.json"


class Registry:
    """The promotion registry over a store; `export_path` (optional) gets a JSON copy after each change."""

    def __init__(self, store: Store, export_path: str | Path | None = None):
        self.store = store
        self.export_path = Path(export_path) if export_path else None
        promotions.create(store.engine, checkfirst=True)  # a Store opened before this module was imported

    # --- reads -----------------------------------------------------------------------------------
    def history(self) -> list[Entry]:
        """Every event, oldest first."""
        with self.store.engine.connect() as conn:
            return _events(conn)

    def _stack(self, events: list[Entry]) -> list[Entry]:
        """The promotions in force, oldest first: replay promotes (push) and rollbacks (pop)."""
        stack: list[Entry] = []
        for event in events:
            if event.event == "promote":
                stack.append(event)
            elif stack:
                stack.pop()
        return stack

    def current(self) -> Entry | None:
        """The promotion in force (a `promote` entry), or None when nothing was ever promoted."""
        stack = self._stack(self.history())
        return stack[-1] if stack else None

    # --- writes ----------------------------------------------------------------------------------
    def promote(
        self,
        artifact_path: str | Path,
        *,
        reason: str,
        metrics: dict[str, Any] | None = None,
        cycle_id: str | None = None,
        model_name: str | None = None,
    ) -> Entry:
        """Put a trained candidate folder into production; returns its entry (the current one when that
        artifact is already in production)."""
        folder = Path(artifact_path).expanduser().resolve()
        card = read_candidate_card(folder)  # raises FileNotFoundError when not a trained candidate
        if not reason or not reason.strip():
            raise ValueError("a promotion needs a reason")
        name = model_name or card.get("name") or folder.name
        metrics_json = json.dumps(metrics or {}, sort_keys=True, default=str)
        with self.store.engine.begin() as conn:
            stack = self._stack(_events(conn))
            if stack and stack[-1].artifact_path == str(folder):
                return stack[-1]
            seq = conn.execute(
                promotions.insert().values(
                    event="promote",
                    model_name=name,
                    artifact_path=str(folder),
                    metrics_json=metrics_json,
                    cycle_id=cycle_id,
                    reason=reason.strip(),
                    created_at=utcnow(),
                )
            ).inserted_primary_key[0]
        self.export()
        return next(e for e in self.history() if e.seq == seq)

    def rollback(self, reason: str = "manual rollback") -> Entry:
        """Undo the current promotion and restore the one before it; returns the restored promotion."""
        with self.store.engine.begin() as conn:
            stack = self._stack(_events(conn))
            if not stack:
                raise RegistryError("nothing to roll back: no model has been promoted yet")
            if len(stack) == 1:
                raise RegistryError(
                    f"nothing to roll back to: {stack[0].model_name} (entry {stack[0].seq}) is the only "
                    "promotion in force"
                )
            undone, restored = stack[-1], stack[-2]
            conn.execute(
                promotions.insert().values(
                    event="rollback",
                    model_name=restored.model_name,
                    artifact_path=restored.artifact_path,
                    metrics_json=json.dumps(restored.metrics, sort_keys=True, default=str),
                    cycle_id=restored.cycle_id,
                    reason=reason.strip() or "manual rollback",
                    created_at=utcnow(),
                    undoes_seq=undone.seq,
                    restores_seq=restored.seq,
                )
            )
        self.export()
        return restored

    def snapshot(self) -> dict[str, Any]:
        """What the JSON export holds: the current promotion and the whole event history."""
        events = self.history()
        stack = self._stack(events)
        return {
            "current": stack[-1].as_dict() if stack else None,
            "history": [e.as_dict() for e in events],
        }

    def export(self, path: str | Path | None = None) -> Path | None:
        """Write the JSON export (atomically); returns its path, or None when there is nowhere to write."""
        target = Path(path) if path else self.export_path
        if target is None:
            return None
        atomic_write_json(target, self.snapshot())
        return target
