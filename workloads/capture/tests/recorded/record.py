#!/usr/bin/env python3
"""Records what real PostHog SDKs send, for `tests/formats.rs` to replay.

Runs a stand-in server on loopback that answers every request 200
{"status": 1}, drives each SDK to send known events to it, and writes one
JSON file per request captured: method, path with its query, the headers
that matter, the body (base64) and the events the driver sent.

    python3 -m venv /tmp/sdk && /tmp/sdk/bin/pip install posthog
    (cd /tmp/sdk && npm install posthog-node)
    python3 record.py --python /tmp/sdk/bin/python --node-modules /tmp/sdk/node_modules
"""

import argparse
import base64
import json
import os
import pathlib
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = pathlib.Path(__file__).parent
KEY = "phc_recorded"
EVENTS = [
    {"event": "signed_up", "distinct_id": "user-1", "properties": {"plan": "pro"}},
    {"event": "viewed page", "distinct_id": "user-2", "properties": {"path": "/pricing", "n": 3}},
    {"event": "paid", "distinct_id": "user-1", "properties": {"amount": 12.5, "items": ["a", "b"]}},
]
KEPT_HEADERS = ("content-type", "content-encoding", "user-agent")

PYTHON_DRIVER = """
import sys, json, posthog
from posthog import Posthog
events = json.loads(sys.argv[3])
client = Posthog(sys.argv[1], host=sys.argv[2], gzip=sys.argv[4] == "gzip", flush_at=10, flush_interval=0.1)
for e in events:
    client.capture(e["event"], distinct_id=e["distinct_id"], properties=e["properties"])
client.flush()
client.shutdown()
print("posthog-python " + posthog.VERSION)
"""

NODE_DRIVER = """
const { PostHog } = require('posthog-node');
const [key, host, events, compression, modules] = process.argv.slice(1);
const client = new PostHog(key, { host, flushAt: 10, flushInterval: 0,
  disableCompression: compression !== 'gzip' });
for (const e of JSON.parse(events)) {
  client.capture({ distinctId: e.distinct_id, event: e.event, properties: e.properties });
}
client.shutdown().then(() => console.log('posthog-node ' +
  JSON.parse(require('fs').readFileSync(modules + '/posthog-node/package.json', 'utf8')).version));
"""


class Recorder(BaseHTTPRequestHandler):
    captured = []

    def _answer(self):
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        if not self.path.startswith(("/flags", "/decide")):
            Recorder.captured.append({
                "method": self.command,
                "path": self.path,
                "headers": {k: v for k, v in self.headers.items() if k.lower() in KEPT_HEADERS},
                "body_base64": base64.b64encode(body).decode(),
            })
        answer = b'{"status": 1}'
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_POST = _answer
    do_GET = _answer

    def log_message(self, *args):
        pass


def record(name, command):
    Recorder.captured = []
    version = subprocess.run(command, check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    if not Recorder.captured:
        raise SystemExit(f"{name}: the SDK sent nothing")
    for i, request in enumerate(Recorder.captured):
        out = HERE / f"{name}-{i}.json"
        out.write_text(json.dumps({"sdk": version, "key": KEY, "sent": EVENTS, **request}, indent=2) + "\n")
        print(f"wrote {out.name}: {request['method']} {request['path']}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--python", required=True, help="a Python with the posthog package")
    parser.add_argument("--node-modules", required=True, help="a node_modules holding posthog-node")
    args = parser.parse_args()
    os.environ["NODE_PATH"] = args.node_modules
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    host = f"http://127.0.0.1:{server.server_address[1]}"
    events = json.dumps(EVENTS)
    for compression in ("plain", "gzip"):
        record(f"posthog-python-{compression}",
               [args.python, "-c", PYTHON_DRIVER, KEY, host, events, compression])
        record(f"posthog-node-{compression}",
               ["node", "-e", NODE_DRIVER, KEY, host, events, compression, args.node_modules])
    server.shutdown()


if __name__ == "__main__":
    main()
