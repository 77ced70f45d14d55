import pytest

from flywheel.collect.pii import luhn_valid, mask_pii


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("reach me at a.b+c@example.co.uk", "reach me at [EMAIL]"),
        ("card 4539 1488 0343 6467 please", "card [CARD] please"),
        ("my id is EMP-123456", "my id is [EMPLOYEE_ID]"),
        ("ssn 123-45-6789", "ssn [NATIONAL_ID]"),
        ("server 10.20.30.40 is down", "server [IP] is down"),
        ("call (408) 555-0199", "call [PHONE]"),
        ("vpn down", "vpn down"),
    ],
)
def test_mask_pii(text, expected):
    assert mask_pii(text) == expected


def test_digits_failing_luhn_are_not_called_a_card():
    # Over-masking a long digit run as a phone is acceptable; calling it a card is not.
    assert "[CARD]" not in mask_pii("order 4539 1488 0343 6468 please")


def test_luhn():
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
