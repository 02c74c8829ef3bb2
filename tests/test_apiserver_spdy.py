"""SPDY/3.1 framing (podnet.apiserver.spdy): what port-forward's tunnelled session exchanges.

The end-to-end proof is kubectl port-forward in test_apiserver_streams; these pin the framing."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from podnet.apiserver import spdy


def test_the_dictionary_is_the_specs():
    """zlib names a preset dictionary by its Adler-32: SPDY/3's is 0xe3c6a7c2, 1423 bytes."""
    assert len(spdy.DICTIONARY) == 1423
    assert zlib.adler32(spdy.DICTIONARY) == 0xE3C6A7C2
    assert spdy.DICTIONARY.startswith(b"\x00\x00\x00\x07options\x00\x00\x00\x04head")
    assert spdy.DICTIONARY.endswith(b"charset=iso-8859-1,utf-,*,enq=0.")


def test_a_syn_reply_is_laid_out_as_the_spec_says():
    frame = spdy.FrameWriter().syn_reply(5)
    control, version, kind = frame[0] >> 7, struct.unpack(">H", frame[:2])[0] & 0x7FFF, struct.unpack(">H", frame[2:4])[0]
    flags, length = frame[4], struct.unpack(">I", b"\0" + frame[5:8])[0]
    assert (control, version, kind, flags, length) == (1, 3, spdy.SYN_REPLY, 0, len(frame) - 8)
    assert struct.unpack(">I", frame[8:12])[0] == 5
    # the header block: zlib with the dictionary, sync-flushed, holding zero headers
    inflate = zlib.decompressobj(zdict=spdy.DICTIONARY)
    assert inflate.decompress(frame[12:]) == b"\0\0\0\0"


def test_a_data_frame_carries_its_stream_fin_and_bytes():
    assert spdy.FrameWriter.data(7, b"abc", fin=True) == b"\x00\x00\x00\x07\x01\x00\x00\x03abc"
    assert spdy.FrameReader().feed(b"\x00\x00\x00\x07\x01\x00\x00\x03abc") == [spdy.Data(7, b"abc", True)]


def every_frame() -> tuple[bytes, list]:
    writer = spdy.FrameWriter()
    headers = {"streamtype": ["error"], "port": ["8080"], "requestid": ["0"]}
    frames = [
        (writer.syn_stream(1, headers), spdy.SynStream(1, 0, 0, headers, False, False)),
        (writer.syn_stream(3, {"streamtype": ["data"], "x": ["a", "b"]}, fin=True, priority=2),
         spdy.SynStream(3, 0, 2, {"streamtype": ["data"], "x": ["a", "b"]}, True, False)),
        (writer.syn_reply(1), spdy.SynReply(1, {}, False)),
        (writer.headers(3, {"k": ["v"]}, fin=True), spdy.HeadersFrame(3, {"k": ["v"]}, True)),
        (writer.data(3, b"payload"), spdy.Data(3, b"payload", False)),
        (writer.rst_stream(3, spdy.CANCEL), spdy.RstStream(3, spdy.CANCEL)),
        (writer.settings(((0, 7, 65536),)), spdy.Settings(((0, 7, 65536),))),
        (writer.ping(9), spdy.Ping(9)),
        (writer.window_update(3, 4096), spdy.WindowUpdate(3, 4096)),
        (writer.goaway(3), spdy.GoAway(3, spdy.GOAWAY_OK)),
    ]
    return b"".join(data for data, _ in frames), [frame for _, frame in frames]


def test_every_frame_reads_back_as_written():
    stream, expected = every_frame()
    assert spdy.FrameReader().feed(stream) == expected


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=40), max_size=30))
def test_frames_read_the_same_however_the_bytes_are_split(cuts):
    """spdystream writes a frame field by field, each a WebSocket message of its own."""
    stream, expected = every_frame()
    reader, frames, at = spdy.FrameReader(), [], 0
    for size in cuts:
        frames += reader.feed(stream[at:at + size])
        at += size
    frames += reader.feed(stream[at:])
    assert frames == expected


def test_header_blocks_share_one_compression_context_per_direction():
    """A second block compressed after the first does not decompress on its own: the reader
    must keep its zlib state across frames (and so must the writer)."""
    writer = spdy.FrameWriter()
    first, second = writer.syn_stream(1, {"port": ["80"]}), writer.syn_stream(3, {"port": ["80"]})
    with pytest.raises(spdy.SpdyError):
        spdy.FrameReader().feed(second)
    reader = spdy.FrameReader()
    assert [f.stream_id for f in reader.feed(first) + reader.feed(second)] == [1, 3]


def raw_syn_stream(block: bytes) -> bytes:
    deflate = zlib.compressobj(zdict=spdy.DICTIONARY)
    payload = struct.pack(">IIBB", 1, 0, 0, 0) + deflate.compress(block) + deflate.flush(zlib.Z_SYNC_FLUSH)
    return struct.pack(">HHI", 0x8003, spdy.SYN_STREAM, len(payload)) + payload


@pytest.mark.parametrize("block, problem", [
    (struct.pack(">I", 1) + struct.pack(">I", 4) + b"Port" + struct.pack(">I", 2) + b"80", "not lower case"),
    (struct.pack(">I", 2) + (struct.pack(">I", 4) + b"port" + struct.pack(">I", 2) + b"80") * 2, "given twice"),
    (struct.pack(">I", 1) + struct.pack(">I", 40) + b"port", "truncated"),
])
def test_a_malformed_header_block_is_a_protocol_error(block, problem):
    with pytest.raises(spdy.SpdyError, match=problem):
        spdy.FrameReader().feed(raw_syn_stream(block))


def test_another_spdy_version_is_refused():
    frame = bytearray(spdy.FrameWriter.ping(1))
    frame[1] = 2
    with pytest.raises(spdy.SpdyError, match="version 2"):
        spdy.FrameReader().feed(bytes(frame))
