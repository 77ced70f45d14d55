"""The promotion registry: which trained router is in production, how it got there, and how to undo it.

An append-only event log in the store (`promotions` table, SQLAlchemy Core, SQLite or PostgreSQL) with a
JSON export beside the runs. Replaying the log gives the stack of promotions in force:

- `promote` pushes a trained candidate folder (one with `candidate.json`) with its metrics, cycle id, time
  and reason;
- `rollback` pops the current promotion; the one promoted before it serves again (`restores_seq`);
- `production` pops the only promotion left (or, asked `to_production`, all of them): the production model,
  the large LLM that served before any promotion (the evaluation's baseline), serves again;
- `shadow` puts a candidate in shadow: the router service computes and logs its decisions beside the router
  in service without answering with them. It serves nothing; it ends with a `promote` of that artifact, a
  `reject`, or another `shadow` (the newest candidate replaces it). The stack ignores both events.

The stack's top is `current()`; an empty stack means the production model is serving (`state()` says since
when and why). Promoting the artifact that is already current is a no-op (re-running a cycle does not stack
duplicates). Writers take a lock first, so two processes promoting or rolling back at once each decide from
the other's result, and the export is written under the same lock (it never goes back to an older state).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from flywheel.core.files import atomic_write_json
from flywheel.core.routers import read_candidate_card
from flywheel.core.store import Store, metadata, utcnow

# Made by the store's Alembic revisions (flywheel.core.migrations), like the store's own tables
promotions = sa.Table(
    "promotions",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event", sa.String(20), nullable=False),  # EVENTS
    sa.Column("model_name", sa.String(200), nullable=False),
    sa.Column("artifact_path", sa.Text, nullable=False),
    sa.Column("metrics_json", sa.Text, nullable=False),
    sa.Column("cycle_id", sa.String(200)),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    # rollback / production events: the promotion undone and the promotion restored (its model fields are
    # copied; none for production)
    sa.Column("undoes_seq", sa.Integer),
    sa.Column("restores_seq", sa.Integer),
)


# The name the registry gives the production model (the baseline LLM of the evaluation)
PRODUCTION = "production"
SHADOW, REJECT = "shadow", "reject"
EVENTS = ("promote", "rollback", PRODUCTION, SHADOW, REJECT)


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (e.g. a rollback while the production model serves)."""


@dataclass(frozen=True)
class Entry:
    """One event of the registry. For a rollback the model fields are those of the restored promotion; for
    a production event they name the production model (`PRODUCTION`, no artifact); for a reject, the
    candidate whose shadow it ends (`undoes_seq`: its shadow event)."""

    seq: int
    event: Literal["promote", "rollback", "production", "shadow", "reject"]
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


def _replay(events: list[Entry]) -> list[Entry]:
    """The promotions in force, oldest first: promote pushes, rollback pops, production clears; shadow and
    reject events serve nothing and are skipped."""
    stack: list[Entry] = []
    for event in events:
        if event.event == "promote":
            stack.append(event)
        elif event.event == "rollback":
            if stack:
                stack.pop()
        elif event.event == PRODUCTION:
            stack.clear()
    return stack


def _in_shadow(events: list[Entry]) -> Entry | None:
    """The candidate in shadow: the newest shadow event not followed by a promote of its artifact or a
    reject (a newer shadow event replaces it)."""
    shadow = None
    for event in events:
        if event.event == SHADOW:
            shadow = event
        elif event.event == REJECT or (
            event.event == "promote" and shadow is not None and event.artifact_path == shadow.artifact_path
        ):
            shadow = None
    return shadow


@dataclass(frozen=True)
class State:
    """What serves now: the top of the promotion stack, or the production model when the stack is empty;
    and the candidate in shadow beside it, if any."""

    stack: tuple[Entry, ...]  # promotions in force, oldest first
    last: Entry | None  # the newest event that changed who serves (None: nothing has, yet)
    undone: Entry | None  # the promotion the newest event undid (rollback / production events)
    shadow: Entry | None = None  # the candidate in shadow (its shadow event)

    @property
    def current(self) -> Entry | None:
        return self.stack[-1] if self.stack else None

    @property
    def on_production(self) -> bool:
        return not self.stack

    @property
    def rolled_back_to_production(self) -> bool:
        """Production serves because promotions were rolled back (not merely because none was made)."""
        return self.on_production and self.last is not None

    @property
    def serving(self) -> str:
        return self.current.model_name if self.current else PRODUCTION

    def message(self) -> str:
        """One line for people: who serves, since when and why, and the candidate in shadow."""
        line = self._serving_message()
        if self.shadow is not None:
            shadow = self.shadow
            cycle = f", cycle {shadow.cycle_id}" if shadow.cycle_id else ""
            line += (
                f"; in shadow: {shadow.model_name} (entry {shadow.seq}{cycle}, since {_when(shadow)}): "
                f"{shadow.reason}"
            )
        return line

    def _serving_message(self) -> str:
        current, last = self.current, self.last
        undone = f"{self.undone.model_name} (entry {self.undone.seq})" if self.undone else "a promotion"
        if current is not None:
            cycle = f", cycle {current.cycle_id}" if current.cycle_id else ""
            line = (
                f"promoted model {current.model_name} is serving (entry {current.seq}{cycle}, "
                f"{_when(current)}): {current.reason}"
            )
            if last is not None and last.event == "rollback":
                line += f"; restored at {_when(last)} by rolling back {undone}: {last.reason}"
            return line
        if last is None:
            return "the production model is serving (nothing has been promoted yet)"
        return (
            f"the production model is serving since {_when(last)} (entry {last.seq}), when {undone} was "
            f"rolled back: {last.reason}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": PRODUCTION if self.on_production else "promoted",
            "model_name": self.serving,
            "shadow": self.shadow.model_name if self.shadow else None,
            "message": self.message(),
        }


def _when(entry: Entry) -> str:
    return entry.created_at.strftime("%Y-%m-%d %H:%M UTC") if entry.created_at else "time unknown"


def _candidate(artifact_path: str | Path, model_name: str | None, reason: str, what: str) -> tuple[Path, str]:
    """The resolved folder of a trained candidate and its name; refuses a folder without candidate.json
    (FileNotFoundError) and an empty reason."""
    folder = Path(artifact_path).expanduser().resolve()
    card = read_candidate_card(folder)  # raises FileNotFoundError when not a trained candidate
    if not reason or not reason.strip():
        raise ValueError(f"{what} needs a reason")
    return folder, model_name or card.get("name") or folder.name


def default_export_path(runs_root: str | Path, config_name: str) -> Path:
    """Where the CLI and the service write the JSON export: beside the per-config SQLite store."""
    return Path(runs_root) / f"registry-{config_name}.json"


class Registry:
    """The promotion registry over a store; `export_path` (optional) gets a JSON copy after each change."""

    def __init__(self, store: Store, export_path: str | Path | None = None):
        self.store = store
        self.export_path = Path(export_path) if export_path else None

    # --- reads -----------------------------------------------------------------------------------
    def history(self) -> list[Entry]:
        """Every event, oldest first."""
        with self.store.engine.connect() as conn:
            return _events(conn)

    def state(self) -> State:
        """Who serves now (a promotion or the production model) and the stack behind it."""
        return self._state(self.history())

    def state_as_of(self, n_events: int) -> State:
        """The state after the first `n_events` events (what a writer saw before its later writes)."""
        return self._state(self.history()[:n_events])

    @staticmethod
    def _state(events: list[Entry]) -> State:
        serving_events = [e for e in events if e.event not in (SHADOW, REJECT)]
        last = serving_events[-1] if serving_events else None
        undone = next((e for e in events if last and e.seq == last.undoes_seq), None)
        return State(tuple(_replay(events)), last, undone, _in_shadow(events))

    def current(self) -> Entry | None:
        """The promotion in force (a `promote` entry), or None while the production model serves."""
        return self.state().current

    def in_shadow(self) -> Entry | None:
        """The candidate in shadow (its `shadow` entry), or None."""
        return self.state().shadow

    # --- writes ----------------------------------------------------------------------------------
    @contextmanager
    def _locked(self) -> Iterator[sa.Connection]:
        """A write transaction that holds the registry's write lock from its first statement: each writer
        reads the history, decides and appends with no other writer in between."""
        with self.store.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text(f"LOCK TABLE {promotions.name} IN SHARE ROW EXCLUSIVE MODE"))
            elif conn.dialect.name == "sqlite":
                # a write as the first statement takes SQLite's write lock now (readers go on), whatever
                # transaction mode the driver runs in; it deletes nothing
                conn.execute(promotions.delete().where(promotions.c.seq < 0))
            yield conn

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
        folder, name = _candidate(artifact_path, model_name, reason, "a promotion")
        metrics_json = json.dumps(metrics or {}, sort_keys=True, default=str)
        with self._locked() as conn:
            current = self._state(_events(conn)).current
            if current is not None and current.artifact_path == str(folder):
                return current
            return self._record(
                conn,
                event="promote",
                model_name=name,
                artifact_path=str(folder),
                metrics_json=metrics_json,
                cycle_id=cycle_id,
                reason=reason.strip(),
            )

    def rollback(self, reason: str = "manual rollback", *, to_production: bool = False) -> Entry:
        """Undo the current promotion: the one before it serves again, or, when it was the only one (or
        `to_production`: every promotion is undone at once), the production model. Returns the recorded
        event: a `rollback` (model fields of the restored promotion) or a `production` event, with
        `undoes_seq`. Refuses (RegistryError) while the production model is already serving."""
        reason = reason.strip() or "manual rollback"
        with self._locked() as conn:
            state = self._state(_events(conn))
            if state.on_production:
                raise RegistryError(f"nothing to roll back: {state.message()}")
            undone = state.stack[-1]
            restored = None if to_production or len(state.stack) == 1 else state.stack[-2]
            if restored is None:
                values = {
                    "event": PRODUCTION,
                    "model_name": PRODUCTION,
                    "artifact_path": "",
                    "metrics_json": "{}",
                }
            else:
                values = {
                    "event": "rollback",
                    "model_name": restored.model_name,
                    "artifact_path": restored.artifact_path,
                    "metrics_json": json.dumps(restored.metrics, sort_keys=True, default=str),
                    "cycle_id": restored.cycle_id,
                    "restores_seq": restored.seq,
                }
            return self._record(conn, **values, reason=reason, undoes_seq=undone.seq)

    def shadow(
        self,
        artifact_path: str | Path,
        *,
        reason: str,
        metrics: dict[str, Any] | None = None,
        cycle_id: str | None = None,
        model_name: str | None = None,
    ) -> Entry:
        """Put a trained candidate folder in shadow (it serves nothing; the router service logs its decisions
        beside the router in service) until it is promoted or rejected, or another candidate goes in shadow.
        Returns its entry; a no-op returning the existing entry when that artifact is in shadow already, or
        the current promotion when it is the one serving."""
        folder, name = _candidate(artifact_path, model_name, reason, "a shadow")
        metrics_json = json.dumps(metrics or {}, sort_keys=True, default=str)
        with self._locked() as conn:
            state = self._state(_events(conn))
            for entry in (state.shadow, state.current):
                if entry is not None and entry.artifact_path == str(folder):
                    return entry
            return self._record(
                conn,
                event=SHADOW,
                model_name=name,
                artifact_path=str(folder),
                metrics_json=metrics_json,
                cycle_id=cycle_id,
                reason=reason.strip(),
            )

    def reject(self, reason: str, *, metrics: dict[str, Any] | None = None) -> Entry:
        """End the shadow without promoting: records a `reject` event naming the candidate (`undoes_seq`: its
        shadow entry) with the reason and, optionally, what its shadow measured. Refuses (RegistryError) when
        no candidate is in shadow."""
        if not reason or not reason.strip():
            raise ValueError("a rejection needs a reason")
        with self._locked() as conn:
            shadow = self._state(_events(conn)).shadow
            if shadow is None:
                raise RegistryError("nothing to reject: no candidate is in shadow")
            return self._record(
                conn,
                event=REJECT,
                model_name=shadow.model_name,
                artifact_path=shadow.artifact_path,
                metrics_json=json.dumps(metrics or {}, sort_keys=True, default=str),
                cycle_id=shadow.cycle_id,
                reason=reason.strip(),
                undoes_seq=shadow.seq,
            )

    def _record(self, conn: sa.Connection, **values: Any) -> Entry:
        """Append one event (inside the caller's locked transaction), export, and return its entry."""
        seq = conn.execute(promotions.insert().values(**values, created_at=utcnow())).inserted_primary_key[0]
        events = self._export_locked(conn)
        return next(e for e in events if e.seq == seq)

    def _export_locked(self, conn: sa.Connection) -> list[Entry]:
        """Write the export from inside the write transaction: exports happen in the order of the writes,
        so the file never goes back to an older state. Returns the events it exported."""
        events = _events(conn)
        if self.export_path is not None:
            atomic_write_json(self.export_path, self._snapshot(events))
        return events

    def snapshot(self) -> dict[str, Any]:
        """What the JSON export holds: who serves (`serving`: state, model name, the candidate in shadow's
        name, one-line message), the promotion in force (`current`, null while the production model
        serves), the candidate in shadow (`shadow`, null when none), the stack of promotions a rollback
        walks back through (seqs, oldest first) and the whole event history."""
        return self._snapshot(self.history())

    def _snapshot(self, events: list[Entry]) -> dict[str, Any]:
        state = self._state(events)
        return {
            "serving": state.as_dict(),
            "current": state.current.as_dict() if state.current else None,
            "shadow": state.shadow.as_dict() if state.shadow else None,
            "stack": [e.seq for e in state.stack],
            "history": [e.as_dict() for e in events],
        }

    def export(self, path: str | Path | None = None) -> Path | None:
        """Write the JSON export (atomically); returns its path, or None when there is nowhere to write."""
        target = Path(path) if path else self.export_path
        if target is None:
            return None
        atomic_write_json(target, self.snapshot())
        return target
