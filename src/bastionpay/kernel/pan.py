"""Card numbers (PANs) in free text: detection and masking (SECURITY-REQUIREMENTS C2, C5, L3).

A candidate is a run of 13–19 ASCII digits, optionally split into groups by single spaces or
dashes (`4242 4242 4242 4242`, `3782-822463-10005`), that passes the Luhn check and is bounded by
characters that are not ASCII letters or digits — so digit stretches inside hex digests and
random base62 ids never match.

Runs of grouped digits are searched at every group boundary, not only as a whole: in
`2024-01-15 4242 4242 4242 4242` the card number is the last four groups. Where several
Luhn-valid spans overlap, `find_pans` reports the leftmost, longest one and `mask_pans` masks
their union, so a card number is never half-masked.

`mask_pans` keeps at most the first 6 and the last 4 digits of each masked region (PCI DSS 3.4.1)
and drops the separators: `424242******4242`. The kept digits are dropped too when, with the
digits grouped next to them, they could form a new candidate, and masking repeats until nothing
matches, so a masked text never matches again.

Pure and dependency-free; cheap enough to run on every log line (a precompiled pre-filter rejects
text without 13 nearly-consecutive digits in one regex search).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

PAN_MIN_DIGITS: Final = 13
PAN_MAX_DIGITS: Final = 19
KEEP_FIRST: Final = 6  # the BIN (PCI DSS 3.4.1 allows up to the first 6 or 8)
KEEP_LAST: Final = 4
MASK_CHAR: Final = "*"

# Any 13 digits with at most one separator between neighbours: text without this holds no PAN.
_MAYBE: Final = re.compile(r"[0-9](?:[ -]?[0-9]){12}")
# A maximal run of digit groups joined by single separators, bounded by non-alphanumerics.
_RUN: Final = re.compile(r"(?<![A-Za-z0-9])[0-9]+(?:[ -][0-9]+)*(?![A-Za-z0-9])")
_GROUP: Final = re.compile(r"[0-9]+")
_DOUBLED: Final = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)  # Luhn: 2·d, minus 9 above 9


@dataclass(frozen=True, slots=True)
class PanMatch:
    """A card number found in a text: `text[start:end]` (separators included) and its digits."""

    start: int
    end: int
    digits: str

    @property
    def last4(self) -> str:
        return self.digits[-KEEP_LAST:]

    @property
    def masked(self) -> str:
        """The display form: first 6, masked middle, last 4 (`424242******4242`)."""
        return _masked(self.digits, keep_first=True, keep_last=True)


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check over a string of ASCII digits; False for anything else."""
    if not digits or not digits.isascii() or not digits.isdigit():
        return False
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def find_pans(text: str) -> list[PanMatch]:
    """Card numbers in `text`, left to right, not overlapping."""
    found: list[PanMatch] = []
    if not _MAYBE.search(text):
        return found
    for run in _RUN.finditer(text):
        groups = _groups(run)
        if sum(len(digits) for _, _, digits in groups) < PAN_MIN_DIGITS:
            continue
        longest: dict[int, int] = {}
        for first, last in _valid_spans(groups):
            longest[first] = max(last, longest.get(first, last))
        index = 0
        while index < len(groups):
            if index not in longest:
                index += 1
                continue
            found.append(_match(groups, index, longest[index]))
            index = longest[index] + 1
    return found


def mask_pans(text: str) -> str:
    """`text` with every card number masked; the result contains no card number."""
    while True:
        masked = _mask_once(text)
        if masked == text:
            return text
        # Each pass replaces digits by MASK_CHAR, so this loop ends; in practice one pass masks
        # everything and the second confirms it.
        text = masked


def _groups(run: re.Match[str]) -> list[tuple[int, int, str]]:
    offset = run.start()
    return [
        (offset + group.start(), offset + group.end(), group.group())
        for group in _GROUP.finditer(run.group())
    ]


def _valid_spans(groups: list[tuple[int, int, str]]) -> list[tuple[int, int]]:
    """Every (first, last) group range whose digits form a Luhn-valid 13–19 digit number.

    Luhn sums come from prefix sums in O(1) per range, so a long run of short groups costs
    linear time, not a Luhn pass per candidate.
    """
    digits = "".join(group[2] for group in groups)
    # even[k] / odd[k]: the Luhn sum of digits[:k] when the last digit of the range sits at an
    # even / odd index (digits at the other parity are doubled).
    even = [0]
    odd = [0]
    for index, char in enumerate(digits):
        plain = ord(char) - 48
        doubled = _DOUBLED[plain]
        even.append(even[-1] + (plain if index % 2 == 0 else doubled))
        odd.append(odd[-1] + (doubled if index % 2 == 0 else plain))
    bounds = [0]
    for group in groups:
        bounds.append(bounds[-1] + len(group[2]))
    spans: list[tuple[int, int]] = []
    for first in range(len(groups)):
        start = bounds[first]
        for last in range(first, len(groups)):
            end = bounds[last + 1]
            length = end - start
            if length > PAN_MAX_DIGITS:
                break
            if length >= PAN_MIN_DIGITS:
                sums = even if (end - 1) % 2 == 0 else odd
                if (sums[end] - sums[start]) % 10 == 0:
                    spans.append((first, last))
    return spans


def _match(groups: list[tuple[int, int, str]], first: int, last: int) -> PanMatch:
    digits = "".join(group[2] for group in groups[first : last + 1])
    return PanMatch(start=groups[first][0], end=groups[last][1], digits=digits)


def _masked(digits: str, *, keep_first: bool, keep_last: bool) -> str:
    head = digits[:KEEP_FIRST] if keep_first else ""
    tail = digits[-KEEP_LAST:] if keep_last else ""
    return head + MASK_CHAR * (len(digits) - len(head) - len(tail)) + tail


def _mask_once(text: str) -> str:
    if not _MAYBE.search(text):
        return text
    pieces: list[str] = []
    position = 0
    for run in _RUN.finditer(text):
        groups = _groups(run)
        if sum(len(digits) for _, _, digits in groups) < PAN_MIN_DIGITS:
            continue
        for first, last in _merged(_valid_spans(groups)):
            match = _match(groups, first, last)
            # Keep the BIN / last 4 only where, together with the digits joined to them in the
            # same run, they cannot reach a candidate's length: `1234567 424242…` must not
            # re-match as `1234567 424242`. (An upper bound: neighbours may be masked as well.)
            before = sum(len(group[2]) for group in groups[:first])
            after = sum(len(group[2]) for group in groups[last + 1 :])
            pieces.append(text[position : match.start])
            pieces.append(
                _masked(
                    match.digits,
                    keep_first=before + KEEP_FIRST < PAN_MIN_DIGITS,
                    keep_last=after + KEEP_LAST < PAN_MIN_DIGITS,
                )
            )
            position = match.end
    if not pieces:
        return text
    pieces.append(text[position:])
    return "".join(pieces)


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Overlapping group ranges merged into one, so no card number is masked only in part."""
    merged: list[tuple[int, int]] = []
    for first, last in sorted(spans):
        if merged and first <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], last))
        else:
            merged.append((first, last))
    return merged
