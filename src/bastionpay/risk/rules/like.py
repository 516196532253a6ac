"""SQL `LIKE` matching in linear time, without regular expressions.

`%` matches any run of characters, `_` exactly one, and a backslash makes the next character
literal (`\\%`, `\\_`, `\\\\`). Translating a merchant's pattern into a backtracking regex would let
`%a%a%a…b` take exponential time against a long string (ReDoS), so the matcher works on the
pattern's structure instead: split at `%`, the pieces between are fixed-length segments; the first
must match at the start, the last at the end, and each middle one is placed at its leftmost
occurrence after the previous. Leftmost placement is optimal for fixed-length segments (it leaves
the most room for the rest), so there is no backtracking at all. Segments without `_` are found with
`str.find`; segments with `_` with the bit-parallel Shift-And algorithm, one pass over the text.
Total work: O(len(text) + len(pattern)) big-integer steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bastionpay.risk.rules.values import InvalidValue

# None stands for `_`, any one character.
Segment = tuple[str | None, ...]


@dataclass(frozen=True, slots=True, eq=False)
class _Finder:
    """Locates a fixed-length segment; precomputed once per pattern."""

    segment: Segment
    literal: str | None  # the segment as text when it has no `_`
    masks: dict[str, int] = field(default_factory=dict)
    wildcard_mask: int = 0

    @classmethod
    def build(cls, segment: Segment) -> _Finder:
        if all(ch is not None for ch in segment):
            return cls(segment, "".join(ch for ch in segment if ch is not None))
        masks: dict[str, int] = {}
        wildcard = 0
        for index, ch in enumerate(segment):
            if ch is None:
                wildcard |= 1 << index
            else:
                masks[ch] = masks.get(ch, 0) | (1 << index)
        return cls(segment, None, masks, wildcard)

    def find(self, text: str, start: int, end: int) -> int:
        """Leftmost i ≥ start with text[i:i+len] matching and i+len ≤ end, else -1."""
        size = len(self.segment)
        if self.literal is not None:
            return text.find(self.literal, start, end)
        if self.wildcard_mask == (1 << size) - 1:  # only `_`: any position with room will do
            return start if start + size <= end else -1
        # Shift-And: bit j of `state` is set when the last j+1 characters read match the first
        # j+1 characters of the segment.
        state = 0
        goal = 1 << (size - 1)
        masks = self.masks
        wildcard = self.wildcard_mask
        for index in range(start, end):
            state = ((state << 1) | 1) & (masks.get(text[index], 0) | wildcard)
            if state & goal:
                return index - size + 1
        return -1


def _matches_at(segment: Segment, text: str, start: int) -> bool:
    if start < 0 or start + len(segment) > len(text):
        return False
    return all(ch is None or ch == text[start + i] for i, ch in enumerate(segment))


@dataclass(frozen=True, slots=True)
class LikePattern:
    source: str
    head: Segment  # anchored at the start
    middle: tuple[_Finder, ...]
    tail: Segment | None  # anchored at the end; None when the pattern has no `%`

    def matches(self, text: str) -> bool:
        if self.tail is None:
            return len(text) == len(self.head) and _matches_at(self.head, text, 0)
        end = len(text) - len(self.tail)
        if end < len(self.head):
            return False
        if not _matches_at(self.head, text, 0) or not _matches_at(self.tail, text, end):
            return False
        position = len(self.head)
        for finder in self.middle:
            found = finder.find(text, position, end)
            if found < 0:
                return False
            position = found + len(finder.segment)
        return True


def compile_like(pattern: str) -> LikePattern:
    """Parse a LIKE pattern; InvalidValue for a trailing lone backslash."""
    segments: list[list[str | None]] = [[]]
    index = 0
    while index < len(pattern):
        ch = pattern[index]
        if ch == "\\":
            if index + 1 == len(pattern):
                raise InvalidValue("a like pattern cannot end with a lone backslash")
            segments[-1].append(pattern[index + 1])
            index += 2
            continue
        if ch == "%":
            segments.append([])
        elif ch == "_":
            segments[-1].append(None)
        else:
            segments[-1].append(ch)
        index += 1
    if len(segments) == 1:
        return LikePattern(pattern, tuple(segments[0]), (), None)
    middle = tuple(_Finder.build(tuple(seg)) for seg in segments[1:-1] if seg)
    return LikePattern(pattern, tuple(segments[0]), middle, tuple(segments[-1]))
