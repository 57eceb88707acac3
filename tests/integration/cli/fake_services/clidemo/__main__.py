"""`python -m clidemo`: answers `/readyz` with the settings it received, stops on SIGTERM."""

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps(
            {k: v for k, v in os.environ.items() if k.startswith("MUTUALIS_")}
        ).encode()
        self.send_response(200 if self.path == "/readyz" else 404)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return None


def main() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", int(os.environ["MUTUALIS_HTTP_PORT"])), Handler)
    signal.signal(signal.SIGTERM, lambda *_: Thread(target=server.shutdown).start())
    print(f"clidemo listening in {os.environ['MUTUALIS_DATACENTER']}", flush=True)
    server.serve_forever()
    print("clidemo stopped", flush=True)
    sys.exit(0)


main()
