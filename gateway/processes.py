"""`intake serve` on every core: a small supervisor and N worker processes.

Each worker is a whole `intake serve` (listeners, HTTP API, pipeline) started as
`intake serve --worker N`; it binds the SMTP, LMTP, SMTPS and HTTP ports itself with
SO_REUSEPORT, so the kernel spreads new connections over the workers. The
supervisor runs the migrations once, starts the workers, starts again one that
dies (with backoff), passes SIGTERM/SIGINT/SIGHUP on (SIGHUP: each worker reloads
its rules and TLS certificate), and exits when they have
stopped. It has no event loop and touches no request: what is acknowledged is
a worker's, committed before its answer, so a worker's death loses nothing.
With one process none of this runs: `intake serve` is the worker itself.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from sqlalchemy.engine import make_url

from domain.errors import ConfigError
from gateway.config import Config
from gateway.config.sections import parse_listen
from storage.engine import create_engine
from storage.migrate import upgrade

log = logging.getLogger("intake.processes")

# sysexits.h EX_CONFIG: a worker that cannot start for its configuration will not
# start the next time either; the supervisor stops instead of trying forever.
EX_CONFIG = 2
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def available_cores() -> int:
    """The cores this process may run on (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def process_count(config: Config, requested: int | None, *, cores: int | None = None) -> int:
    """How many worker processes `intake serve` runs: `--processes`, else
    `[process] count`, else one per core on PostgreSQL and one on SQLite."""
    sqlite = make_url(config.database.url).get_backend_name() == "sqlite"
    count = requested or config.process.count
    if count is None:
        return 1 if sqlite else (cores or available_cores())
    if count > 1 and sqlite:
        # SQLite has one writer, and a SQLite gateway takes back every claim at
        # start (a crash of the one process): a second process would steal them.
        raise ConfigError(f"process.count = {count}: more than one process needs "
                          f"PostgreSQL (database.url is SQLite)")
    return count


@dataclass(frozen=True)
class Backoff:
    """How long a worker that died waits before it is started again: `first`,
    doubled for each death in a row up to `longest`; a worker that ran `steady`
    seconds has its count of deaths cleared."""

    first: float = 0.5
    longest: float = 30.0
    steady: float = 60.0

    def delay(self, deaths: int) -> float:
        return float(min(self.longest, self.first * 2 ** max(deaths - 1, 0)))


class Spawned(Protocol):
    """What the supervisor needs of a started worker (subprocess.Popen has it)."""

    @property
    def pid(self) -> int: ...

    def poll(self) -> int | None: ...
    def send_signal(self, signum: int) -> None: ...
    def kill(self) -> None: ...


@dataclass
class Slot:
    """One worker's place: its process while it runs, its deaths in a row."""

    number: int
    process: Spawned | None = None
    started: float = 0.0
    deaths: int = 0
    start_at: float = 0.0  # when a dead worker is due to start again


@dataclass
class Workers:
    """N worker slots: started, watched and restarted by `step()`, which the
    supervisor calls in its loop. `spawn(number)` starts worker `number`;
    `clock` is injected so tests move time themselves."""

    count: int
    spawn: Callable[[int], Spawned]
    clock: Callable[[], float] = time.monotonic
    backoff: Backoff = field(default_factory=Backoff)
    slots: list[Slot] = field(init=False)
    # Set when a worker exited with EX_CONFIG: the supervisor stops with it.
    fatal: int | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.slots = [Slot(number) for number in range(1, self.count + 1)]

    def start(self) -> None:
        for slot in self.slots:
            self._start(slot)

    def _start(self, slot: Slot) -> None:
        slot.process = self.spawn(slot.number)
        slot.started = self.clock()
        log.info("worker %d started: pid %d", slot.number, slot.process.pid)

    def step(self) -> None:
        """Reap workers that exited; start those whose backoff has passed."""
        now = self.clock()
        for slot in self.slots:
            if slot.process is not None:
                code = slot.process.poll()
                if code is None:
                    continue
                ran = now - slot.started
                slot.deaths = 1 if ran >= self.backoff.steady else slot.deaths + 1
                slot.start_at = now + self.backoff.delay(slot.deaths)
                log.error("worker %d (pid %d) exited with %s after %.1f s; starting it "
                          "again in %.1f s", slot.number, slot.process.pid,
                          _exit_status(code), ran, slot.start_at - now)
                slot.process = None
                if code == EX_CONFIG:
                    self.fatal = code
            elif self.fatal is None and now >= slot.start_at:
                self._start(slot)

    def running(self) -> list[Spawned]:
        return [s.process for s in self.slots if s.process is not None
                and s.process.poll() is None]

    def signal(self, signum: int) -> None:
        for process in self.running():
            process.send_signal(signum)

    def stop(self, grace: float, *, sleep: Callable[[float], None] = time.sleep) -> None:
        """SIGTERM to every worker, then wait `grace` seconds; SIGKILL what is left."""
        self.signal(signal.SIGTERM)
        deadline = self.clock() + grace
        while self.running() and self.clock() < deadline:
            sleep(0.05)
        for process in self.running():
            log.error("worker pid %d did not stop within %.0f s: killed", process.pid, grace)
            process.kill()


def _exit_status(code: int) -> str:
    return f"signal {-code}" if code < 0 else f"code {code}"


def _listen_value(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def reserve_ports(config: Config) -> tuple[dict[str, str], list[socket.socket]]:
    """The listen addresses the workers are given (as environment overrides).
    A port 0 is chosen here, once, and held by a bound socket that never listens
    (it takes no connections), so every worker binds the same port."""
    env: dict[str, str] = {}
    held: list[socket.socket] = []
    listeners = [("INTAKE_SMTP_LISTEN", config.smtp_address),
                 ("INTAKE_HTTP_LISTEN", config.http_address)]
    if config.lmtp_address:
        listeners.append(("INTAKE_LMTP_LISTEN", config.lmtp_address))
    if config.smtp.tls_listen:
        listeners.append(("INTAKE_TLS_LISTEN", parse_listen(config.smtp.tls_listen)))
    for variable, (host, port) in listeners:
        if port == 0:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, 0))
            port = sock.getsockname()[1]
            held.append(sock)
        env[variable] = _listen_value(host, port)
    return env, held


def worker_environment(config: Config, env: Mapping[str, str],
                       addresses: Mapping[str, str]) -> dict[str, str]:
    """What every worker is started with: this environment, the listen addresses,
    and one form secret for all (a form token issued by one worker must be good at
    the others; without `[http] form_secret` each process would make its own)."""
    child = {**env, **addresses}
    if not config.http.form_secret:
        child["INTAKE_FORM_SECRET"] = secrets.token_urlsafe(32)
    return child


def _die_with_parent(parent: int) -> Callable[[], None]:
    """Run in the child before exec: if the supervisor dies (even by SIGKILL), so do
    its workers, as one process would; none is left holding the ports."""
    def set_up() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # it died before prctl
            os._exit(1)
    return set_up


def worker_command(options: Sequence[str], number: int) -> list[str]:
    return [sys.executable, "-m", "gateway.cli", *options, "serve", "--worker", str(number)]


def supervise(config: Config, count: int, options: Sequence[str], *,
              env: Mapping[str, str] | None = None) -> int:
    """Run `count` workers until SIGTERM or SIGINT; the exit code of `intake serve`.
    `options`: the global command-line options each worker is given too."""
    if config.database.migrate_on_start:
        asyncio.run(_migrate(config))  # once, before any worker opens the database
    addresses, held = reserve_ports(config)
    child_env = worker_environment(config, os.environ if env is None else env, addresses)
    parent = os.getpid()

    def spawn(number: int) -> Spawned:
        process: Spawned = subprocess.Popen(worker_command(options, number), env=child_env,
                                            preexec_fn=_die_with_parent(parent))
        return process

    stopping: list[int] = []
    hangups: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.append(signum))
    signal.signal(signal.SIGHUP, lambda signum, frame: hangups.append(signum))
    workers = Workers(count, spawn)
    log.info("intake supervisor: %d worker processes", count)
    workers.start()
    try:
        while not stopping and workers.fatal is None:
            if hangups:
                hangups.clear()
                workers.signal(signal.SIGHUP)  # each worker reloads its rules and certificate
            workers.step()
            time.sleep(0.1)
    finally:
        log.info("stopping %d worker processes", len(workers.running()))
        # A worker takes up to its listeners' grace, then its workers' grace.
        workers.stop(3 * config.http.shutdown_seconds + 5)
        for sock in held:
            sock.close()
    if workers.fatal is not None:
        log.error("a worker could not start for its configuration: stopped")
        return workers.fatal
    log.info("intake supervisor stopped")
    return 0


async def _migrate(config: Config) -> None:
    engine = create_engine(config.database.url, pool_size=1,
                           timeout=config.database.timeout_seconds)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
