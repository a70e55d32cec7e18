"""Reads a topic of the platform with the official Python Pulsar client (pulsar-client from PyPI)
and decodes every message with the schema Pulsar's registry holds for the topic: the
PROTOBUF_NATIVE schema's file descriptor set and root message name, fetched from the admin API.
It never sees the platform's .proto files. Prints one JSON line per message:
{"schemaType", "schemaVersion", "rootMessage", "messageType" (the property), "message" (proto3
JSON)}. Each message is decoded with the schema version it was written with.

    read_typed_events.py --service-url pulsar://127.0.0.1:6650 --admin-url http://127.0.0.1:8080 \
        --topic persistent://affiliate/platform/campaign-events --count 1

Run by tests/tests/schema_registry.rs; the token, if any, comes from PULSAR_TOKEN.
"""

import argparse
import base64
import json
import os
import sys
import urllib.request

import pulsar
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory


def registry_schema(admin_url, topic, token, version=None):
    """The topic's schema at `version` (the latest if None) as the admin API gives it."""
    path = topic.removeprefix("persistent://")
    suffix = "" if version is None else f"/{version}"
    request = urllib.request.Request(f"{admin_url}/admin/v2/schemas/{path}/schema{suffix}")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def message_class(schema):
    """The root message's class, built from the schema's own descriptors."""
    data = json.loads(schema["data"])
    files = descriptor_pb2.FileDescriptorSet.FromString(
        base64.b64decode(data["fileDescriptorSet"])
    )
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:  # imports first, as the registry holds them
        pool.Add(file)
    root = data["rootMessageTypeName"]
    return root, message_factory.GetMessageClass(pool.FindMessageTypeByName(root))


def schema_version(msg):
    """The registry version a message was written with (8 bytes, big-endian), None if none."""
    raw = msg.schema_version()
    if isinstance(raw, str):
        raw = raw.encode("latin-1")
    return int.from_bytes(raw, "big") if raw else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--service-url", required=True)
    parser.add_argument("--admin-url", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, default=1)
    parser.add_argument("--timeout-ms", type=int, default=30_000)
    args = parser.parse_args()
    token = os.environ.get("PULSAR_TOKEN")

    schemas = {}  # by version: each message is decoded with the version it was written with

    def decoder(version):
        if version not in schemas:
            schema = registry_schema(args.admin_url, args.topic, token, version)
            schemas[version] = (schema, *message_class(schema))
        return schemas[version]

    auth = pulsar.AuthenticationToken(token) if token else None
    # The client logs to stdout: errors only, so stdout is the JSON lines.
    client = pulsar.Client(
        args.service_url,
        authentication=auth,
        logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error),
    )
    try:
        reader = client.create_reader(args.topic, pulsar.MessageId.earliest)
        for _ in range(args.count):
            msg = reader.read_next(timeout_millis=args.timeout_ms)
            schema, root, cls = decoder(schema_version(msg))
            decoded = cls.FromString(msg.data())
            print(
                json.dumps(
                    {
                        "schemaType": schema["type"],
                        "schemaVersion": schema_version(msg),
                        "rootMessage": root,
                        "messageType": msg.properties().get("message-type"),
                        "message": json_format.MessageToDict(decoded),
                    }
                ),
                flush=True,
            )
    finally:
        client.close()


if __name__ == "__main__":
    sys.exit(main())
