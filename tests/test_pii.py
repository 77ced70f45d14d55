import re

import pandas as pd
import pytest

from flywheel.collect.ingest import ingest_with_config
from flywheel.core.config import REPO_ROOT, load_config
from flywheel.core.pii import PiiMasker, luhn_valid, mask_pii
from flywheel.core.store import Store
from flywheel.demo.world import phrasebook


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("reach me at a.b+c@example.co.uk", "reach me at [EMAIL]"),
        ("card 4539 1488 0343 6467 please", "card [CARD] please"),
        ("card 4539148803436467 please", "card [CARD] please"),
        ("card 4539-1488-0343-6467, exp 09/28", "card [CARD], exp 09/28"),
        ("my id is EMP-123456", "my id is [EMPLOYEE_ID]"),
        ("ssn 123-45-6789", "ssn [NATIONAL_ID]"),
        ("server 10.20.30.40 is down", "server [IP] is down"),
        ("ping fe80::1ff:fe23:4567:890a now", "ping [IP] now"),
        ("call (408) 555-0199", "call [PHONE]"),
        ("call 408-555-0123", "call [PHONE]"),
        ("call +1 650 555 0142", "call [PHONE]"),
        ("call 512.555.0111", "call [PHONE]"),
        ("call +44 20 7946 0123", "call [PHONE]"),
        ("vpn down", "vpn down"),
        ("meeting at 10:30:00 on 2026-09-08 in room 5.2", "meeting at 10:30:00 on 2026-09-08 in room 5.2"),
        ("my 401k and ESPP for FY2026", "my 401k and ESPP for FY2026"),
    ],
)
def test_mask_patterns(text, expected):
    assert mask_pii(text) == expected


def test_digits_failing_luhn_are_not_called_a_card():
    # Over-masking a long digit run as a phone is acceptable; calling it a card is not.
    assert "[CARD]" not in mask_pii("order 4539 1488 0343 6468 please")


def test_invalid_ssn_is_left_alone():
    assert mask_pii("ticket 000-12-3456") == "ticket 000-12-3456"


def test_luhn():
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


def test_employee_id_pattern_is_configurable():
    masker = PiiMasker(r"\bSTAFF\d{4}\b", names=False)
    assert masker.mask("I am STAFF1234, not EMP-123456") == "I am [EMPLOYEE_ID], not EMP-123456"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my manager Priya Raman said to ask here.", "my manager [PERSON] said to ask here."),
        ("asking on behalf of Wei Okafor.", "asking on behalf of [PERSON]."),
        ("Tomasz Garcia from my team told me to check", "[PERSON] from my team told me to check"),
        ("please loop in Emily Brown about the offsite", "please loop in [PERSON] about the offsite"),
    ],
)
def test_person_names(text, expected):
    assert PiiMasker().mask(text) == expected


def test_product_names_listed_as_keep_terms_are_not_people():
    text = "How much revenue does Vega Toolkit bring in?"
    assert PiiMasker(keep_terms=["Vega Toolkit"]).mask(text) == text


def test_names_are_masked_in_batches_in_input_order():
    texts = ["vpn down", "my manager Anna Patel said hi", "reach a@b.co", "Noa Levy from my team asked"]
    assert PiiMasker().mask_many(texts) == [
        "vpn down",
        "my manager [PERSON] said hi",
        "reach [EMAIL]",
        "[PERSON] from my team asked",
    ]


# The demo's seeded PII, recognised in the raw logs by its known formats (data/DATA_CARD.md).
SEEDED = {
    "email": re.compile(r"[\w.]+@(?:gmail|yahoo|corp\.example)\.com"),
    "phone": re.compile(
        r"\(408\) 555-01\d\d|408-555-01\d\d|\+1 650 555 01\d\d|512\.555\.01\d\d|\+44 20 7946 0\d{3}"
    ),
    "card": re.compile(r"\b\d{4}([ -]?)\d{4}\1\d{4}\1\d{4}\b"),
    "employee_id": re.compile(r"EMP-\d{6}"),
    "ip": re.compile(r"\b10\.\d{1,3}\.\d{1,3}\.\d{1,3}\b"),
    "person": re.compile(
        rf"\b(?:{'|'.join(phrasebook().first_names)}) (?:{'|'.join(phrasebook().last_names)})\b"
    ),
}


def test_seeded_demo_pii_never_reaches_labeling_or_training(tmp_path):
    from flywheel.demo.generator import generate_demo
    from flywheel.triage.ground_truth import build_ground_truth

    config = load_config(REPO_ROOT / "configs" / "demo.yaml")
    generate_demo(tmp_path / "demo", config.experts, n_interactions=1200, weeks=6, seed=config.seed)
    raw_text = (tmp_path / "demo" / "logs.jsonl").read_text()
    seeded = {kind: {m.group() for m in pattern.finditer(raw_text)} for kind, pattern in SEEDED.items()}
    assert all(len(values) >= 3 for values in seeded.values()), {k: len(v) for k, v in seeded.items()}

    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    ingest_with_config(store, [tmp_path / "demo" / "logs.jsonl"], config, progress=False)
    frame = store.interactions_frame()
    audit = pd.DataFrame({"interaction_id": frame["id"][::3], "split": "test"})  # every third: test
    answers = pd.DataFrame(  # the audit's answer: the routed expert (enough to build the splits)
        {
            "interaction_id": audit["interaction_id"],
            "reviewer": "r1",
            "correct_expert": frame["routed_expert"][::3],
            "cause": None,
            "task": "audit",
        }
    )
    truth = build_ground_truth(frame, answers, list(config.experts), tmp_path / "gt", audit=audit, seed=0)
    exported = "\n".join(
        [
            *frame["query_masked"],
            *frame["query"],  # keep_original is off: the store keeps no raw question either
            *frame["request_json"],
            *frame["comment"].dropna(),
            *pd.concat([truth.train, truth.validation, truth.test])["text"],
        ]
    )
    leaked = {kind: sorted(v for v in values if v in exported) for kind, values in seeded.items()}
    assert leaked == {kind: [] for kind in SEEDED}
    for placeholder in ("[EMAIL]", "[PHONE]", "[CARD]", "[EMPLOYEE_ID]", "[IP]", "[PERSON]"):
        assert placeholder in exported
