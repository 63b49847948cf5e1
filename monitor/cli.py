"""The ``monitor`` command.

monitor run --config FILE            run the service until SIGTERM/SIGINT
monitor check-config FILE            report every configuration problem; exit 1 if any
monitor simulate [...]               publish a synthetic stream with drift injected
monitor reference build [...]        turn training data into a reference profile

The end-to-end demo is a checkout script (bash scripts/demo.sh), not a subcommand: it needs
the checkout's config/demo.yaml and its Kafka launcher (devtools/).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from monitor.config import check_config, load_config
from monitor.errors import ConfigError, MonitorError


def _cmd_check_config(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        print(f"{args.file}: {len(exc.problems)} problem(s)", file=sys.stderr)
        for p in exc.problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    problems = check_config(config)
    if problems:
        print(f"{args.file}: {len(problems)} problem(s)", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(
        f"{args.file}: OK ({len(config.models)} model(s), unknown models: {config.unknown_models})"
    )
    return 0


async def run_until_signalled(config_path: str) -> int:
    from monitor.service import MonitorService

    config = load_config(config_path)
    logging.getLogger().setLevel(config.log_level)
    service = MonitorService(config)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, service.request_stop)
    await service.start()
    logging.getLogger("monitor").info("serving metrics at %s/metrics", service.http.url)
    try:
        await service.run()
    finally:
        await service.stop()
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run_until_signalled(args.config))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except MonitorError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return 1


def _cmd_simulate(args: argparse.Namespace) -> int:
    from monitor.simulate import DriftSpec, publish, write_reference

    if args.write_reference:
        p = write_reference(args.write_reference, args.events, model=args.model, seed=args.seed)
        print(f"wrote {args.events} reference events to {p}")
        return 0
    drift = DriftSpec(
        kind=args.drift,
        features=tuple(f for f in args.drift_features.split(",") if f),
        size=args.drift_size,
        start=args.drift_start,
    )
    info = asyncio.run(
        publish(
            args.bootstrap,
            topic=args.topic,
            labels_topic=args.labels_topic,
            model=args.model,
            events=args.events,
            rate=args.rate,
            drift=drift,
            seed=args.seed,
        )
    )
    print(f"published {int(info['sent'])} events in {info['seconds']:.1f} s")
    return 0


def _cmd_reference_build(args: argparse.Namespace) -> int:
    from monitor.reference import load_reference

    profile = load_reference(
        args.input, model=args.model, fmt=args.format, max_sample=args.max_sample
    )
    profile.model_version = args.model_version
    profile.save(args.output)
    print(
        f"{args.output}: {profile.rows} rows, {len(profile.features)} columns "
        f"({sum(f.kind == 'numeric' for f in profile.features.values())} numeric), "
        f"fingerprint {profile.fingerprint}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monitor", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the monitoring service")
    p.add_argument("--config", required=True)
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("check-config", help="validate a configuration file")
    p.add_argument("file")
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser("simulate", help="publish a synthetic prediction stream")
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--topic", default="predictions")
    p.add_argument("--labels-topic", default=None, help="also publish labels here")
    p.add_argument("--model", default="credit-risk")
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument(
        "--rate", type=float, default=0.0, help="events per second; 0 = as fast as possible"
    )
    p.add_argument(
        "--drift", choices=["none", "mean", "scale", "category", "missing"], default="none"
    )
    p.add_argument("--drift-features", default="income,credit_score")
    p.add_argument("--drift-size", type=float, default=1.0)
    p.add_argument(
        "--drift-start", type=int, default=10_000, help="index of the first drifted event"
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--write-reference",
        metavar="FILE",
        help="write stationary events as JSONL instead of publishing",
    )
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("reference", help="reference profiles")
    rsub = p.add_subparsers(dest="reference_command", required=True)
    b = rsub.add_parser("build", help="build a profile from JSONL, CSV or Parquet data")
    b.add_argument("--model", required=True)
    b.add_argument("--input", required=True)
    b.add_argument("--output", required=True)
    b.add_argument("--format", default="auto", choices=["auto", "jsonl", "csv", "parquet"])
    b.add_argument("--max-sample", type=int, default=10_000)
    b.add_argument("--model-version", default=None)
    b.set_defaults(func=_cmd_reference_build)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except MonitorError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
