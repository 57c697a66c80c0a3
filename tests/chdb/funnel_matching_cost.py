"""Times funnel statements on chdb over generated events.

Reads JSON {"statements": {"name": sql, ...}, "shapes": [[users, events_per_user], ...]}
on stdin. For each shape, loads users * events_per_user events into a fresh
`db.events` (project 1, a few funnel events per user over 20 days from
2026-10-20), runs each statement three times wrapped in `SELECT count()`,
and prints one line per statement and shape with the best time in seconds.
Used by the ignored test `funnel_matching_cost_on_chdb`
(workloads/query/tests/funnels.rs); see BENCHMARKS.md.
"""
import json
import sys
import time

from chdb import session

START_MS = 1_792_454_400_000
SPAN_MS = 20 * 86_400_000


def main() -> None:
    spec = json.load(sys.stdin)
    for users, per in spec["shapes"]:
        s = session.Session()
        s.query("CREATE DATABASE IF NOT EXISTS db")
        s.query("DROP TABLE IF EXISTS db.events")
        s.query(
            "CREATE TABLE db.events (uuid UUID, project_id UInt64, event String, distinct_id String, "
            "timestamp DateTime, timestamp_ms UInt64) ENGINE = MergeTree ORDER BY (project_id, distinct_id)"
        )
        s.query(
            f"INSERT INTO db.events SELECT generateUUIDv4(), 1, "
            f"['$pageview', '$pageview', 'signup', 'view_item'][(number % 4) + 1], "
            f"concat('u', toString(intDiv(number, {per}))), "
            f"toDateTime(intDiv({START_MS} + (number * 7919) % {SPAN_MS}, 1000)), "
            f"{START_MS} + (number * 7919) % {SPAN_MS} FROM numbers({users * per})"
        )
        for name, sql in spec["statements"].items():
            best = None
            for _ in range(3):
                t = time.perf_counter()
                s.query(f"SELECT count() FROM ({sql}) SETTINGS max_threads = 2", "CSV")
                took = time.perf_counter() - t
                best = took if best is None else min(best, took)
            print(f"{users} users x {per} events\t{name}\t{best:.3f} s", flush=True)
        s.close()


if __name__ == "__main__":
    main()
