"""Connecting to a Dask cluster from a ``--dask`` setting."""

from __future__ import annotations

from contextlib import contextmanager

from walsrec.errors import InvalidParameterError, NoWorkersError

__all__ = ["connect", "connected", "parse_dask", "workers"]

#: How long :func:`workers` waits for a cluster that has none yet (one still starting, an
#: adaptive one scaled to zero) before it raises.
WORKER_WAIT_S = 30.0


def parse_dask(spec: str, owner: str = "setting of train") -> int | str:
    """``"local:N"`` → N (a local cluster of N worker processes); else the scheduler address.

    Raises :class:`~walsrec.errors.InvalidParameterError` for an empty string or a bad N,
    naming the ``dask`` parameter of ``owner``.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise InvalidParameterError(
            f"The 'dask' {owner} must be a scheduler address (tcp://HOST:8786) or "
            f"'local:N'. Got {spec!r} instead."
        )
    spec = spec.strip()
    if spec.startswith("local:"):
        n = spec[len("local:") :]
        if not (n.isdigit() and int(n) >= 1):
            raise InvalidParameterError(
                f"The 'dask' {owner} must be 'local:N' with N an int >= 1 (worker "
                f"processes). Got {spec!r} instead."
            )
        return int(n)
    return spec


@contextmanager
def connected(spec: str, owner: str = "setting of train"):
    """A ``distributed.Client`` for ``spec`` (see :func:`connect`), closed (with the local
    cluster it started) when the block ends."""
    parse_dask(spec, owner)
    client, cluster = connect(spec)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def connect(spec: str, threads_per_worker: int | None = None):
    """A ``distributed.Client`` for ``spec``, and the LocalCluster it started (or None).

    Parameters
    ----------
    spec : str
        ``"local:N"`` starts N worker processes on this machine (``threads_per_worker``
        threads each, default 1); anything else is a scheduler address.

    Returns
    -------
    (distributed.Client, distributed.LocalCluster or None)
        Close both when done (the cluster only if one was started).

    Raises
    ------
    ModuleNotFoundError
        Dask is not installed; the message names the extra, ``name`` the missing module.
    """
    try:
        from distributed import Client, LocalCluster
    except ModuleNotFoundError as exc:
        if exc.name not in ("dask", "distributed"):
            raise
        raise ModuleNotFoundError(
            f"walsrec's Dask back end needs the 'dask' extra ({exc.name} is not installed): "
            "pip install 'walsrec[dask]'",
            name=exc.name,
        ) from exc

    target = parse_dask(spec)
    if isinstance(target, int):
        cluster = LocalCluster(
            n_workers=target,
            processes=True,
            threads_per_worker=threads_per_worker or 1,
            dashboard_address=":0",
        )
        return Client(cluster), cluster
    return Client(target), None


def workers(client) -> list[str]:
    """The addresses of the cluster's workers, sorted; waits up to :data:`WORKER_WAIT_S`
    seconds for a first one.

    Asks the scheduler directly (``Client.nthreads``): ``Client.scheduler_info()`` returns
    a cache that the client's own periodic refresh overwrites with an identity listing no
    workers, so reading it can find none on a healthy cluster.

    Raises :class:`~walsrec.errors.NoWorkersError` naming the scheduler when none joined.
    """
    found = sorted(client.nthreads())
    if found:
        return found
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        pass
    found = sorted(client.nthreads())
    if not found:
        raise NoWorkersError(
            f"The Dask cluster at {client.scheduler.address} has no workers (waited "
            f"{WORKER_WAIT_S:g} s for one); start workers or connect to another scheduler."
        )
    return found
