"""Judges: why was a user unhappy, and which expert should have answered?

Every judge has one interface: `judge.judge(items) -> DataFrame` with one verdict per interaction
(`VERDICT_COLUMNS`): the cause (routing / retrieval / generation / out_of_scope / other), the expert the
question should have gone to (None when out of scope), a confidence in [0, 1], a short rationale, the
judge's name and `parsed` (False only for an LLM verdict that could not be read: its other fields are then
empty; it is counted, never guessed). `items` are store rows: `id`, `query_masked`, `routed_expert`,
`answer_excerpt`, `comment`.

- `EmbeddingJudge`: MiniLM sentence embeddings and a neighbour vote among the satisfactory interactions
  (whose routed expert the user accepted). Cheap, offline, the default.
- `LLMJudge`: asks a chat model for a JSON verdict; the model is a local transformers model
  (`LocalChatModel`) or any OpenAI-compatible endpoint (`EndpointChatModel`, key from the environment).

Judges see the PII-masked question only: an endpoint may be outside the company.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from flywheel.core.devices import compute_device
from flywheel.core.embeddings import Embedder
from flywheel.core.endpoints import EndpointChatModel
from flywheel.core.files import atomic_path
from flywheel.core.labels import CAUSES
from flywheel.core.weights import resolve_model_source

if TYPE_CHECKING:
    from flywheel.core.config import Config, EmbeddingJudgeConfig, LLMJudgeConfig

log = logging.getLogger(__name__)

VERDICT_COLUMNS = ["interaction_id", "judge", "cause", "expert", "confidence", "rationale", "parsed"]
SUGGESTION_COLUMNS = ["interaction_id", "cause", "expert", "confidence", "rationale", "judge"]


class Judge(Protocol):
    name: str

    def judge(self, items: pd.DataFrame) -> pd.DataFrame: ...


def _text(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def verdict_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows), columns=VERDICT_COLUMNS)
    frame["confidence"] = frame["confidence"].astype(float)
    frame["parsed"] = frame["parsed"].astype(bool)
    return frame


# --- embeddings ------------------------------------------------------------------------------------------


# --- cheap text signals ----------------------------------------------------------------------------------

# The answer (or the user) says nothing relevant was found, or what was found is stale: retrieval.
RETRIEVAL_SIGNALS = re.compile(
    r"could(?: not|n't) find|did(?: not|n't) find|no (?:article|document|doc|information|match)|"
    r"don't have (?:any )?information|not (?:contain|find) a match|archived|no longer available|"
    r"dead link|link is dead|outdated|out of date|old version|from 20\d\d|closest article|"
    r"contact the .{1,40} team|found nothing|not indexed",
    re.IGNORECASE,
)
# The user says it went to the wrong place: routing.
ROUTING_SIGNALS = re.compile(
    r"wrong (?:team|department|expert|person|place)|should (?:go|have gone|be sent) to|"
    r"sent me to|routed me to|not what i asked|different question|is an? .{1,40} question",
    re.IGNORECASE,
)


class EmbeddingJudge:
    """A neighbour vote among satisfactory interactions, in MiniLM embedding space.

    For each unsatisfactory interaction the `k` most similar satisfactory questions vote (weighted by
    cosine similarity) for the expert that answered them to the user's satisfaction:

    - nearest satisfactory question less similar than `out_of_scope_similarity` — by default the
      `out_of_scope_quantile` of the satisfactory questions' own nearest-neighbour similarities, so the
      cut adapts to how dense the data is — far from every expert's cluster → **out_of_scope** (no expert);
    - another expert wins at least `routing_threshold` of the vote (or `comment_routing_threshold` when the
      user's comment itself says it went to the wrong place) → **routing**, suggesting that expert, with
      its vote share as the confidence;
    - otherwise the routed expert was plausible: **retrieval** when the answer or comment says nothing (or
      nothing current) was found, else **generation**.
    """

    name = "embedding"

    def __init__(
        self,
        reference: pd.DataFrame,
        experts: Sequence[str],
        embedder: Embedder | None = None,
        k: int = 15,
        routing_threshold: float = 0.5,
        comment_routing_threshold: float = 0.4,
        out_of_scope_quantile: float = 0.05,
        out_of_scope_similarity: float | None = None,
    ):
        from sklearn.neighbors import NearestNeighbors

        self.experts = list(experts)
        self.embedder = embedder or Embedder()
        self.routing_threshold = routing_threshold
        self.comment_routing_threshold = comment_routing_threshold
        ref = reference[reference["routed_expert"].isin(self.experts)]
        if len(ref) < 2:
            raise ValueError("the embedding judge needs at least 2 satisfactory interactions to vote")
        self.ref_labels = ref["routed_expert"].to_numpy()
        self.ref_ids = ref["id"].to_numpy() if "id" in ref else np.arange(len(ref))
        self.k = min(k, len(ref))
        vectors = self.embedder.encode(ref["query_masked"].map(_text).tolist())
        self.index = NearestNeighbors(n_neighbors=self.k, metric="cosine").fit(vectors)
        if out_of_scope_similarity is None:
            # each satisfactory question's nearest other one (the first neighbour is itself)
            distances, _ = self.index.kneighbors(vectors, n_neighbors=2)
            out_of_scope_similarity = float(np.quantile(1.0 - distances[:, 1], out_of_scope_quantile))
        self.out_of_scope_similarity = out_of_scope_similarity

    @classmethod
    def from_interactions(
        cls, interactions: pd.DataFrame, experts: Sequence[str], **kwargs: Any
    ) -> EmbeddingJudge:
        """Fit on the satisfactory interactions of a store frame."""
        return cls(interactions[interactions["satisfied"].eq(True)], experts, **kwargs)

    def votes(self, items: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(vote shares per expert [n, experts], similarity of the nearest satisfactory question [n])."""
        vectors = self.embedder.encode(items["query_masked"].map(_text).tolist())
        distances, idx = self.index.kneighbors(vectors)
        sims = 1.0 - distances
        weights = np.clip(sims, 1e-6, None)
        shares = np.zeros((len(items), len(self.experts)))
        column = {e: j for j, e in enumerate(self.experts)}
        for i in range(len(items)):
            for n, w in zip(idx[i], weights[i], strict=True):
                shares[i, column[self.ref_labels[n]]] += w
        shares /= shares.sum(1, keepdims=True)
        return shares, sims[:, 0]

    def judge(self, items: pd.DataFrame) -> pd.DataFrame:
        if items.empty:
            return verdict_frame([])
        shares, nearest = self.votes(items)
        rows = []
        for i, item in enumerate(items.itertuples(index=False)):
            routed = item.routed_expert
            top = int(shares[i].argmax())
            top_expert, top_share = self.experts[top], float(shares[i, top])
            routed_share = float(shares[i, self.experts.index(routed)]) if routed in self.experts else 0.0
            answer, comment = _text(item.answer_excerpt), _text(item.comment)
            says_wrong_team = bool(ROUTING_SIGNALS.search(comment))
            threshold = self.comment_routing_threshold if says_wrong_team else self.routing_threshold
            vote = f"{top_share:.0%} of {self.k} neighbours voted {top_expert}"
            if nearest[i] < self.out_of_scope_similarity:
                cause, expert = "out_of_scope", None
                confidence = 0.5 + 0.5 * float(np.clip(1 - nearest[i] / self.out_of_scope_similarity, 0, 1))
                rationale = (
                    f"far from every expert's questions (nearest similarity {nearest[i]:.2f} "
                    f"< {self.out_of_scope_similarity:.2f})"
                )
            elif top_expert != routed and top_share >= threshold:
                cause, expert, confidence = "routing", top_expert, top_share
                rationale = f"{vote}, {routed_share:.0%} {routed}" + (
                    "; the user says it went to the wrong place" if says_wrong_team else ""
                )
            else:
                expert = routed
                retrieval = RETRIEVAL_SIGNALS.search(answer) or RETRIEVAL_SIGNALS.search(comment)
                cause = "retrieval" if retrieval else "generation"
                # How sure the routing was right, halved: the cause itself is a keyword guess.
                confidence = 0.5 * max(routed_share, 1 - top_share) + (0.25 if retrieval else 0.0)
                signal = f"answer/comment says '{retrieval.group(0)}'" if retrieval else "no doc signs"
                rationale = f"{vote}; routed expert plausible ({routed_share:.0%}); {signal}"
            rows.append(
                {
                    "interaction_id": item.id,
                    "judge": self.name,
                    "cause": cause,
                    "expert": expert,
                    "confidence": round(float(np.clip(confidence, 0, 1)), 4),
                    "rationale": rationale,
                    "parsed": True,
                }
            )
        return verdict_frame(rows)


# --- LLM judge -------------------------------------------------------------------------------------------


class ChatModel(Protocol):
    name: str

    def complete(self, messages: list[dict[str, str]], attempt: int = 0) -> str: ...


class LocalChatModel:
    """A local transformers causal LM (a model source name or folder), greedy on the first attempt and
    sampled (seeded) on retries so that a retry can differ."""

    def __init__(self, source: str, max_new_tokens: int = 160, seed: int = 0):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        folder = resolve_model_source(source)
        self.name = Path(source).name
        self.max_new_tokens = max_new_tokens
        self.seed = seed
        self.device = compute_device()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder).to(self.device).eval()

    def _prompt(self, messages: list[dict[str, str]]) -> str:
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant:"

    def complete(self, messages: list[dict[str, str]], attempt: int = 0) -> str:
        import torch

        inputs = self.tokenizer(self._prompt(messages), return_tensors="pt", add_special_tokens=False)
        inputs = {k: v.to(self.device) for k, v in inputs.items() if k in ("input_ids", "attention_mask")}
        torch.manual_seed(self.seed + attempt)
        pad = self.tokenizer.pad_token_id
        if pad is None:
            pad = self.tokenizer.eos_token_id
        with torch.inference_mode():
            out = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=attempt > 0,
                temperature=0.7 if attempt > 0 else None,
                top_p=None,
                top_k=None,
                pad_token_id=pad,
            )
        return self.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


SYSTEM_PROMPT = """You audit an employee-support router. The router sent a question to one expert agent and \
the user was unhappy with the answer. Decide why, and which expert should have answered.

Causes:
- routing: the question went to the wrong expert (name the right one)
- retrieval: the right expert, but it found no, the wrong or outdated documents
- generation: the right expert and documents, but a wrong, vague or made-up answer
- out_of_scope: no expert in the catalog covers the question (expert: null)
- other: none of these

Reply with ONLY a JSON object, no prose:
{"cause": "<routing|retrieval|generation|out_of_scope|other>", "expert": "<expert name from the catalog, \
or null>", "confidence": <number between 0 and 1>, "rationale": "<one short sentence>"}"""

RETRY_PROMPT = (
    "That was not a valid verdict ({problem}). Reply with ONLY the JSON object "
    '{{"cause": ..., "expert": ..., "confidence": ..., "rationale": ...}}, using a cause from '
    "routing, retrieval, generation, out_of_scope, other and an expert name from the catalog."
)


def verdict_messages(item: Any, experts: dict[str, str]) -> list[dict[str, str]]:
    catalog = "\n".join(f"- {name}: {description}" for name, description in experts.items())
    user = (
        f"Expert catalog:\n{catalog}\n\n"
        f"Question: {_text(item.query_masked)}\n"
        f"Routed to: {item.routed_expert}\n"
        f"Answer excerpt: {_text(item.answer_excerpt) or '(none)'}\n"
        f"User comment: {_text(item.comment) or '(none)'}"
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)
_CAUSE_ALIASES = {"out of scope": "out_of_scope", "out-of-scope": "out_of_scope", "oos": "out_of_scope"}


class VerdictError(ValueError):
    """Model output that is not a usable verdict; `kind` names the problem for the counts."""

    def __init__(self, message: str, kind: str | None = None):
        super().__init__(message)
        self.kind = kind or message


def _json_objects(text: str) -> list[str]:
    """Candidate JSON objects in model output: fenced blocks first, then every balanced {...} span."""
    found = [m.group(1).strip() for m in _FENCE.finditer(text)]
    depth, start, in_string, escaped = 0, None, False, False
    for i, ch in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"' and depth > 0:
            in_string = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth > 0:
            depth -= 1
            if depth == 0 and start is not None:
                found.append(text[start : i + 1])
    return found


def parse_verdict(text: str, experts: Sequence[str], routed_expert: str) -> dict[str, Any]:
    """The verdict in a model's reply (bare JSON, JSON in prose or in a code fence), validated.

    Raises VerdictError when there is none: no JSON object, an unknown cause or expert, a confidence
    outside [0, 1], a routing verdict naming no other expert. Nothing is filled in by guesswork; the one
    implied value is the expert of a retrieval/generation/other verdict that names none (the routed one:
    such a verdict says the routing was right).
    """
    if not text or not text.strip():
        raise VerdictError("empty reply", "empty reply")
    problems: list[VerdictError] = []
    for candidate in _json_objects(text):
        try:
            obj = json.loads(candidate)
        except json.JSONDecodeError:
            problems.append(VerdictError("invalid JSON", "invalid JSON"))
            continue
        if not isinstance(obj, dict):
            problems.append(VerdictError("not a JSON object", "not a JSON object"))
            continue
        try:
            return _validate(obj, experts, routed_expert)
        except VerdictError as exc:
            problems.append(exc)
    raise problems[0] if problems else VerdictError("no JSON object", "no JSON object")


def _validate(obj: dict[str, Any], experts: Sequence[str], routed_expert: str) -> dict[str, Any]:
    cause = str(obj.get("cause", "")).strip().lower()
    cause = _CAUSE_ALIASES.get(cause, cause)
    if cause not in CAUSES:
        raise VerdictError(f"unknown cause {obj.get('cause')!r}", "unknown cause")
    expert = obj.get("expert")
    expert = None if expert is None or str(expert).strip().lower() in ("", "null", "none") else str(expert)
    if expert is not None and expert not in experts:
        raise VerdictError(f"expert {expert!r} is not in the catalog", "unknown expert")
    if cause == "routing" and (expert is None or expert == routed_expert):
        raise VerdictError("a routing verdict must name another expert", "routing without expert")
    if cause == "out_of_scope":
        expert = None
    elif expert is None:
        expert = routed_expert
    confidence = obj.get("confidence")
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        try:
            confidence = float(str(confidence).strip())
        except ValueError:
            raise VerdictError(f"confidence {confidence!r} is not a number", "bad confidence") from None
    if not 0.0 <= float(confidence) <= 1.0:
        raise VerdictError(f"confidence {confidence!r} is outside [0, 1]", "bad confidence")
    rationale = " ".join(str(obj.get("rationale") or "").split())[:300]
    return {"cause": cause, "expert": expert, "confidence": float(confidence), "rationale": rationale}


@dataclass
class LLMJudgeStats:
    judged: int = 0
    parsed: int = 0
    unparsed: int = 0
    retries: int = 0
    problems: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "judged": self.judged,
            "parsed": self.parsed,
            "unparsed": self.unparsed,
            "retries": self.retries,
            "problems": dict(self.problems),
        }


class LLMJudge:
    """A chat model asked for a JSON verdict; malformed replies are retried `max_retries` times (with the
    problem fed back), then counted as unparsed (`stats.unparsed`) with empty fields."""

    name = "llm"

    def __init__(
        self, model: ChatModel, experts: dict[str, str], max_retries: int = 2, progress: bool = True
    ):
        self.model = model
        self.experts = dict(experts)
        self.max_retries = max_retries
        self.progress = progress
        self.stats = LLMJudgeStats()

    def judge_one(self, item: Any) -> dict[str, Any]:
        messages = verdict_messages(item, self.experts)
        self.stats.judged += 1
        problem = ""
        for attempt in range(self.max_retries + 1):
            reply = self.model.complete(messages, attempt=attempt)
            try:
                verdict = parse_verdict(reply, list(self.experts), item.routed_expert)
            except VerdictError as exc:
                problem = str(exc)
                self.stats.problems[exc.kind] = self.stats.problems.get(exc.kind, 0) + 1
                if attempt < self.max_retries:
                    self.stats.retries += 1
                    messages = [
                        *verdict_messages(item, self.experts),
                        {"role": "assistant", "content": reply[:1000]},
                        {"role": "user", "content": RETRY_PROMPT.format(problem=problem)},
                    ]
                continue
            self.stats.parsed += 1
            return {"interaction_id": item.id, "judge": self.name, **verdict, "parsed": True}
        self.stats.unparsed += 1
        return {
            "interaction_id": item.id,
            "judge": self.name,
            "cause": None,
            "expert": None,
            "confidence": np.nan,
            "rationale": f"unparsed after {self.max_retries + 1} attempts: {problem}",
            "parsed": False,
        }

    def judge(self, items: pd.DataFrame) -> pd.DataFrame:
        from tqdm.auto import tqdm

        rows = [
            self.judge_one(item)
            for item in tqdm(
                list(items.itertuples(index=False)), desc="LLM judge", disable=not self.progress, leave=False
            )
        ]
        if self.stats.unparsed:
            log.warning("LLM judge: %d of %d verdicts unparsed", self.stats.unparsed, self.stats.judged)
        return verdict_frame(rows)


# --- running the configured judges -----------------------------------------------------------------------


def build_chat_model(cfg: LLMJudgeConfig) -> ChatModel:
    if cfg.endpoint is not None:
        return EndpointChatModel(
            cfg.endpoint.base_url,
            cfg.endpoint.model,
            cfg.endpoint.api_key_env,
            timeout_s=cfg.endpoint.timeout_s,
            max_tokens=cfg.max_new_tokens,
        )
    assert cfg.local_model is not None  # the config validator ensures one of the two
    return LocalChatModel(cfg.local_model, max_new_tokens=cfg.max_new_tokens)


def build_embedding_judge(
    cfg: EmbeddingJudgeConfig,
    interactions: pd.DataFrame,
    experts: Sequence[str],
    cache_dir: str | Path | None = None,
) -> EmbeddingJudge:
    embedder = Embedder(cfg.model, batch_size=cfg.batch_size, cache_dir=cache_dir)
    return EmbeddingJudge.from_interactions(
        interactions,
        experts,
        embedder=embedder,
        k=cfg.k,
        routing_threshold=cfg.routing_threshold,
        comment_routing_threshold=cfg.comment_routing_threshold,
        out_of_scope_quantile=cfg.out_of_scope_quantile,
        out_of_scope_similarity=cfg.out_of_scope_similarity,
    )


@dataclass
class JudgeRun:
    verdicts: pd.DataFrame  # VERDICT_COLUMNS, one row per judge and interaction
    stats: dict[str, dict[str, Any]]  # per judge: judged, flagged as routing, unparsed, ...


def run_judges(
    config: Config,
    interactions: pd.DataFrame,
    queue: pd.DataFrame,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> JudgeRun:
    """Run the judges named in `config.judges.run` on the review queue."""
    cfg = config.judges
    frames, stats = [], {}
    for name in cfg.run:
        if name == "embedding":
            judge: Judge = build_embedding_judge(cfg.embedding, interactions, list(config.experts), cache_dir)
            items = queue
        else:
            assert cfg.llm is not None
            judge = LLMJudge(build_chat_model(cfg.llm), config.experts, cfg.llm.max_retries, progress)
            items = queue if cfg.llm.max_items is None else queue.head(cfg.llm.max_items)
        verdicts = judge.judge(items)
        frames.append(verdicts)
        stats[name] = {
            "judged": len(verdicts),
            "flagged_routing": int(verdicts["cause"].eq("routing").sum()),
            "causes": {str(k): int(v) for k, v in verdicts["cause"].value_counts().items()},
            "unparsed": int((~verdicts["parsed"]).sum()),
        }
        if isinstance(judge, LLMJudge):
            stats[name].update(retries=judge.stats.retries, problems=judge.stats.problems)
            if hasattr(judge.model, "close"):
                judge.model.close()
    verdicts = pd.concat(frames, ignore_index=True) if frames else verdict_frame([])
    return JudgeRun(verdicts, stats)


def judge_suggestions(verdicts: pd.DataFrame, prefer: Sequence[str] = ("llm", "embedding")) -> pd.DataFrame:
    """One suggestion per interaction for the review push: parsed verdicts only, the first judge in
    `prefer` that has one (then any other judge)."""
    parsed = verdicts[verdicts["parsed"]].copy()
    rank = {name: i for i, name in enumerate(prefer)}
    parsed["_rank"] = parsed["judge"].map(rank).fillna(len(rank))
    best = parsed.sort_values(["interaction_id", "_rank"]).drop_duplicates("interaction_id", keep="first")
    return best[SUGGESTION_COLUMNS].reset_index(drop=True)


def save_verdicts(verdicts: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        verdicts.to_parquet(tmp, index=False)
    return path
