"""The ``plait`` command line.

plait [--version]
plait demo [--scenario NAME] [--seed N] [--duration SECONDS] [--json] [--plot FILE]
           [--trace FILE]
plait plot TRACE [-o PNG]
plait selfcheck [--seed N] [--json]
plait relay [--config FILE] [--link LOCAL=REMOTE[@IFACE]:RATE ...] [--listen ...] ...

`relay` runs on real sockets (`plait_adapters.relay`); it is imported only when the
command runs, so the rest of the CLI, like the core, stays free of sockets and clocks.

Like other command-line tools: a usage error is one line on stderr and status 2 (the
usage itself only with ``--help``); a closed pipe (``plait demo | head``) ends the
command quietly; ``--plot`` checks for matplotlib before the demo runs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
from pathlib import Path
from typing import Final, NoReturn

import attrs

import plait
from plait import demo as demo_mod
from plait import plot, selfcheck, tracelog
from plait.sim import SCENARIOS

__all__ = ["main", "version"]

MAX_DURATION_S: Final = 86_400.0
"""``demo --duration``: up to a day of simulated traffic."""
PLOT_HINT: Final = "--plot needs matplotlib: pip install 'plait[plot]'"


def version() -> str:
    """plait's version (`plait.__version__`; tests/test_packaging.py checks that the
    package metadata says the same)."""
    return plait.__version__


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors: ``plait demo: error: ... (see ... --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= MAX_DURATION_S or math.isnan(value):
        raise argparse.ArgumentTypeError(f"must be > 0 and <= {MAX_DURATION_S:.0f}, got {text}")
    return value


def _matplotlib_missing() -> bool:
    return importlib.util.find_spec("matplotlib") is None


def _demo(args: argparse.Namespace) -> int:
    if args.plot is not None and _matplotlib_missing():
        print(f"plait demo: error: {PLOT_HINT}", file=sys.stderr)
        return 2
    progress = None if args.json or not sys.stderr.isatty() else demo_mod.progress_bar(sys.stderr)
    report = demo_mod.demo(
        args.scenario,
        seed=args.seed,
        duration_s=args.duration,
        progress=progress,
        keep_trace=args.plot is not None or args.trace is not None,
    )
    print(demo_mod.to_json(report) if args.json else demo_mod.render(report))
    if args.trace:
        with open(args.trace, "w", encoding="utf-8") as out:
            tracelog.write(out, demo_mod.trace(report))
        if not args.json:
            print(f"  trace      {args.trace}")
    if args.plot:
        demo_mod.plot(report, args.plot)
        if not args.json:
            print(f"  plot       {args.plot}")
    return 0 if report.result.ok else 1


def _plot(args: argparse.Namespace) -> int:
    if _matplotlib_missing():
        print(f"plait plot: error: {PLOT_HINT.replace('--plot', 'plot')}", file=sys.stderr)
        return 2
    out = args.output or str(Path(args.trace).with_suffix(".png"))
    try:
        plot.plot_file(Path(args.trace), Path(out))
    except (OSError, tracelog.TraceError) as exc:
        print(f"plait plot: error: {exc}", file=sys.stderr)
        return 2
    print(out)
    return 0


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


def _durations() -> str:
    lengths = sorted({spec.duration_ns / 1e9 for spec in SCENARIOS.values()})
    return ", ".join(f"{s:g}" for s in lengths)


def build_parser() -> argparse.ArgumentParser:
    """The ``plait`` argument parser."""
    parser = _Parser(prog="plait", description="plait: low-latency UDP over bonded links")
    parser.add_argument("--version", action="version", version=f"plait {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="simulate a session over several links and summarise it",
        description="Run a simulated session (no network needed) and summarise it: "
        "messages delivered, rebuilt, re-sent and expired, latency, each link's share. "
        "Exit status 0 if every message arrived once, in order, intact and in time.",
    )
    demo.add_argument(
        "--scenario",
        default="lossy",
        choices=sorted(SCENARIOS),
        metavar="NAME",
        help="the simulated network (default: lossy); one of " + ", ".join(sorted(SCENARIOS)),
    )
    demo.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    demo.add_argument(
        "--duration",
        type=_duration,
        default=None,
        metavar="SECONDS",
        help=f"seconds of traffic, > 0 (default: the scenario's own, {_durations()} s)",
    )
    demo.add_argument("--json", action="store_true", help="print the summary as JSON")
    demo.add_argument(
        "--plot",
        metavar="FILE",
        help="also draw a PNG (needs matplotlib: pip install 'plait[plot]')",
    )
    demo.add_argument(
        "--trace",
        metavar="FILE",
        help="also write every message, datagram and link event as JSON lines (plait plot "
        "draws it)",
    )
    demo.set_defaults(run=_demo)
    drawing = commands.add_parser(
        "plot",
        help="draw a trace (plait demo --trace, plait relay --trace) as a PNG",
        description="Draw a trace: latency over time against the deadline with expired "
        "messages marked, the latency CDF over every message sent, and each link's "
        "throughput with its DOWN/DEGRADED spans and outages. Needs matplotlib: "
        "pip install 'plait[plot]'.",
    )
    drawing.add_argument("trace", metavar="TRACE", help="a trace file (JSON lines)")
    drawing.add_argument(
        "-o", "--output", metavar="PNG", help="where to write (default: TRACE with .png)"
    )
    drawing.set_defaults(run=_plot)
    check = commands.add_parser(
        "selfcheck",
        help="a quick check of framing and sequence windows",
        description="Round-trip every packet type through the wire format, mutate datagrams "
        "to check that only canonical encodings are accepted, and check each receive "
        "window's counts across the 16-bit wrap. Deterministic: the same seed gives the "
        "same report. Exit status 0 if every check holds.",
    )
    check.add_argument(
        "--seed",
        type=int,
        default=1,
        help="seed of the random packets and losses (default: 1); the same seed, the same report",
    )
    check.add_argument(
        "--json", action="store_true", help="print the report as JSON, with an 'ok' field"
    )
    check.set_defaults(run=_selfcheck)
    relay = commands.add_parser(
        "relay",
        help="carry UDP datagrams to a peer relay over several links (plait relay --help)",
        add_help=False,
        prefix_chars="+",  # every argument, --help too, goes to the relay's own parser
    )
    relay.add_argument("args", nargs=argparse.REMAINDER)
    relay.set_defaults(run=_relay)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        status = args.run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`plait demo | head`): nothing more to say, and Python
        # must not complain when it flushes stdout at exit (the `signal` docs' recipe).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        status = 141  # what a shell reports for a command ended by SIGPIPE
    sys.exit(status)
