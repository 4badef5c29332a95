#!/usr/bin/env python3
"""A webhook receiver for the quick start: prints each Telltale notification and checks
its Standard Webhooks signature. Standard library only.

    TELLTALE_WEBHOOK_SECRET=whsec_... python3 examples/webhook-receiver.py [PORT]
"""
import base64
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = os.environ.get("TELLTALE_WEBHOOK_SECRET", "")


def verify(headers, body: bytes) -> bool:
    """True when the webhook-signature header matches HMAC-SHA256(id.timestamp.body)."""
    msg_id = headers.get("webhook-id", "")
    timestamp = headers.get("webhook-timestamp", "")
    if abs(time.time() - int(timestamp or 0)) > 300:
        return False  # too old or too new: a replay
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(expected, s) for s in headers.get("webhook-signature", "").split())


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        ok = verify(self.headers, body) if SECRET else None
        payload = json.loads(body)
        alert = payload["alert"]
        print(
            f"{payload['status'].upper():9} {alert['rule']} [{alert['severity']}] "
            f"value={alert['value']} signature={'ok' if ok else 'BAD' if ok is False else 'unchecked'}"
            f"\n          {alert['summary']}",
            flush=True,
        )
        self.send_response(200 if ok is not False else 401)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    print(f"listening on http://127.0.0.1:{port}/hook", flush=True)
    HTTPServer(("127.0.0.1", port), Handler).serve_forever()
