"""atheris harness for `wire.decode_body` of each packet type (and `parse_data`)
(target: fuzz/targets.py:body_target).

    python3 dev.py fuzz body -runs=1000000 -print_final_stats=1
    python3 dev.py fuzz body -max_total_time=60

The seed corpus (fuzz/seeds.py:body_seeds) is written to fuzz/corpus-body/ on first use.
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
    corpus.fuzz_main("body", targets.body_target, seeds.body_seeds)
