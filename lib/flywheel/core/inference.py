"""Causal LMs as routers: the routing prompt, few-shot example selection, and two ways to decide.

- **Label scoring**: the log-likelihood of each expert name after the prompt — by default only of the tokens
  that tell the names apart (one forward pass when their first tokens differ); with `label_scoring="full"`,
  every token of every name plus the end-of-turn token, all experts in ONE batched forward pass over the
  prompt's repeated KV cache.
- **Greedy generation**: generate a few tokens and parse an expert name; unparseable output is `None` (and
  counts as wrong in evaluation).

Both reuse the KV cache of the system turn, which every query shares.

The same `RoutingPrompt` renders training examples (finetune) and queries (evaluation), so a fine-tuned model
sees at inference exactly what it was trained on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class RoutingPrompt:
    """A SHORT system prompt from the expert catalog; the expert name is the completion.

    style="short": only the expert names (they are self-describing; ~67 tokens with the question).
    style="long": one line per expert with its description (what a naive setup does; ~2.5x the tokens).
    style="minimal": no catalog at all (~35 tokens): for fine-tuned models, which learn the experts from
    the completions; zero- and few-shot models need the names in the prompt.
    """

    experts: dict[str, str]
    style: str = "short"
    max_question_chars: int = 600

    @property
    def names(self) -> list[str]:
        return list(self.experts)

    def system(self) -> str:
        if self.style == "long":
            lines = "\n".join(f"- {name}: {text}" for name, text in self.experts.items())
            return (
                "You are the router of an employee support assistant. Read the employee's question and "
                "decide which expert agent should answer it. The experts are:\n"
                f"{lines}\nAnswer with the name of exactly one expert and nothing else."
            )
        if self.style == "minimal":
            return "Route the employee question to one expert."
        return "Route the employee question to one expert. Answer with its name only: " + ", ".join(
            self.names
        )

    def messages(self, question: str, examples: list[tuple[str, str]] = ()) -> list[dict]:
        messages = [{"role": "system", "content": self.system()}]
        for text, label in examples:
            messages.append({"role": "user", "content": self._clip(text)})
            messages.append({"role": "assistant", "content": label})
        messages.append({"role": "user", "content": self._clip(question)})
        return messages

    def render(self, tokenizer, question: str, examples: list[tuple[str, str]] = ()) -> str:
        """The prompt text, ending with the assistant turn's opening (the completion follows)."""
        return tokenizer.apply_chat_template(
            self.messages(question, examples), tokenize=False, add_generation_prompt=True
        )

    def completion(self, tokenizer, label: str) -> str:
        """What the model is trained to produce (trl appends the EOS token; scoring includes it too)."""
        return label

    def _clip(self, text: str) -> str:
        text = " ".join(str(text).split())
        return text[: self.max_question_chars]


def parse_expert(text: str, experts: list[str]) -> str | None:
    """An expert name from generated text: an exact answer, or the only expert named in it; else None."""
    cleaned = text.strip().strip("`'\".:;,!").strip().lower()
    if cleaned in experts:
        return cleaned
    found = {e for e in experts if re.search(rf"(?<![a-z_]){re.escape(e)}(?![a-z_])", text.lower())}
    return found.pop() if len(found) == 1 else None


# --- few-shot -------------------------------------------------------------------------------------------


def embed_texts(texts: list[str], batch_size: int = 64) -> np.ndarray:
    """L2-normalised MiniLM sentence embeddings (see flywheel.core.embeddings)."""
    from flywheel.core.embeddings import embed

    return embed(texts, batch_size=batch_size)


# --- few-shot selection ---------------------------------------------------------------------------------


@dataclass
class FewShotSelector:
    """k train examples most similar to the query (MiniLM cosine), within a token budget."""

    texts: list[str]
    labels: list[str]
    embeddings: np.ndarray
    k: int = 4
    max_tokens: int = 256
    _token_counts: list[int] = field(default_factory=list)

    def select(self, queries: list[str], tokenizer) -> list[list[tuple[str, str]]]:
        if not self._token_counts:
            self._token_counts = [
                len(tokenizer(f"{t} {label}", add_special_tokens=False).input_ids) + 8  # + chat scaffolding
                for t, label in zip(self.texts, self.labels, strict=True)
            ]
        similarity = embed_texts(queries) @ self.embeddings.T
        chosen = []
        for row in similarity:
            picked, used = [], 0
            for i in np.argsort(-row, kind="stable"):
                if len(picked) == self.k:
                    break
                if used + self._token_counts[i] > self.max_tokens:
                    continue
                picked.append((self.texts[i], self.labels[i]))
                used += self._token_counts[i]
            chosen.append(picked[::-1])  # the most similar example sits right before the question
        return chosen

    def save(self, folder: Path) -> None:
        import pandas as pd

        pd.DataFrame({"text": self.texts, "label": self.labels}).to_parquet(folder / "fewshot_pool.parquet")
        np.save(folder / "fewshot_embeddings.npy", self.embeddings)

    @classmethod
    def load(cls, folder: Path, k: int, max_tokens: int) -> FewShotSelector:
        import pandas as pd

        pool = pd.read_parquet(folder / "fewshot_pool.parquet")
        embeddings = np.load(folder / "fewshot_embeddings.npy")
        return cls(pool["text"].tolist(), pool["label"].tolist(), embeddings, k, max_tokens)


# --- the router -------------------------------------------------------------------------------------------


class CausalLMRouter:
    """Routes with a causal LM by label scoring (default) or greedy generation.

    Two savings apply to both decisions: the system turn, identical for every query, runs once and its KV
    cache is reused (each query then only runs its own tokens), and the prompt's forward pass computes the
    vocabulary logits at the last position only. `label_scoring="decisive"` scores each expert name only up
    to the first token no other name shares (the rest of the name is then forced); when the names' first
    tokens all differ, as in the demo catalog, the decision is ONE forward pass. "full" scores every token of
    every name plus the end-of-turn token.
    """

    def __init__(
        self,
        name: str,
        model,
        tokenizer,
        prompt: RoutingPrompt,
        decision: str = "score",
        few_shot: FewShotSelector | None = None,
        soft_prompt=None,
        batch_size: int = 16,
        label_scoring: str = "decisive",
        cache_system_prefix: bool = True,
    ):
        if decision not in ("score", "generate"):
            raise ValueError(f"decision must be 'score' or 'generate', not {decision!r}")
        if label_scoring not in ("decisive", "full"):
            raise ValueError(f"label_scoring must be 'decisive' or 'full', not {label_scoring!r}")
        self.name = name
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.prompt = prompt
        self.decision = decision
        self.few_shot = few_shot
        self.soft_prompt = soft_prompt  # [n_virtual, hidden] prompt-tuning embeddings, or None
        self.batch_size = batch_size
        self.label_scoring = label_scoring
        self.device = next(model.parameters()).device
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        # Each label as the model is trained to emit it: the name, then the end-of-turn (EOS) token.
        self.label_rows = [
            [*tokenizer(label, add_special_tokens=False).input_ids, tokenizer.eos_token_id]
            for label in prompt.names
        ]
        self.max_new_tokens = max(len(row) for row in self.label_rows)
        self._prefix_ids, self._prefix_cache = self._system_prefix() if cache_system_prefix else ([], None)

    # -- public API
    def predict(self, texts: list[str]) -> list[str | None]:
        out: list[str | None] = []
        for start in range(0, len(texts), self.batch_size):
            batch = texts[start : start + self.batch_size]
            if self.decision == "score":
                scores = self.score(batch)
                out.extend(self.prompt.names[i] for i in scores.argmax(1))
            else:
                out.extend(parse_expert(t, self.prompt.names) for t in self.generate(batch))
        return out

    def prompts(self, texts: list[str]) -> list[str]:
        examples = self.few_shot.select(texts, self.tokenizer) if self.few_shot else [()] * len(texts)
        return [self.prompt.render(self.tokenizer, t, ex) for t, ex in zip(texts, examples, strict=True)]

    def scored_labels(self):
        """[E, W] token ids of each expert that label scoring reads, and their [E, W] mask."""
        import torch

        rows = self.label_rows
        if self.label_scoring == "decisive":
            rows = [row[:n] for row, n in zip(rows, decisive_lengths(rows), strict=True)]
        width = max(len(row) for row in rows)
        ids = torch.full((len(rows), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
            mask[i, : len(row)] = 1
        return ids.to(self.device), mask.to(self.device)

    def score(self, texts: list[str]) -> np.ndarray:
        """[len(texts), n_experts] log-likelihood of each expert's scored tokens after each prompt."""
        import torch

        labels, mask = self.scored_labels()
        n_experts, width = labels.shape
        with torch.inference_mode():
            encoded = self._encode(self.prompts(texts))
            out = self.model(**encoded["inputs"], use_cache=width > 1, logits_to_keep=1)
            first = torch.log_softmax(out.logits[:, -1].float(), -1)  # [B, V]
            scores = first[:, labels[:, 0]]  # [B, E]
            if width > 1:  # the rest of each name, all experts in one batched pass over the prompt's cache
                batch = first.shape[0]
                cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
                cache.batch_repeat_interleave(n_experts)
                attn = torch.cat(
                    [encoded["mask"].repeat_interleave(n_experts, 0), mask[:, :-1].repeat(batch, 1)], 1
                )
                start = encoded["lengths"].repeat_interleave(n_experts).unsqueeze(1)
                positions = start + torch.arange(width - 1, device=self.device).unsqueeze(0)
                logits = self.model(
                    input_ids=labels[:, :-1].repeat(batch, 1),
                    attention_mask=attn,
                    position_ids=positions,
                    cache=cache,
                ).logits
                logp = torch.log_softmax(logits.float(), -1)
                target = labels[:, 1:].repeat(batch, 1)
                token_logp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1) * mask[:, 1:].repeat(batch, 1)
                scores = scores + token_logp.sum(-1).view(batch, n_experts)
        return scores.cpu().numpy()

    def generate(self, texts: list[str]) -> list[str]:
        """Greedy generation (transformers `generate`) after each prompt; the decoded new text."""
        import torch

        with torch.inference_mode():
            encoded = self._encode(self.prompts(texts))
            inputs = dict(encoded["inputs"])
            inputs.pop("position_ids")  # generate derives them from the attention mask
            if encoded["full_ids"] is not None:
                inputs["input_ids"] = encoded["full_ids"]  # generate skips the tokens the cache holds
            new = self.model.generate(
                **inputs,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.tokenizer.eos_token_id,
            )
        if "input_ids" in inputs:
            new = new[:, inputs["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    def first_token_seconds(self, text: str) -> float:
        """Time to the first generated token for one query (its prompt's forward pass)."""
        import time

        import torch

        started = time.perf_counter()
        with torch.inference_mode():
            encoded = self._encode(self.prompts([text]))
            self.model(**encoded["inputs"], logits_to_keep=1).logits[:, -1].argmax(-1)
        return time.perf_counter() - started

    # -- internals
    def _system_prefix(self) -> tuple[list[int], object]:
        """The token ids every prompt starts with (the system turn) and their KV cache, computed once.

        Found as the longest common token prefix of two rendered prompts, less one token (a boundary token
        could merge with what follows). None for prompt tuning: its soft prompt sits in front of it all."""
        import torch

        if self.soft_prompt is not None:
            return [], None
        a, b = (
            self.tokenizer(self.prompt.render(self.tokenizer, q), add_special_tokens=False).input_ids
            for q in ("alpha beta gamma", "Zulu 42?")
        )
        common = 0
        while common < min(len(a), len(b)) and a[common] == b[common]:
            common += 1
        ids = a[: max(common - 1, 0)]
        if len(ids) < 2:
            return [], None
        with torch.inference_mode():
            out = self.model(
                input_ids=torch.tensor([ids], device=self.device), use_cache=True, logits_to_keep=1
            )
        return ids, out.cache if getattr(out, "cache", None) is not None else out.past_key_values

    def _encode(self, prompts: list[str]) -> dict:
        """The prompt batch as model inputs: with the cached system prefix (each prompt's own tokens,
        left-padded, after the prefix) when every prompt starts with it; else whole and left-padded, with
        the soft prompt in front when prompt tuning. `mask` and `lengths` cover the whole sequence."""
        import copy

        import torch

        ids = [self.tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
        n_prefix = len(self._prefix_ids)
        cached = n_prefix > 0 and all(row[:n_prefix] == self._prefix_ids for row in ids)
        rows = [row[n_prefix:] for row in ids] if cached else ids
        width = max(len(row) for row in rows)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], device=self.device)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], device=self.device)
        inputs: dict = {}
        full_ids = None
        if cached:
            cache = copy.deepcopy(self._prefix_cache)
            cache.batch_repeat_interleave(len(rows))
            prefix_ids = torch.tensor(self._prefix_ids, device=self.device).expand(len(rows), -1)
            full_ids = torch.cat([prefix_ids, input_ids], 1)
            mask = torch.cat([torch.ones_like(prefix_ids), mask], 1)
            inputs["cache"] = cache
        if self.soft_prompt is not None:
            virtual = self.soft_prompt.to(self.device, self.model.dtype)
            embeds = self.model.get_input_embeddings()(input_ids)
            inputs["inputs_embeds"] = torch.cat([virtual.unsqueeze(0).expand(len(rows), -1, -1), embeds], 1)
            mask = torch.cat(
                [torch.ones((len(rows), virtual.shape[0]), dtype=mask.dtype, device=self.device), mask], 1
            )
        else:
            inputs["input_ids"] = input_ids
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        inputs["attention_mask"] = mask
        inputs["position_ids"] = positions[:, -input_ids.shape[1] :] if cached else positions
        return {"inputs": inputs, "mask": mask, "lengths": mask.sum(-1), "full_ids": full_ids}


def decisive_lengths(rows: list[list[int]]) -> list[int]:
    """For each row, how many leading tokens tell it apart from every other row (all of it if none do)."""

    def length(i: int) -> int:
        row = rows[i]
        others = [other for j, other in enumerate(rows) if j != i]
        return next((k for k in range(1, len(row)) if all(o[:k] != row[:k] for o in others)), len(row))

    return [length(i) for i in range(len(rows))]


def load_causal_router(folder: Path, card: dict, decision: str | None = None) -> CausalLMRouter:
    """A causal router from a candidate folder; candidate.json says where the weights are:
    weights="model" (a full model folder), "adapter" (peft LoRA merged at load / prompt tuning on `base`),
    "source" (zero/few-shot: the named source, untouched)."""
    import torch

    from flywheel.core.weights import load_causal_lm

    folder = Path(folder)
    on_gpu = torch.cuda.is_available()
    dtype = torch.bfloat16 if on_gpu and torch.cuda.is_bf16_supported() else torch.float32
    weights = card["weights"]
    soft_prompt = None
    if weights == "model":
        model, tokenizer = load_causal_lm(str(folder / "model"), dtype=dtype)
    elif weights == "source":
        model, tokenizer = load_causal_lm(card["source"], dtype=dtype)
    elif weights == "adapter":
        from peft import PeftModel

        model, tokenizer = load_causal_lm(card["source"], dtype=dtype)
        peft_model = PeftModel.from_pretrained(model, folder / "adapter")
        if card["method"] == "prompt_tuning":
            soft_prompt = peft_model.get_prompt_embedding_to_save("default").detach()
            model = peft_model.get_base_model()
        else:
            model = peft_model.merge_and_unload()
    else:
        raise ValueError(f"{folder}: unknown weights {weights!r}")
    if on_gpu:
        model = model.to("cuda")
    few_shot = None
    if card.get("few_shot_k"):
        few_shot = FewShotSelector.load(folder, card["few_shot_k"], card["few_shot_max_tokens"])
    # card["labels"] keeps the catalog's order (the card's JSON keys are sorted): the prompt lists the experts
    # in the order the model was trained with.
    experts = {name: card["experts"].get(name, "") for name in card["labels"]}
    prompt = RoutingPrompt(experts, style=card.get("prompt_style", "short"))
    return CausalLMRouter(
        card["name"],
        model,
        tokenizer,
        prompt,
        decision=decision or card.get("decision", "score"),
        few_shot=few_shot,
        soft_prompt=soft_prompt,
    )
