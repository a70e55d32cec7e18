"""The smallest partner receiver: verifies each webhook with the official Standard Webhooks library
(`pip install standardwebhooks`), ignores a `webhook-id` it has seen (a retry of a message it took),
prints what it got and answers 204; a bad signature is 400.

    WEBHOOK_SECRET=whsec_... python webhook_receiver.py 9999
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

WEBHOOK = Webhook(os.environ["WEBHOOK_SECRET"])
SEEN = set()


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            WEBHOOK.verify(body, dict(self.headers.items()))
        except WebhookVerificationError as e:
            print(f"refused: {e}", flush=True)
            self.send_response(400)
            self.end_headers()
            return
        message_id = self.headers["webhook-id"]
        if message_id not in SEEN:
            SEEN.add(message_id)
            event = json.loads(body)
            print(f"verified {event['type']} {message_id}: {json.dumps(event['data'])[:200]}", flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


HTTPServer(("127.0.0.1", int(sys.argv[1])), Receiver).serve_forever()
