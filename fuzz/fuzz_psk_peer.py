"""atheris harness for a peer that holds the psk and breaks the rules
(target: fuzz/psk_peer.py:psk_peer_target).

    python3 dev.py fuzz psk_peer -max_total_time=600 -print_final_stats=1

Each input is a program of up to 200 eight-byte steps: records far ahead, deadlines past
and 35 minutes ahead, fragments that never complete, 60 kB records, parity for blocks
that never existed, FEEDBACK with 255 ranges, time passing. After every step B's tables
are within their bounds in entries and bytes, the events and CPU of the call are
bounded, and at the end everything forged has expired. The seed corpus is written to
fuzz/corpus-psk_peer/ on first use.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["plait"]):
    import plait  # noqa: F401  (imported here to be instrumented)

from fuzz import corpus, psk_peer

if __name__ == "__main__":
    corpus.fuzz_main("psk_peer", psk_peer.psk_peer_target, psk_peer.psk_peer_seeds)
