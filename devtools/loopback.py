"""The HTTP stand-ins' server (fake Pub/Sub, fake Feeds API): on the loopback, in a thread
that is joined when it stops."""

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LoopbackService:
    """Base of a stand-in: its ``start`` builds a handler and calls ``serve``."""

    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    def start(self):
        raise NotImplementedError

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
