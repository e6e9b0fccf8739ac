"""The demo self-check: deterministic, passing, and able to fail."""

from __future__ import annotations

import json
import random

import attrs
import pytest

from plait import cli, selfcheck


def test_same_seed_same_report_and_it_passes() -> None:
    a = selfcheck.run(7, per_type=30, datagrams=600)
    assert a == selfcheck.run(7, per_type=30, datagrams=600)
    assert a.ok
    assert a != selfcheck.run(8, per_type=30, datagrams=600)


def test_link_check_crosses_the_wrap_and_counts_every_loss() -> None:
    result = selfcheck.check_link(random.Random(3), 0, sent=2000, loss=0.2, spread=40.0)
    assert result.lost_true > 300
    assert result.ok


def test_a_wrong_count_fails_the_report() -> None:
    report = selfcheck.run(1, per_type=5, datagrams=200)
    bad_link = attrs.evolve(report.links[0], lost_counted=report.links[0].lost_true + 1)
    assert not attrs.evolve(report, links=(bad_link, *report.links[1:])).ok
    bad_framing = attrs.evolve(report.framing, mutation_failures=1)
    assert not attrs.evolve(report, framing=bad_framing).ok
    assert "FAILED" in selfcheck.render(attrs.evolve(report, framing=bad_framing))


def test_cli_selfcheck_json(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["selfcheck", "--seed", "2", "--json"])
    assert exit_info.value.code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True
    assert out["seed"] == 2
    assert len(out["links"]) == 4


def test_cli_selfcheck_text(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["selfcheck"])
    assert exit_info.value.code == 0
    assert "result: OK" in capsys.readouterr().out
