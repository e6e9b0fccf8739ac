"""``plait demo``: the README's main command runs the lossy scenario, meets the issue's
bar (>= 99.9 % within deadline), prints a readable summary, and replays exactly."""

from __future__ import annotations

import json

import pytest

from plait import cli, demo


def test_lossy_demo_meets_the_bar_and_summarises() -> None:
    report = demo.demo("lossy", seed=1)
    r = report.result
    assert r.ok
    assert r.delivered >= 0.999 * r.sent
    text = demo.render(report)
    for needle in ("messages", "rebuilt by FEC", "re-sent", "p99", "floor", "share", "overhead"):
        assert needle in text
    assert r.digest in text
    shares = report.shares()
    assert len(shares) == 4
    assert abs(sum(share for _, share, _ in shares) - 1.0) < 1e-9


def test_same_seed_same_digest_and_different_seed_differs() -> None:
    a = demo.demo("lossy", seed=3, duration_s=1.0).result.digest
    assert a == demo.demo("lossy", seed=3, duration_s=1.0).result.digest
    assert a != demo.demo("lossy", seed=4, duration_s=1.0).result.digest


def test_cli_demo_json(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--scenario", "clean", "--duration", "1", "--json"])
    assert exit_info.value.code == 0
    data = json.loads(capsys.readouterr().out)
    assert data["delivered"] == data["sent"] > 0
    assert len(data["digest"]) == 64
