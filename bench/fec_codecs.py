#!/usr/bin/env python3
"""Reed-Solomon erasure codecs for plait's FEC, measured side by side.

    taskset -c 1 python bench/fec_codecs.py            # quick grid (default, ~1 min)
    taskset -c 1 python bench/fec_codecs.py --full     # k x m x size grid (~2-3 min)

Needs only the standard library; every codec is optional and is reported as
"skipped: <reason>" when its package is missing (pip install numpy pyeclib zfec
reed-solomon-leopard). For each configuration (k data shards, m parity shards,
shard size) it times, per call and with the garbage collector off:

* encode: k equal-length data shards in, m parity shards (raw bytes) out;
* decode: the worst case, min(m, k) DATA shards lost, rebuilt from the k shards
  that remain (the surviving data shards plus the first parity shards).

It checks every configuration: rebuilt bytes must equal the originals, and the
parity bytes are compared with a scalar reference of the matrix the codec is
meant to implement (column "wire"). "isa-cauchy" is ISA-L's gf_gen_cauchy1_matrix
over GF(2^8), polynomial 0x11D: parity row i, data column j, C[i][j] = 1/((k+i) ^ j).

Codecs: pyeclib's backends used the way plait would (raw parity out; on receive
the 80-byte fragment header pyeclib wants is put back from a per-(k, m, size)
template), ISA-L called through ctypes in the library pyeclib's wheel bundles,
zfec, reed-solomon-leopard, and three codecs written here for the same ISA-L
Cauchy code: numpy (multiplication-table gather), bytes.translate + numpy XOR,
and bytes.translate + int XOR (standard library only).

Results: a table per configuration with ratios to the best codec of the same run,
a summary, and bench/results/fec_codecs.json. See docs/fec-codecs.md.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import importlib
import json
import math
import os
import platform
import struct
import sys
import time
import zlib
from collections.abc import Callable, Sequence
from functools import partial
from itertools import combinations
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
QUICK_CONFIGS = [
    *((k, m, 1200) for k, m in ((2, 1), (4, 1), (4, 2), (8, 2), (10, 4), (16, 4))),
    *((k, m, s) for k, m in ((8, 2), (16, 4)) for s in (200, 1400)),
]
FULL_CONFIGS = [(k, m, s) for s in (200, 1200, 1400) for k in (2, 4, 8, 10, 16) for m in (1, 2, 4)]
SUMMARY_CONFIGS = [(4, 1), (4, 2), (8, 2), (10, 4), (16, 4)]
ROUNDS = 5  # codecs are measured in turn, ROUNDS times, so a burst of load hits all of them
PYECLIB_HEADER = 80  # liberasurecode fragment_header_t

# --------------------------------------------------------------------------- GF(2^8)
GF_POLY = 0x11D  # x^8 + x^4 + x^3 + x^2 + 1, generator 2 (ISA-L, zfec, Jerasure w=8)


def _gf_tables() -> tuple[list[int], list[int]]:
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
    return exp, log


GF_EXP, GF_LOG = _gf_tables()


def gf_mul(a: int, b: int) -> int:
    if a == 0 or b == 0:
        return 0
    return GF_EXP[GF_LOG[a] + GF_LOG[b]]


def gf_inv(a: int) -> int:
    if a == 0:
        raise ZeroDivisionError("0 has no inverse in GF(2^8)")
    return GF_EXP[255 - GF_LOG[a]]


# bytes.translate tables: MUL_TABLES[c][x] = c * x
MUL_TABLES = [bytes(gf_mul(c, x) for x in range(256)) for c in range(256)]


def gf_mat_inv(a: Sequence[Sequence[int]]) -> list[list[int]]:
    """Gauss-Jordan inverse of a square GF(2^8) matrix; ValueError if singular."""
    n = len(a)
    rows = [[*r, *(1 if i == j else 0 for j in range(n))] for i, r in enumerate(a)]
    for col in range(n):
        pivot = next((r for r in range(col, n) if rows[r][col]), None)
        if pivot is None:
            raise ValueError("singular matrix")
        rows[col], rows[pivot] = rows[pivot], rows[col]
        scale = gf_inv(rows[col][col])
        rows[col] = [gf_mul(v, scale) for v in rows[col]]
        for r in range(n):
            f = rows[r][col]
            if r != col and f:
                rows[r] = [v ^ gf_mul(f, p) for v, p in zip(rows[r], rows[col], strict=True)]
    return [r[n:] for r in rows]


def gf_mat_mul(a: Sequence[Sequence[int]], b: Sequence[Sequence[int]]) -> list[list[int]]:
    out = []
    for row in a:
        acc = [0] * len(b[0])
        for coef, brow in zip(row, b, strict=True):
            if coef:
                acc = [v ^ gf_mul(coef, w) for v, w in zip(acc, brow, strict=True)]
        out.append(acc)
    return out


def isa_cauchy_rows(k: int, m: int) -> list[list[int]]:
    """ISA-L gf_gen_cauchy1_matrix, parity rows: C[i][j] = 1 / ((k + i) XOR j)."""
    return [[gf_inv((k + i) ^ j) for j in range(k)] for i in range(m)]


def isa_vand_rows(k: int, m: int) -> list[list[int]]:
    """ISA-L gf_gen_rs_matrix, parity rows: V[i][j] = (2^i)^j (row 0 is plain XOR)."""
    return [[GF_EXP[(i * j) % 255] for j in range(k)] for i in range(m)]


def rizzo_rows(k: int, m: int) -> list[list[int]]:
    """Rizzo's fec.c (zfec): V = [e0; alpha^(r*c) for r = 0..n-2], G = V * V[:k]^-1."""
    n = k + m
    v = [[1 if c == 0 else 0 for c in range(k)]]
    v += [[GF_EXP[(r * c) % 255] for c in range(k)] for r in range(n - 1)]
    return gf_mat_mul(v[k:], gf_mat_inv(v[:k]))


FAMILIES: dict[str, Callable[[int, int], list[list[int]]]] = {
    "isa-cauchy": isa_cauchy_rows,
    "isa-vand": isa_vand_rows,
    "rizzo": rizzo_rows,
}


def reference_parity(rows: Sequence[Sequence[int]], data: Sequence[bytes]) -> list[bytes]:
    """Byte-by-byte parity from log/antilog tables: slow, obvious, independent."""
    out = []
    for row in rows:
        acc = bytearray(len(data[0]))
        for coef, shard in zip(row, data, strict=True):
            if coef:
                lc = GF_LOG[coef]
                for t, x in enumerate(shard):
                    if x:
                        acc[t] ^= GF_EXP[lc + GF_LOG[x]]
        out.append(bytes(acc))
    return out


def recovery_rows(
    parity_rows: Sequence[Sequence[int]], k: int, received: Sequence[int], lost: Sequence[int]
) -> list[list[int]]:
    """Rows R (e x k) with lost data shard lost[r] = sum_c R[r][c] * shard received[c].

    Only an e x e system is solved (e = lost data shards, at most m): with A the
    parity coefficients of the lost columns in the parity rows received and B those
    of the known columns, x_lost = A^-1 (p + B x_known) in characteristic 2.
    """
    used = [i - k for i in received if i >= k]
    if len(used) != len(lost) or len(received) != k:
        raise ValueError("need exactly k shards, one parity shard per lost data shard")
    a_inv = gf_mat_inv([[parity_rows[p][j] for j in lost] for p in used])
    out = []
    for inv_row in a_inv:
        row = []
        for idx in received:
            if idx < k:
                c = 0
                for coef, p in zip(inv_row, used, strict=True):
                    c ^= gf_mul(coef, parity_rows[p][idx])
                row.append(c)
            else:
                row.append(inv_row[used.index(idx - k)])
        out.append(row)
    return out


# --------------------------------------------------------------------------- codecs
class UnsupportedError(Exception):
    """The codec cannot run this (k, m, size); the row shows n/a."""


Received = list[tuple[int, bytes]]  # (shard index, bytes); parity shard i has index k + i


class Codec:
    name = ""
    family = ""  # code it should produce: a FAMILIES key, or "own" (no GF(2^8) matrix)
    version = ""

    def prepare(self, k: int, m: int, size: int) -> None:
        self.k, self.m, self.size = k, m, size

    def encode(self, data: list[bytes]) -> list[bytes]:
        raise NotImplementedError

    def decode(self, received: Received, lost: tuple[int, ...]) -> list[bytes]:
        raise NotImplementedError


def _import(module: str) -> Any:
    return importlib.import_module(module)


def _dist_version(dist: str) -> str:
    try:
        return str(_import("importlib.metadata").version(dist))
    except Exception:  # best effort label only
        return "?"


class PyECLibCodec(Codec):
    """pyeclib as plait would use it: only raw payloads go on the wire.

    encode joins the k shards, asks pyeclib for fragments and strips the 80-byte
    header off the parity fragments. decode prefixes each received payload with the
    header pyeclib emitted for that index at this (k, m, size) (headers do not depend
    on the data: see the investigations), decodes, and slices out the lost shards.
    """

    def __init__(self, ec_type: str) -> None:
        self.ec_iface = _import("pyeclib.ec_iface")
        self.ec_type = ec_type
        self.name = "pyeclib-" + ec_type
        self.family = {"isa_l_rs_cauchy": "isa-cauchy", "isa_l_rs_vand": "isa-vand"}.get(
            ec_type, "own"
        )
        self.version = _dist_version("pyeclib")
        self.driver: Any = None
        self.ec_iface.ECDriver(k=4, m=2, ec_type=ec_type).close()  # backend present?

    def prepare(self, k: int, m: int, size: int) -> None:
        super().prepare(k, m, size)
        if self.driver is not None:
            self.driver.close()
        self.driver = self.ec_iface.ECDriver(k=k, m=m, ec_type=self.ec_type)
        frags: list[bytes] = self.driver.encode(bytes(k * size))
        if len(frags[0]) != PYECLIB_HEADER + size:
            raise UnsupportedError(f"fragment payload {len(frags[0]) - PYECLIB_HEADER} != {size}")
        self.headers = [f[:PYECLIB_HEADER] for f in frags]

    def encode(self, data: list[bytes]) -> list[bytes]:
        frags: list[bytes] = self.driver.encode(b"".join(data))
        return [f[PYECLIB_HEADER:] for f in frags[self.k :]]

    def decode(self, received: Received, lost: tuple[int, ...]) -> list[bytes]:
        hdr = self.headers
        whole: bytes = self.driver.decode([hdr[i] + s for i, s in received])
        size = self.size
        return [whole[j * size : (j + 1) * size] for j in lost]


def _find_isal() -> str:
    """libisal: the copy bundled in pyeclib's manylinux wheel, else a system one."""
    try:
        pyeclib = _import("pyeclib")
        libs = Path(pyeclib.__file__).resolve().parent.parent / "pyeclib.libs"
        found = sorted(libs.glob("libisal*.so*"))
        if found:
            return str(found[0])
    except ImportError:
        pass
    system = ctypes.util.find_library("isal")
    if system is None:
        raise ImportError("no libisal (neither in pyeclib.libs nor on the system)")
    return system


class IsalCtypesCodec(Codec):
    """ISA-L ec_encode_data through ctypes: raw shards, no header, no copies in.

    Encode tables come from ec_init_tables(C); decode uses ec_init_tables(R) with R
    the recovery rows of the loss pattern (computed here, cached per pattern).
    """

    name = "isal-ctypes"
    family = "isa-cauchy"

    def __init__(self) -> None:
        path = _find_isal()
        self.lib = ctypes.CDLL(path)
        self.version = Path(path).name
        self.lib.ec_init_tables.restype = None
        self.lib.ec_encode_data.restype = None
        self.enc_fn = self.lib.ec_encode_data

    def _tables(self, rows: list[list[int]]) -> ctypes.Array[ctypes.c_char]:
        tbl = ctypes.create_string_buffer(32 * self.k * len(rows))
        flat = bytes(v for r in rows for v in r)
        self.lib.ec_init_tables(self.k, len(rows), flat, tbl)
        return tbl

    def prepare(self, k: int, m: int, size: int) -> None:
        super().prepare(k, m, size)
        self.rows = isa_cauchy_rows(k, m)
        self.enc_tbl = self._tables(self.rows)
        self.out = ctypes.create_string_buffer(m * size)
        base = ctypes.addressof(self.out)
        self.out_addrs = [base + i * size for i in range(m)]
        self.out_ptrs = (ctypes.c_void_p * m)(*self.out_addrs)
        self.in_type = ctypes.c_char_p * k
        self.dec_cache: dict[tuple[tuple[int, ...], tuple[int, ...]], Any] = {}

    def encode(self, data: list[bytes]) -> list[bytes]:
        size = self.size
        self.enc_fn(size, self.k, self.m, self.enc_tbl, self.in_type(*data), self.out_ptrs)
        return [ctypes.string_at(a, size) for a in self.out_addrs]

    def decode(self, received: Received, lost: tuple[int, ...]) -> list[bytes]:
        idx = tuple(i for i, _ in received)
        tbl = self.dec_cache.get((idx, lost))
        if tbl is None:
            tbl = self._tables(recovery_rows(self.rows, self.k, idx, lost))
            self.dec_cache[idx, lost] = tbl
        size = self.size
        self.enc_fn(
            size, self.k, len(lost), tbl, self.in_type(*(s for _, s in received)), self.out_ptrs
        )
        return [ctypes.string_at(a, size) for a in self.out_addrs[: len(lost)]]


class ZfecCodec(Codec):
    name = "zfec"
    family = "rizzo"

    def __init__(self) -> None:
        self.zfec = _import("zfec")
        self.version = _dist_version("zfec")

    def prepare(self, k: int, m: int, size: int) -> None:
        super().prepare(k, m, size)
        self.enc = self.zfec.Encoder(k, k + m)
        self.dec = self.zfec.Decoder(k, k + m)
        self.wanted = tuple(range(k, k + m))

    def encode(self, data: list[bytes]) -> list[bytes]:
        out: list[bytes] = self.enc.encode(tuple(data), self.wanted)
        return out

    def decode(self, received: Received, lost: tuple[int, ...]) -> list[bytes]:
        blocks = self.dec.decode(tuple(s for _, s in received), tuple(i for i, _ in received))
        return [bytes(blocks[j]) for j in lost]


class LeopardCodec(Codec):
    name = "leopard"
    family = "own"  # GF(2^16), FFT (Lin-Chung-Han), not a GF(2^8) matrix code

    def __init__(self) -> None:
        self.rs = _import("reed_solomon_leopard")
        self.version = _dist_version("reed-solomon-leopard")

    def prepare(self, k: int, m: int, size: int) -> None:
        if size % 2:
            raise UnsupportedError("shard length must be even")
        super().prepare(k, m, size)

    def encode(self, data: list[bytes]) -> list[bytes]:
        out: list[bytes] = self.rs.encode(data, self.m)
        return out

    def decode(self, received: Received, lost: tuple[int, ...]) -> list[bytes]:
        k = self.k
        original = {i: s for i, s in received if i < k}
        recovery = {i - k: s for i, s in received if i >= k}
        restored = self.rs.decode(k, self.m, original, recovery)
        return [restored[j] for j in lost]


class _HomeCauchy(Codec):
    """Codecs written here for ISA-L's Cauchy code; decode rows cached per pattern."""

    family = "isa-cauchy"

    def prepare(self, k: int, m: int, size: int) -> None:
        super().prepare(k, m, size)
        self.rows = isa_cauchy_rows(k, m)
        self.enc_state = self.compile(self.rows)
        self.dec_cache: dict[tuple[tuple[int, ...], tuple[int, ...]], Any] = {}

    def compile(self, rows: list[list[int]]) -> Any:
        raise NotImplementedError

    def apply(self, state: Any, shards: Sequence[bytes]) -> list[bytes]:
        raise NotImplementedError

    def encode(self, data: list[bytes]) -> list[bytes]:
        return self.apply(self.enc_state, data)

    def decode(self, received: Received, lost: tuple[int, ...]) -> list[bytes]:
        idx = tuple(i for i, _ in received)
        state = self.dec_cache.get((idx, lost))
        if state is None:
            state = self.compile(recovery_rows(self.rows, self.k, idx, lost))
            self.dec_cache[idx, lost] = state
        return self.apply(state, [s for _, s in received])


class NumpyTakeCodec(_HomeCauchy):
    """numpy: one gather from the per-coefficient rows of a 256x256 product table,
    then an XOR reduction over the k shards."""

    name = "numpy-take"

    def __init__(self) -> None:
        self.np = _import("numpy")
        self.version = "numpy " + self.np.__version__
        table = [[gf_mul(a, b) for b in range(256)] for a in range(256)]
        self.mul = self.np.array(table, dtype=self.np.uint8)

    def compile(self, rows: list[list[int]]) -> Any:
        np = self.np
        r, c = len(rows), len(rows[0])
        flat = self.mul[np.array(rows, dtype=np.intp)].reshape(-1)  # (r*c*256,)
        offsets = (np.arange(r * c, dtype=np.int32) * 256).reshape(r, c, 1)
        return flat, offsets

    def apply(self, state: Any, shards: Sequence[bytes]) -> list[bytes]:
        np = self.np
        flat, offsets = state
        d = np.frombuffer(b"".join(shards), dtype=np.uint8).reshape(len(shards), -1)
        out = np.bitwise_xor.reduce(np.take(flat, d.astype(np.int32) + offsets), axis=1)
        return [row.tobytes() for row in out]


class TranslateNumpyCodec(_HomeCauchy):
    """bytes.translate multiplies a shard by a constant at C speed (one 256-byte
    table per coefficient); numpy XORs the m x k products, 8 bytes at a time."""

    name = "translate-numpy"

    def __init__(self) -> None:
        self.np = _import("numpy")
        self.version = "numpy " + self.np.__version__

    def compile(self, rows: list[list[int]]) -> Any:
        return len(rows), [MUL_TABLES[c] for row in rows for c in row]

    def apply(self, state: Any, shards: Sequence[bytes]) -> list[bytes]:
        np = self.np
        r, tables = state
        size = len(shards[0])
        products = b"".join([s.translate(t) for s, t in zip(shards * r, tables, strict=True)])
        wide = size % 8 == 0
        arr = np.frombuffer(products, dtype=np.uint64 if wide else np.uint8)
        whole = np.bitwise_xor.reduce(arr.reshape(r, len(shards), -1), axis=1).tobytes()
        return [whole[i * size : (i + 1) * size] for i in range(r)]


class TranslateIntCodec(_HomeCauchy):
    """Standard library only: bytes.translate products XORed as Python ints."""

    name = "translate-int"
    version = "stdlib"

    def compile(self, rows: list[list[int]]) -> Any:
        return [[MUL_TABLES[c] for c in row] for row in rows]

    def apply(self, state: Any, shards: Sequence[bytes]) -> list[bytes]:
        size = len(shards[0])
        from_bytes = int.from_bytes
        out = []
        for tables in state:
            acc = 0
            for s, t in zip(shards, tables, strict=True):
                acc ^= from_bytes(s.translate(t), "little")
            out.append(acc.to_bytes(size, "little"))
        return out


CODEC_FACTORIES: list[tuple[str, Callable[[], Codec]]] = [
    ("pyeclib-isa_l_rs_cauchy", lambda: PyECLibCodec("isa_l_rs_cauchy")),
    ("pyeclib-isa_l_rs_vand", lambda: PyECLibCodec("isa_l_rs_vand")),
    ("pyeclib-liberasurecode_rs_vand", lambda: PyECLibCodec("liberasurecode_rs_vand")),
    ("isal-ctypes", IsalCtypesCodec),
    ("zfec", ZfecCodec),
    ("leopard", LeopardCodec),
    ("numpy-take", NumpyTakeCodec),
    ("translate-numpy", TranslateNumpyCodec),
    ("translate-int", TranslateIntCodec),
]


def load_codecs(wanted: set[str] | None) -> tuple[list[Codec], dict[str, dict[str, Any]]]:
    codecs: list[Codec] = []
    info: dict[str, dict[str, Any]] = {}
    for name, factory in CODEC_FACTORIES:
        if wanted is not None and name not in wanted:
            continue
        try:
            codec = factory()
        except Exception as exc:  # ImportError, backend missing, OSError...
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0]
            print(f"{name}: skipped: {reason}")
            info[name] = {"available": False, "reason": reason}
            continue
        codecs.append(codec)
        info[name] = {"available": True, "family": codec.family, "version": codec.version}
    return codecs, info


# --------------------------------------------------------------------------- timing
def sample(fn: Callable[[], object], n: int, out: list[int]) -> None:
    clock = time.perf_counter_ns
    for _ in range(n):
        t0 = clock()
        fn()
        out.append(clock() - t0)


def stats(ns: list[int]) -> dict[str, float]:
    s = sorted(ns)
    return {
        "median_us": s[len(s) // 2] / 1000,
        "p99_us": s[max(0, math.ceil(0.99 * len(s)) - 1)] / 1000,
        "n": len(s),
    }


def warm(fn: Callable[[], object]) -> None:
    deadline = time.perf_counter() + 0.01
    for i in range(200):
        fn()
        if i >= 10 and time.perf_counter() > deadline:
            break


def time_calls(fns: dict[str, Callable[[], object]], reps: int) -> dict[str, dict[str, float]]:
    """Per-call ns of each fn, GC off, measured in ROUNDS interleaved turns."""
    samples: dict[str, list[int]] = {name: [] for name in fns}
    for fn in fns.values():
        warm(fn)
    gc.collect()
    gc.disable()
    try:
        for _ in range(ROUNDS):
            for name, fn in fns.items():
                sample(fn, max(1, reps // ROUNDS), samples[name])
    finally:
        gc.enable()
    return {name: stats(v) for name, v in samples.items()}


# --------------------------------------------------------------------------- grid
def run_config(codecs: list[Codec], k: int, m: int, size: int, reps: int) -> list[dict[str, Any]]:
    data = [os.urandom(size) for _ in range(k)]
    e = min(m, k)
    lost = tuple(range(e))
    refs: dict[str, list[bytes]] = {}
    rows: list[dict[str, Any]] = []
    fns: dict[str, Callable[[], object]] = {}
    for codec in codecs:
        row: dict[str, Any] = {"codec": codec.name, "k": k, "m": m, "size": size, "lost": e}
        rows.append(row)
        try:
            codec.prepare(k, m, size)
        except UnsupportedError as exc:
            row["unsupported"] = str(exc)
            continue
        parity = codec.encode(data)
        received: Received = [(j, data[j]) for j in range(e, k)]
        received += [(k + i, parity[i]) for i in range(e)]
        rebuilt = codec.decode(received, lost)
        ok = len(parity) == m and all(len(p) == size for p in parity) and rebuilt == data[:e]
        if codec.family in FAMILIES:
            if codec.family not in refs:
                refs[codec.family] = reference_parity(FAMILIES[codec.family](k, m), data)
            row["wire"] = codec.family if parity == refs[codec.family] else "MISMATCH"
            ok = ok and row["wire"] == codec.family
        else:
            row["wire"] = "own"
        row["correct"] = ok
        fns[codec.name + "/enc"] = partial(codec.encode, data)
        fns[codec.name + "/dec"] = partial(codec.decode, received, lost)
    timings = time_calls(fns, reps)
    for row in rows:
        if "unsupported" not in row:
            row["encode"] = timings[row["codec"] + "/enc"]
            row["decode"] = timings[row["codec"] + "/dec"]
    for op in ("encode", "decode"):
        timed = [r for r in rows if op in r]
        best = min((r[op]["median_us"] for r in timed), default=0.0)
        for r in timed:
            r[op]["x_best"] = r[op]["median_us"] / best if best else float("nan")
    return rows


def print_config(rows: list[dict[str, Any]]) -> None:
    k, m, size, e = rows[0]["k"], rows[0]["m"], rows[0]["size"], rows[0]["lost"]
    print(f"\nk={k} m={m} shard={size} B  (decode: {e} data shard(s) lost)")
    print(
        f"  {'codec':31} {'enc med':>8} {'p99':>7} {'x best':>6}"
        f" {'dec med':>8} {'p99':>7} {'x best':>6}  ok  wire"
    )
    for r in rows:
        if "unsupported" in r:
            print(f"  {r['codec']:31} n/a: {r['unsupported']}")
            continue
        en, de = r["encode"], r["decode"]
        print(
            f"  {r['codec']:31} {en['median_us']:8.2f} {en['p99_us']:7.1f} {en['x_best']:6.2f}"
            f" {de['median_us']:8.2f} {de['p99_us']:7.1f} {de['x_best']:6.2f}"
            f"  {'yes' if r['correct'] else 'NO ':3} {r['wire']}"
        )


def print_summary(results: list[dict[str, Any]], codecs: list[Codec]) -> None:
    cells = {(r["codec"], r["k"], r["m"]): r for r in results if r["size"] == 1200}
    cfgs = [c for c in SUMMARY_CONFIGS if any((x.name, *c) in cells for x in codecs)]
    if not cfgs:
        return
    print("\nSummary @1200 B: encode / decode median us (p99 in the JSON)")
    print(f"  {'codec':31}" + "".join(f"{f'({k},{m})':>15}" for k, m in cfgs))
    for codec in codecs:
        line = f"  {codec.name:31}"
        for k, m in cfgs:
            r = cells.get((codec.name, k, m))
            if r is None or "encode" not in r:
                line += f"{'n/a':>15}"
            else:
                cell = f"{r['encode']['median_us']:.1f}/{r['decode']['median_us']:.1f}"
                line += f"{cell:>15}"
        print(line)


# --------------------------------------------------------------------------- investigations
def extract_rows(codec: Codec, k: int, m: int) -> list[list[int]]:
    """The parity matrix a codec implements, read off by encoding unit shards."""
    width = 16
    codec.prepare(k, m, width)
    rows = [[0] * k for _ in range(m)]
    for j in range(k):
        data = [(b"\x01" if t == j else b"\x00") * width for t in range(k)]
        for i, p in enumerate(codec.encode(data)):
            if len(set(p)) != 1:
                raise ValueError("not a GF(2^8) matrix code (bytes of a shard differ)")
            rows[i][j] = p[0]
    return rows


def inv_matrix_identity(codecs: list[Codec]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pairs = [(k, m) for k in range(2, 17) for m in range(1, 5)]
    for codec in codecs:
        if codec.family not in FAMILIES:
            continue
        try:
            same = [extract_rows(codec, k, m) == FAMILIES[codec.family](k, m) for k, m in pairs]
        except (ValueError, UnsupportedError) as exc:
            out[codec.name] = str(exc)
            continue
        out[codec.name] = f"{codec.family}: {sum(same)}/{len(same)} (k,m) in k=2..16, m=1..4"
    for name, codec in ((c.name, c) for c in codecs if c.name.endswith("liberasurecode_rs_vand")):
        try:
            extract_rows(codec, 4, 2)
        except ValueError as exc:
            out[name] = f"{exc}: a GF(2^16) code"
    return out


def inv_cauchy_mds() -> str:
    """Every square submatrix of C nonsingular <=> any k of k+m shards decode."""
    checked = 0
    for k in range(2, 17):
        for m in range(1, 5):
            c = isa_cauchy_rows(k, m)
            for s in range(1, min(k, m) + 1):
                for rs in combinations(range(m), s):
                    for cs in combinations(range(k), s):
                        gf_mat_inv([[c[r][j] for j in cs] for r in rs])  # raises if singular
                        checked += 1
    return f"all {checked} square submatrices nonsingular for k=2..16, m=1..4"


def build_pyeclib_header(
    *, index: int, size: int, orig_size: int, backend_id: int, backend_version: int, libec: int
) -> bytes:
    """liberasurecode fragment_header_t, little-endian, built from scratch."""
    meta = struct.pack(
        "<IIIQB32sBBI", index, size, 0, orig_size, 1, b"", 0, backend_id, backend_version
    )  # idx, size, backend metadata size, orig size, chksum type 1 = none, chksum[8], ...
    tail = struct.pack("<III", 0xB0C5ECC, libec, zlib.crc32(meta))  # magic, version, crc
    return meta + tail + bytes(PYECLIB_HEADER - len(meta) - len(tail))


def _pyeclib_header_case(k: int, m: int, size: int, reps: int) -> dict[str, Any]:
    ec_iface = _import("pyeclib.ec_iface")
    pyeclib_c = _import("pyeclib_c")
    drv = ec_iface.ECDriver(k=k, m=m, ec_type="isa_l_rs_cauchy")
    data = [os.urandom(size) for _ in range(k)]
    joined = b"".join(data)
    frags: list[bytes] = drv.encode(joined)
    meta = drv.get_metadata(frags[0], 1)
    scratch = [
        build_pyeclib_header(
            index=i,
            size=size,
            orig_size=k * size,
            backend_id=frags[0][54],
            backend_version=meta["backend_version"],
            libec=pyeclib_c.get_liberasurecode_version(),
        )
        for i in range(k + m)
    ]
    out: dict[str, Any] = {
        "header_from_scratch_identical": all(
            f[:PYECLIB_HEADER] == h for f, h in zip(frags, scratch, strict=True)
        )
    }
    native = frags[m : k + m]  # the first m data fragments lost
    payloads = [(i, frags[i][PYECLIB_HEADER:]) for i in range(m, k + m)]
    out["decode_with_scratch_headers_ok"] = (
        drv.decode([scratch[i] + p for i, p in payloads]) == joined
    )
    bad = bytearray(native[0])
    bad[30] ^= 1  # inside the 59 metadata bytes the header crc32 covers
    try:
        drv.decode([bytes(bad), *native[1:]])
        out["corrupt_header_rejected"] = False
    except Exception as exc:  # any pyeclib error is a rejection
        out["corrupt_header_rejected"] = type(exc).__name__

    def regen() -> list[bytes]:
        return [scratch[i] + p for i, p in payloads]

    def decode_plait() -> list[bytes]:
        whole: bytes = drv.decode(regen())
        return [whole[j * size : (j + 1) * size] for j in range(m)]

    def init_close() -> None:
        ec_iface.ECDriver(k=k, m=m, ec_type="isa_l_rs_cauchy").close()

    t = time_calls(
        {
            "encode_native (join + encode, headers kept)": partial(drv.encode, joined),
            "header_regen_only (k concatenations)": regen,
            "decode_native (fragments as pyeclib made them)": partial(drv.decode, native),
            "decode_plait (header regen + decode + slice)": decode_plait,
            "reconstruct (header regen + reconstruct lost)": lambda: drv.reconstruct(
                regen(), list(range(m))
            ),
            "ECDriver() init + close": init_close,
        },
        reps,
    )
    out["us"] = {n: round(v["median_us"], 2) for n, v in t.items()}
    drv.close()
    return out


def inv_pyeclib_header(reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {"header_bytes": PYECLIB_HEADER}
    for k, m in ((8, 2), (16, 4)):
        out[f"({k},{m})@1200"] = _pyeclib_header_case(k, m, 1200, reps)
    return out


def _isal_contiguous_case(k: int, m: int, size: int, reps: int) -> dict[str, float]:
    lib = ctypes.CDLL(_find_isal())
    lib.ec_encode_data.restype = None
    lib.ec_init_tables.restype = None
    stride = 1400
    block = ctypes.create_string_buffer(os.urandom(k * stride), k * stride)
    parity = ctypes.create_string_buffer(m * stride)
    addrs = [ctypes.addressof(parity) + i * stride for i in range(m)]
    ins = (ctypes.c_void_p * k)(*(ctypes.addressof(block) + j * stride for j in range(k)))
    outs = (ctypes.c_void_p * m)(*addrs)
    tbl = ctypes.create_string_buffer(32 * k * m)
    lib.ec_init_tables(k, m, bytes(v for r in isa_cauchy_rows(k, m) for v in r), tbl)
    call = partial(lib.ec_encode_data, size, k, m, tbl, ins, outs)

    def call_copy() -> list[bytes]:
        call()
        return [ctypes.string_at(a, size) for a in addrs]

    t = time_calls({"call only": call, "call + parity to bytes": call_copy}, reps)
    return {n: round(v["median_us"], 2) for n, v in t.items()}


def inv_isal_contiguous(reps: int) -> dict[str, Any]:
    """ISA-L through ctypes when the k shards sit in one block buffer at a fixed
    stride: pointer arrays are built once, a call passes nothing new."""
    return {
        f"({k},{m})@1200 us": _isal_contiguous_case(k, m, 1200, reps) for k, m in ((8, 2), (16, 4))
    }


def _leopard_case(k: int, m: int, size: int, reps: int) -> dict[str, float]:
    rs = _import("reed_solomon_leopard")
    data = [os.urandom(size) for _ in range(k)]
    rec = rs.encode(data, m)
    original = {i: data[i] for i in range(m, k)}
    recovery = {i: rec[i] for i in range(m)}
    t = time_calls(
        {
            "encode": partial(rs.encode, data, m),
            "decode": partial(rs.decode, k, m, original, recovery),
            "decode, nothing lost": partial(rs.decode, k, m, dict(enumerate(data)), {}),
        },
        reps,
    )
    return {n: round(v["median_us"], 1) for n, v in t.items()}


def inv_leopard_scaling(reps: int) -> dict[str, Any]:
    cases = ((2, 1200), (8, 1200), (16, 1200), (64, 1200), (256, 1200), (8, 64))
    return {f"k={k} m=2 size={s} us": _leopard_case(k, 2, s, max(50, reps // 10)) for k, s in cases}


def _cold_case(k: int, m: int, reps: int) -> dict[str, float]:
    rows = isa_cauchy_rows(k, m)
    received = [*range(m, k), *range(k, k + m)]
    lost = tuple(range(m))
    gen = [[1 if i == j else 0 for j in range(k)] for i in range(k)] + rows
    t = time_calls(
        {
            "recovery_rows (e x e)": partial(recovery_rows, rows, k, received, lost),
            "full k x k inverse": partial(gf_mat_inv, [gen[i] for i in received]),
        },
        reps,
    )
    return {n: round(v["median_us"], 1) for n, v in t.items()}


def inv_cold_decode(reps: int) -> dict[str, Any]:
    """Cost of a loss pattern not seen before: recovery rows (e x e inverse) versus
    a full k x k inversion as liberasurecode does on every decode call."""
    return {f"({k},{m}) us": _cold_case(k, m, max(20, reps // 20)) for k, m in ((8, 2), (16, 4))}


def _numpy_variants(np: Any, k: int, m: int, size: int) -> dict[str, Callable[[], list[bytes]]]:
    """Other ways to write the ISA-L Cauchy encode with numpy, for the record."""
    rows = isa_cauchy_rows(k, m)
    coef = np.array(rows, dtype=np.intp)
    mul = np.array([[gf_mul(a, b) for b in range(256)] for a in range(256)], dtype=np.uint8)
    exp = np.array(GF_EXP, dtype=np.uint8)
    log = np.array([0, *GF_LOG[1:]], dtype=np.int32)
    data = [os.urandom(size) for _ in range(k)]

    def shards() -> Any:
        return np.frombuffer(b"".join(data), dtype=np.uint8).reshape(k, size)

    def log_exp() -> list[bytes]:  # antilog(log c + log x), zero bytes masked
        d = shards()
        prod = exp[log[d][None, :, :] + log[coef][:, :, None]]
        prod[:, d == 0] = 0
        return [r.tobytes() for r in np.bitwise_xor.reduce(prod, axis=1)]

    def table_broadcast() -> list[bytes]:  # mul[c, x] with broadcast fancy indexing
        prod = mul[coef[:, :, None], shards()[None, :, :]]
        return [r.tobytes() for r in np.bitwise_xor.reduce(prod, axis=1)]

    # pairs of shards: one 65536-entry table per (row, pair) maps (x1 << 8 | x0) at once
    pair_tables: Any = None
    if k % 2 == 0:
        a = np.arange(65536)
        pair_tables = np.stack(
            [
                mul[c0][a & 255] ^ mul[c1][a >> 8]
                for row in rows
                for c0, c1 in zip(row[::2], row[1::2], strict=True)
            ]
        ).reshape(-1)
    pair_offsets = (np.arange(m * (k // 2), dtype=np.intp) * 65536).reshape(m, k // 2, 1)

    def pair16() -> list[bytes]:
        d = shards().reshape(k // 2, 2, size).transpose(0, 2, 1)
        words = np.ascontiguousarray(d).view(np.uint16).reshape(k // 2, size)
        prod = pair_tables[words + pair_offsets]
        return [r.tobytes() for r in np.bitwise_xor.reduce(prod, axis=1)]

    # bit-sliced: x * 2^b on 8 bytes at once in uint64 lanes, then masked XOR
    masks = np.array(
        [[[(c >> b) & 1 for c in row] for b in range(8)] for row in rows], dtype=np.uint64
    ) * np.uint64(0xFFFFFFFFFFFFFFFF)
    m7f, m01 = np.uint64(0x7F7F7F7F7F7F7F7F), np.uint64(0x0101010101010101)
    one, seven, poly = np.uint64(1), np.uint64(7), np.uint64(GF_POLY & 0xFF)

    def bitslice64() -> list[bytes]:
        d = np.frombuffer(b"".join(data), dtype=np.uint64).reshape(k, size // 8)
        powers = np.empty((8, k, size // 8), dtype=np.uint64)
        powers[0] = d
        for b in range(1, 8):
            p = powers[b - 1]
            powers[b] = ((p & m7f) << one) ^ (((p >> seven) & m01) * poly)
        prod = powers[None, :, :, :] & masks[:, :, :, None]
        out = np.bitwise_xor.reduce(prod.reshape(m, 8 * k, size // 8), axis=1)
        return [r.tobytes() for r in out]

    variants: dict[str, Callable[[], list[bytes]]] = {
        "log/antilog gather": log_exp,
        "mul[c, x] broadcast gather": table_broadcast,
        "bit-sliced uint64 xtime": bitslice64,
    }
    if pair_tables is not None:
        variants["16-bit pair tables"] = pair16
    take, tr = NumpyTakeCodec(), TranslateNumpyCodec()
    take.prepare(k, m, size)
    tr.prepare(k, m, size)
    variants["flat table take, int32 (numpy-take)"] = partial(take.encode, data)
    variants["bytes.translate + numpy XOR (translate-numpy)"] = partial(tr.encode, data)
    expected = reference_parity(rows, data)
    for name, fn in variants.items():
        if fn() != expected:
            raise AssertionError(f"numpy variant {name} is wrong")
    return variants


def inv_numpy_variants(reps: int) -> dict[str, Any]:
    np = _import("numpy")
    out: dict[str, Any] = {}
    for k, m in ((8, 2), (16, 4)):
        t = time_calls(dict(_numpy_variants(np, k, m, 1200)), max(200, reps // 5))
        out[f"({k},{m})@1200 encode us"] = {
            n: [round(v["median_us"], 1), round(v["p99_us"], 1)] for n, v in t.items()
        }
    return out


def inv_pyeclib_parity_prefix() -> str:
    """Cauchy parity row i depends on k, i, j only: a (k, m) code's parity shards are
    the first m of the (k, 4) code's, and a (k, 4) pyeclib driver decodes them."""
    ec_iface = _import("pyeclib.ec_iface")
    checked = 0
    for k in range(2, 17):
        data = os.urandom(k * 64)
        wide = ec_iface.ECDriver(k=k, m=4, ec_type="isa_l_rs_cauchy")
        full: list[bytes] = wide.encode(data)
        for m in range(1, 4):
            drv = ec_iface.ECDriver(k=k, m=m, ec_type="isa_l_rs_cauchy")
            frags: list[bytes] = drv.encode(data)
            drv.close()
            if [f[PYECLIB_HEADER:] for f in frags[k:]] != [
                f[PYECLIB_HEADER:] for f in full[k : k + m]
            ]:
                return f"parity differs at k={k} m={m}"
            lost = min(k, m)
            got = [
                full[i][:PYECLIB_HEADER] + frags[i][PYECLIB_HEADER:] for i in range(lost, k + lost)
            ]
            if wide.decode(got) != data:
                return f"(k, 4) driver failed on (k={k}, m={m}) parity"
            checked += 1
        wide.close()
    return f"prefix property and cross-m decode hold for all {checked} (k, m<4) pairs, k=2..16"


def run_investigations(codecs: list[Codec], reps: int) -> dict[str, Any]:
    names = {c.name for c in codecs}
    steps: list[tuple[str, bool, Callable[[], Any]]] = [
        ("matrix_identity", True, lambda: inv_matrix_identity(codecs)),
        ("isa_cauchy_mds", True, inv_cauchy_mds),
        ("pyeclib_parity_prefix", "pyeclib-isa_l_rs_cauchy" in names, inv_pyeclib_parity_prefix),
        ("pyeclib_header", "pyeclib-isa_l_rs_cauchy" in names, lambda: inv_pyeclib_header(reps)),
        ("isal_ctypes_contiguous", "isal-ctypes" in names, lambda: inv_isal_contiguous(reps)),
        ("leopard_scaling", "leopard" in names, lambda: inv_leopard_scaling(reps)),
        ("cold_decode_pattern", True, lambda: inv_cold_decode(reps)),
        ("numpy_variants", "numpy-take" in names, lambda: inv_numpy_variants(reps)),
    ]
    out: dict[str, Any] = {}
    print("\nInvestigations")
    for name, enabled, step in steps:
        if not enabled:
            out[name] = "skipped: codec not available"
        else:
            try:
                out[name] = step()
            except Exception as exc:  # report and go on
                out[name] = f"failed: {type(exc).__name__}: {exc}"
        print(f"  {name}: {json.dumps(out[name], indent=4)}")
    return out


# --------------------------------------------------------------------------- main
def environment() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpus_allowed": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [],
    }
    if hasattr(os, "getloadavg"):
        env["loadavg_start"] = os.getloadavg()
    return env


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="key configurations (default)")
    mode.add_argument("--full", action="store_true", help="k {2,4,8,10,16} x m {1,2,4} x size")
    ap.add_argument("--reps", type=int, default=None, help="timed calls per codec and op")
    ap.add_argument("--codecs", default=None, help="comma-separated subset of codec names")
    ap.add_argument("--no-investigations", action="store_true")
    ap.add_argument("--json", type=Path, default=RESULTS / "fec_codecs.json")
    args = ap.parse_args(argv)

    configs = FULL_CONFIGS if args.full else QUICK_CONFIGS
    reps = args.reps or (2000 if args.full else 3000)
    wanted = set(args.codecs.split(",")) if args.codecs else None
    env = environment()
    print(f"python {env['python']} on {env['machine']} ({env['cpu']}), cpus {env['cpus_allowed']}")
    codecs, info = load_codecs(wanted)
    if not codecs:
        print("no codec available")
        return 1
    started = time.perf_counter()
    results: list[dict[str, Any]] = []
    for k, m, size in configs:
        rows = run_config(codecs, k, m, size, reps)
        print_config(rows)
        results.extend(rows)
    print_summary(results, codecs)
    investigations = {} if args.no_investigations else run_investigations(codecs, reps)
    if hasattr(os, "getloadavg"):
        env["loadavg_end"] = os.getloadavg()
    env["seconds"] = round(time.perf_counter() - started, 1)
    failures = [r for r in results if r.get("correct") is False]
    payload = {
        "environment": env,
        "mode": "full" if args.full else "quick",
        "reps": reps,
        "codecs": info,
        "results": results,
        "investigations": investigations,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"\n{len(results)} rows, {len(failures)} incorrect, {env['seconds']} s -> {args.json}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
