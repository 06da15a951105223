"""The supervisor's bookkeeping (gateway/processes.py), with fake processes and an
injected clock: how many workers, when a dead one starts again, what stops it."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from domain.errors import ConfigError
from gateway import app
from gateway.cli import main
from gateway.processes import (
    EX_CONFIG,
    Backoff,
    Spawned,
    Workers,
    process_count,
    reserve_ports,
    worker_environment,
)
from tests.helpers import make_config

PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/intake"
SQLITE = "sqlite+aiosqlite:///intake.db"


class FakeProcess:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.code: int | None = None
        self.signals: list[int] = []

    def poll(self) -> int | None:
        return self.code

    def send_signal(self, signum: int) -> None:
        self.signals.append(signum)
        if signum == signal.SIGTERM:
            self.code = 0

    def kill(self) -> None:
        self.code = -signal.SIGKILL


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _workers(count: int, clock: Clock) -> tuple[Workers, list[tuple[int, FakeProcess]]]:
    started: list[tuple[int, FakeProcess]] = []

    def spawn(number: int) -> Spawned:
        process = FakeProcess(1000 + len(started))
        started.append((number, process))
        return process

    return Workers(count, spawn, clock=clock, backoff=Backoff(first=1, longest=8, steady=60)), \
        started


def test_process_count__defaults_by_database() -> None:
    assert process_count(make_config(PG), None, cores=4) == 4
    assert process_count(make_config(SQLITE), None, cores=4) == 1


def test_process_count__option_over_config_over_default() -> None:
    config = make_config(PG, process={"count": 3})
    assert process_count(config, None, cores=8) == 3
    assert process_count(config, 2, cores=8) == 2


def test_process_count__sqlite_with_several_is_a_config_error() -> None:
    assert process_count(make_config(SQLITE), 1) == 1
    with pytest.raises(ConfigError, match="needs PostgreSQL"):
        process_count(make_config(SQLITE), 2)


def test_build_process__on_for_one_process_with_a_second_core(
        monkeypatch: pytest.MonkeyPatch) -> None:
    unset = make_config(SQLITE, pipeline={"build_process": None})
    monkeypatch.setattr(app, "available_cores", lambda: 2)
    assert app.build_process(unset, None)
    assert not app.build_process(unset, 1)  # one of several worker processes
    assert not app.build_process(make_config(SQLITE, pipeline={"build_process": False}), None)
    monkeypatch.setattr(app, "available_cores", lambda: 1)
    assert not app.build_process(unset, None)
    assert app.build_process(make_config(PG, pipeline={"build_process": True}), 1)


def test_backoff__doubles_up_to_the_longest() -> None:
    backoff = Backoff(first=0.5, longest=4)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]


def test_workers__a_dead_worker_starts_again_after_its_backoff() -> None:
    clock = Clock()
    workers, started = _workers(2, clock)
    workers.start()
    assert [n for n, _ in started] == [1, 2]
    started[0][1].code = -signal.SIGKILL
    clock.now += 5  # died quickly: the first delay, 1 s
    workers.step()
    assert len(started) == 2  # not at once
    clock.now += 0.9
    workers.step()
    assert len(started) == 2
    clock.now += 0.2
    workers.step()
    assert [n for n, _ in started] == [1, 2, 1]
    # Dies again at once: twice the delay.
    started[2][1].code = 1
    workers.step()
    clock.now += 1.5
    workers.step()
    assert len(started) == 3
    clock.now += 0.6
    workers.step()
    assert [n for n, _ in started] == [1, 2, 1, 1]


def test_workers__a_worker_that_ran_steady_starts_with_the_first_delay() -> None:
    clock = Clock()
    workers, started = _workers(1, clock)
    workers.start()
    workers.slots[0].deaths = 3  # earlier quick deaths
    clock.now += 120
    started[0][1].code = 1
    workers.step()
    assert workers.slots[0].start_at == clock.now + 1


def test_workers__a_config_error_stops_the_restarts() -> None:
    clock = Clock()
    workers, started = _workers(2, clock)
    workers.start()
    started[0][1].code = EX_CONFIG
    workers.step()
    clock.now += 100
    workers.step()
    assert workers.fatal == EX_CONFIG
    assert len(started) == 2


def test_workers__signals_go_to_every_running_worker_and_stop_kills_the_slow() -> None:
    clock = Clock()
    workers, started = _workers(2, clock)
    workers.start()
    workers.signal(signal.SIGHUP)
    assert [p.signals for _, p in started] == [[signal.SIGHUP], [signal.SIGHUP]]
    stubborn = started[1][1]
    stubborn.send_signal = lambda signum: stubborn.signals.append(signum)  # type: ignore[method-assign]

    def sleep(seconds: float) -> None:
        clock.now += seconds

    workers.stop(2.0, sleep=sleep)
    assert started[0][1].code == 0  # stopped on SIGTERM
    assert stubborn.signals[-1] == signal.SIGTERM
    assert stubborn.code == -signal.SIGKILL  # still there after the grace: killed


def test_config__process_count_is_checked() -> None:
    with pytest.raises(ConfigError, match="process.count"):
        make_config(PG, process={"count": 0})


def test_cli__several_processes_on_sqlite_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("INTAKE_CONFIG", raising=False)
    monkeypatch.setenv("INTAKE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/intake.db")
    assert main(["serve", "--processes", "2"]) == 2  # EX_CONFIG, before anything runs
    assert "more than one process needs PostgreSQL" in capsys.readouterr().err


def test_cli__processes_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["serve", "--processes", "0"])
    assert exit.value.code == 2
    assert "--processes: must be 1 or more" in capsys.readouterr().err


def test_worker_environment__one_form_secret_for_every_worker() -> None:
    addresses = {"INTAKE_SMTP_LISTEN": "127.0.0.1:2525"}
    made = worker_environment(make_config(PG), {"PATH": "/bin"}, addresses)
    assert made["PATH"] == "/bin" and made["INTAKE_SMTP_LISTEN"] == "127.0.0.1:2525"
    assert len(made["INTAKE_FORM_SECRET"]) >= 16  # made once, given to all workers
    configured = make_config(PG, http={"form_secret": "s" * 20})
    assert "INTAKE_FORM_SECRET" not in worker_environment(configured, {}, addresses)


def test_reserve_ports__port_zero_is_chosen_once_for_all_workers() -> None:
    config = make_config(PG, smtp={"listen": "127.0.0.1:0", "lmtp_listen": None},
                         http={"listen": "127.0.0.1:8099"})
    addresses, held = reserve_ports(config)
    try:
        host, _, port = addresses["INTAKE_SMTP_LISTEN"].rpartition(":")
        assert host == "127.0.0.1" and int(port) == held[0].getsockname()[1] > 0
        assert addresses["INTAKE_HTTP_LISTEN"] == "127.0.0.1:8099"
        assert "INTAKE_LMTP_LISTEN" not in addresses
        # A worker binds the same port beside the held socket.
        with socket.socket() as worker:
            worker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            worker.bind(("127.0.0.1", int(port)))
            worker.listen()
    finally:
        for sock in held:
            sock.close()
