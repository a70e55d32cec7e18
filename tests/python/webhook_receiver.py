"""A partner's webhook receiver for the tests: a real HTTP server that verifies every delivery with
the official Standard Webhooks library (`standardwebhooks` from PyPI, not the platform's code),
deduplicates on `webhook-id` as the specification asks receivers to, and answers as each path is
told to (fail a share of requests, answer 429/503 with Retry-After, 410, a redirect, be slow).

    python webhook_receiver.py [port [journal]]
        serves on 127.0.0.1 (port 0: a free one) and logs {"message": "receiver listening",
        "addr": ...} on stderr. With a journal file, every accepted id is appended to it and a
        restarted receiver reads it back: it still deduplicates what it accepted before it went
        down and answers as it was told (its request log starts empty).

Control (JSON over the same server, under /_control):
    POST /_control/paths/<path>   {"secrets": ["whsec_..."], "script": [{"status": 500}, ...],
                                   "fail_ratio": 0.3, "fail_status": [500, 429], "retry_after": "1",
                                   "status": 200, "delay_ms": 0, "location": "/elsewhere", "seed": 7}
        script answers are used first, one per request; then a request fails with fail_ratio
        (status drawn from fail_status, Retry-After on 429/503), otherwise answers `status`.
    GET  /_control/paths/<path>   {"requests": [...], "accepted": ["msg_...", ...]}
        every request in arrival order: id, timestamp, type, body, verified (one bool per secret),
        answered (status); `accepted` lists each id once, in the order a 2xx first answered it.
"""

import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

LOCK = threading.Lock()
PATHS = {}
JOURNAL = None


def path_state(path):
    state = PATHS.get(path)
    if state is None:
        state = {
            "config": {"secrets": [], "status": 200},
            "script": [],
            "rng": random.Random(0),
            "requests": [],
            "accepted": [],
            "accepted_set": set(),
        }
        PATHS[path] = state
    return state


def configure(path, config):
    state = path_state(path)
    state["config"] = {"status": 200, **config}
    state["script"] = list(config.get("script", []))
    state["rng"] = random.Random(config.get("seed", 0))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length)

    def do_GET(self):
        if not self.path.startswith("/_control/paths/"):
            return self.reply(404)
        path = self.path[len("/_control/paths"):]
        with LOCK:
            state = path_state(path)
            body = json.dumps({"requests": state["requests"], "accepted": state["accepted"]})
        self.reply(200, body.encode(), [("Content-Type", "application/json")])

    def do_POST(self):
        body = self.read_body()
        if self.path.startswith("/_control/paths/"):
            path = self.path[len("/_control/paths"):]
            config = json.loads(body or b"{}")
            with LOCK:
                configure(path, config)
                if JOURNAL:
                    with open(JOURNAL, "a", encoding="utf-8") as journal:
                        journal.write(f"config\t{path}\t{json.dumps(config)}\n")
            return self.reply(204)
        self.deliver(body)

    def deliver(self, body):
        headers = {k.lower(): v for k, v in self.headers.items()}
        with LOCK:
            state = path_state(self.path)
            config = state["config"]
            secrets = list(config.get("secrets", []))
        verified = []
        for secret in secrets:
            try:
                Webhook(secret).verify(body, headers)
                verified.append(True)
            except WebhookVerificationError:
                verified.append(False)
        message_id = headers.get("webhook-id", "")
        try:
            event_type = json.loads(body).get("type", "")
        except ValueError:
            event_type = ""
        with LOCK:
            if state["script"]:
                answer = state["script"].pop(0)
            elif state["rng"].random() < config.get("fail_ratio", 0):
                answer = {"status": state["rng"].choice(config.get("fail_status", [500]))}
            else:
                answer = {"status": config.get("status", 200)}
            status = answer.get("status", 200)
            if not any(verified):
                status = 401
            record = {
                "id": message_id,
                "timestamp": headers.get("webhook-timestamp", ""),
                "type": event_type,
                "body": body.decode("utf-8", "replace"),
                "verified": verified,
                "signatures": headers.get("webhook-signature", "").count("v1,"),
                "answered": status,
                "at": time.time(),
            }
            state["requests"].append(record)
            if 200 <= status < 300 and message_id not in state["accepted_set"]:
                state["accepted_set"].add(message_id)
                state["accepted"].append(message_id)
                if JOURNAL:
                    with open(JOURNAL, "a", encoding="utf-8") as journal:
                        journal.write(f"{self.path}\t{message_id}\n")
        delay = answer.get("delay_ms", config.get("delay_ms", 0))
        if delay:
            time.sleep(delay / 1000)
        out = []
        if status in (429, 503):
            out.append(("Retry-After", str(answer.get("retry_after", config.get("retry_after", "1")))))
        if 300 <= status < 400:
            out.append(("Location", answer.get("location", config.get("location", "/elsewhere"))))
        self.reply(status, json.dumps({"status": status}).encode(), out)


def main():
    global JOURNAL
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    if len(sys.argv) > 2:
        JOURNAL = sys.argv[2]
        try:
            with open(JOURNAL, encoding="utf-8") as journal:
                for line in journal:
                    path, _, message_id = line.rstrip("\n").partition("\t")
                    if path == "config":
                        path, _, config = message_id.partition("\t")
                        configure(path, json.loads(config))
                        continue
                    state = path_state(path)
                    if message_id not in state["accepted_set"]:
                        state["accepted_set"].add(message_id)
                        state["accepted"].append(message_id)
        except FileNotFoundError:
            pass
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    addr = f"127.0.0.1:{server.server_address[1]}"
    print(json.dumps({"message": "receiver listening", "addr": addr}), file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
