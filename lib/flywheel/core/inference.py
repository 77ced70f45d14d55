"""Causal LMs as routers, two ways to decide (the prompt and few-shot selection: `flywheel.core.prompts`).

- **Label scoring**: the log-likelihood of each expert name after the prompt — by default only of the tokens
  that tell the names apart (one forward pass when their first tokens differ); with `label_scoring="full"`,
  every token of every name plus the end-of-turn token, all experts in ONE batched forward pass over the
  prompt's repeated KV cache.
- **Greedy generation**: generate a few tokens and parse an expert name; unparseable output is `None` (and
  counts as wrong in evaluation).

Both reuse the KV cache of the system turn, which every query shares.

torch and peft are imported where used: `flywheel.core.routers`, on the CLI's start-up path, imports this
module.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

import numpy as np

from flywheel.core.devices import compute_device, inference_dtype, on_accelerator
from flywheel.core.prompts import FewShotSelector, RoutingPrompt, parse_expert
from flywheel.core.weights import load_causal_lm

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
    @property
    def labels(self) -> list[str]:
        return list(self.prompt.names)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """[len(texts), n_experts]: softmax over the label scores (decision=score only: a generated answer
        has no score per expert)."""
        if self.decision != "score":
            raise ValueError(f"{self.name}: predict_proba needs decision=score, not {self.decision!r}")
        scores = [self.score(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]
        if not scores:
            return np.zeros((0, len(self.labels)))
        scores = np.concatenate(scores).astype(np.float64)
        shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

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
    folder = Path(folder)
    dtype = inference_dtype()
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
    if on_accelerator():
        model = model.to(compute_device())
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
