"""Running the app with uvicorn, with a graceful shutdown that drains first.

On SIGTERM or SIGINT (or :meth:`GoaServer.begin_shutdown`) the server drains:
it keeps listening but answers every new request with 503 (``code:
shutting_down``, ``Retry-After``, ``Connection: close``; ``/healthz`` says
``draining``) while the GoA runs already admitted, streams included, finish.
When the last one is done (or after ``drain_timeout_s``) uvicorn's own shutdown
follows: it stops listening, lets open responses complete and closes. A second
SIGINT (Ctrl-C) stops at once.

:class:`BackgroundServer` runs the same server in a thread on a socket it binds
itself (port 0: a free port), for tests, benchmarks and notebooks.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI

from goa.serve.app import state_of
from goa.serve.limits import Gate

logger = logging.getLogger("goa.serve")

DEFAULT_DRAIN_TIMEOUT_S = 30.0


class GoaServer(uvicorn.Server):
    """A uvicorn server that drains the app's gate before it shuts down."""

    def __init__(
        self,
        config: uvicorn.Config,
        gate: Gate,
        *,
        drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
    ) -> None:
        super().__init__(config)
        self.gate = gate
        self.drain_timeout_s = drain_timeout_s
        self.ready = threading.Event()
        """Set once the server listens."""
        self._drain_started: float | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self.ready.set()

    def begin_shutdown(self) -> None:
        """Start the graceful shutdown (safe from any thread), as SIGTERM does."""
        self.should_exit = True

    async def on_tick(self, counter: int) -> bool:
        exit_now = await super().on_tick(counter)
        if not exit_now or self.force_exit:
            return exit_now
        if self._drain_started is None:
            self._drain_started = time.monotonic()
            self.gate.draining = True
            logger.info(
                "draining: %d GoA runs in progress, %d waiting; new requests get 503",
                self.gate.running,
                self.gate.queued,
            )
        if self.gate.idle:
            return True
        if time.monotonic() - self._drain_started >= self.drain_timeout_s:
            logger.warning(
                "drain timeout (%g s): shutting down with %d runs in progress",
                self.drain_timeout_s,
                self.gate.running,
            )
            return True
        return False


def make_server(
    app: FastAPI,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
    log_level: str = "info",
    access_log: bool = True,
) -> GoaServer:
    """A :class:`GoaServer` for ``app`` (made by :func:`goa.serve.create_app`)."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        lifespan="on",
        log_level=log_level,
        access_log=access_log,
        timeout_graceful_shutdown=int(drain_timeout_s) + 5,
        server_header=False,
    )
    return GoaServer(config, state_of(app).gate, drain_timeout_s=drain_timeout_s)


def serve(
    app: FastAPI,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
    log_level: str = "info",
) -> None:
    """Serve ``app`` until SIGTERM or SIGINT, then drain and stop."""
    server = make_server(
        app, host=host, port=port, drain_timeout_s=drain_timeout_s, log_level=log_level
    )
    server.run()


class BackgroundServer:
    """The server in a background thread, on ``host`` and a port bound here.

    ``with BackgroundServer(app) as server: ...`` waits until it listens
    (:attr:`base_url` is then ``http://127.0.0.1:PORT/v1``) and, on leaving,
    shuts it down gracefully and waits for the thread.
    """

    def __init__(
        self,
        app: FastAPI,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
        log_level: str = "warning",
    ) -> None:
        self.host = host
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets whose proto says TCP
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.port: int = self._socket.getsockname()[1]
        self.server = make_server(
            app,
            host=host,
            port=self.port,
            drain_timeout_s=drain_timeout_s,
            log_level=log_level,
            access_log=False,
        )
        self._thread = threading.Thread(target=self._run, name="goa-serve", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def _run(self) -> None:
        self.server.run(sockets=[self._socket])

    def start(self, timeout_s: float = 30.0) -> BackgroundServer:
        """Start the thread and wait (at most ``timeout_s``) until the server listens."""
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.ready.wait(timeout=0.05):
            if not self._thread.is_alive():
                raise RuntimeError("the goa server stopped during startup (see its log)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the goa server did not start within {timeout_s:g} s")
        return self

    def begin_shutdown(self) -> None:
        """Start draining (new requests get 503) and then stop; returns at once."""
        self.server.begin_shutdown()

    def join(self, timeout_s: float | None = None) -> bool:
        """Wait for the server to stop; True if it has."""
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def stop(self, timeout_s: float = 60.0) -> None:
        """Shut down gracefully and wait for the thread."""
        if self._thread.is_alive():
            self.begin_shutdown()
            if not self.join(timeout_s):
                self.server.force_exit = True
                self.join(10.0)
        self._socket.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
