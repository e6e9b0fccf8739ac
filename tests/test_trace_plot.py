"""Traces and ``plait plot`` (issue 17): a simulator run written as JSON lines holds
every delivery, expiry, datagram and link event; ``plait plot`` draws any trace, long
or with many links, and refuses what is not one in one line."""

from __future__ import annotations

import io
import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from plait import cli, demo, plot, tracelog

PNG = b"\x89PNG\r\n\x1a\n"


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    out, err = capsys.readouterr()
    assert isinstance(exit_info.value.code, int)
    return exit_info.value.code, out, err


def test_a_sim_trace_accounts_for_every_message() -> None:
    report = demo.demo("blackout", seed=1, keep_trace=True)
    r = report.result
    head, *records = list(demo.trace(report))
    assert head == {
        "trace": "plait",
        "version": 1,
        "source": "sim",
        "title": "demo blackout, seed 1",
        "links": 4,
        "budget_ns": 150_000_000,
        "t0": 0,
    }
    kinds = Counter(rec["ev"] for rec in records)
    assert kinds["delivered"] == r.delivered
    assert kinds["expired"] == r.expired > 0
    assert [rec["t"] for rec in records] == sorted(rec["t"] for rec in records)
    assert all(0 < rec["latency"] <= 150_000_000 for rec in records if rec["ev"] == "delivered")
    downs = {rec["link"] for rec in records if rec["ev"] == "link" and rec["state"] == "DOWN"}
    assert downs == {0, 1, 2, 3}  # the blackout takes every link
    assert any(rec["ev"] == "outage" and rec["start"] for rec in records)
    sent = sum(rec["bytes"] for rec in records if rec["ev"] == "bytes" and rec["dir"] == 0)
    assert sent == sum(p.offered_bytes for p in r.links if p.direction.name == "A")


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    report = demo.demo("flap", seed=2, duration_s=1.0, keep_trace=True)
    records = list(demo.trace(report))
    buf = io.StringIO()
    assert tracelog.write(buf, records) == len(records)
    path = tmp_path / "t.jsonl"
    path.write_text(buf.getvalue())
    head, back = tracelog.read(path)
    assert [head, *back] == records


@pytest.mark.parametrize(
    ("seconds", "width_ms"), [(1, 10), (3, 10), (10, 50), (600, 2_000), (4_300, 20_000)]
)
def test_bins_suit_the_run(seconds: int, width_ms: int) -> None:
    assert plot.bin_ns(seconds * 1_000_000_000) == width_ms * 1_000_000


def test_the_wrap_scenario_reads_from_zero() -> None:
    report = demo.demo("wrap", seed=1, duration_s=1.0, keep_trace=True)
    head, *records = list(demo.trace(report))
    assert head["t0"] > 4_000 * 10**9  # its clock starts near the 32-bit wrap
    run = plot._Run(head, records)  # the frame every panel uses
    assert 0 <= run.s(records[0]["t"]) < run.s(records[-1]["t"]) < 5.0


def test_plot_command_draws_a_demo_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib", reason="plait plot needs matplotlib (the plot extra)")
    trace = tmp_path / "flap.jsonl"
    code, out, _ = _run(
        ["demo", "--scenario", "flap", "--duration", "2", "--trace", str(trace)], capsys
    )
    assert code == 0
    assert f"trace      {trace}" in out
    code, out, _ = _run(["plot", str(trace)], capsys)
    assert code == 0
    png = trace.with_suffix(".png")
    assert out.strip() == str(png)
    assert png.read_bytes().startswith(PNG)


def test_six_links_and_an_hour_draw(tmp_path: Path) -> None:
    """A synthetic hour over 6 links, one link down for ten minutes: drawn in bins of
    20 s, so each strip holds 180 points, not 360 000."""
    pytest.importorskip("matplotlib", reason="plait plot needs matplotlib (the plot extra)")
    s = 1_000_000_000
    head = tracelog.header("relay", "synthetic", 6, 150_000_000, 0)
    records: list[dict[str, object]] = []
    for t in range(0, 3_600 * s, s):
        records += [
            {"t": t, "ev": "bytes", "dir": 0, "link": k, "bytes": 1_000 * (k + 1)} for k in range(6)
        ]
        records.append({"t": t, "ev": "delivered", "dir": 0, "latency": 30_000_000})
    records += [
        {"t": 600 * s, "ev": "link", "side": 0, "link": 4, "state": "DOWN"},
        {"t": 1_200 * s, "ev": "link", "side": 0, "link": 4, "state": "UP"},
        {"t": 610 * s, "ev": "expired", "dir": 0, "sent": None, "where": "sending"},
    ]
    records.sort(key=lambda rec: int(str(rec["t"])))
    out = tmp_path / "hour.png"
    plot.draw(head, records, out)
    assert out.read_bytes().startswith(PNG)
    spans = plot._spans(records, 0, 3_600 * s)
    assert spans == {4: [(600.0, 1200.0, "DOWN")]}


def test_plot_refuses_what_is_not_a_trace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("matplotlib", reason="plait plot needs matplotlib (the plot extra)")
    bad = tmp_path / "bad.jsonl"
    for text, message in [
        ("hello\n", "not a plait trace (line 1"),
        (json.dumps({"trace": "other"}) + "\n", "not a plait trace (no header)"),
        (json.dumps({"trace": "plait", "version": 9}) + "\n", "trace version 9"),
    ]:
        bad.write_text(text)
        code, _, err = _run(["plot", str(bad)], capsys)
        assert code == 2
        assert err.startswith("plait plot: error: ")
        assert message in err
        assert err.count("\n") == 1
    code, _, err = _run(["plot", str(tmp_path / "missing.jsonl")], capsys)
    assert code == 2
    assert "No such file" in err


def test_plot_without_matplotlib_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, _, err = _run(["plot", str(tmp_path / "t.jsonl")], capsys)
    assert code == 2
    assert err == "plait plot: error: plot needs matplotlib: pip install 'plait[plot]'\n"
