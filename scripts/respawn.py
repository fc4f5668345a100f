"""``python -m scripts.respawn NAME COMMAND``: run COMMAND in a shell, and again each time
it dies, with a line saying so. ``make run`` starts each Procfile process this way.

honcho stops the whole stack when one process exits. In development that hides the
recovery the service is built for (a worker killed mid-job leaves its job to the
re-enqueue pass), so a process that dies is started again instead, after 1 s, doubling
while it keeps dying young. A process that never stays up (a configuration error, a
port in use) is given up after a few tries, so honcho stops the stack with the error as
the last thing on screen.

honcho stops a process by signalling its process group, which holds this loop and the
command alike: the command gets the signal itself, and the loop only stops restarting.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from types import FrameType

FIRST_DELAY = 1.0  # seconds before a restart
MAX_DELAY = 30.0
YOUNG = 10.0  # a process that dies sooner than this after its start "dies young"
GIVE_UP = 5  # deaths in a row, each young


class _Stop:
    requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def _say(line: str) -> None:
    print(f"respawn: {line}", flush=True)


def _pause(seconds: float, stop: _Stop) -> None:
    deadline = time.monotonic() + seconds
    while not stop.requested and time.monotonic() < deadline:
        time.sleep(0.1)


def respawn(name: str, command: str) -> int:
    """Run ``command`` until this process is signalled; returns the last exit code."""
    stop = _Stop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    delay, young_deaths, code = FIRST_DELAY, 0, 0
    while not stop.requested:
        started = time.monotonic()
        code = subprocess.call(["/bin/sh", "-c", command])
        if stop.requested:
            break
        if time.monotonic() - started < YOUNG:
            young_deaths += 1
        else:
            young_deaths, delay = 0, FIRST_DELAY
        if young_deaths >= GIVE_UP:
            _say(f"{name} exited with code {code}, {GIVE_UP} times in a row; giving up")
            return code or 1
        _say(f"{name} exited with code {code}; restarting in {delay:g} s")
        _pause(delay, stop)
        delay = min(delay * 2, MAX_DELAY)
    return 0


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.exit("usage: python -m scripts.respawn NAME COMMAND")
    return respawn(*argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
