"""atheris harness for `Endpoint.receive_datagram` with a psk
(target: fuzz/targets.py:endpoint_psk_target; without: fuzz_endpoint.py).

    python3 dev.py fuzz endpoint_psk -runs=1000000 -print_final_stats=1
    python3 dev.py fuzz endpoint_psk -max_total_time=600

Each input is a program of up to 24 steps against a fresh copy of a live session's
receiving end: real datagrams captured from the simulator, replays (same link, other
link, later, older session), truncation, padding to 65,507 bytes, bit flips, rewritten
headers, forged bodies and random bytes (see `targets.Attack`). The seed corpus (every
captured datagram delivered as is, and programs mixing each attack with real traffic)
is written to fuzz/corpus-endpoint_psk/ on first use.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["plait"]):
    import plait  # noqa: F401  (imported here to be instrumented)

from fuzz import corpus, seeds, targets

if __name__ == "__main__":
    corpus.fuzz_main(
        "endpoint_psk", targets.endpoint_psk_target, lambda: seeds.endpoint_seeds(True)
    )
