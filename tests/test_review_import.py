"""Bulk label import, the part that needs no server: reading CSV / JSONL / Parquet label files and checking
every row (tests/test_argilla_hardening.py sends them through the real Argilla server)."""

import json

import pandas as pd
import pytest

from flywheel.triage.review import read_label_rows, validate_label_rows

EXPERTS = ["it_help", "hr_benefits", "facilities"]
KNOWN = {"ix-1", "ix-2", "ix-3", "ix-4"}


def reasons(rejected):
    return {r["row"]: r["reason"] for r in rejected}


def test_every_bad_row_is_rejected_with_a_reason_and_none_is_dropped():
    rows = [
        {"row": 2, "interaction_id": "ix-1", "expert": "it_help", "cause": "routing", "reviewer": "alice"},
        {"row": 3, "interaction_id": "ix-404", "expert": "it_help", "cause": "routing"},
        {"row": 4, "interaction_id": "ix-2", "expert": "astrology", "cause": "routing"},
        {"row": 5, "interaction_id": "ix-2", "expert": "it_help", "cause": "bad luck"},
        {"row": 6, "interaction_id": "ix-2", "expert": "it_help", "cause": ""},
        {"row": 7, "interaction_id": "", "expert": "it_help", "cause": "routing"},
        {"row": 8, "interaction_id": "ix-2", "expert": "it_help", "cause": "routing", "reviewer": "Jane Doe"},
        {"row": 9, "interaction_id": "ix-1", "expert": "it_help", "cause": "routing", "reviewer": "alice"},
        {"row": 10, "interaction_id": "ix-3", "expert": "it_help", "cause": "routing"},
        {"row": 11, "interaction_id": "ix-3", "expert": "facilities", "cause": "routing"},
        {"row": 12, "id": "ix-4", "correct_expert": "out_of_scope", "cause": "out_of_scope"},
        {"row": 13, "interaction_id": "ix-4", "expert": "it_help", "cause": "routing", "reviewer": "bob"},
        {
            "row": 14,
            "interaction_id": "ix-4",
            "expert": "it_help",
            "cause": "other",
            "reviewer": "simulated-expert-1",
        },
    ]
    answers, rejected = validate_label_rows(rows, EXPERTS, KNOWN, default_reviewer="imported")
    assert len(answers) + len(rejected) == len(rows)  # nothing silently dropped
    assert [(a["interaction_id"], a["reviewer"], a["correct_expert"]) for a in answers] == [
        ("ix-1", "alice", "it_help"),
        ("ix-4", "imported", "out_of_scope"),
        ("ix-4", "bob", "it_help"),
    ]
    why = reasons(rejected)
    assert why[3].startswith("unknown interaction id 'ix-404'")
    assert why[4].startswith("unknown expert 'astrology'")
    assert why[5].startswith("unknown cause 'bad luck'")
    assert why[6].startswith("no cause")
    assert why[7] == "no interaction_id"
    assert "not a valid Argilla username" in why[8]
    assert why[9] == "duplicate of row 2"  # identical: imported once
    assert why[10].startswith("conflicting answers") and why[11].startswith("conflicting answers")
    assert "simulated panel" in why[14]


def test_reads_csv_jsonl_and_parquet_with_row_numbers(tmp_path):
    frame = pd.DataFrame(
        {"interaction_id": ["ix-1", "ix-2"], "expert": ["it_help", "facilities"], "cause": ["routing"] * 2}
    )
    frame.to_csv(tmp_path / "labels.csv", index=False)
    frame.to_parquet(tmp_path / "labels.parquet")
    lines = [json.dumps(r) for r in frame.to_dict("records")]
    (tmp_path / "labels.jsonl").write_text(lines[0] + "\n{not json\n\n[1, 2]\n" + lines[1] + "\n")

    csv_rows, csv_bad = read_label_rows(tmp_path / "labels.csv")
    assert [r["row"] for r in csv_rows] == [2, 3] and not csv_bad  # line 1 is the header
    parquet_rows, _ = read_label_rows(tmp_path / "labels.parquet")
    assert [r["row"] for r in parquet_rows] == [1, 2]
    jsonl_rows, jsonl_bad = read_label_rows(tmp_path / "labels.jsonl")
    assert [r["row"] for r in jsonl_rows] == [1, 5]
    assert [(b["row"], b["reason"].split(" (")[0]) for b in jsonl_bad] == [
        (2, "not JSON"),
        (4, "not a JSON object"),
    ]
    for rows in (csv_rows, parquet_rows, jsonl_rows):
        answers, rejected = validate_label_rows(rows, EXPERTS, KNOWN, "imported")
        assert len(answers) == 2 and not rejected


def test_unreadable_or_unknown_files_are_a_clear_error(tmp_path):
    (tmp_path / "labels.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ValueError, match="cannot read it as parquet"):
        read_label_rows(tmp_path / "labels.parquet")
    (tmp_path / "labels.xlsx").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown label file type"):
        read_label_rows(tmp_path / "labels.xlsx")
    with pytest.raises(FileNotFoundError):
        read_label_rows(tmp_path / "missing.csv")
