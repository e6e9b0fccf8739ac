"""FEC benchmark: µs per block to encode and to rebuild m lost records, 1200-byte records.

    python3 dev.py bench fec [--runs N]

plait's whole block path is timed (on send: k records added, the shards built, the
codec, the Parity records; on receive: k - m records stored, m parity arrivals and the
rebuild, one long-lived decoder as in a session), with each codec: pyeclib's ISA-L (the
default where installed) and the portable standard-library codec. The references, in
the same run: raw pyeclib, i.e. its public API alone (``ECDriver.encode`` of the k
shards end to end; ``ECDriver.decode`` of k of its own framed fragments), the portable
codec alone, and zfec (raw codec calls, a different code; in the ``dev`` extra).

Both builds of the core in one command: ``--runs`` runs of each (default 3), alternating
compiled and pure Python (``PLAIT_PURE_PYTHON=1``), each in a fresh interpreter; every
figure is the median over the runs. Ratios: plait + pyeclib / raw pyeclib, and / pyeclib
on wire shards, i.e. its public API on shards without its headers, as plait's wire carries
them (joined to encode and the parity headers stripped; headers put back to decode).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import child_runs, measure, write_json

import plait
from plait import rs
from plait.fec import BlockDecoder, BlockEncoder, ParityBlock, shards_of
from plait.wire import Parity

CONFIGS = [(4, 1), (4, 2), (8, 2), (10, 4), (16, 4)]
SIZE = 1200
RUNS = 3
HEADER = 80  # pyeclib's fragment header (liberasurecode's fragment_header_t)
BATCH, REPEATS = 50, 100
Timing = tuple[dict[str, float], dict[str, float]]


def _timed(encode: Callable[[], object], decode: Callable[[], object]) -> Timing:
    return (
        measure(encode, batch=BATCH, repeats=REPEATS),
        measure(decode, batch=BATCH, repeats=REPEATS),
    )


def _plait_cases(codec: rs.ErasureCodec, k: int, m: int, *, push: bool = False) -> Timing:
    """`push`: the sender takes each block's parity as one ParityBlock (`push`), not as
    `Parity` records (`add`, what plait.outbox calls today)."""
    rng = random.Random(k * 100 + m)
    records = [rng.randbytes(SIZE) for _ in range(k)]
    enc = BlockEncoder(codec, k=k, m=m, flush_ns=10**9)
    seq = [0]

    def encode() -> list[Parity]:
        out: list[Parity] = []
        for record in records:
            out += enc.add(seq[0], record, 0)
            seq[0] += 1
        return out

    def encode_push() -> ParityBlock | None:
        block = None
        for record in records:
            block = enc.push(seq[0], record, 0) or block
            seq[0] += 1
        return block

    parity = BlockEncoder(codec, k=k, m=m, flush_ns=10**9)
    blocks = [parity.add(i, record, 0) for i, record in enumerate(records)][-1]
    lost = min(k, m)
    dec = BlockDecoder(codec)
    base = [0]

    def decode() -> list[tuple[int, bytes]]:
        b = base[0]
        base[0] += k
        for i in range(lost, k):
            dec.on_data(b + i, records[i])
        out: list[tuple[int, bytes]] = []
        for p in blocks[:lost]:
            out += dec.on_parity(b, p)
        return out

    assert [r for _, r in decode()] == records[:lost]
    return _timed(encode_push if push else encode, decode)


def _codec_cases(codec: rs.ErasureCodec, k: int, m: int) -> Timing:
    """The codec alone, as zfec is timed: parity of k shards; rebuild min(k, m) of them."""
    rng = random.Random(7)
    shards = shards_of([rng.randbytes(SIZE) for _ in range(k)])
    parity = codec.parity(k, m, shards)
    lost = list(range(min(k, m)))
    have = {i: s for i, s in enumerate(shards + parity) if i not in lost}
    have = dict(list(have.items())[:k])
    return _timed(lambda: codec.parity(k, m, shards), lambda: codec.recover(k, m, have, lost))


def _pyeclib_cases(k: int, m: int) -> Timing | None:
    """pyeclib's public API alone: encode the k shards end to end; decode k fragments."""
    try:
        from pyeclib.ec_iface import ECDriver  # noqa: PLC0415  (optional peer)
    except ImportError:
        return None
    rng = random.Random(7)
    data = b"".join(shards_of([rng.randbytes(SIZE) for _ in range(k)]))
    driver = ECDriver(k=k, m=m, ec_type="isa_l_rs_cauchy")
    fragments = driver.encode(data)
    received = fragments[min(k, m) : min(k, m) + k]
    assert driver.decode(received) == data
    return _timed(lambda: driver.encode(data), lambda: driver.decode(received))


def _wire_cases(k: int, m: int) -> Timing | None:
    """pyeclib's public API on shards as plait's wire carries them, without its 80-byte
    fragment headers (what plait.rs did before it framed whole blocks): encode the shards
    joined and strip the m parity fragments' headers; put pyeclib's own headers back on k
    shards, decode, and cut out the lost shards."""
    try:
        from pyeclib.ec_iface import ECDriver  # noqa: PLC0415  (optional peer)
    except ImportError:
        return None
    rng = random.Random(7)
    shards = shards_of([rng.randbytes(SIZE) for _ in range(k)])
    driver = ECDriver(k=k, m=m, ec_type="isa_l_rs_cauchy")
    fragments = driver.encode(b"".join(shards))
    headers = [f[:HEADER] for f in fragments]
    lost = list(range(min(k, m)))
    have = {i: f[HEADER:] for i, f in enumerate(fragments) if i not in lost}
    have = dict(list(have.items())[:k])
    size = len(shards[0])

    def encode() -> list[bytes]:
        return [f[HEADER:] for f in driver.encode(b"".join(shards))[k:]]

    def decode() -> list[bytes]:
        whole = driver.decode([headers[i] + s for i, s in have.items()])
        return [whole[j * size : (j + 1) * size] for j in lost]

    assert decode() == shards[: len(lost)]
    return _timed(encode, decode)


def _zfec_cases(k: int, m: int) -> Timing | None:
    try:
        import zfec  # type: ignore[import-untyped]  # noqa: PLC0415  (optional peer, untyped)
    except ImportError:
        return None
    rng = random.Random(7)
    shards = shards_of([rng.randbytes(SIZE) for _ in range(k)])
    encoder, decoder = zfec.Encoder(k, k + m), zfec.Decoder(k, k + m)
    blocks = encoder.encode(shards)
    keep = list(range(min(k, m), k + min(k, m)))
    received = [blocks[i] for i in keep]
    return _timed(
        lambda: encoder.encode(shards, list(range(k, k + m))),
        lambda: decoder.decode(received, keep),
    )


def _child() -> None:
    """One run in this process (its build), as JSON on stdout, for `_both_builds`."""
    codecs: list[rs.ErasureCodec] = [rs.PortableCodec()]
    with contextlib.suppress(ImportError):  # without pyeclib only the portable codec is timed
        codecs.insert(0, rs.PyeclibCodec())
    rows: list[dict[str, Any]] = []
    for k, m in CONFIGS:
        entries: list[tuple[str, Timing | None]] = [
            (f"plait + {c.name}", _plait_cases(c, k, m)) for c in codecs
        ]
        if codecs[0].name.startswith("pyeclib"):
            push = _plait_cases(codecs[0], k, m, push=True)
            entries.insert(1, ("  the same, push (no Parity)", push))
        entries += [
            ("raw pyeclib (ECDriver)", _pyeclib_cases(k, m)),
            ("pyeclib on wire shards", _wire_cases(k, m)),
            ("raw portable (plait.rs)", _codec_cases(codecs[-1], k, m)),
            ("raw zfec (peer)", _zfec_cases(k, m)),
        ]
        for name, timing in entries:
            if timing is not None:
                enc, dec = timing
                rows.append({"k": k, "m": m, "case": name, "encode": enc, "decode": dec})
    print(json.dumps({"compiled": plait.COMPILED, "rows": rows}))


def _both_builds(runs: int) -> list[tuple[str, list[dict[str, Any]]]]:
    """`runs` runs of each build, alternating, each in a fresh interpreter."""
    results = child_runs(__file__, [], runs, plait.COMPILED)
    return [(build, _medians(rows)) for build, rows in results.items()]


def _medians(runs: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per row, the median over runs of each figure; plait + pyeclib rows get the median
    of each run's ratio to raw pyeclib."""
    rows = []
    for index, first in enumerate(runs[0]):
        per_run = [run[index] for run in runs]
        row: dict[str, Any] = {"k": first["k"], "m": first["m"], "case": first["case"]}
        for op in ("encode", "decode"):
            row[op] = {
                key: round(statistics.median(r[op][key] for r in per_run), 1)
                for key in ("median_ns", "p99_ns", "min_ns")
            }
        if first["case"].startswith(("plait + pyeclib", "  the same")):
            for peer, key in (("raw pyeclib", "raw_pyeclib"), ("pyeclib on wire", "wire_shards")):
                for op in ("encode", "decode"):
                    ratios = []
                    for r, run in zip(per_run, runs, strict=True):
                        ref = [x for x in run if x["case"].startswith(peer)]
                        ref = [x for x in ref if (x["k"], x["m"]) == (first["k"], first["m"])]
                        if ref:
                            ratios.append(r[op]["median_ns"] / ref[0][op]["median_ns"])
                    if ratios:
                        row[f"{op}_ratio_vs_{key}"] = round(statistics.median(ratios), 2)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=RUNS, help="runs per build (medians)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child()
        return
    builds = _both_builds(args.runs)
    print(
        f"{SIZE}-byte records, µs per block: median (p99) over batches of {BATCH}, "
        f"medians of {args.runs} runs per build; ratios: plait + pyeclib / raw pyeclib, "
        "and / pyeclib on wire shards"
    )
    head = f"{'build':9} {'(k,m)':7} {'case':32} {'encode µs':>9} {'p99':>6} {'decode µs':>9} "
    print(f"{head}{'p99':>6} {'vs raw enc':>10} {'dec':>5} {'vs wire enc':>11} {'dec':>5}")
    for build, rows in builds:
        for row in rows:
            enc, dec = row["encode"], row["decode"]
            ratios = ""
            if "encode_ratio_vs_raw_pyeclib" in row:
                ratios = (
                    f" {row['encode_ratio_vs_raw_pyeclib']:10.2f} "
                    f"{row['decode_ratio_vs_raw_pyeclib']:5.2f}"
                    f" {row.get('encode_ratio_vs_wire_shards', 0):11.2f} "
                    f"{row.get('decode_ratio_vs_wire_shards', 0):5.2f}"
                )
            print(
                f"{build:9} {'({},{})'.format(row['k'], row['m']):7} {row['case']:32} "
                f"{enc['median_ns'] / 1e3:9.1f} {enc['p99_ns'] / 1e3:6.1f} "
                f"{dec['median_ns'] / 1e3:9.1f} {dec['p99_ns'] / 1e3:6.1f}{ratios}"
            )
    payload = {
        "unit": "ns per block, median over runs of each run's median (p99, min) over batches",
        "record_bytes": SIZE,
        "runs_per_build": args.runs,
        "builds": dict(builds),
    }
    print(f"wrote {write_json('fec', payload)}")


if __name__ == "__main__":
    main()
