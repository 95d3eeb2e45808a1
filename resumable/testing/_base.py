"""What the emulators share: an emulated clock, the context-manager life cycle, the Airflow connection,
and the loopback HTTP server that answers JSON for the emulators written here (Databricks, dbt Cloud)."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, TypeVar
from urllib.parse import parse_qs, urlparse

E = TypeVar("E", bound="Emulator")


class TokenBucket:
    """A request-rate limit: ``burst`` tokens, refilled at ``per_second`` a real second (``None``: none)."""

    def __init__(self) -> None:
        self.per_second: float | None = None
        self.burst = 1
        self._tokens, self._at = 1.0, time.monotonic()

    def refill(self) -> None:
        self._tokens, self._at = float(self.burst), time.monotonic()

    def take(self) -> bool:
        """Take a token (the caller holds the emulator's lock); ``False`` when none is left."""
        if self.per_second is None:
            return True
        now = time.monotonic()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.per_second)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class Emulator:
    """A server on loopback with an emulated clock and an Airflow connection pointing at it.

    The clock runs at ``speed`` emulated seconds per real second, or only when :meth:`advance` is
    called (``manual_clock=True``). Subclasses implement ``start``, ``stop`` and ``connection``.
    """

    #: The connection id :meth:`use_as` defines when none is given.
    default_conn_id: ClassVar[str]

    def __init__(self, *, speed: float = 1.0, manual_clock: bool = False) -> None:
        self.speed, self.manual_clock = speed, manual_clock
        self._lock = threading.RLock()
        #: The request-rate limit of :meth:`rate_limit`; a reset refills it but keeps the limit.
        self._limit = TokenBucket()
        self._restart_clock()

    def rate_limit(self, per_second: float | None, burst: int | None = None) -> None:
        """Limit the API to ``per_second`` requests per real second, as the service's control plane
        does (``None`` turns the limit off).

        A token bucket of ``burst`` tokens (by default ``max(1, int(per_second))``) refills at
        ``per_second`` tokens per real second (``time.monotonic()``, not the emulated clock: the limit
        is on the callers' real pace). A request that finds no token is answered the way the service
        throttles (the subclass says how), takes no effect and is counted in ``throttled``. Setting a
        limit starts with a full bucket.
        """
        if per_second is not None and not per_second > 0:
            raise ValueError(f"per_second must be positive (or None for no limit), not {per_second!r}")
        if burst is not None and burst < 1:
            raise ValueError(f"burst must be at least 1, not {burst!r}")
        with self._lock:
            self._limit.per_second = per_second
            self._limit.burst = burst if burst is not None else max(1, int(per_second or 1))
            self._limit.refill()

    def _restart_clock(self) -> None:
        self._t0, self._advanced = time.monotonic(), 0.0

    def now(self) -> float:
        """Emulated seconds since the emulator started (or was reset)."""
        real = 0.0 if self.manual_clock else (time.monotonic() - self._t0) * self.speed
        return real + self._advanced

    def advance(self, seconds: float) -> None:
        """Move the emulated clock forward."""
        with self._lock:
            self._advanced += seconds

    def start(self: E) -> E:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def connection(self) -> dict[str, Any]:
        """The Airflow connection (as a dict) that points the provider's hook at this emulator."""
        raise NotImplementedError

    def __enter__(self: E) -> E:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def airflow_env(self, conn_id: str | None = None) -> dict[str, str]:
        """The environment variable that defines the connection ``conn_id`` for Airflow."""
        return {f"AIRFLOW_CONN_{(conn_id or self.default_conn_id).upper()}": json.dumps(self.connection())}

    @contextlib.contextmanager
    def use_as(self: E, conn_id: str | None = None) -> Iterator[E]:
        """Define the Airflow connection ``conn_id`` as this emulator while the block runs."""
        env = self.airflow_env(conn_id)
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield self
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


#: Seconds the ``Retry-After`` header of a 429 answer asks the client to wait.
RETRY_AFTER_SECONDS = 1


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server on 127.0.0.1 at a free port whose handler answers through ``owner.handle``."""

    #: Connections the kernel queues before the server accepts them (the standard library's 5 drops
    #: the connects of a few hundred clients arriving at once, which then wait for TCP's SYN retries,
    #: 1, 3, 7 ... 63 s: a delay no real service's load balancer adds).
    request_queue_size = 1024
    daemon_threads = True

    def __init__(self, owner: Any, name: str) -> None:
        handler = type("Handler", (JsonHandler,), {"owner": owner})
        super().__init__(("127.0.0.1", 0), handler)
        threading.Thread(target=self.serve_forever, name=name, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that died mid-request (a killed worker's kept-alive connection) is not an error of
        the server's: nothing is printed for it."""
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class JsonHandler(BaseHTTPRequestHandler):
    """Answers every request with ``owner.handle(method, path, params, authorization)`` -> (status, JSON).

    ``params`` holds the query's parameters (a list for a key given more than once) and the keys of a
    JSON object body (a GET with a JSON body: some hooks' async path). A 429 carries ``Retry-After``.
    """

    owner: Any
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def _answer(self, method: str) -> None:
        parsed = urlparse(self.path)
        params: dict[str, Any] = {
            key: values if len(values) > 1 else values[0] for key, values in parse_qs(parsed.query).items()
        }
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            body = json.loads(self.rfile.read(length) or b"{}")
            if isinstance(body, dict):
                params.update(body)
        status, payload = self.owner.handle(method, parsed.path, params, self.headers.get("Authorization"))
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            if status == 429:  # the rate limit's and an injected fault's alike
                self.send_header("Retry-After", str(RETRY_AFTER_SECONDS))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client died before the answer (a killed worker): the request still took effect.
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        self._answer("GET")

    def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
        self._answer("POST")


class LoopbackEmulator(Emulator):
    """An emulator served by a :class:`LoopbackServer` (its ``handle`` answers each request)."""

    #: The server thread's name.
    server_name: ClassVar[str] = "emulator"
    _server: LoopbackServer | None = None

    def start(self: E) -> E:
        self._server = LoopbackServer(self, self.server_name)  # type: ignore[attr-defined]
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def _live_server(self) -> LoopbackServer:
        if self._server is None:
            raise RuntimeError("the emulator is not running: use it as a context manager or call start()")
        return self._server
