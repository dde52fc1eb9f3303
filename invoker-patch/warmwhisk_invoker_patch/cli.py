"""``warmwhisk-invoker-patch`` / ``python -m warmwhisk_invoker_patch``: the files-and-terminal edge
of the pure functions in `manifest` and `config`.

    manifest merge --into runtimes.json [--registry R] [--tag T] [--stemcell-memory M] [--out FILE|-]
    manifest remove --from runtimes.json [--out FILE|-]
    manifest validate FILE
    manifest resolve FILE KIND
    config --target master|2.0.0 --format ansible|helm|env --registry-address redis://HOST:PORT/0
           [--models-dir DIR] [--runtimes runtimes.json] [--registry R] [--tag T] ...

Exit status: 0 done, 1 invalid input (findings or a refused setting), 2 usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import yaml

from .config import (
    DEFAULT_RUNTIMES_FILE,
    LOG_DRIVER_LOG_STORE,
    TARGET_NAMES,
    ContainerConfig,
    Limits,
    ansible_vars,
    component_environment,
    helm_values,
)
from .manifest import (
    DEFAULT_TAG,
    ManifestError,
    StemCellSpec,
    dump_manifest,
    errors_in,
    load_manifest,
    merge_runtime,
    ml_runtime_entry,
    remove_runtime,
    resolve_kind,
    validate_manifest,
)


def main(
    argv: Sequence[str] | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None
) -> int:
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args, out, err))
    except (ManifestError, ValueError, OSError) as exc:
        print(f"warmwhisk-invoker-patch: {exc}", file=err)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warmwhisk-invoker-patch",
        description="OpenWhisk configuration for warmwhisk: the python:3-ml runtime kind and the "
        "invoker/controller/scheduler settings, for ansible, Helm or a plain environment.",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    manifest = commands.add_parser("manifest", help="the runtimes manifest (runtimes.json)")
    actions = manifest.add_subparsers(dest="action", required=True)

    merge = actions.add_parser("merge", help="merge the python:3-ml entry (idempotent)")
    merge.add_argument("--into", required=True, type=Path, help="OpenWhisk's runtimes.json")
    _entry_arguments(merge)
    merge.add_argument("--out", help="where to write (default: back into --into; - for stdout)")
    merge.set_defaults(run=_merge)

    remove = actions.add_parser("remove", help="remove the python:3-ml entry (rollback)")
    remove.add_argument("--from", dest="source", required=True, type=Path)
    remove.add_argument("--out", help="where to write (default: back into --from; - for stdout)")
    remove.set_defaults(run=_remove)

    validate = actions.add_parser("validate", help="check a manifest with OpenWhisk's start-up rules")
    validate.add_argument("file", type=Path)
    validate.set_defaults(run=_validate)

    resolve = actions.add_parser("resolve", help="the kind an action of KIND gets (python:default ...)")
    resolve.add_argument("file", type=Path)
    resolve.add_argument("kind")
    resolve.set_defaults(run=_resolve)

    config = commands.add_parser("config", help="invoker, controller and scheduler settings")
    config.add_argument(
        "--target", required=True, choices=TARGET_NAMES, help="OpenWhisk master (Pekko) or 2.0.0"
    )
    config.add_argument("--format", required=True, choices=("ansible", "helm", "env"))
    config.add_argument("--mode", choices=("routed", "direct"), default="routed")
    config.add_argument("--registry-address", help="redis://HOST:PORT/0, no password (routed mode)")
    config.add_argument("--prefix", default="warmwhisk", help="Redis key prefix (routed mode)")
    config.add_argument(
        "--models-dir", help="host folder mounted read-only at /models in every action container"
    )
    config.add_argument(
        "--preload",
        action="append",
        default=[],
        metavar="NAME",
        help="direct mode: load /models/NAME at start",
    )
    config.add_argument("--runtimes", type=Path, help="OpenWhisk's runtimes.json (needed for ansible)")
    _entry_arguments(config)
    config.add_argument("--memory-max-mb", type=int, default=Limits.memory_max_mb)
    config.add_argument("--time-max-s", type=int, default=Limits.time_max_s)
    config.add_argument("--concurrency-max", type=int, default=Limits.concurrency_max)
    config.add_argument("--log-store", default=LOG_DRIVER_LOG_STORE, help="LogStore SPI class")
    config.add_argument(
        "--keep-log-store",
        action="store_true",
        help="leave OpenWhisk's log store (logs of overlapping runs mix)",
    )
    config.add_argument("--component", choices=("invoker", "controller", "scheduler"), default="invoker")
    config.add_argument("--helm-runtimes-file", default=DEFAULT_RUNTIMES_FILE)
    config.add_argument("--container-factory", choices=("docker", "kubernetes"), default="docker")
    config.set_defaults(run=_config)
    return parser


def _entry_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--registry", help="image registry of warmwhisk/runtime (default: runtimes_registry)")
    parser.add_argument("--tag", default=DEFAULT_TAG, help="image tag of warmwhisk/runtime")
    parser.add_argument(
        "--stemcell-memory", default=StemCellSpec.memory, help="memory of prewarmed containers"
    )


def _entry(args: argparse.Namespace) -> dict[str, Any]:
    return ml_runtime_entry(
        tag=args.tag, registry=args.registry, stem_cell=StemCellSpec(memory=args.stemcell_memory)
    )


def _read(path: Path) -> dict[str, Any]:
    manifest, findings = load_manifest(path.read_text(encoding="utf-8"))
    problems = errors_in(findings)
    if problems:
        raise ManifestError(f"{path}: " + "; ".join(str(p) for p in problems))
    return manifest


def _write(manifest: dict[str, Any], target: str, out: TextIO, err: TextIO) -> int:
    findings = validate_manifest(manifest)
    for finding in findings:
        print(finding, file=err)
    if errors_in(findings):
        print("warmwhisk-invoker-patch: not written: the result would stop OpenWhisk at start-up", file=err)
        return 1
    text = dump_manifest(manifest)
    if target == "-":
        out.write(text)
    else:
        path = Path(target)
        if path.exists() and path.read_text(encoding="utf-8") == text:  # a second merge touches nothing
            print(f"{path}: unchanged", file=err)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}", file=err)
    return 0


def _merge(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    merged = merge_runtime(_read(args.into), _entry(args))
    return _write(merged, args.out or str(args.into), out, err)


def _remove(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    return _write(remove_runtime(_read(args.source)), args.out or str(args.source), out, err)


def _validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    manifest, findings = load_manifest(args.file.read_text(encoding="utf-8"))
    findings = findings + validate_manifest(manifest)
    for finding in findings:
        print(finding, file=out)
    problems = errors_in(findings)
    print(f"{args.file}: {len(problems)} error(s), {len(findings) - len(problems)} warning(s)", file=out)
    return 1 if problems else 0


def _resolve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    kind = resolve_kind(_read(args.file), args.kind)
    if kind is None:
        print(f"The specified runtime {args.kind!r} is not supported by this manifest", file=err)
        return 1
    print(kind, file=out)
    return 0


def _config(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    container = ContainerConfig(
        registry_address=args.registry_address,
        models_dir=args.models_dir,
        prefix=args.prefix,
        mode=args.mode,
        preload=tuple(args.preload),
    )
    limits = Limits(args.memory_max_mb, args.time_max_s, args.concurrency_max)
    log_store = None if args.keep_log_store else args.log_store
    runtimes = _read(args.runtimes) if args.runtimes else None
    if args.format == "ansible":
        if runtimes is None:
            raise ValueError(
                "--format ansible needs --runtimes (runtimes_manifest replaces OpenWhisk's whole manifest)"
            )
        variables = ansible_vars(
            container, args.target, runtimes, entry=_entry(args), limits=limits, log_store=log_store
        )
        out.write(_ANSIBLE_HEADER.format(target=args.target))
        out.write(_yaml(variables))
    elif args.format == "helm":
        values = helm_values(
            container,
            args.target,
            limits=limits,
            log_store=log_store,
            runtimes_file=args.helm_runtimes_file,
            container_factory=args.container_factory,
        )
        out.write(_HELM_HEADER.format(file=args.helm_runtimes_file))
        out.write(_yaml(values))
    else:
        manifest = merge_runtime(runtimes, _entry(args)) if runtimes is not None else None
        env = component_environment(
            args.component,
            container,
            args.target,
            limits=limits,
            log_store=log_store,
            runtimes_manifest=manifest,
        )
        for name, value in env.items():
            out.write(f"{name}={value}\n")
    return 0


def _yaml(data: object) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000)


_ANSIBLE_HEADER = """\
# warmwhisk invoker patch: variables for OpenWhisk's ansible (target {target}).
# Put them in your environment's group_vars or pass them with -e @file, then redeploy:
#   ansible-playbook -i environments/<env> controller.yml scheduler.yml invoker.yml
# Nothing here is secret: invoker_extraEnv reaches every action container of the invoker.
"""

_HELM_HEADER = """\
# warmwhisk invoker patch: values for openwhisk-deploy-kube (helm/openwhisk), merged over yours.
# whisk.runtimes names a file inside the chart; write it with:
#   warmwhisk-invoker-patch manifest merge --into helm/openwhisk/runtimes.json \\
#       --out helm/openwhisk/{file}
# invoker.options replaces the chart's (empty) default: append any -D flags you already use.
"""
