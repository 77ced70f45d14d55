"""PII masker quality (precision / recall per placeholder) and throughput, optionally against another version.

    .venv/bin/python bench/pii_quality.py                                   # this checkout's masker
    .venv/bin/python bench/pii_quality.py --baseline /tmp/orig/lib/flywheel/core/pii.py   # side by side

Three measurements, each for this checkout's masker and (with --baseline) for the `pii.py` given, both built
from the demo config's `collect.pii`:

- `quality`: on the labelled sample `data/pii_eval.jsonl` (634 synthetic texts: the demo world's planted PII,
  hand-written news headlines about public figures, employee questions naming colleagues, and employee
  questions naming public figures, products and places; the `holdout-*` sources were written after the
  masker was tuned on the rest. Each line lists its PII spans by value and kind, and the public entities
  that must survive):
  per placeholder kind, recall (a labelled span is caught when one masked region covers it whole) and
  precision (a masked region is right when it overlaps a labelled span); per source, how many texts lost a
  labelled public entity (a name in the news, a product, a place) and how many texts without PII changed.
- `demo`: the demo world's questions and comments masked by both maskers: how many texts change at all and how
  many differ between the two (the demo cycle's metrics move when masked texts move).
- `speed`: `mask_many` lines/s on the demo world's questions and comments repeated `--copies` times (model
  load excluded), best of `--repeats`, the versions taking turns in this process; the ratio new/baseline is
  the number to read. `--n-process 2` adds this checkout's masker with two NER processes (they start only
  for calls with at least `N_PROCESS_MIN_WINDOWS` NER windows: use `--copies 60` or more).

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "pii_eval.jsonl"
PLACEHOLDER = re.compile(r"\[(EMAIL|PHONE|CARD|NATIONAL_ID|IP|EMPLOYEE_ID|PERSON)\]")


def load_masker_module(path: Path | None):
    """This checkout's `flywheel.core.pii`, or the `pii.py` at `path` loaded under another name."""
    if path is None:
        from flywheel.core import pii

        return pii
    spec = importlib.util.spec_from_file_location("baseline_pii", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["baseline_pii"] = module
    spec.loader.exec_module(module)
    return module


def masked_regions(original: str, masked: str) -> list[tuple[int, int, str]] | None:
    """Character ranges of `original` that became placeholders in `masked` (the masker only replaces, so the
    text between placeholders is verbatim); None when the two cannot be aligned."""
    pieces = PLACEHOLDER.split(masked)  # literal, kind, literal, kind, ..., literal
    pattern = "".join(re.escape(p) if i % 2 == 0 else "(.+?)" for i, p in enumerate(pieces))
    match = re.fullmatch(pattern, original, re.DOTALL)
    if match is None:
        return None
    return [(match.start(g), match.end(g), pieces[2 * g - 1]) for g in range(1, len(pieces) // 2 + 1)]


def spans_of(text: str, value: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(re.escape(value), text)]


def quality(masker, rows: list[dict]) -> dict:
    masked = masker.mask_many([r["text"] for r in rows])
    caught, labelled = Counter(), Counter()
    right, made = Counter(), Counter()
    by_source: dict[str, Counter] = defaultdict(Counter)
    leaks, false_positives, unaligned = [], [], 0
    for row, out in zip(rows, masked, strict=True):
        regions = masked_regions(row["text"], out)
        if regions is None:
            unaligned += 1
            continue
        source = by_source[row["source"]]
        source["texts"] += 1
        truth = [(a, b, s["kind"]) for s in row["pii"] for a, b in spans_of(row["text"], s["text"])]
        for a, b, kind in truth:
            labelled[kind] += 1
            if any(ra <= a and b <= rb for ra, rb, _ in regions):
                caught[kind] += 1
            else:
                leaks.append((row["id"], kind, row["text"][a:b]))
        for ra, rb, kind in regions:
            made[kind] += 1
            if any(ra < b and a < rb for a, b, _ in truth):
                right[kind] += 1
            else:
                false_positives.append((row["id"], kind, row["text"][ra:rb]))
        public = [span for value in row["public"] for span in spans_of(row["text"], value)]
        if any(ra < b and a < rb for a, b in public for ra, rb, _ in regions):
            source["lost_public_entity"] += 1
        if not truth and out != row["text"]:
            source["changed_without_pii"] += 1
    kinds = sorted(set(labelled) | set(made))
    return {
        "per_kind": {
            k: {
                "labelled": labelled[k],
                "recall": round(caught[k] / labelled[k], 3) if labelled[k] else None,
                "masked": made[k],
                "precision": round(right[k] / made[k], 3) if made[k] else None,
            }
            for k in kinds
        },
        "all_pii_recall": round(sum(caught.values()) / sum(labelled.values()), 3),
        "all_precision": round(sum(right.values()) / max(1, sum(made.values())), 3),
        "by_source": {k: dict(v) for k, v in sorted(by_source.items())},
        "unaligned": unaligned,
        "leaks": leaks,
        "false_positives": false_positives,
    }


def demo_texts() -> list[str]:
    """The user questions and comments of the demo world, as the collect stage masks them."""
    from flywheel.core.config import load_config
    from flywheel.demo.generator import generate_demo

    config = load_config(REPO / "configs" / "demo.yaml")
    texts = []
    with tempfile.TemporaryDirectory() as tmp:
        generate_demo(tmp, config.experts, n_interactions=1200, weeks=6, seed=config.seed)
        for line in Path(tmp, "logs.jsonl").read_text().splitlines():
            try:
                record = json.loads(line)
                messages = record["request"]["messages"]
            except (ValueError, KeyError, TypeError):
                continue
            for m in messages:
                if isinstance(m, dict) and m.get("role") == "user" and isinstance(m.get("content"), str):
                    texts.append(m["content"])
            comment = (record.get("feedback") or {}).get("comment")
            if isinstance(comment, str) and comment:
                texts.append(comment)
    return texts


def speed(maskers: dict, texts: list[str], repeats: int) -> dict[str, float]:
    """Lines/s of each masker's `mask_many`, best of `repeats`, the maskers taking turns (a busy machine
    slows both alike)."""
    best = dict.fromkeys(maskers, float("inf"))
    for masker in maskers.values():
        masker.mask_many(texts[:50])  # loads the model: a one-off cost, not throughput
    for _ in range(repeats):
        for name, masker in maskers.items():
            started = time.perf_counter()
            masker.mask_many(texts)
            best[name] = min(best[name], time.perf_counter() - started)
    return {name: round(len(texts) / seconds, 1) for name, seconds in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, help="another version's pii.py to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--copies", type=int, default=5, help="demo texts repeated this often for speed")
    parser.add_argument("--details", action="store_true", help="list every leak and false positive")
    parser.add_argument(
        "--n-process", type=int, default=1, help="also time this checkout's masker with this many processes"
    )
    args = parser.parse_args()

    from flywheel.core.config import load_config

    pii_config = load_config(REPO / "configs" / "demo.yaml").collect.pii
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = demo_texts()
    versions = {"new": load_masker_module(None)}
    if args.baseline:
        versions["baseline"] = load_masker_module(args.baseline)
    results: dict = {"sample": {"texts": len(rows), "by_source": Counter(r["source"] for r in rows)}}
    outputs, maskers = {}, {}
    for name, module in versions.items():
        masker = maskers[name] = module.PiiMasker.from_config(pii_config)
        q = quality(masker, rows)
        if not args.details:
            q["leaks"], q["false_positives"] = q["leaks"][:10], q["false_positives"][:20]
        outputs[name] = masker.mask_many(texts)
        results[name] = {
            "quality": q,
            "demo_texts_changed": sum(a != b for a, b in zip(texts, outputs[name], strict=True)),
        }
    if args.n_process > 1:
        from flywheel.core.pii import PiiMasker

        parallel = PiiMasker.from_config(pii_config, n_process=args.n_process)
        maskers[f"new_n_process_{args.n_process}"] = parallel
    for name, lines_per_s in speed(maskers, texts * args.copies, args.repeats).items():
        results.setdefault(name, {})["lines_per_s"] = lines_per_s
    results["demo_texts"] = len(texts)
    if args.baseline:
        pairs = zip(outputs["baseline"], outputs["new"], strict=True)
        differ = [{"baseline": a, "new": b} for a, b in pairs if a != b]
        results["demo_texts_masked_differently"] = len(differ)
        results["demo_differences"] = differ[:20]
        results["speed_ratio_new_over_baseline"] = round(
            results["new"]["lines_per_s"] / results["baseline"]["lines_per_s"], 2
        )
    print(json.dumps(results, ensure_ascii=False))


if __name__ == "__main__":
    main()
