"""Per-activation overhead of the warmwhisk runtime, against an in-process call and bare apps.

Every target runs the same trivial action (`def main(args): return args`, value {"x": 1}):

  in-process  the handler called directly in this process (no HTTP, no JSON): the action's own cost;
  wsgi        a ten-line WSGI function (read body, json.loads, json.dumps the value) under gunicorn;
  bare        a Flask app doing the same (`request.get_json()`, `jsonify(value)`) under gunicorn:
              the HTTP floor the targets are judged against;
  runtime     `python -m warmwhisk_runtime` with __OW_ALLOW_CONCURRENT=true, after one /init.

Both floors run under gunicorn as the runtime ran before its event loop (`RuntimeServer`'s bind,
time-outs and logging; the gthread worker with one thread per admitted activation plus 4, the same
keep-alive), so only the WSGI application differs.
Every HTTP target gets the same /run body (value plus activation_id, transaction_id, namespace,
action_name and a deadline 60 s ahead), freshly built for each request outside the timed span.

Each target is measured at concurrency 1 and 8: that many client threads, each with its own
keep-alive `http.client.HTTPConnection`, send back-to-back requests, each timed on its own with
`time.perf_counter_ns`, after an untimed warm-up. Rounds rotate the order of the HTTP targets and
the table reports the median of the per-round values (p50, p99, activations/s, and the server's
CPU time per request read from /proc). The client process shares the machine's cores with the
server, so latencies include client cost and scheduling noise; compare targets, not absolutes.

Then, in the same run, the runtime at c=1 while 200 connections trickle one byte a second
(`runtime/slow.py`), and routed mode against direct mode (bench_scaler's overhead section, run as
it is: `runtime/routed.py`).

stdout carries only the tables, the targets of issue #12 and, as the very last line, a one-line
JSON summary; progress goes to stderr.
Usage: .venv/bin/python bench/bench_runtime.py [--rounds N] [--requests-c1 N] ...
"""

from __future__ import annotations

import argparse
import sys

from lib.targets import stop_on_sigterm
from runtime import floors, overhead


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="measurement rounds; medians are reported")
    parser.add_argument("--requests-c1", type=int, default=3000, help="timed requests per round at c=1")
    parser.add_argument("--requests-c8", type=int, default=1500, help="timed requests per client at c=8")
    parser.add_argument("--warmup", type=int, default=200, help="untimed requests per client before each")
    parser.add_argument("--no-wsgi-floor", action="store_true", help="skip the plain-WSGI floor")
    parser.add_argument("--slow-clients", type=int, default=200, help="trickling connections (1 byte/s)")
    parser.add_argument("--no-slow-clients", action="store_true", help="skip the slow-clients measurement")
    parser.add_argument("--routed-rounds", type=int, default=5, help="routed mode: interleaved rounds")
    parser.add_argument("--no-routed", action="store_true", help="skip routed mode (needs redis-server)")
    parser.add_argument("--serve-floor", nargs=2, metavar=("KIND", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.rounds, args.requests_c1, args.requests_c8) < 1 or args.warmup < 0:
        parser.error("--rounds and --requests-* must be >= 1, --warmup >= 0")
    return args


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    if args.serve_floor is not None:
        floors.serve(args.serve_floor[0], int(args.serve_floor[1]))
        return 0
    stop_on_sigterm()
    return overhead.run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
