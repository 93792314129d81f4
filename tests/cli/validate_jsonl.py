#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks every line of a vmitap --json output: valid UTF-8, one JSON
object, and valid against docs/vmitap-jsonl.schema.json (JSON Schema
2020-12, python3-jsonschema). Prints one line per bad line; exit 0 when
all are good, 1 when one is not (or there are none), 2 without
python3-jsonschema.

usage: validate_jsonl.py SCHEMA FILE
"""
import json
import sys

try:
    import jsonschema
except ImportError:
    print("validate_jsonl: no python3-jsonschema (scripts/install-deps.sh installs it)")
    sys.exit(2)


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        schema = json.load(f)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    bad = lines = 0
    with open(sys.argv[2], "rb") as f:
        for n, raw in enumerate(f, 1):
            lines += 1
            try:
                obj = json.loads(raw.decode("utf-8"))  # strict: no invalid bytes
            except (UnicodeDecodeError, ValueError) as e:
                print(f"line {n}: not a UTF-8 JSON value: {e}")
                bad += 1
                continue
            err = jsonschema.exceptions.best_match(validator.iter_errors(obj))
            if err is not None:
                print(f"line {n}: {err.message} (at {list(err.absolute_path)}): {raw[:200]!r}")
                bad += 1
    if lines == 0:
        print("validate_jsonl: no lines")
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
