"""atheris harness for `plait.wire.decode` (target: fuzz/targets.py:decode_target).

    python3 dev.py fuzz decode -runs=1000000          # a million inputs
    python3 dev.py fuzz decode -max_total_time=60     # or one minute

Extra arguments are libFuzzer flags. The seed corpus (every example packet in
fuzz/seeds.py) is written to fuzz/corpus-decode/ on first use and grows as atheris runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

with atheris.instrument_imports(include=["plait"]):
    from plait import wire

from fuzz.seeds import EXAMPLES
from fuzz.targets import decode_target


def _corpus() -> str:
    corpus = Path(__file__).resolve().parent / "corpus-decode"
    if not corpus.is_dir():
        corpus.mkdir()
        for name, packet in EXAMPLES.items():
            (corpus / name).write_bytes(wire.encode(packet))
    return str(corpus)


def main() -> None:
    args = list(sys.argv)
    if not any(not a.startswith("-") for a in args[1:]):
        args.append(_corpus())
    atheris.Setup(args, decode_target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
