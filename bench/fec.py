"""FEC benchmark: µs per block to encode and to rebuild m lost records, 1200-byte records.

    python3 dev.py bench fec

plait's whole block path is timed (shard building, the codec, the Parity records;
on receive, storing k - m records, m parity arrivals and the rebuild), with each codec:
pyeclib's ISA-L (the default where installed) and the portable standard-library codec.
The peer in the same run is zfec, the next maintained library (raw codec calls only,
and a different code; `pip install zfec` to include it). Ratio = plait / zfec.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import measure, write_json

from plait import rs
from plait.fec import BlockDecoder, BlockEncoder, shards_of
from plait.wire import Parity

CONFIGS = [(4, 1), (4, 2), (8, 2), (10, 4), (16, 4)]
SIZE = 1200


def _plait_cases(
    codec: rs.ErasureCodec, k: int, m: int
) -> tuple[dict[str, float], dict[str, float]]:
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

    parity = BlockEncoder(codec, k=k, m=m, flush_ns=1).flush() or []
    enc2 = BlockEncoder(codec, k=k, m=m, flush_ns=10**9)
    for i, record in enumerate(records):
        parity = enc2.add(i, record, 0) or parity
    lost = min(k, m)

    def decode() -> list[tuple[int, bytes]]:
        dec = BlockDecoder(codec)
        for i in range(lost, k):
            dec.on_data(i, records[i])
        out: list[tuple[int, bytes]] = []
        for p in parity[:lost]:
            out += dec.on_parity(0, p)
        assert [r for _, r in out] == records[:lost]
        return out

    batch = 50
    return measure(encode, batch=batch, repeats=200), measure(decode, batch=batch, repeats=200)


def _raw_cases(codec: rs.ErasureCodec, k: int, m: int) -> tuple[dict[str, float], dict[str, float]]:
    """The codec alone, as zfec is timed: parity of k shards; rebuild min(k, m) of them."""
    rng = random.Random(7)
    shards = shards_of([rng.randbytes(SIZE) for _ in range(k)])
    parity = codec.parity(k, m, shards)
    lost = list(range(min(k, m)))
    have = {i: s for i, s in enumerate(shards + parity) if i not in lost}
    have = dict(list(have.items())[:k])

    def encode() -> object:
        return codec.parity(k, m, shards)

    def decode() -> object:
        return codec.recover(k, m, have, lost)

    return measure(encode, batch=50, repeats=200), measure(decode, batch=50, repeats=200)


def _zfec_cases(k: int, m: int) -> tuple[dict[str, float], dict[str, float]] | None:
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

    def encode() -> object:
        return encoder.encode(shards, list(range(k, k + m)))

    def decode() -> object:
        return decoder.decode(received, keep)

    return measure(encode, batch=50, repeats=200), measure(decode, batch=50, repeats=200)


def main() -> None:
    codecs: list[rs.ErasureCodec] = [rs.PortableCodec()]
    try:
        codecs.insert(0, rs.PyeclibCodec())
    except ImportError:
        print("pyeclib not installed: only the portable codec is timed")
    rows: list[dict[str, object]] = []
    head = f"{'(k,m)':7} {'codec':34} {'encode µs':>10} {'p99':>7} {'decode µs':>10} {'p99':>7}"
    print(f"{SIZE}-byte records, µs per block (median over batches of 50)\n{head}")
    for k, m in CONFIGS:
        peer = _zfec_cases(k, m)
        entries = [(f"plait + {c.name}", *_plait_cases(c, k, m)) for c in codecs]
        entries += [(f"raw {c.name}", *_raw_cases(c, k, m)) for c in codecs]
        if peer is not None:
            entries.append(("raw zfec (peer)", *peer))
        peer_enc = peer[0]["median_ns"] if peer else None
        peer_dec = peer[1]["median_ns"] if peer else None
        for name, enc, dec in entries:
            times = [enc["median_ns"], enc["p99_ns"], dec["median_ns"], dec["p99_ns"]]
            cols = " ".join(
                f"{t / 1000:{w}.1f}" for t, w in zip(times, (10, 7, 10, 7), strict=True)
            )
            print(f"{f'({k},{m})':7} {name:34} {cols}")
            row: dict[str, object] = {"k": k, "m": m, "codec": name, "encode": enc, "decode": dec}
            if peer_enc and peer_dec:
                row["encode_ratio_vs_zfec"] = round(enc["median_ns"] / peer_enc, 2)
                row["decode_ratio_vs_zfec"] = round(dec["median_ns"] / peer_dec, 2)
            rows.append(row)
    print(
        f"wrote {write_json('fec', {'unit': 'ns per block', 'record_bytes': SIZE, 'rows': rows})}"
    )


if __name__ == "__main__":
    main()
