"""Reading protobuf framing (tags and lengths) from a file, to stream a caffemodel layer by layer and to say at
which byte a damaged file breaks; checking that a given path is a file. Messages are parsed by protobuf itself."""
from __future__ import annotations

from pathlib import Path

from . import ConversionError


class Framing(Exception):
    """Broken protobuf framing at a byte offset (turned into a ConversionError naming the file)."""

    def __init__(self, what: str, offset: int):
        super().__init__(what)
        self.what, self.offset = what, offset


def read_varint(f) -> tuple[int, bytes] | None:
    """One varint from a file: (value, its raw bytes), or None at a clean end of file."""
    raw, result, shift = b"", 0, 0
    while True:
        b = f.read(1)
        if not b:
            if raw:
                raise Framing("the file ends inside a varint", f.tell())
            return None
        raw += b
        result |= (b[0] & 0x7F) << shift
        if not b[0] & 0x80:
            return result, raw
        shift += 7
        if shift > 63:
            raise Framing("a varint longer than 10 bytes", f.tell())


def fields(f, size: int):
    """Yield (field number, start offset, framing bytes, [payload bytes]) of a message's top-level fields (a
    caffemodel's NetParameter, an ONNX ModelProto), read sequentially; raises :class:`Framing` where the framing
    breaks.

    The payload comes in a one-element list that the consumer empties, so this generator's frame holds no
    reference to it while a large layer is parsed. Only the framing (tag and length varints) is read here; every
    message is parsed by protobuf.
    """
    while True:
        start = f.tell()
        tag = read_varint(f)
        if tag is None:
            return
        tag, raw = tag
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise Framing("a field with number 0 (not protobuf)", start)
        if wire == 2:
            length = read_varint(f)
            if length is None:
                raise Framing("the file ends inside a field header", f.tell())
            length, lraw = length
            if f.tell() + length > size:
                raise Framing(f"a field of {length} bytes runs past the end of the {size}-byte file", start)
            payload = f.read(length)
            box = [payload]
            del payload
            yield field, start, raw + lraw, box
        elif wire == 0:
            v = read_varint(f)
            if v is None:
                raise Framing("the file ends inside a varint field", f.tell())
            yield field, start, raw, [v[1]]
        elif wire in (1, 5):
            n = 8 if wire == 1 else 4
            payload = f.read(n)
            if len(payload) != n:
                raise Framing("the file ends inside a fixed-width field", f.tell())
            yield field, start, raw, [payload]
        else:
            raise Framing(f"wire type {wire} (not protobuf)", start)


def existing_file(path: Path, what: str) -> Path:
    """``path`` as a Path if it is a regular file; else a ConversionError saying what it is instead."""
    path = Path(path)
    if not path.exists():
        raise ConversionError(f"{path}: no such {what} file")
    if not path.is_file():
        raise ConversionError(f"{path}: is a directory (or not a regular file), not a {what} file")
    return path
