"""The ``plait`` command line.

plait demo [--scenario NAME] [--seed N] [--duration SECONDS] [--json] [--plot FILE]
plait selfcheck [--seed N] [--json]
plait relay [--config FILE] [--link LOCAL=REMOTE[@IFACE]:RATE ...] [--listen ...] ...

`relay` runs on real sockets (`plait_adapters.relay`); it is imported only when the
command runs, so the rest of the CLI, like the core, stays free of sockets and clocks.
"""

from __future__ import annotations

import argparse
import json
import sys

import attrs

from plait import demo as demo_mod
from plait import selfcheck
from plait.sim import SCENARIOS


def _demo(args: argparse.Namespace) -> int:
    progress = None if args.json or not sys.stderr.isatty() else demo_mod.progress_bar(sys.stderr)
    report = demo_mod.demo(
        args.scenario,
        seed=args.seed,
        duration_s=args.duration,
        progress=progress,
        keep_trace=args.plot is not None,
    )
    print(demo_mod.to_json(report) if args.json else demo_mod.render(report))
    if args.plot:
        try:
            demo_mod.plot(report, args.plot)
        except ImportError:
            print("--plot needs matplotlib: .venv/bin/pip install matplotlib", file=sys.stderr)
            return 2
        if not args.json:
            print(f"  plot       {args.plot}")
    return 0 if report.result.ok else 1


def _selfcheck(args: argparse.Namespace) -> int:
    report = selfcheck.run(args.seed)
    if args.json:
        print(json.dumps({"ok": report.ok, **attrs.asdict(report)}, indent=2))
    else:
        print(selfcheck.render(report))
    return 0 if report.ok else 1


def _relay(args: argparse.Namespace) -> int:
    from plait_adapters import relay  # noqa: PLC0415  (sockets and clocks: only when it runs)

    return relay.main(args.args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="plait", description="plait: bonded low-latency UDP")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="simulate a session over several links and summarise it"
    )
    demo.add_argument(
        "--scenario", default="lossy", choices=sorted(SCENARIOS), help="network (default lossy)"
    )
    demo.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    demo.add_argument("--duration", type=float, default=None, help="seconds of traffic")
    demo.add_argument("--json", action="store_true", help="print a machine-readable summary")
    demo.add_argument("--plot", metavar="FILE", help="also draw a PNG (needs matplotlib)")
    demo.set_defaults(run=_demo)
    check = commands.add_parser("selfcheck", help="a quick check of framing and windows")
    check.add_argument("--seed", type=int, default=1)
    check.add_argument("--json", action="store_true")
    check.set_defaults(run=_selfcheck)
    relay = commands.add_parser(
        "relay",
        help="carry UDP datagrams to a peer relay over several links (plait relay --help)",
        add_help=False,
        prefix_chars="+",  # every argument, --help too, goes to the relay's own parser
    )
    relay.add_argument("args", nargs=argparse.REMAINDER)
    relay.set_defaults(run=_relay)
    args = parser.parse_args(argv)
    sys.exit(args.run(args))
