"""Microbenchmark of plait.crypto: ns per seal and open, against raw AEADs.

    python3 dev.py bench crypto

Each case seals or opens one DATA-sized body (200 and 1200 bytes) behind an 11-byte
header. Peers in the same run, all from `cryptography` with the same body, a 12-byte
associated data (header + link byte) and a fixed 12-byte nonce:

* raw ChaCha20-Poly1305 `encrypt`/`decrypt`: the floor; plait's overhead is the nonce,
  the associated data, the header copy and its checks;
* AES-128-GCM and AES-256-GCM `encrypt`/`decrypt`: what a hardware-AES cipher would cost.

`ratio` columns = plait median / peer median. Seal draws its packet numbers from a
counter (a sealer refuses to reuse one), so its time includes that counter.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import measure, write_json
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from plait import crypto

HEADER = bytes.fromhex("210a0b0c0dfffe075bcd15")
LINK = 2
Case = tuple[str, Callable[[], object], dict[str, Callable[[], object]]]


def _raw(
    aead: ChaCha20Poly1305 | AESGCM, body: bytes, ad: bytes
) -> tuple[Callable[[], object], Callable[[], object]]:
    """Encrypt and decrypt of `body` by `aead` with a fixed nonce: no plait code at all."""
    nonce = bytes(12)
    sealed = aead.encrypt(nonce, body, ad)
    return (lambda: aead.encrypt(nonce, body, ad)), (lambda: aead.decrypt(nonce, sealed, ad))


def _cases(size: int) -> list[Case]:
    keys, _ = crypto.session_keys(bytes(range(32)), 0x0A0B0C0D, bytes(16), bytes(range(16)))
    sealer, opener = crypto.Sealer(keys), crypto.Opener(keys)
    body = os.urandom(size)
    numbers = itertools.count(1_000).__next__
    pn = 999
    datagram = crypto.Sealer(keys).seal(HEADER, body, LINK, pn)
    header_len = len(HEADER)

    def seal() -> bytes:
        return sealer.seal(HEADER, body, LINK, numbers())

    def open_() -> bytes:
        return opener.open(datagram, header_len, LINK, pn)

    ad = HEADER + bytes((LINK,))
    peers = {
        "chacha20-poly1305 raw": _raw(ChaCha20Poly1305(keys.key), body, ad),
        "aes-128-gcm raw": _raw(AESGCM(bytes(16)), body, ad),
        "aes-256-gcm raw": _raw(AESGCM(bytes(32)), body, ad),
    }
    peers_seal = {name: pair[0] for name, pair in peers.items()}
    peers_open = {name: pair[1] for name, pair in peers.items()}
    return [(f"seal {size} B", seal, peers_seal), (f"open {size} B", open_, peers_open)]


def main() -> None:
    rows: list[dict[str, object]] = []
    names = ("chacha raw", "aes128", "aes256")
    heads = " ".join(f"{n + ' ns':>14} {'ratio':>6}" for n in names)
    print(f"{'case':14} {'median ns':>10} {'p99 ns':>8} {heads}")
    for name, ours, peers in [*_cases(200), *_cases(1200)]:
        a = measure(ours)
        line = f"{name:14} {a['median_ns']:10.0f} {a['p99_ns']:8.0f}"
        peer_rows: dict[str, object] = {}
        for peer_name, peer in peers.items():
            b = measure(peer)
            ratio = a["median_ns"] / b["median_ns"]
            peer_rows[peer_name] = b | {"ratio": round(ratio, 2)}
            line += f" {b['median_ns']:14.0f} {ratio:6.2f}"
        print(line, flush=True)
        rows.append({"case": name, "plait": a, "peers": peer_rows})
    payload = {
        "unit": "ns per call",
        "header_bytes": len(HEADER),
        "ratio": "plait median / peer median",
        "rows": rows,
    }
    print(f"wrote {write_json('crypto', payload)}")


if __name__ == "__main__":
    main()
