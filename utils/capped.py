"""Decode an HTTP body's Content-Encoding with a cap on the decoded bytes, as it streams.

Why not the HTTP library's own decoder: it inflates each received chunk in one call, so 1.8 KB of
`Content-Encoding: gzip, gzip` becomes gigabytes in memory before any size check can run. Here
every layer inflates at most `STEP` bytes per call and the decoded total is counted as it grows,
so a body stops at `cap` bytes however it was compressed. Pure standard library, for any source.
"""
from __future__ import annotations

import zlib
from typing import AsyncIterator, Iterable

STEP = 64 * 1024  # the most bytes one inflate call may produce
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


class TooLarge(Exception):
    """The decoded body passed its cap (the message names the cap)."""


class BadEncoding(Exception):
    """A Content-Encoding this decoder does not speak, or bytes that do not inflate."""


def encodings(header_values: Iterable[str]) -> list[str]:
    """The encodings of Content-Encoding header values, in the order they were applied."""
    out = [part.strip().lower() for value in header_values for part in value.split(",")]
    out = [e for e in out if e and e != "identity"]
    unknown = [e for e in out if e not in _WBITS]
    if unknown:
        raise BadEncoding(f"unsupported Content-Encoding {unknown[0]!r}")
    return out


class Decoder:
    """Feed raw chunks, get decoded chunks; raises TooLarge once more than `cap` bytes came out."""

    def __init__(self, applied: list[str], cap: int) -> None:
        self._layers = [_layer(e) for e in reversed(applied)]  # the last one applied is undone first
        self.cap, self.size = cap, 0

    def feed(self, data: bytes) -> list[bytes]:
        return self._count(self._through(data, 0))

    def flush(self) -> list[bytes]:
        out: list[bytes] = []
        for i, layer in enumerate(self._layers):
            out = [piece for chunk in out for piece in self._through_one(layer, chunk)]
            try:
                tail = layer.flush()
            except zlib.error as exc:
                raise BadEncoding(f"the body does not inflate ({exc})") from None
            if tail:
                out.append(tail)
        return self._count(out)

    def _through(self, data: bytes, start: int) -> list[bytes]:
        chunks = [data] if data else []
        for layer in self._layers[start:]:
            chunks = [piece for chunk in chunks for piece in self._through_one(layer, chunk)]
        return chunks

    def _through_one(self, layer: "zlib._Decompress", data: bytes) -> list[bytes]:
        out: list[bytes] = []
        produced = 0
        while data:
            try:
                piece = layer.decompress(data, STEP)
            except zlib.error as exc:
                raise BadEncoding(f"the body does not inflate ({exc})") from None
            produced += len(piece)
            if produced > self.cap:  # one layer's output is bounded before the next layer sees it
                raise TooLarge(f"larger than {self.cap:,} bytes decoded")
            if piece:
                out.append(piece)
            data = layer.unconsumed_tail
            if layer.eof:
                break
        return out

    def _count(self, chunks: list[bytes]) -> list[bytes]:
        self.size += sum(len(c) for c in chunks)
        if self.size > self.cap:
            raise TooLarge(f"larger than {self.cap:,} bytes decoded")
        return chunks


def _layer(encoding: str) -> "zlib._Decompress":
    return zlib.decompressobj(_WBITS[encoding])


async def decoded(raw: AsyncIterator[bytes], applied: list[str], cap: int) -> AsyncIterator[bytes]:
    """The decoded chunks of `raw`, stopping with TooLarge past `cap` decoded bytes."""
    decoder = Decoder(applied, cap)
    async for chunk in raw:
        for piece in decoder.feed(chunk):
            yield piece
    for piece in decoder.flush():
        yield piece
