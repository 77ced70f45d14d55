"""Issue 11 item 9 (masker side): the masker takes any str of any length, never raises, leaves no pattern PII
behind, and is idempotent."""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flywheel.core import pii
from flywheel.core.pii import PiiMasker, mask_patterns

MASKER = PiiMasker(keep_terms=["Vega Toolkit"])

FRAGMENTS = st.sampled_from(
    [
        "my manager Priya Raman said",
        "Anna Patel",
        "Taylor Swift",
        "a.b+c@example.co.uk",
        "4539 1488 0343 6467",
        "(408) 555-0199",
        "+44 20 7946 0123",
        "EMP-123456",
        "123-45-6789",
        "10.20.30.40",
        "fe80::1ff:fe23:4567:890a",
        "Vega Toolkit",
        "?",
        " ",
        "\n",
        "\x00",
        "\ud800",
        "\u202e",
        "😀",
        "مرحبا",
        "Hi Tomás,",
    ]
)
TEXTS = st.one_of(st.text(), st.lists(st.one_of(FRAGMENTS, st.text(max_size=8)), max_size=12).map("".join))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS)
def test_patterns_never_raise_and_are_idempotent(text):
    out = MASKER.mask_many([text], names=False)[0]
    out.encode("utf-8")  # no lone surrogate survives
    assert mask_patterns(out) == out  # nothing the pattern stage would find is left
    assert MASKER.mask_many([out], names=False)[0] == out


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(TEXTS)
def test_mask_never_raises_and_is_idempotent(text):
    out = MASKER.mask(text)
    out.encode("utf-8")
    assert mask_patterns(out) == out
    assert MASKER.mask(out) == out


@pytest.mark.parametrize(
    "text",
    [
        "\ud800 my manager Anna Patel said",  # spaCy cannot encode a lone surrogate
        "Anna\x00 Patel told me?",
        "my manager Anna Patel\x00 said",  # a NUL must not hide the name from the model
        "\u202eRTL مرحبا my manager Anna Patel said 😀",
    ],
)
def test_odd_characters_neither_crash_nor_hide_a_name(text):
    out = MASKER.mask(text)
    out.encode("utf-8")
    assert "Anna" not in out and "Patel" not in out, out


def test_a_text_over_a_million_characters_is_masked_whole():
    # spaCy refuses texts over nlp.max_length (E088); the masker reads them in bounded windows and, past its
    # NER budget, masks every name candidate without asking the model (it fails closed).
    line = "my manager Priya Raman said hello to the team. Nothing else to add. "
    text = line * (1_100_000 // len(line) + 1) + "Call 408-555-0199 or mail priya@example.com"
    assert len(text) > 1_000_000
    out = MASKER.mask(text)
    for secret in ("Priya", "Raman", "555-0199", "priya@example.com"):
        assert secret not in out
    assert out.count("[PERSON]") == text.count("Priya Raman")
    assert out.count("Nothing else to add.") == text.count("Nothing else to add.")


def test_windows_are_bounded_and_cover_the_hints():
    text = "x " * 20_000 + "Anna Patel" + " y" * 20_000
    start = text.index("Anna")
    windows = pii._windows(text, [(start, start + 10)])
    assert all(b - a <= pii.MAX_NER_CHARS for a, b in windows)
    assert any(a <= start and start + 10 <= b for a, b in windows)
    windows = pii._windows("Ab " * 100_000, [(0, 300_000)])
    assert all(b - a <= pii.MAX_NER_CHARS for a, b in windows)
    assert windows[0][0] == 0 and windows[-1][1] == 300_000
