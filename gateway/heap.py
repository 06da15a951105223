"""How a long-running process of the gateway keeps the cycle collector's cost low.

Two things, once start-up (or a new config in the build process) is done:

- What start-up made (modules, rules, the language model, the suffix list,
  catalogues: about 180,000 objects) lives as long as the process, so it is
  frozen out of the collector's reach (`gc.freeze()`). A full collection over
  it took 77 ms, holding every connection; after the freeze, under 0.1 ms.
- The youngest generation is collected after 10,000 new container objects
  rather than CPython's 700. An item in the pipeline makes a few hundred
  (parsed parts, events, rows), nearly all freed by reference counting as soon
  as its batch is stored, so at 700 the collector ran several times a batch
  over the same live batch: 17.5 µs of CPU per API request in
  `benchmarks/pipeline_cpu.py`, 4.3 µs at 10,000. What it can still find (a
  cycle left by an exception's traceback) waits a little longer to be freed.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000


def settle() -> None:
    """Freeze what exists now and space out the young collections."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
