"""atheris harness for `plait.crypto.Opener.open` and `open_hello`
(target: fuzz/targets.py:crypto_target).

    python3 dev.py fuzz crypto -runs=1000000 -print_final_stats=1
    python3 dev.py fuzz crypto -max_total_time=60

The seed corpus (fuzz/seeds.py:crypto_seeds) is written to fuzz/corpus-crypto/ on first use.
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
    corpus.fuzz_main("crypto", targets.crypto_target, seeds.crypto_seeds)
