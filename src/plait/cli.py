"""The ``plait`` command line: ``plait demo`` (today, the framing and window self-check)."""

from __future__ import annotations

import argparse
import json
import sys

import attrs

from plait import selfcheck


def _demo(args: argparse.Namespace) -> int:
    report = selfcheck.run(args.seed)
    if args.json:
        print(json.dumps({"ok": report.ok, **attrs.asdict(report)}, indent=2))
    else:
        print(selfcheck.render(report))
    return 0 if report.ok else 1


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="plait", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="run the demo: a seeded self-check of framing and sequence windows"
    )
    demo.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    demo.add_argument("--json", action="store_true", help="print a machine-readable report")
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    sys.exit(args.run(args))
