"""scripts/respawn.py: restart lines, growing delays, and giving up on a process that
never stays up (so `make run` still ends on a configuration error)."""

from __future__ import annotations

import signal

import pytest

from scripts import respawn


@pytest.fixture
def fast(monkeypatch):
    monkeypatch.setattr(respawn, "FIRST_DELAY", 0.01)
    monkeypatch.setattr(respawn, "MAX_DELAY", 0.04)
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def test_a_process_that_never_stays_up_is_given_up(fast, capfd):
    assert respawn.respawn("bad", "echo ran; exit 3") == 3
    out = capfd.readouterr().out
    assert out.count("ran") == respawn.GIVE_UP
    restarts = [line for line in out.splitlines() if "restarting" in line]
    assert restarts == [
        "respawn: bad exited with code 3; restarting in 0.01 s",
        "respawn: bad exited with code 3; restarting in 0.02 s",
        "respawn: bad exited with code 3; restarting in 0.04 s",
        "respawn: bad exited with code 3; restarting in 0.04 s",
    ]
    assert out.splitlines()[-1] == "respawn: bad exited with code 3, 5 times in a row; giving up"


def test_a_process_that_ran_a_while_starts_the_count_again(fast, monkeypatch, tmp_path, capfd):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(respawn, "YOUNG", 0.3)
    # Odd runs last 0.5 s (not young), even ones die at once: never 5 young deaths in a row.
    command = "n=$(cat count 2>/dev/null || echo 0); echo $((n+1)) > count; " + (
        '[ "$n" -ge 12 ] && exit 7; [ $((n % 2)) -eq 0 ] && sleep 0.5; exit 1'
    )
    assert respawn.respawn("flaky", command) == 7
    out = capfd.readouterr().out
    assert "giving up" in out and "restarting in 0.01 s" in out
