"""A build process (gateway/pipeline/builder.py starts it): claimed items in,
the requests they become out, a batch at a time, over standard input and output.

Building (parse, classify, route, fit, acknowledge) is pure CPU and needs no
database, so it can run beside the process that stores. Each frame is an
8-byte length and a pickle:

  ("config", recipe)         -> ("ready",) or ("refused", text)
  ("build", [(item, verdicts), ...])  -> ("built", [NewRequest or None, ...])

The config is made again from its recipe (`Config.recipe`: the start and the
reload in force), as the gateway made it. An item whose build raised is None
in the answer: the gateway builds it again itself, where its error is
recorded as always.
"""

from __future__ import annotations

import functools
import os
import pickle
import signal
import sys
from typing import Any, BinaryIO

from gateway import heap
from gateway.config import Config
from gateway.config.loader import remade
from gateway.pipeline.parse_child import LENGTH
from gateway.pipeline.stages import build_all
from gateway.pipeline.worker import build_steps
from routing.api import warm_up
from storage.records import NewRequest


def _read(stream: BinaryIO) -> Any | None:
    head = stream.read(LENGTH.size)
    if len(head) != LENGTH.size:
        return None
    size = LENGTH.unpack(head)[0]
    body = stream.read(size)
    return pickle.loads(body) if len(body) == size else None  # noqa: S301 - our gateway's


def _write(sink: BinaryIO, answer: object) -> None:
    data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
    sink.write(LENGTH.pack(len(data)))
    sink.write(data)
    sink.flush()


def _built(batch: list[tuple[Any, Any]], config: Config) -> list[NewRequest | None]:
    """The batch built a stage at a time (gateway/pipeline/stages.py); an item whose
    build raised is built again by the gateway, which records its error."""
    outcomes = build_all([functools.partial(build_steps, item, config, config.rules,
                                            config.sla, verified=verified)
                          for item, verified in batch])
    return [None if isinstance(outcome, Exception) else outcome for outcome in outcomes]


def serve(source: BinaryIO, sink: BinaryIO) -> None:
    config: Config | None = None
    while (request := _read(source)) is not None:
        kind = request[0]
        if kind == "config":
            try:
                config = remade(request[1])
                warm_up(config.rules)
            except Exception as exc:  # noqa: BLE001 - the gateway builds in place then
                config = None
                _write(sink, ("refused", f"{type(exc).__name__}: {exc}"))
            else:
                # What the config made lives until the next one: not walked again.
                heap.settle()
                _write(sink, ("ready",))
        elif kind == "build" and config is not None:
            _write(sink, ("built", _built(request[1], config)))
        else:
            _write(sink, ("refused", f"unexpected {kind!r}"))


def main() -> None:
    # Ctrl-C at a terminal reaches the whole process group: the gateway ends
    # this process itself, and its end of input does as well.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Answers go to a copy of stdout; anything a library prints goes to stderr.
    sink = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    serve(sys.stdin.buffer, sink)


if __name__ == "__main__":
    main()
