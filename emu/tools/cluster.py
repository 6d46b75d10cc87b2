"""Where the runs of an exploration go: this process, a process per core, or a Dask cluster.

Each runner takes one level of the search (a list of nodes) and yields their visits in
the list's order, so the exploration's result and its order do not depend on where the
runs went. Dask distributed rather than Ray: it is pure Python on PyPI (Ray is an 80 MB
binary wheel per platform), its scheduler and workers start from the command line
(`dask scheduler`, `dask worker ADDRESS --nthreads 1`) or as a LocalCluster in a test,
and `Client.map` keeps the order of its inputs.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import replace

from ..errors import EmuError
from .reduction import Node, Visit, visit

Runner = Callable[[list[Node]], Iterable[Visit]]


@contextmanager
def local(workers: int) -> Iterator[Runner]:
    """One process per worker (forked once for the whole exploration), or this process."""
    if workers <= 1:
        yield lambda nodes: map(visit, nodes)
        return
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield lambda nodes: pool.imap(visit, nodes, chunksize=max(1, len(nodes) // (workers * 8)))


@contextmanager
def dask(address: str) -> Iterator[Runner]:
    """The scheduler at `address`; its workers need arena-emu and the scenario's files at the
    same absolute paths, and one thread each (a machine is not shared between threads)."""
    try:
        from distributed import Client
    except ImportError:
        raise EmuError("--cluster needs Dask distributed: pip install 'arena-emu[cluster]'") from None
    try:
        client = Client(address, timeout=5)
    except (OSError, TimeoutError, ValueError) as e:
        raise EmuError(f"--cluster {address}: no Dask scheduler there ({e})") from None

    def run(nodes: list[Node]) -> Iterator[Visit]:
        if not nodes:
            return
        sc = nodes[0].scenario
        shipped = replace(sc, files=tuple(os.path.abspath(f) for f in sc.files))
        futures = client.map(visit, [replace(n, scenario=shipped) for n in nodes], pure=False)
        for f in futures:
            try:
                yield f.result()
            except EmuError:
                raise
            except Exception as e:  # the workers' side: another arena-emu, a file they cannot read
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise EmuError(f"--cluster {address}: a worker could not run a schedule: {first}") from None

    try:
        yield run
    finally:
        client.close()
