"""Message framing: a 2-byte big-endian length prefix before every ISO 8583 message.

This is the common "2-byte header" framing of acquirer links: the header counts the bytes of the
message that follows, not itself. Limits are explicit (TigerBeetle style — a limit on everything):

- a zero length is an error (there is no empty ISO 8583 message; a peer sending one is confused);
- a length above `max_size` is an error before a single body byte is read, so a hostile or broken
  peer cannot make us buffer up to 64 KiB per connection;
- a body that does not arrive within its time limit is an error (a slow-drip peer cannot hold a
  connection slot forever).

Any framing error means the byte stream can no longer be trusted to be aligned on message
boundaries: the caller closes the connection. Nothing here ever includes frame content in an
error message — frames carry card numbers (L3).
"""

from __future__ import annotations

import asyncio
from typing import Final

HEADER_SIZE: Final = 2
ABSOLUTE_MAX: Final = 0xFFFF  # what two bytes can express
DEFAULT_MAX_SIZE: Final = 4096  # our largest message (a 0100 with DE 48) is well under 1 KiB


class FramingError(Exception):
    """The byte stream is not a valid sequence of frames; close the connection."""


class FrameTooLarge(FramingError):
    pass


class EmptyFrame(FramingError):
    pass


class TruncatedFrame(FramingError):
    """The peer closed the connection in the middle of a frame."""


def _check_size(length: int, max_size: int) -> None:
    if length == 0:
        raise EmptyFrame("zero-length frame")
    if length > max_size:
        raise FrameTooLarge(f"frame of {length} bytes exceeds the limit of {max_size}")


def check_max_size(max_size: int) -> int:
    if not 0 < max_size <= ABSOLUTE_MAX:
        raise ValueError(f"max frame size must be within 1..{ABSOLUTE_MAX}")
    return max_size


def encode_frame(payload: bytes | bytearray, *, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """`payload` with its length prefix; refuses what the peer would refuse."""
    _check_size(len(payload), max_size)
    return len(payload).to_bytes(HEADER_SIZE, "big") + bytes(payload)


async def read_frame(
    reader: asyncio.StreamReader,
    *,
    max_size: int = DEFAULT_MAX_SIZE,
    idle_timeout: float | None = None,
    body_timeout: float | None = None,
) -> bytes | None:
    """The next frame's payload, or None when the peer closed cleanly between frames.

    `idle_timeout` bounds the wait for a header (TimeoutError when it passes); `body_timeout`
    bounds the wait for the rest of a frame once its header has arrived.
    """
    try:
        header = await asyncio.wait_for(reader.readexactly(HEADER_SIZE), idle_timeout)
    except asyncio.IncompleteReadError as exc:
        if not exc.partial:
            return None
        raise TruncatedFrame("connection closed inside a frame header") from None
    length = int.from_bytes(header, "big")
    _check_size(length, max_size)
    try:
        return await asyncio.wait_for(reader.readexactly(length), body_timeout)
    except asyncio.IncompleteReadError:
        raise TruncatedFrame("connection closed inside a frame") from None
    except TimeoutError:
        raise TruncatedFrame("frame body did not arrive in time") from None


class FrameDecoder:
    """Incremental framing for a blocking socket: `feed` bytes as they arrive, get whole frames.

    Buffers at most one frame plus its header, since the size is checked as soon as a header is
    complete.
    """

    def __init__(self, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        self._max_size = check_max_size(max_size)
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        frames: list[bytes] = []
        while len(self._buffer) >= HEADER_SIZE:
            length = int.from_bytes(self._buffer[:HEADER_SIZE], "big")
            _check_size(length, self._max_size)
            end = HEADER_SIZE + length
            if len(self._buffer) < end:
                break
            frames.append(bytes(self._buffer[HEADER_SIZE:end]))
            del self._buffer[:end]
        return frames
