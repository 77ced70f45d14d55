"""Issue 11 item 7: public names (people in the news, products, places) are not masked as people, and no
private name gets through. Measured on the labelled sample data/pii_eval.jsonl (bench/pii_quality.py)."""

import json
import sys
from pathlib import Path

import pytest

from flywheel.core.config import REPO_ROOT, load_config
from flywheel.core.pii import PiiMasker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.pii_quality import SAMPLE, quality  # noqa: E402


@pytest.fixture(scope="module")
def masker() -> PiiMasker:
    return PiiMasker.from_config(load_config(REPO_ROOT / "configs" / "demo.yaml").collect.pii)


@pytest.fixture(scope="module")
def sample_quality(masker) -> dict:
    rows = [json.loads(line) for line in SAMPLE.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 500
    return quality(masker, rows)


@pytest.mark.parametrize(
    "text",
    [
        "Taylor Swift rocks Super Bowl crowds",
        "LeBron James scores 40 as the Lakers beat the Celtics",
        "Nvidia CEO Jensen Huang says demand for Blackwell chips is insane",
        "Meta's Mark Zuckerberg testifies about child safety",
        "Senator Elizabeth Warren calls for tougher bank rules",
        "is Martin Luther King Jr. Day a paid holiday this year?",
        "is the Taylor Swift concert a valid team offsite expense?",
        "how do I request a Herman Miller chair?",
        "I spilled coffee on my MacBook Pro, what now?",
        "how does Vega Toozkit handle memory pooling?",  # a misspelt keep term
    ],
)
def test_public_names_are_kept(masker, text):
    assert masker.mask(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my manager Priya Raman said to ask here.", "my manager [PERSON] said to ask here."),
        ("Eva Novotná told me the FSA deadline moved", "[PERSON] told me the FSA deadline moved"),
        ("please loop in Fatima Al-Sayed about it", "please loop in [PERSON] about it"),
        ("who replaced Kevin O'Brien as facilities lead?", "who replaced [PERSON] as facilities lead?"),
        ("my colleague Lena says the card fails", "my colleague [PERSON] says the card fails"),
        ("is Dr. Amelia Stone the nurse this week?", "is [PERSON] the nurse this week?"),
        ("Where is Ingrid Johansson's desk?", "Where is [PERSON]'s desk?"),
        ("Regards, Paolo Bianchi", "Regards, [PERSON]"),
        # a famous name in an employee's request is still a colleague unless something marks it public
        ("the recruiter Rachel Green promised a bonus, when is it paid?", None),
        ("my manager Taylor Swift approved the trip", "my manager [PERSON] approved the trip"),
    ],
)
def test_private_names_are_masked(masker, text, expected):
    out = masker.mask(text)
    if expected is None:
        assert "[PERSON]" in out and "Rachel Green" not in out
    else:
        assert out == expected


def test_public_news_keeps_its_key_entities(sample_quality):
    news = sample_quality["by_source"]["public-news"]
    assert news["texts"] >= 200
    assert news.get("lost_public_entity", 0) <= 0.02 * news["texts"], sample_quality["false_positives"]
    employee_public = sample_quality["by_source"]["employee-public"]
    assert employee_public.get("lost_public_entity", 0) <= 2, sample_quality["false_positives"]


def test_person_precision_and_recall_on_the_labelled_sample(sample_quality):
    person = sample_quality["per_kind"]["PERSON"]
    assert person["precision"] >= 0.9, sample_quality["false_positives"]
    assert person["recall"] >= 0.95, sample_quality["leaks"]


def test_every_planted_demo_pii_is_still_masked(sample_quality):
    leaks = [leak for leak in sample_quality["leaks"] if leak[0].startswith("demo-")]
    assert leaks == []
    for kind in ("EMAIL", "PHONE", "CARD", "EMPLOYEE_ID", "IP"):
        assert sample_quality["per_kind"][kind]["precision"] == 1.0
