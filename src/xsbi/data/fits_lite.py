"""A minimal reader of FITS binary tables, for reading many small spectra quickly.

``astropy.io.fits`` parses every card of every header lazily but thoroughly; for a PHA file of a
few kB that costs several milliseconds, most of the time of applying an amortized network to it
(``xsbi batch``).  This reader covers what type I PHA files use (FITS standard 4.0, section 7.3):
header cards, and binary-table columns of fixed width with the formats L, B, I, J, K, E, D and
A, read as big-endian numpy arrays in one pass.  Anything else (variable-length or scaled
columns, compressed or non-conforming files) raises :class:`Unsupported`, and the caller falls
back to astropy, so the reader can only ever be a faster route to the same values.
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np

BLOCK = 2880
CARD = 80

_FORMATS = {"L": "i1", "B": "u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}  # A: strings
_TFORM = re.compile(r"^\s*(\d*)([LBIJKEDA])\s*$")
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([EeDd][+-]?\d+)?$")


class Unsupported(Exception):
    """The file uses a FITS feature this reader does not handle: read it with astropy instead."""


class Columns:
    def __init__(self, names):
        self.names = list(names)


class Table(dict):
    """Column name -> array, case-insensitive like astropy's ``FITS_rec``; ``len`` is the row count."""

    def __init__(self, columns: dict, n_rows: int):
        super().__init__({k.upper(): v for k, v in columns.items()})
        self._n = n_rows

    def __getitem__(self, name):
        return super().__getitem__(name.upper())

    def __len__(self):
        return self._n


class LiteHDU:
    """A binary-table HDU with the attributes read_pha uses: ``header``, ``columns``, ``data``."""

    def __init__(self, header: dict, columns: Columns, data: Table | None):
        self.header = header
        self.columns = columns
        self.data = data


def _value(text: str):
    """A card's value in astropy's types: str (trailing blanks removed), bool, int or float."""
    text = text.strip()
    if text.startswith("'"):
        # a string: '' inside it is a quote; a comment may follow the closing quote
        out, i = [], 1
        while i < len(text):
            if text[i] == "'":
                if i + 1 < len(text) and text[i + 1] == "'":
                    out.append("'")
                    i += 2
                    continue
                return "".join(out).rstrip()
            out.append(text[i])
            i += 1
        raise Unsupported("unterminated string")
    text = text.split("/", 1)[0].strip()
    if text == "T":
        return True
    if text == "F":
        return False
    if text == "":
        return None
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if _NUMBER.match(text):
        return float(text.replace("D", "E").replace("d", "e"))
    raise Unsupported(f"value {text!r}")  # complex numbers and the like


def _header(buf: bytes, pos: int) -> tuple[dict, int]:
    """Parse the header starting at ``pos``; returns it and the position of its data."""
    header: dict = {}
    last = None
    while True:
        if pos + BLOCK > len(buf):
            raise Unsupported("truncated header")
        block = buf[pos:pos + BLOCK]
        pos += BLOCK
        for k in range(0, BLOCK, CARD):
            card = block[k:k + CARD].decode("ascii", errors="strict")
            key = card[:8].strip()
            if key == "END":
                return header, pos
            if key == "CONTINUE":
                # the long-string convention: a string ending in '&' goes on in CONTINUE cards
                # (one after a complete value only carries on its comment, as HEASARC files do)
                if last is not None and isinstance(header[last], str) and header[last].endswith("&"):
                    header[last] = header[last][:-1] + (_value(card[8:]) or "")
                continue
            if key in ("", "COMMENT", "HISTORY") or card[8:10] != "= ":
                last = None
                continue
            if key in header:  # astropy keeps the first; so does setdefault, but no CONTINUE may extend it
                last = None
                continue
            header[key] = _value(card[10:])
            last = key


def _table(header: dict, raw: bytes) -> tuple[Columns, Table]:
    n_fields, width, n_rows = header.get("TFIELDS", 0), header["NAXIS1"], header["NAXIS2"]
    if header.get("PCOUNT", 0):
        raise Unsupported("heap (variable-length columns)")
    names, fields, offset = [], [], 0
    for i in range(1, n_fields + 1):
        match = _TFORM.match(str(header.get(f"TFORM{i}", "")))
        if match is None or f"TSCAL{i}" in header or f"TZERO{i}" in header:
            raise Unsupported(f"column {i} format")
        repeat = int(match.group(1) or 1)
        code = match.group(2)
        name = str(header.get(f"TTYPE{i}", f"col{i}")).strip()
        if code == "A":
            dtype = np.dtype(f"S{repeat}")
        else:
            dtype = np.dtype((_FORMATS[code], (repeat,))) if repeat != 1 else np.dtype(_FORMATS[code])
        if repeat:
            names.append(name)
            fields.append((name, dtype, offset))
        offset += dtype.itemsize
    if offset != width or len({n.upper() for n in names}) != len(names):
        raise Unsupported("row layout")
    dt = np.dtype({"names": [f[0] for f in fields], "formats": [f[1] for f in fields],
                   "offsets": [f[2] for f in fields], "itemsize": width})
    rows = np.frombuffer(raw, dtype=dt, count=n_rows)
    columns = {}
    for name, dtype, _ in fields:
        col = rows[name]
        if dtype.base.kind == "i" and dtype.base.itemsize == 1:  # logical: 'T' / 'F'
            col = col == ord("T")
        columns[name] = col.astype(col.dtype.newbyteorder("="))
    return Columns(names), Table(columns, n_rows)


def read_tables(path) -> list[LiteHDU]:
    """Every binary-table extension of a FITS file (gzip-compressed or not), as LiteHDUs."""
    path = Path(path)
    with open(path, "rb") as fh:
        buf = fh.read()
    if buf[:2] == b"\x1f\x8b":
        buf = gzip.decompress(buf)
    if not buf.startswith(b"SIMPLE  ="):
        raise Unsupported("not a FITS file")
    pos, hdus, first = 0, [], True
    while pos < len(buf):
        header, pos = _header(buf, pos)
        naxis = int(header.get("NAXIS", 0))
        bitpix = abs(int(header.get("BITPIX", 8)))
        size = 0
        if naxis:
            size = bitpix // 8 * int(np.prod([int(header[f"NAXIS{i}"]) for i in range(1, naxis + 1)]))
            size += int(header.get("PCOUNT", 0))
        data = buf[pos:pos + size]
        if len(data) < size:
            raise Unsupported("truncated data")
        if not first:
            if header.get("XTENSION") == "BINTABLE":
                cols, table = _table(header, data)
                hdus.append(LiteHDU(header, cols, table))
            else:
                hdus.append(LiteHDU(header, Columns([]), None))
        first = False
        pos += -(-size // BLOCK) * BLOCK
    return hdus
