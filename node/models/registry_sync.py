#!/usr/bin/env python3
"""Verify / record SHA-256 sums of generated model artifacts in registry.toml.

  registry_sync.py check KEY            exit 0 iff model + tokenizer exist and match the
                                        (non-empty) sha256 / tokenizer_sha256 of [models.KEY]
  registry_sync.py record KEY [--source FILE] [--update]
                                        hash the artifacts; fill empty registry fields, verify
                                        filled ones (mismatch is an error unless --update)

Only the `sha256`, `tokenizer_sha256` and `source_sha256` lines inside the [models.KEY]
table are rewritten; comments and layout are preserved.  Standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
REGISTRY = os.path.join(HERE, "registry.toml")


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def entry(key: str) -> dict:
    with open(REGISTRY, "rb") as f:
        reg = tomllib.load(f)
    try:
        return reg["models"][key]
    except KeyError:
        sys.exit(f"[registry] no [models.{key}] in {REGISTRY}")


def set_fields(key: str, values: dict) -> None:
    """Rewrite `name = "..."` lines of the [models.KEY] table in place."""
    with open(REGISTRY, encoding="utf-8") as f:
        lines = f.read().split("\n")
    header = f"[models.{key}]"
    inside = False
    done = set()
    for i, line in enumerate(lines):
        s = line.strip()
        if s.startswith("["):
            inside = s == header
            continue
        if not inside:
            continue
        m = re.match(r'^(\s*)([A-Za-z0-9_]+)(\s*=\s*)"[^"]*"(.*)$', line)
        if m and m.group(2) in values:
            lines[i] = f'{m.group(1)}{m.group(2)}{m.group(3)}"{values[m.group(2)]}"{m.group(4)}'
            done.add(m.group(2))
    missing = set(values) - done
    if missing:
        sys.exit(f"[registry] [models.{key}] lacks field(s) {sorted(missing)} (add them as empty strings)")
    tmp = REGISTRY + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    os.replace(tmp, REGISTRY)


def artifacts(e: dict) -> dict:
    return {"sha256": os.path.join(REPO, e["path"]), "tokenizer_sha256": os.path.join(REPO, e["tokenizer"])}


def cmd_check(key: str) -> int:
    e = entry(key)
    for field, path in artifacts(e).items():
        if not os.path.isfile(path):
            print(f"[registry] {key}: missing {os.path.relpath(path, REPO)}", file=sys.stderr)
            return 1
        want = e.get(field, "")
        if not want:
            print(f"[registry] {key}: {field} not recorded yet", file=sys.stderr)
            return 1
        got = sha256(path)
        if got != want:
            print(f"[registry] {key}: {os.path.relpath(path, REPO)} sha256 {got} != registry {want}",
                  file=sys.stderr)
            return 1
        print(f"{got}  {os.path.relpath(path, REPO)}  ({os.path.getsize(path)} bytes) [{key}: ok]")
    return 0


def cmd_record(key: str, source: str | None, update: bool) -> int:
    e = entry(key)
    got = {field: sha256(path) for field, path in artifacts(e).items()}
    if source:
        got["source_sha256"] = sha256(source)
    changes, bad = {}, []
    for field, value in got.items():
        want = e.get(field, "")
        if want == value:
            continue
        if want and not update:
            bad.append(f"{field}: registry {want}, generated {value}")
        else:
            changes[field] = value
    if bad:
        print(f"[registry] {key}: generated artifacts do not match {os.path.relpath(REGISTRY, REPO)}:\n  "
              + "\n  ".join(bad)
              + "\n  (different package versions or generator code?  re-run with --update-registry "
                "to accept the new files)", file=sys.stderr)
        return 1
    if changes:
        set_fields(key, changes)
        print(f"[registry] {key}: recorded {', '.join(sorted(changes))}", file=sys.stderr)
    for field, path in artifacts(e).items():
        print(f"{got[field]}  {os.path.relpath(path, REPO)}  ({os.path.getsize(path)} bytes) [{key}]")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("key")
    r = sub.add_parser("record")
    r.add_argument("key")
    r.add_argument("--source", help="source file whose hash goes to source_sha256")
    r.add_argument("--update", action="store_true", help="overwrite mismatching registry values")
    a = ap.parse_args()
    if a.cmd == "check":
        return cmd_check(a.key)
    return cmd_record(a.key, a.source, a.update)


if __name__ == "__main__":
    sys.exit(main())
