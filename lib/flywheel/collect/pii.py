"""PII masking with typed placeholders, applied before text leaves the store for labelers or training.

A first, pattern-based pass: emails, payment cards (Luhn-checked), phone numbers, IP addresses,
US social security numbers and employee ids. Person names need a NER model (see the collect issue).
"""

from __future__ import annotations

import re

EMPLOYEE_ID = re.compile(r"\b(?:EMP|emp|E)-?\d{5,8}\b")
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
CARD_CANDIDATE = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
IPV4 = re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b")
SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
PHONE = re.compile(r"(?<![\w.])(?:\+?\d{1,3}[ .-]?)?(?:\(\d{2,4}\)[ .-]?|\d{2,4}[ .-])\d{3,4}[ .-]?\d{3,4}\b")


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _mask_cards(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group())
        return "[CARD]" if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group()

    return CARD_CANDIDATE.sub(replace, text)


def mask_pii(text: str, employee_id: re.Pattern[str] = EMPLOYEE_ID) -> str:
    """Replace PII with typed placeholders such as [EMAIL]; order matters (cards before phones)."""
    text = EMAIL.sub("[EMAIL]", text)
    text = employee_id.sub("[EMPLOYEE_ID]", text)
    text = _mask_cards(text)
    text = SSN.sub("[NATIONAL_ID]", text)
    text = IPV4.sub("[IP]", text)
    return PHONE.sub("[PHONE]", text)
