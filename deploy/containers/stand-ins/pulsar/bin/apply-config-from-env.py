#!/usr/bin/env python3
"""The Pulsar stand-in's bin/apply-config-from-env.py (see the Containerfile), written for this
project with upstream's interface: for each configuration file named, a key whose name is an
environment variable gets that variable's value, and PULSAR_PREFIX_<key> sets <key> whether or not
the file has it (added at the end when it does not)."""
import os
import sys

PREFIX = "PULSAR_PREFIX_"


def apply(path):
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    keys = {}
    for i, line in enumerate(lines):
        stripped = line.strip()
        if stripped and not stripped.startswith("#") and "=" in stripped:
            keys[stripped.split("=", 1)[0].strip()] = i
    wanted = {k: v for k, v in os.environ.items() if k in keys}
    wanted.update({k[len(PREFIX):]: v for k, v in os.environ.items() if k.startswith(PREFIX)})
    for key, value in sorted(wanted.items()):
        print(f"[{path}] applying config {key} = {value}")
        if key in keys:
            lines[keys[key]] = f"{key}={value}"
        else:
            lines.append(f"{key}={value}")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: apply-config-from-env.py FILE...")
    for conf in sys.argv[1:]:
        apply(conf)
