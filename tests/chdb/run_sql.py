"""Runs SQL statements on chdb (an in-process current ClickHouse).

Reads a JSON list of statements on stdin, runs them in order in one session,
and prints a JSON list with, per statement, {"ok": true, "data": [[...], ...]}
(the JSONCompact rows, or null for statements without a result) or
{"ok": false, "error": "..."}. Tests use it to prove that every statement
Tributary sends to ClickHouse 18.16 also runs on a current ClickHouse, and to
compare the answers.
"""
import json
import sys

from chdb import session


def main() -> None:
    statements = json.load(sys.stdin)
    s = session.Session()
    out = []
    for sql in statements:
        try:
            text = str(s.query(sql, "JSONCompact")).strip()
            out.append({"ok": True, "data": json.loads(text)["data"] if text else None})
        except Exception as e:  # noqa: BLE001 - every failure is reported
            out.append({"ok": False, "error": str(e)})
    s.close()
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
