"""Reading a response body with a cap on the DECODED bytes, decoded as it streams.

Why: httpx decodes `Content-Encoding` one network chunk at a time with no output limit, so a 1.8 KB
body sent as `gzip, gzip` inflates to gigabytes inside a single call, before any size check sees it.
Here the raw bytes are inflated by our own zlib objects, at most `PIECE` bytes out per step and stage,
and the running total is checked after every piece: memory stays near the cap, whatever the ratio.
Only the encodings we ask for (`ACCEPT_ENCODING`) are read; anything else is refused by name.
"""
from __future__ import annotations

import zlib
from typing import Any, Iterator

ACCEPT_ENCODING = "gzip, deflate"
PIECE = 64 * 1024          # the most one inflate step may produce
MAX_LAYERS = 2             # "gzip, gzip" is already more than any honest server sends


class BodyTooLarge(Exception):
    """The decoded body passed the cap; `size` is how far it got."""

    def __init__(self, size: int) -> None:
        super().__init__(f"more than {size} bytes")
        self.size = size


class BadEncoding(Exception):
    """A content encoding we did not ask for, too many layers, or a stream that does not inflate."""


class _Inflate:
    """One `gzip` / `deflate` layer (zlib or gzip header, detected); gzip may hold several members."""

    def __init__(self) -> None:
        self._d = zlib.decompressobj(zlib.MAX_WBITS | 32)

    def feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            try:
                out = self._d.decompress(data, PIECE)
            except zlib.error as exc:
                raise BadEncoding(f"body does not inflate ({exc})") from None
            if out:
                yield out
            if self._d.eof:
                data = self._d.unused_data
                if not data:
                    return
                self._d = zlib.decompressobj(zlib.MAX_WBITS | 32)  # the next gzip member
                continue
            data = self._d.unconsumed_tail
            if not data and not out:
                return


def decoders(content_encoding: str | None) -> list[_Inflate]:
    """The inflate stages for a `Content-Encoding` header, outermost first; [] for identity."""
    names = [n.strip().lower() for n in (content_encoding or "").split(",") if n.strip()]
    names = [n for n in names if n != "identity"]
    if len(names) > MAX_LAYERS:
        raise BadEncoding(f"{len(names)} content encodings")
    unknown = [n for n in names if n not in ("gzip", "x-gzip", "deflate")]
    if unknown:
        raise BadEncoding(f"content encoding {unknown[0]!r}")
    return [_Inflate() for _ in names]


def _through(stages: list[_Inflate], data: bytes) -> Iterator[bytes]:
    """`data` through every stage, lazily: no stage ever holds more than one piece of output."""
    if not stages:
        if data:
            yield data
        return
    *outer, last = stages  # encodings are listed in the order applied: undo the last one first
    for piece in last.feed(data):
        yield from _through(outer, piece)


async def read_capped(resp: Any, cap: int) -> bytes:
    """The decoded body of an httpx streaming response; BodyTooLarge past `cap` decoded bytes,
    BadEncoding for an encoding we did not ask for. Reads raw bytes: httpx's decoder is never used."""
    stages = decoders(resp.headers.get("content-encoding"))
    parts: list[bytes] = []
    size = 0
    async for raw in resp.aiter_raw():
        for piece in _through(stages, raw):
            size += len(piece)
            if size > cap:  # stop reading: the rest never crosses the wire or the inflater
                raise BodyTooLarge(size)
            parts.append(piece)
    return b"".join(parts)
