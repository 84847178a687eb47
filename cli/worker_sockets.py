"""Listening sockets for uvicorn's worker processes: one per worker, balanced by the kernel.

uvicorn's own ``--workers`` binds one socket in the parent and every worker accepts from it.
asyncio accepts every pending connection it can when woken, so the first worker to wake takes
a whole burst: Dovecot opens its keep-alive connections at once, and in the load benchmark one
of two workers regularly ended up with most of the 32 connections while the other idled.

On Linux each worker binds its own socket with ``SO_REUSEPORT`` instead, and the kernel spreads
new connections over the workers' sockets by their address and port. uvicorn's supervisor
(health checks, restarts, signals) is kept: it hands each worker the list of sockets it was
given, pickled, and what it is given here is a :class:`WorkerListener`, which unpickles in the
worker as a socket that worker binds for itself. Elsewhere (or with port 0, which would give
every worker a port of its own) the parent binds one shared socket, as uvicorn does.

Every listening socket here has TCP_NODELAY, which accepted connections inherit on Linux:
asyncio sets it only on sockets it creates, and with Nagle's algorithm on, a response's body
(a second write after the headers) waited for the client's delayed ACK, 40 ms per request.
"""

from __future__ import annotations

import inspect
import logging
import socket
import sys
from typing import Any

log = logging.getLogger("ja3svc.serve")


def reuse_port_balances() -> bool:
    """Whether the kernel spreads connections over ``SO_REUSEPORT`` sockets (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "SO_REUSEPORT")


def listen_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    """A bound TCP socket for ``host``:``port`` (uvicorn's ``create_server`` starts listening)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _bind_in_worker(host: str, port: int) -> socket.socket:
    try:
        return listen_socket(host, port, reuse_port=True)
    except OSError as exc:
        from uvicorn.config import STARTUP_FAILURE

        # The parent checked this address; failing now (another program took the port) must
        # stop the supervisor, not make it restart this worker forever.
        log.error("worker cannot bind %s:%d: %s", host, port, exc)
        sys.exit(STARTUP_FAILURE)


class WorkerListener:
    """Stands in for a socket in the list uvicorn's supervisor pickles into each worker."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def __reduce__(self) -> tuple[Any, tuple[str, int]]:
        return (_bind_in_worker, (self.host, self.port))


def run_workers(config: Any) -> None:
    """Run ``config`` (a ``uvicorn.Config`` with an import-string app and ``workers`` > 1)
    under uvicorn's multiprocess supervisor, with the sockets described above."""
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.server import Server
    from uvicorn.supervisors import Multiprocess

    sockets: list[Any]
    try:
        if reuse_port_balances() and config.port != 0:
            # Bound here only to fail early and clearly (port taken, bad address); each worker
            # binds its own.
            listen_socket(config.host, config.port, reuse_port=True).close()
            sockets = [WorkerListener(config.host, config.port)]
            log.info("workers bind their own sockets (SO_REUSEPORT)")
        else:
            sockets = [listen_socket(config.host, config.port, reuse_port=False)]
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", config.host, config.port, exc)
        sys.exit(STARTUP_FAILURE)
    # uvicorn before 0.30 takes the worker's entry point as well.
    if "target" in inspect.signature(Multiprocess).parameters:
        Multiprocess(config, target=Server(config).run, sockets=sockets).run()
    else:
        Multiprocess(config, sockets=sockets).run()
