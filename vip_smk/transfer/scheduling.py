"""Size-aware scheduling of a tree transfer's files on the client's connections.

- `pool_size`: transfers in flight at most (the caller's `workers`, capped to the client's);
- `run_sized`: many small files in flight (their time is round trips) beside at most
  `LARGE_IN_FLIGHT` large ones (bandwidth-bound, largest first); worker threads keep the
  books (no wake-up of the caller per file); Ctrl-C stops handing out files, those in flight
  finish;
- `map_as_completed`: (item, future) as they complete on an executor, the rest cancelled if the consumer
  stops;
- the download's small-file path: files up to `WHOLE` bytes are read in one go and written by
  `WRITERS` threads, at most `WRITE_QUEUE` of them waiting in memory.

Never imports `vip_smk.api.client` (annotations only): no import cycle.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING

from vip_smk.api.errors import VipError

if TYPE_CHECKING:  # annotations only: the client imports the transfer modules, never the reverse
    from vip_smk.api.calls import ClientCore

log = logging.getLogger(__name__)


def pool_size(client: ClientCore, workers: int | None) -> int:
    n = client.workers if workers is None else int(workers)
    if n > client.workers:
        log.debug("workers=%d capped to the client's pool (%d)", n, client.workers)
    return max(1, min(n, client.workers))


WHOLE = 1 << 18  # bytes: files up to this size are downloaded in one read, written by WRITERS
WRITERS = 4
WRITE_QUEUE = 64  # small files downloaded and waiting for a writer, at most
LARGE = 8 << 20  # bytes: a "large" file (bandwidth-bound rather than round-trip-bound)
LARGE_IN_FLIGHT = 4  # large files transferred at once at most (the rest of the pool: small ones)


def run_sized(n: int, fn, items: list, size_of, name: str, on_done) -> None:
    """`fn(item)` over `items` with concurrency adapted to sizes: up to LARGE_IN_FLIGHT large
    files (largest first) beside the small ones, which take the rest of the `n` slots (many in
    flight: their time is round trips). `on_done(item, value, error)` is called as each ends,
    one at a time (`error`: the VipError / OSError `fn` raised). The worker threads do this
    bookkeeping and the caller's thread only waits: no wake-up per file. An interruption
    (Ctrl-C) or another exception stops handing out items; the transfers in flight finish,
    then it is raised."""
    large = sorted((it for it in items if size_of(it) > LARGE), key=size_of, reverse=True)
    small = [it for it in items if size_of(it) <= LARGE]
    if n < 2 or not large or not small:  # one queue, in the given order
        groups = [(deque(items), min(n, LARGE_IN_FLIGHT if not small else n))]
    else:
        n_large = min(LARGE_IN_FLIGHT, n - 1, len(large))
        groups = [(deque(large), n_large), (deque(small), n - n_large)]
    lock = threading.Lock()
    stop = threading.Event()
    fatal: list[BaseException] = []

    def work(queue: deque) -> None:
        while not stop.is_set():
            try:
                item = queue.popleft()
            except IndexError:
                return
            try:
                value, error = fn(item), None
            except (VipError, OSError) as exc:
                value, error = None, exc
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                fatal.append(exc)
                stop.set()
                return
            with lock:
                try:
                    on_done(item, value, error)
                except BaseException as exc:  # noqa: BLE001
                    fatal.append(exc)
                    stop.set()
                    return

    threads = [threading.Thread(target=work, args=(queue,), name=f"{name}-{i}", daemon=True)
               for queue, workers in groups for i in range(min(workers, len(queue)))]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException:
        stop.set()
        for t in threads:
            t.join()
        raise
    if fatal:
        raise fatal[0]


def map_as_completed(executor: ThreadPoolExecutor, fn, items):
    """(item, future) as they complete. If the consumer stops (error, Ctrl-C), the work not
    started yet is cancelled: only the transfers in flight finish."""
    futures = {executor.submit(fn, it): it for it in items}
    try:
        for fut in as_completed(futures):
            yield futures[fut], fut
    finally:
        for fut in futures:
            fut.cancel()
