"""The embedded Airflow's REST client: a read that stalls is asked again, a write is made once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from resumable.testing.stack import AirflowStack


class _Stalls(BaseHTTPRequestHandler):
    """Answers every call; the first one only after a second (an API server behind a busy database)."""

    calls: list[str] = []

    def _answer(self) -> None:
        type(self).calls.append(self.command)
        if len(type(self).calls) == 1:
            time.sleep(1.0)
        body = json.dumps({"state": "running"}).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client gave up on this one

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stack() -> Iterator[AirflowStack]:
    _Stalls.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stalls)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield AirflowStack(port=server.server_address[1], api_timeout=0.3)
    server.shutdown()


def test_a_read_that_stalls_is_asked_again(stack: AirflowStack) -> None:
    assert stack.api("GET", "dags/d/dagRuns/r/taskInstances/t") == {"state": "running"}
    assert _Stalls.calls == ["GET", "GET"]


def test_a_write_that_stalls_is_not_made_twice(stack: AirflowStack) -> None:
    with pytest.raises(requests.Timeout):
        stack.api("POST", "dags/d/dagRuns", json={})
    assert _Stalls.calls == ["POST"]
