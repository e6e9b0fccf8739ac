"""Reed-Solomon erasure coding for FEC blocks: the code of wire-format.md section 9.

The code is fixed by the wire format, not by a library: systematic, GF(2^8) with the
reducing polynomial 0x11D, parity row i / data column j = ``1 / ((k + i) XOR j)`` (Intel
ISA-L's ``gf_gen_cauchy1_matrix``). Parity row i depends only on k, i and j, so the first
m parity shards of any (k, m') block with m' >= m are those of the (k, m) block. Every
square submatrix of a Cauchy matrix is invertible, so any k of the k + m shards rebuild
the data.

Two codecs produce identical bytes (the tests check it):

* `PyeclibCodec`: pyeclib's ``isa_l_rs_cauchy`` backend, i.e. ISA-L's SIMD kernels
  (BSD; wheels for Linux x86-64 and aarch64). pyeclib frames every fragment with an
  80-byte header that must not go on the wire, so plait sends raw shards and rebuilds
  the header locally from a template taken from pyeclib itself. At first use it
  self-tests that, and the parity bytes, against the portable codec. It is not used
  if that test fails. It calls pyeclib's C module with the driver's handle, as
  ``ECDriver`` does after its Python-level checks (plait's fragments pass them by
  construction, and are always ``bytes``: a memoryview makes liberasurecode abort the
  process), and falls back to ``ECDriver`` where that module is not there.

`plait.fec` hands a codec whole blocks (`ErasureCodec.encode`, `frames`, `decode`), so
each shard is copied once on its way in and each rebuilt record once on its way out.
* `PortableCodec`: the standard library only, for platforms without pyeclib wheels
  (macOS, Windows). It multiplies each shard by a coefficient with ``bytes.translate``
  and XORs the products as Python ints. It is ~6x slower than ISA-L at (8, 2),
  ~25 µs against 4 µs for 1200-byte shards (docs/fec-codecs.md).

`default_codec()` picks the first that works.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Mapping, Sequence
from typing import Any, Final, Protocol

__all__ = ["ErasureCodec", "PortableCodec", "PyeclibCodec", "default_codec", "parity_rows"]

GF_POLY: Final = 0x11D
_CACHE_MAX: Final = 256  # recovery matrices / drivers / headers kept, per codec
_NO_FRAMES: Final = (b"",) * 256  # the portable codec frames no shard


def _gf_tables() -> tuple[tuple[int, ...], tuple[int, ...]]:
    exp = [0] * 512
    log = [0] * 256
    x = 1
    for i in range(255):
        exp[i] = x
        log[x] = i
        x <<= 1
        if x & 0x100:
            x ^= GF_POLY
    for i in range(255, 512):
        exp[i] = exp[i - 255]
    return tuple(exp), tuple(log)


_EXP, _LOG = _gf_tables()


def _mul(a: int, b: int) -> int:
    return _EXP[_LOG[a] + _LOG[b]] if a and b else 0


def _inv(a: int) -> int:
    return _EXP[255 - _LOG[a]]


def parity_rows(k: int, m: int) -> list[list[int]]:
    """The m x k parity coefficients of the wire code."""
    if not (k >= 1 and m >= 1 and k + m <= 256):
        raise ValueError(f"no Cauchy code for k={k}, m={m}")
    return [[_inv((k + i) ^ j) for j in range(k)] for i in range(m)]


def _invert(matrix: list[list[int]]) -> list[list[int]]:
    """Gauss-Jordan inverse over GF(2^8). Cauchy submatrices are never singular."""
    n = len(matrix)
    rows = [[*row, *(int(i == j) for j in range(n))] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = next(r for r in range(col, n) if rows[r][col])
        rows[col], rows[pivot] = rows[pivot], rows[col]
        scale = _inv(rows[col][col])
        rows[col] = [_mul(v, scale) for v in rows[col]]
        for r in range(n):
            f = rows[r][col]
            if r != col and f:
                rows[r] = [v ^ _mul(f, p) for v, p in zip(rows[r], rows[col], strict=True)]
    return [row[n:] for row in rows]


def recovery_rows(k: int, present: Sequence[int], lost: Sequence[int]) -> list[list[int]]:
    """Coefficients R with ``lost data shard lost[r] = XOR_c R[r][c] * shard present[c]``.

    `present` lists exactly k shard indices (data 0..k-1, parity k..); it must hold one
    parity shard per lost data shard. Only an e x e system is solved (e = len(lost)).
    """
    used = [i - k for i in present if i >= k]
    coeffs = parity_rows(k, max(used) + 1)
    a_inv = _invert([[coeffs[p][j] for j in lost] for p in used])
    out = []
    for inv_row in a_inv:
        row = []
        for idx in present:
            if idx < k:
                c = 0
                for coef, p in zip(inv_row, used, strict=True):
                    c ^= _mul(coef, coeffs[p][idx])
                row.append(c)
            else:
                row.append(inv_row[used.index(idx - k)])
        out.append(row)
    return out


class ErasureCodec(Protocol):
    """Computes parity and rebuilds lost data shards, all shards of equal length.

    `parity` and `recover` take shards one by one; `encode`, `frames` and `decode` are
    the same code on a whole block, with no copy of a shard that the codec does not need
    (`plait.fec` uses these)."""

    name: str

    def parity(self, k: int, m: int, shards: Sequence[bytes]) -> list[bytes]:
        """The m parity shards of the k data `shards`."""
        ...

    def recover(
        self, k: int, m: int, shards: Mapping[int, bytes], lost: Sequence[int]
    ) -> list[bytes]:
        """The data shards `lost` (ascending), from exactly k `shards` by index."""
        ...

    def encode(self, k: int, m: int, data: bytes) -> list[bytes]:
        """The m parity shards of `data`: k data shards of equal length, end to end."""
        ...

    def frames(self, k: int, m: int, width: int) -> Sequence[bytes]:
        """What `decode` wants before shard i (0 .. k+m-1) of a block of `width`-byte shards."""
        ...

    def decode(self, k: int, m: int, fragments: Mapping[int, bytes]) -> bytes:
        """The k data shards end to end, from exactly k `fragments` by index, each its
        shard behind its `frames` entry."""
        ...


class _Lru(dict[Any, Any]):
    """A dict that forgets its oldest entry beyond `_CACHE_MAX` (insertion order)."""

    def put(self, key: Any, value: Any) -> Any:
        if len(self) >= _CACHE_MAX:
            del self[next(iter(self))]
        self[key] = value
        return value


class PortableCodec:
    """The wire code in the standard library: ``bytes.translate`` products XORed as ints."""

    name = "portable"

    def __init__(self) -> None:
        self._tables: list[bytes | None] = [None] * 256
        self._rows = _Lru()

    def _table(self, c: int) -> bytes:
        table = self._tables[c]
        if table is None:
            table = self._tables[c] = bytes(_mul(c, x) for x in range(256))
        return table

    def _combine(self, rows: list[list[int]], shards: Sequence[bytes]) -> list[bytes]:
        size = len(shards[0])
        from_bytes = int.from_bytes
        out = []
        for row in rows:
            acc = 0
            for coef, shard in zip(row, shards, strict=True):
                if coef == 1:
                    acc ^= from_bytes(shard, "little")
                elif coef:
                    acc ^= from_bytes(shard.translate(self._table(coef)), "little")
            out.append(acc.to_bytes(size, "little"))
        return out

    def parity(self, k: int, m: int, shards: Sequence[bytes]) -> list[bytes]:
        rows = self._rows.get((k, m)) or self._rows.put((k, m), parity_rows(k, m))
        return self._combine(rows, shards)

    def recover(
        self, k: int, m: int, shards: Mapping[int, bytes], lost: Sequence[int]
    ) -> list[bytes]:
        present = tuple(sorted(shards))
        key = (k, present, tuple(lost))
        rows = self._rows.get(key) or self._rows.put(key, recovery_rows(k, present, lost))
        return self._combine(rows, [shards[i] for i in present])

    def encode(self, k: int, m: int, data: bytes) -> list[bytes]:
        size = len(data) // k
        return self.parity(k, m, [data[j * size : (j + 1) * size] for j in range(k)])

    def frames(self, k: int, m: int, width: int) -> Sequence[bytes]:
        return _NO_FRAMES

    def decode(self, k: int, m: int, fragments: Mapping[int, bytes]) -> bytes:
        lost = [j for j in range(k) if j not in fragments]
        if not lost:
            return b"".join([fragments[j] for j in range(k)])
        rebuilt = dict(zip(lost, self.recover(k, m, fragments, lost), strict=True))
        return b"".join([fragments[j] if j in fragments else rebuilt[j] for j in range(k)])


_HEADER: Final = 80  # liberasurecode's fragment_header_t
_META: Final = 59  # the header bytes its CRC-32 covers
_CRC_AT: Final = 67  # after the metadata, the magic and the library version


class PyeclibCodec:
    """ISA-L through pyeclib, with its 80-byte fragment headers rebuilt locally."""

    name = "pyeclib-isa_l_rs_cauchy"

    def __init__(self) -> None:
        self._ec: Any = importlib.import_module("pyeclib.ec_iface")
        # pyeclib's C module, called with a driver's handle: ECDriver.decode's Python
        # checks (equal lengths, k fragments) are what plait already guarantees, and
        # cost more than a tenth of a decode. Without it (another pyeclib), the driver.
        self._c: Any = getattr(importlib.import_module("pyeclib.core"), "pyeclib_c", None)
        self._drivers = _Lru()  # (k, m) -> (driver, handle or None)
        self._headers = _Lru()
        self._template = self._driver(2, 1)[0].encode(bytes(8))[0][:_HEADER]

    def _driver(self, k: int, m: int) -> tuple[Any, Any]:
        code: tuple[Any, Any] | None = self._drivers.get((k, m))
        if code is None:
            driver = self._ec.ECDriver(k=k, m=m, ec_type="isa_l_rs_cauchy")
            lib = getattr(driver, "ec_lib_reference", None)
            handle = getattr(lib, "handle", None) if self._c is not None else None
            code = self._drivers.put((k, m), (driver, handle))
        return code

    def _header_set(self, k: int, m: int, size: int) -> list[bytes]:
        """Headers for fragments 0..k+m-1 of a (k, m) block of `size`-byte shards."""
        key = (k, m, size)
        headers = self._headers.get(key)
        if headers is None:
            headers = []
            for index in range(k + m):
                h = bytearray(self._template)
                h[0:8] = index.to_bytes(4, "little") + size.to_bytes(4, "little")
                h[12:20] = (k * size).to_bytes(8, "little")
                h[_CRC_AT : _CRC_AT + 4] = zlib.crc32(h[:_META]).to_bytes(4, "little")
                headers.append(bytes(h))
            self._headers.put(key, headers)
        return headers

    def parity(self, k: int, m: int, shards: Sequence[bytes]) -> list[bytes]:
        return self.encode(k, m, b"".join(shards))

    def recover(
        self, k: int, m: int, shards: Mapping[int, bytes], lost: Sequence[int]
    ) -> list[bytes]:
        size = len(next(iter(shards.values())))
        headers = self._header_set(k, m, size)
        whole = self.decode(k, m, {i: headers[i] + s for i, s in shards.items()})
        return [whole[j * size : (j + 1) * size] for j in lost]

    def encode(self, k: int, m: int, data: bytes) -> list[bytes]:
        driver, handle = self._driver(k, m)
        fragments = driver.encode(data) if handle is None else self._c.encode(handle, data)
        return [fragments[i][_HEADER:] for i in range(k, k + m)]

    def frames(self, k: int, m: int, width: int) -> Sequence[bytes]:
        return self._header_set(k, m, width)

    def decode(self, k: int, m: int, fragments: Mapping[int, bytes]) -> bytes:
        driver, handle = self._driver(k, m)
        framed = list(fragments.values())
        if handle is None:
            whole: bytes = driver.decode(framed)
        else:
            whole = self._c.decode(handle, framed, len(framed[0]), None, False)
        return whole

    def self_test(self, reference: ErasureCodec) -> bool:
        """True when this codec agrees with `reference` on parity and on recovery,
        including the locally built headers."""
        for k, m, size in ((2, 1, 7), (5, 3, 64), (8, 2, 1201)):
            data = [bytes((j * 31 + t * 7 + 1) & 0xFF for t in range(size)) for j in range(k)]
            parity = self.parity(k, m, data)
            if parity != reference.parity(k, m, data):
                return False
            lost = list(range(min(k, m)))
            have = {i: s for i, s in enumerate(data + parity) if i not in lost}
            have = dict(list(have.items())[:k])
            if self.recover(k, m, have, lost) != [data[j] for j in lost]:
                return False
        return True


def default_codec() -> ErasureCodec:
    """pyeclib's ISA-L where it is installed and passes its self-test, else portable."""
    portable = PortableCodec()
    try:
        fast = PyeclibCodec()
    except Exception:  # not installed, or its ISA-L backend is missing: use portable
        return portable
    try:
        return fast if fast.self_test(portable) else portable
    except Exception:  # a library that misbehaves is not used at all
        return portable
