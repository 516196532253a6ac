"""acquirer.framing: the 2-byte length prefix — partial reads, oversize and zero-length frames."""

from __future__ import annotations

import asyncio

import pytest

from bastionpay.acquirer.framing import (
    ABSOLUTE_MAX,
    EmptyFrame,
    FrameDecoder,
    FrameTooLarge,
    TruncatedFrame,
    check_max_size,
    encode_frame,
    read_frame,
)


def test_a_frame_is_its_big_endian_length_then_the_payload() -> None:
    assert encode_frame(b"0800abc") == b"\x00\x070800abc"
    assert encode_frame(b"x" * 300, max_size=300)[:2] == b"\x01\x2c"


def test_encoding_refuses_empty_and_oversize_payloads() -> None:
    with pytest.raises(EmptyFrame):
        encode_frame(b"")
    with pytest.raises(FrameTooLarge):
        encode_frame(b"x" * 101, max_size=100)


@pytest.mark.parametrize("size", [0, -1, ABSOLUTE_MAX + 1])
def test_the_size_limit_fits_two_bytes(size: int) -> None:
    with pytest.raises(ValueError, match="max frame size"):
        check_max_size(size)


def _read(chunks: list[bytes], *, eof: bool = True, **kwargs: float | int) -> list[bytes | None]:
    """Feed `chunks` to a StreamReader one by one (partial reads) and read frames until EOF."""

    async def scenario() -> list[bytes | None]:
        reader = asyncio.StreamReader()

        async def feed() -> None:
            for chunk in chunks:
                reader.feed_data(chunk)
                await asyncio.sleep(0)
            if eof:
                reader.feed_eof()

        feeder = asyncio.create_task(feed())
        frames: list[bytes | None] = []
        while True:
            frame = await read_frame(reader, **kwargs)  # type: ignore[arg-type]
            frames.append(frame)
            if frame is None:
                break
        await feeder
        return frames

    return asyncio.run(scenario())


def test_frames_split_across_reads_are_reassembled() -> None:
    stream = encode_frame(b"first") + encode_frame(b"second")
    byte_by_byte = [stream[i : i + 1] for i in range(len(stream))]
    assert _read(byte_by_byte) == [b"first", b"second", None]
    assert _read([stream]) == [b"first", b"second", None]


def test_clean_eof_between_frames_is_none_but_eof_inside_a_frame_is_an_error() -> None:
    assert _read([]) == [None]
    with pytest.raises(TruncatedFrame):
        _read([b"\x00"])  # half a header
    with pytest.raises(TruncatedFrame):
        _read([b"\x00\x05abc"])  # body cut short


def test_zero_length_and_oversize_headers_are_rejected_before_any_body_is_read() -> None:
    with pytest.raises(EmptyFrame):
        _read([b"\x00\x00"])
    with pytest.raises(FrameTooLarge):
        _read([b"\xff\xff"], eof=False, max_size=4096)


def test_a_body_that_never_arrives_times_out() -> None:
    with pytest.raises(TruncatedFrame, match="in time"):
        _read([b"\x00\x10abc"], eof=False, body_timeout=0.05)


def test_an_idle_connection_times_out_waiting_for_a_header() -> None:
    with pytest.raises(TimeoutError):
        _read([], eof=False, idle_timeout=0.05)


def test_the_incremental_decoder_handles_partial_and_coalesced_reads() -> None:
    decoder = FrameDecoder(max_size=64)
    stream = encode_frame(b"one") + encode_frame(b"two") + encode_frame(b"three")
    collected: list[bytes] = []
    for index in range(len(stream)):
        collected += decoder.feed(stream[index : index + 1])
    assert collected == [b"one", b"two", b"three"]
    assert decoder.pending == 0
    assert decoder.feed(stream + b"\x00") == [b"one", b"two", b"three"]
    assert decoder.pending == 1  # half a header, kept for the next read


def test_the_incremental_decoder_rejects_bad_headers_as_soon_as_they_are_complete() -> None:
    with pytest.raises(EmptyFrame):
        FrameDecoder().feed(b"\x00\x00")
    with pytest.raises(FrameTooLarge):
        FrameDecoder(max_size=10).feed(b"\x00\x0b")
