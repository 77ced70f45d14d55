"""A search engine for the stock argilla-server 2.8.0 that answers from the server's own SQL tables.

argilla-server needs Elasticsearch or OpenSearch, neither of which can run here. Its search engine is a
plug-in (`SearchEngine.register(engine_name=...)` in `argilla_server/search_engine/base.py`); this one
implements every abstract method by reading the records, responses, suggestions, metadata and vectors
that the server already keeps in its database. Index hooks are no-ops (the database *is* the index).

Filters, sorts and text queries are evaluated in Python over one dataset's rows: simple, exact and fast
enough for review queues of thousands of records, not for millions (use Elasticsearch there — the same SDK
code talks to a team's own Argilla). A filter or sort it does not understand is answered with a 422
(`UnprocessableEntityError`), never a 500.

This file runs inside the server's own virtualenv (see `argilla_server.py`), never in the workbench's:

    <server-venv>/bin/python -P argilla_search_engine.py bootstrap   # migrate the DB, create the owner user
    <server-venv>/bin/python -P argilla_search_engine.py serve --host 127.0.0.1 --port 6900 [--bootstrap]
    <server-venv>/bin/python -P argilla_search_engine.py worker      # background jobs (needs a real Redis)

It imports nothing from `flywheel`.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Iterable
from typing import Any

ENGINE_NAME = "flywheel-sql"


def _install_fakeredis_if_asked() -> None:
    """FLYWHEEL_ARGILLA_FAKEREDIS=1: jobs are queued in an in-process fake Redis and never run."""
    if os.environ.get("FLYWHEEL_ARGILLA_FAKEREDIS") != "1":
        return
    import fakeredis
    import redis

    server = fakeredis.FakeServer()

    def from_url(url: str, **kwargs: Any) -> Any:
        return fakeredis.FakeRedis(server=server)

    redis.from_url = from_url  # argilla_server.jobs.queues calls redis.from_url at import time


_install_fakeredis_if_asked()

from argilla_server.database import AsyncSessionLocal  # noqa: E402
from argilla_server.enums import (  # noqa: E402
    MetadataPropertyType,
    ResponseStatusFilter,
    SimilarityOrder,
    SortOrder,
)
from argilla_server.errors.future.base_errors import UnprocessableEntityError  # noqa: E402
from argilla_server.models import (  # noqa: E402
    Dataset,
    MetadataProperty,
    Question,
    Record,
    Response,
    Suggestion,
    User,
    Vector,
    VectorSettings,
)
from argilla_server.search_engine.base import (  # noqa: E402
    AndFilter,
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    MetadataFilterScope,
    MetadataMetrics,
    Order,
    RangeFilter,
    RecordFilterScope,
    ResponseFilterScope,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    SuggestionFilterScope,
    TermsFilter,
    TermsMetrics,
    TextQuery,
)
from argilla_server.settings import settings  # noqa: E402
from sqlalchemy import event, func, select  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

RECORD_PROPERTIES = ("id", "external_id", "inserted_at", "updated_at", "status")
SUGGESTION_PROPERTIES = ("value", "score", "agent", "type")


@event.listens_for(Engine, "connect")
def _sqlite_write_ahead_log(dbapi_connection: Any, _record: Any) -> None:
    """SQLite in WAL mode with synchronous=NORMAL: one fsync per checkpoint instead of several per answer.
    Each submitted answer commits three times; with SQLite's default rollback journal the server spent its
    time in fsync (measured here: 7-20 answers/s, half the CPU in the kernel). The embedded server is a
    single team's review tool: a power cut may lose its last transactions, never corrupt it."""
    if settings.database_is_sqlite:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()


class _Row:
    """One record with what filters and sorts look at."""

    __slots__ = ("fields", "metadata", "props", "responses", "suggestions")

    def __init__(self, record: Record):
        self.props = {name: getattr(record, name) for name in RECORD_PROPERTIES}
        self.props["id"] = str(record.id)
        self.fields = record.fields or {}
        self.metadata = record.metadata_ or {}
        self.responses: list[Response] = []
        self.suggestions: dict[str, Suggestion] = {}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return " ".join(_text_of(v) for v in value.values())
    if isinstance(value, list | tuple):
        return " ".join(_text_of(v) for v in value)
    return "" if value is None else str(value)


def _terms(text: str) -> list[str]:
    return [t for t in re.findall(r"\w+", text.lower()) if t]


def _in_range(value: Any, ge: Any, le: Any) -> bool:
    if value is None:
        return False
    try:
        if ge is not None and value < ge:
            return False
        return not (le is not None and value > le)
    except TypeError:
        return False


def _unsupported(what: str) -> UnprocessableEntityError:
    return UnprocessableEntityError(f"the SQL search engine ({ENGINE_NAME}) does not support {what}")


@SearchEngine.register(engine_name=ENGINE_NAME)
class SQLSearchEngine(SearchEngine):
    """Answers searches from the server's own tables; keeps no index of its own."""

    @classmethod
    async def new_instance(cls) -> SQLSearchEngine:
        return cls()

    async def close(self) -> None:
        return None

    async def ping(self) -> bool:
        async with AsyncSessionLocal() as db:
            await db.execute(select(1))
        return True

    async def info(self) -> dict:
        return {"engine": ENGINE_NAME, "backend": "argilla-server SQL tables", "version": "1"}

    # --- index hooks: the database is the index ------------------------------------------------------
    async def create_index(self, dataset: Dataset) -> None:
        return None

    async def delete_index(self, dataset: Dataset) -> None:
        return None

    async def configure_metadata_property(
        self, dataset: Dataset, metadata_property: MetadataProperty
    ) -> None:
        return None

    async def configure_index_vectors(self, vector_settings: VectorSettings) -> None:
        return None

    async def index_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        return None

    async def partial_record_update(self, record: Record, **update: Any) -> None:
        return None

    async def delete_records(self, dataset: Dataset, records: Iterable[Record]) -> None:
        return None

    async def update_record_response(self, response: Response) -> None:
        return None

    async def delete_record_response(self, response: Response) -> None:
        return None

    async def update_record_suggestion(self, suggestion: Suggestion) -> None:
        return None

    async def delete_record_suggestion(self, suggestion: Suggestion) -> None:
        return None

    # --- progress --------------------------------------------------------------------------------------
    async def get_dataset_progress(self, dataset: Dataset) -> dict:
        if dataset.is_draft:
            return {}
        async with AsyncSessionLocal() as db:
            rows = await db.execute(
                select(Record.status, func.count())
                .where(Record.dataset_id == dataset.id)
                .group_by(Record.status)
            )
            counts = {str(status): int(n) for status, n in rows}
        return {"total": sum(counts.values()), **counts}

    async def get_dataset_user_progress(self, dataset: Dataset, user: User) -> dict:
        if dataset.is_draft:
            return {}
        async with AsyncSessionLocal() as db:
            rows = await db.execute(
                select(Response.status, func.count())
                .join(Record, Record.id == Response.record_id)
                .where(Record.dataset_id == dataset.id, Response.user_id == user.id)
                .group_by(Response.status)
            )
            counts = {str(status): int(n) for status, n in rows}
        return {"total": sum(counts.values()), **counts}

    # --- search ----------------------------------------------------------------------------------------
    async def _rows(self, dataset: Dataset) -> list[_Row]:
        async with AsyncSessionLocal() as db:
            records = (await db.scalars(select(Record).where(Record.dataset_id == dataset.id))).all()
            rows = {record.id: _Row(record) for record in records}
            responses = await db.scalars(
                select(Response)
                .join(Record, Record.id == Response.record_id)
                .where(Record.dataset_id == dataset.id)
            )
            for response in responses:
                rows[response.record_id].responses.append(response)
            suggestions = await db.execute(
                select(Suggestion, Question.name)
                .join(Question, Question.id == Suggestion.question_id)
                .join(Record, Record.id == Suggestion.record_id)
                .where(Record.dataset_id == dataset.id)
            )
            for suggestion, question_name in suggestions:
                rows[suggestion.record_id].suggestions[question_name] = suggestion
        return list(rows.values())

    async def search(
        self,
        dataset: Dataset,
        query: TextQuery | str | None = None,
        filter: Any = None,
        sort: list[Order] | None = None,
        offset: int = 0,
        limit: int = 100,
        user_id: str | None = None,
    ) -> SearchResponses:
        rows = await self._rows(dataset)
        scores = self._text_scores(dataset, rows, query)
        if filter is not None:
            rows = [row for row in rows if self._matches(row, filter)]
        if scores is not None:
            rows = [row for row in rows if scores[row.props["id"]] > 0]
        rows = self._sorted(rows, sort, scores, user_id)
        items = [
            SearchResponseItem(
                record_id=row.props["id"], score=scores[row.props["id"]] if scores is not None else 1.0
            )
            for row in rows[offset : offset + limit]
        ]
        return SearchResponses(items=items, total=len(rows))

    async def similarity_search(
        self,
        dataset: Dataset,
        vector_settings: VectorSettings,
        value: list[float] | None = None,
        record: Record | None = None,
        query: TextQuery | str | None = None,
        filter: Any = None,
        max_results: int = 100,
        order: SimilarityOrder = SimilarityOrder.most_similar,
        threshold: float | None = None,
    ) -> SearchResponses:
        if bool(value) == bool(record):
            raise ValueError("Must provide either vector value or record to compute the similarity search")
        excluded = str(record.id) if record is not None else None
        target = value or record.vector_value_by_vector_settings(vector_settings)
        if not target:
            raise ValueError("Cannot find a vector value to apply with provided info")
        rows = {row.props["id"]: row for row in await self._rows(dataset)}
        scores = self._text_scores(dataset, list(rows.values()), query)
        async with AsyncSessionLocal() as db:
            vectors = await db.scalars(select(Vector).where(Vector.vector_settings_id == vector_settings.id))
            candidates = [(str(v.record_id), v.value) for v in vectors]
        hits = []
        for record_id, vector in candidates:
            row = rows.get(record_id)
            if row is None or record_id == excluded:
                continue
            if filter is not None and not self._matches(row, filter):
                continue
            if scores is not None and scores[record_id] <= 0:
                continue
            similarity = _cosine(target, vector)
            if order == SimilarityOrder.least_similar:
                similarity = -similarity
            if threshold is not None and similarity < threshold:
                continue
            hits.append((similarity, record_id))
        hits.sort(key=lambda hit: (-hit[0], hit[1]))
        items = [SearchResponseItem(record_id=rid, score=score) for score, rid in hits[:max_results]]
        return SearchResponses(items=items, total=len(items))

    async def compute_metrics_for(self, metadata_property: MetadataProperty) -> MetadataMetrics:
        name = metadata_property.name
        async with AsyncSessionLocal() as db:
            metadata = (
                await db.scalars(
                    select(Record.metadata_).where(Record.dataset_id == metadata_property.dataset_id)
                )
            ).all()
        values = [m[name] for m in metadata if m and m.get(name) is not None]
        if metadata_property.type == MetadataPropertyType.terms:
            counts = Counter(str(v) for value in values for v in _as_list(value))
            return TermsMetrics(
                total=len(counts),
                values=[TermsMetrics.TermCount(term=t, count=c) for t, c in counts.most_common(1000)],
            )
        metrics_class = (
            IntegerMetadataMetrics
            if metadata_property.type == MetadataPropertyType.integer
            else FloatMetadataMetrics
        )
        numbers = [v for v in values if isinstance(v, int | float)]
        return metrics_class(min=min(numbers, default=None), max=max(numbers, default=None))

    # --- evaluation ------------------------------------------------------------------------------------
    @staticmethod
    def _text_scores(dataset: Dataset, rows: list[_Row], query: TextQuery | str | None) -> dict | None:
        """Like a simple query string (any term matches): score = matched query terms. None: no query."""
        if query is None:
            return None
        if isinstance(query, str):
            query = TextQuery(q=query)
        wanted = set(_terms(query.q))
        if query.field and dataset.field_by_name(query.field) is None:
            raise _unsupported(f"text search in unknown field {query.field!r}")
        scores = {}
        for row in rows:
            source = row.fields.get(query.field) if query.field else row.fields
            scores[row.props["id"]] = float(len(wanted & set(_terms(_text_of(source)))))
        return scores

    def _matches(self, row: _Row, filter: Any) -> bool:
        if isinstance(filter, AndFilter):
            return all(self._matches(row, f) for f in filter.filters)
        if not isinstance(filter, TermsFilter | RangeFilter):
            raise _unsupported(f"filter type {type(filter).__name__}")
        scope = filter.scope
        if isinstance(scope, ResponseFilterScope):
            return self._matches_responses(row, filter)
        return self._test(self._scope_values(row, scope), filter)

    @staticmethod
    def _test(values: list[Any], filter: TermsFilter | RangeFilter) -> bool:
        if isinstance(filter, TermsFilter):
            wanted = {str(v) for v in filter.values}
            return any(str(v) in wanted for v in values)
        return any(_in_range(v, filter.ge, filter.le) for v in values)

    @staticmethod
    def _scope_values(row: _Row, scope: Any) -> list[Any]:
        """The values a record has under a metadata, suggestion or record scope (a list: multi-valued)."""
        if isinstance(scope, MetadataFilterScope):
            return _as_list(row.metadata.get(scope.metadata_property))
        if isinstance(scope, SuggestionFilterScope):
            if scope.property not in SUGGESTION_PROPERTIES:
                raise _unsupported(f"suggestion property {scope.property!r}")
            suggestion = row.suggestions.get(scope.question)
            return _as_list(getattr(suggestion, scope.property)) if suggestion is not None else []
        if isinstance(scope, RecordFilterScope):
            if scope.property not in RECORD_PROPERTIES:
                raise _unsupported(f"record property {scope.property!r}")
            return _as_list(row.props[scope.property])
        raise _unsupported(f"filter scope {type(scope).__name__}")

    @staticmethod
    def _responses_in_scope(row: _Row, scope: ResponseFilterScope) -> list[Response]:
        if scope.user is None:
            return row.responses
        return [r for r in row.responses if r.user_id == scope.user.id]

    def _matches_responses(self, row: _Row, filter: TermsFilter | RangeFilter) -> bool:
        scope: ResponseFilterScope = filter.scope
        responses = self._responses_in_scope(row, scope)
        if scope.question:
            values = [
                v for r in responses for v in _as_list((r.values or {}).get(scope.question, {}).get("value"))
            ]
            return self._test(values, filter)
        if scope.property == "status" and isinstance(filter, TermsFilter):
            statuses = {str(v) for v in filter.values}
            unknown = statuses - {s.value for s in ResponseStatusFilter}
            if unknown:
                raise _unsupported(f"response statuses {sorted(unknown)}")
            # "pending": nobody (or not this user) has responded yet.
            if ResponseStatusFilter.pending.value in statuses and not responses:
                return True
            return any(str(r.status) in statuses for r in responses)
        raise _unsupported(f"response filter on property {scope.property!r} with {type(filter).__name__}")

    def _sort_value(self, row: _Row, order: Order) -> Any:
        scope = order.scope
        if isinstance(scope, ResponseFilterScope):
            responses = self._responses_in_scope(row, scope)
            if scope.question:
                values = [(r.values or {}).get(scope.question, {}).get("value") for r in responses]
            elif scope.property == "status":
                values = [str(r.status) for r in responses]
            else:
                raise _unsupported(f"sorting by response property {scope.property!r}")
            values = [v for v in values if v is not None]
        else:
            values = self._scope_values(row, scope)
        if not values:
            return None
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if len(numbers) == len(values):
            return sum(numbers) / len(numbers)  # like Elasticsearch's "avg" mode for nested values
        return min(str(v) for v in values)

    def _sorted(
        self, rows: list[_Row], sort: list[Order] | None, scores: dict | None, user_id: Any
    ) -> list[_Row]:
        """Explicit sorts first; then text score; then a per-user shuffle (so annotators sharing a queue
        start at different records, as the stock engine does); then insertion order."""

        def base_key(row: _Row) -> tuple:
            shuffle = hashlib.sha1(f"{user_id}:{row.props['id']}".encode()).hexdigest() if user_id else ""
            score = -scores[row.props["id"]] if scores is not None else 0.0
            return (score, shuffle, row.props["inserted_at"], row.props["id"])

        ordered = sorted(rows, key=base_key)
        for order in reversed(sort or []):  # stable sorts, last key first
            keyed = [(self._sort_value(row, order), row) for row in ordered]
            present = [(v, row) for v, row in keyed if v is not None]
            missing = [row for v, row in keyed if v is None]  # missing values last, either direction
            try:
                present.sort(key=lambda pair: pair[0], reverse=order.order == SortOrder.desc)
            except TypeError:
                raise _unsupported("sorting values of mixed types") from None
            ordered = [row for _, row in present] + missing
        return ordered


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=False))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


# --- entry points (run with the server venv's python) ------------------------------------------------------
async def _bootstrap(username: str, password: str, api_key: str, workspace: str) -> None:
    """Migrate the database, then create the owner user and workspace unless they exist (idempotent)."""
    from argilla_server.contexts import accounts
    from argilla_server.enums import UserRole
    from argilla_server.models import Workspace, WorkspaceUser

    async with AsyncSessionLocal() as db:
        user = await accounts.get_user_by_username(db, username)
        if user is None:
            user = await User.create(
                db,
                first_name=username,
                username=username,
                role=UserRole.owner,
                password_hash=accounts.hash_password(password),
                api_key=api_key,
            )
        ws = (await db.execute(select(Workspace).filter_by(name=workspace))).scalar_one_or_none()
        if ws is None:
            ws = await Workspace.create(db, name=workspace)
        member = (
            await db.execute(select(WorkspaceUser).filter_by(workspace_id=ws.id, user_id=user.id))
        ).scalar_one_or_none()
        if member is None:
            await WorkspaceUser.create(db, workspace_id=ws.id, user_id=user.id)


def bootstrap() -> None:
    """Migrate the database and create the owner user and workspace (idempotent); the engines' connections
    are closed after, so that a server started next in this process opens its own on its own event loop."""
    import asyncio

    from argilla_server.cli.database.migrate import migrate_db
    from argilla_server.database import async_engine, sync_engine

    migrate_db(revision="head")

    async def run() -> None:
        await _bootstrap(
            os.environ["FLYWHEEL_ARGILLA_USERNAME"],
            os.environ["FLYWHEEL_ARGILLA_PASSWORD"],
            os.environ["FLYWHEEL_ARGILLA_API_KEY"],
            os.environ["FLYWHEEL_ARGILLA_WORKSPACE"],
        )
        await async_engine.dispose()

    asyncio.run(run())
    sync_engine.dispose()


def main(argv: list[str]) -> None:
    command = argv[0] if argv else "serve"
    if command == "bootstrap":
        bootstrap()
    elif command == "serve":
        import argparse

        import uvicorn

        parser = argparse.ArgumentParser()
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=6900)
        parser.add_argument("--bootstrap", action="store_true", help="bootstrap first (one interpreter)")
        args = parser.parse_args(argv[1:])
        if args.bootstrap:
            bootstrap()
        uvicorn.run("argilla_server:app", host=args.host, port=args.port, access_log=False)
    elif command == "worker":
        from argilla_server.cli.worker import worker

        worker(queues=["default", "high"], num_workers=1)
    else:
        raise SystemExit(f"unknown command {command!r}: bootstrap | serve | worker")


if __name__ == "__main__":
    # The engine is registered above, in this process, before the app looks it up by name.
    main(sys.argv[1:])
