"""`python -m warmwhisk_devstack` (`make up`): run the stack in the foreground until Ctrl-C or
SIGTERM, then remove every container and process it started."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import uvloop

from .stack import Stack, StackOptions


def parse(argv: Sequence[str]) -> StackOptions:
    parser = argparse.ArgumentParser(
        prog="warmwhisk-devstack",
        description="A local OpenWhisk-compatible stack for warmwhisk (a development and test tool, "
        "not a replacement for OpenWhisk): OpenWhisk's REST API v1 on 127.0.0.1, actions run in real "
        "containers by OpenWhisk's container-pool rules.",
    )
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("WSK_PORT", "3233")), help="or WSK_PORT (3233)"
    )
    parser.add_argument(
        "--state-dir", type=Path, default=Path("build/devstack"), help="keys, actions, activations"
    )
    parser.add_argument(
        "--wskprops", type=Path, default=Path("build/wskprops"), help="APIHOST and AUTH, wsk's format"
    )
    parser.add_argument(
        "--stock", action="store_true", help="OpenWhisk's own settings: one activation per container"
    )
    parser.add_argument("--image", default=os.environ.get("IMAGE", "warmwhisk/runtime:dev"))
    parser.add_argument("--models-dir", type=Path, default=Path("build/models"))
    parser.add_argument("--user-memory-mb", type=int, default=8192, help="memory budget of action containers")
    parser.add_argument("--host-memory-mb", type=int, default=2048, help="memory limit of each model host")
    parser.add_argument("--idle-timeout", type=float, default=600.0, help="seconds an idle container is kept")
    parser.add_argument(
        "--namespace", action="append", default=[], help="more namespaces (guest is always made)"
    )
    parser.add_argument("--no-prewarm", action="store_true", help="no stem cells")
    parser.add_argument("--max-in-flight", type=int, default=500, help="activations per namespace before 429")
    parser.add_argument(
        "--label", action="append", default=[], metavar="KEY=VALUE", help="on every container"
    )
    args = parser.parse_args(list(argv))
    if not 1 <= args.port <= 65535:
        parser.error("--port: 1..65535")
    if (
        min(args.user_memory_mb, args.host_memory_mb) < 128
        or args.idle_timeout <= 0
        or args.max_in_flight < 1
    ):
        parser.error("--user-memory-mb and --host-memory-mb >= 128, --idle-timeout > 0, --max-in-flight >= 1")
    labels = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--label KEY=VALUE, got {item!r}")
        labels[key] = value
    namespaces = ("guest", *(n for n in args.namespace if n != "guest"))
    return StackOptions(
        port=args.port, state_dir=args.state_dir, wskprops=args.wskprops,
        mode="stock" if args.stock else "warmwhisk",
        image=args.image, models_dir=args.models_dir, user_memory_mb=args.user_memory_mb,
        host_memory_mb=args.host_memory_mb,
        idle_timeout_s=args.idle_timeout, namespaces=namespaces, prewarm=not args.no_prewarm,
        max_in_flight=args.max_in_flight, labels=labels,
    )  # fmt: skip


async def serve(options: StackOptions) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    stack = Stack(options)
    try:
        await stack.start()
        key_uuid, secret = stack.keys["guest"]
        print(
            f"warmwhisk devstack ready ({options.mode} mode): API {stack.api_host}/api/v1\n"
            f"  guest key {key_uuid}:{secret}\n"
            f"  wsk: wsk property set --apihost {stack.api_host} --auth {key_uuid}:{secret}"
            f"   (or WSK_CONFIG_FILE={options.wskprops})\n"
            f"  Ctrl-C stops it and removes its containers.",
            flush=True,
        )
        await stop.wait()
    finally:
        print("warmwhisk devstack: stopping (removing containers)", file=sys.stderr, flush=True)
        await stack.stop()


def main(argv: Sequence[str] | None = None) -> None:
    # uvloop: the API's and the invoker's HTTP on a faster event loop (the stack's own time per
    # invocation is a benchmark target).
    uvloop.run(serve(parse(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
