"""The ``monitor`` command: streaming production monitoring for ML models.

  monitor run CONFIG                  run the service until SIGTERM/SIGINT
  monitor check-config CONFIG         load and check the configuration and every reference
  monitor reference build [...]       turn training data into a reference profile
  monitor validate --config FILE --model NAME DATA
                                      check a data file against a model's constraints
  monitor simulate [...]              publish a synthetic stream with drift injected
  monitor report [...]                drift report from two files (HTML, JSON, CI gate)

The end-to-end demo is a checkout script (bash scripts/demo.sh), not a subcommand: it
needs the checkout's config/demo.yaml and its Kafka launcher (devtools/).

``run`` and ``check-config`` take the configuration file the same way: as the
argument, or as ``--config FILE``.

This module imports only the standard library and :mod:`monitor.errors` at the
top: ``monitor --help`` must answer at once, so each subcommand imports what it
needs (numpy, aiohttp, aiokafka, ...) when it runs. ``tests/test_cli.py`` checks it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from monitor.errors import ConfigError, MonitorError, ReferenceError_
from monitor.version import __version__

if TYPE_CHECKING:
    from monitor.config import MonitorConfig

#: Exit codes, the same for every subcommand (also in the README and ``monitor --help``).
EXIT_OK = 0
EXIT_FAILURE = 1  # a runtime failure (the broker, the state store, a file that cannot be
# written)
EXIT_USAGE = 2  # the command line, the configuration or an input file is invalid (argparse too)
EXIT_CHECK_FAILED = 3  # a check found what it gates on: `report --fail-on`, `validate`

EPILOG = """\
exit codes:
  0  success
  1  runtime failure (e.g. the broker or the state store failed)
  2  usage, configuration or input-file error (nothing was done)
  3  a check found what it gates on: report --fail-on found drift,
     validate found a breached constraint

Relative paths in a configuration file resolve against that file's folder.
"""

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
PROGRESS_ROWS = 100_000  # `reference build` reports progress this often (rows) ...
PROGRESS_SECONDS = 2.0  # ... or this often (seconds), whichever comes first

T = TypeVar("T")


# ----------------------------------------------------------------- logging


class JsonLogFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, RFC 3339), ``level``, ``logger``,
    ``message`` and, with a traceback, ``exception``.

    ``ensure_ascii`` escapes every non-ASCII character, control character and lone
    surrogate, so a hostile string from the wire can neither break the line nor the
    log shipper's UTF-8 decoding.
    """

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=True)


#: C0, DEL and C1 controls, and the line and paragraph separators: they would break a text
#: log line or forge another one (str.splitlines ends a line at \x85 NEL, \x1c-\x1e,
#: \u2028 and \u2029, not only at \n) or drive a terminal (\x1b ESC, \x9b CSI).
_CONTROLS = {
    **{c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))},
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


class TextLogFormatter(logging.Formatter):
    """``TEXT_FORMAT`` lines whose message cannot break the line or the log's encoding.

    Messages carry strings from the wire (model names, values, errors): control
    characters are escaped (``\\x0a``) and lone surrogates replaced by escapes, so one
    record stays one line of valid UTF-8. A traceback, which is ours, keeps its lines.
    """

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = record.message.translate(_CONTROLS)
        record.message = text.encode("utf-8", "backslashreplace").decode("utf-8")
        return super().formatMessage(record)


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    """(Re)configure the root logger: one stderr handler, ``level`` in any case."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLogFormatter() if fmt == "json" else TextLogFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))


@contextlib.contextmanager
def _held_logs() -> Iterator[list[logging.LogRecord]]:
    """The log records written while the config loads, held (in the list yielded) instead
    of written: ``run`` writes them once the config's ``log_format`` applies. A warning of
    the load (names that differ only in case, a receiver on plain http allowed) came out as
    a text line before the first JSON one, in a log pipeline that parses JSON."""
    held: list[logging.LogRecord] = []

    class _Hold(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            held.append(record)

    root = logging.getLogger()
    handlers = root.handlers[:]
    root.handlers = [_Hold()]
    try:
        yield held
    finally:
        root.handlers = handlers


def _write_held(held: list[logging.LogRecord]) -> None:
    """Write records :func:`_held_logs` held, through the root logger as it is now."""
    root = logging.getLogger()
    for record in held:
        if record.levelno >= root.getEffectiveLevel():
            root.handle(record)


def _apply_config_logging(args: argparse.Namespace, config: MonitorConfig) -> None:
    """The config's ``log_level``/``log_format``, unless given on the command line."""
    configure_logging(
        args.log_level or config.log_level,
        args.log_format or config.log_format,
    )


# ----------------------------------------------------------------- helpers


def _config_path(args: argparse.Namespace) -> str:
    """The configuration file, given as the argument or as ``--config`` (not both)."""
    positional, option = args.config_file, args.config_option
    if positional and option and positional != option:
        args.subparser.error(f"two configuration files given: {positional} and {option}")
    path = positional or option
    if not path:
        args.subparser.error("the configuration file is required (CONFIG or --config FILE)")
    return str(path)


def _print_problems(path: str, problems: list[str]) -> None:
    if len(problems) == 1:
        print(f"{path}: {problems[0]}", file=sys.stderr)
        return
    print(f"{path}: {len(problems)} problem(s)", file=sys.stderr)
    for p in problems:
        print(f"  {p}", file=sys.stderr)


def _load_config(path: str) -> MonitorConfig:
    from monitor.config import load_config

    return load_config(path)


# ----------------------------------------------------------------- subcommands


def _cmd_check_config(args: argparse.Namespace) -> int:
    from monitor.config import check_config

    path = _config_path(args)
    try:
        config = _load_config(path)
    except ConfigError as exc:
        _print_problems(path, exc.problems)
        return EXIT_USAGE
    problems = check_config(config)
    if problems:
        _print_problems(path, problems)
        return EXIT_USAGE
    print(f"{path}: OK ({len(config.models)} model(s), unknown models: {config.unknown_models})")
    return EXIT_OK


class _StopSignals:
    """The first SIGTERM/SIGINT stops in order; a second one ends the process at once.

    Why: the ordered shutdown can wait minutes (the outbox flush for up to
    ``shutdown_grace_seconds`` on a receiver that hangs, a final checkpoint to a broker
    that is gone). An operator who presses Ctrl-C again, or an orchestrator that sends
    SIGTERM twice, means "now". Ending at once is as safe as ``kill -9``, which the state
    is built for: the next start replays from the last checkpoint, and notifications not
    yet delivered stay in the outbox. The process ends by the signal's default action, so
    a shell reports exit code 128 + the signal's number (130 for SIGINT, 143 for SIGTERM).
    """

    def __init__(self, request_stop: Callable[[], None]) -> None:
        self._request_stop = request_stop
        self._received = 0

    def __call__(self, signum: int) -> None:
        name = signal.Signals(signum).name
        log = logging.getLogger("monitor")
        self._received += 1
        if self._received == 1:
            log.info("%s received: shutting down (send it again to exit at once)", name)
            self._request_stop()
            return
        log.warning(
            "second signal (%s) during the shutdown: exiting now without finishing it; the "
            "next start replays from the last checkpoint, undelivered notifications stay in "
            "the outbox",
            name,
        )
        logging.shutdown()  # flush the handlers: nothing else runs after this
        # Die of the signal itself (its default action), as if no handler were installed.
        signal.signal(signum, signal.SIG_DFL)
        signal.raise_signal(signum)


async def run_until_signalled(config: MonitorConfig) -> int:
    from monitor.service import MonitorService

    service = MonitorService(config)
    loop = asyncio.get_running_loop()
    on_signal = _StopSignals(service.request_stop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, on_signal, int(sig))
    try:
        await service.start()
    except BaseException as exc:
        await service.stop(grace_seconds=0)  # what did start (alert service, store) closes
        if isinstance(exc, MonitorError) and service.stop_requested:
            # SIGTERM while starting (e.g. waiting for the predictions topic): a stop, not
            # a failure, so an orchestrator does not count it as a crash.
            logging.getLogger("monitor").info("stopped while starting: %s", exc)
            return EXIT_OK
        raise
    logging.getLogger("monitor").info("serving metrics at %s/metrics", service.http.url)
    try:
        await service.run()
    finally:
        await service.stop()
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from monitor.config import check_config

    path = _config_path(args)
    with _held_logs() as held:
        try:
            config = _load_config(path)
        except ConfigError as exc:
            problems = exc.problems
        else:
            # What the file alone shows cannot apply (a segment or constraint on a feature
            # the model does not declare, ...): refused here as check-config reports it, not
            # left to disable a model or be ignored at run time. References are loaded by
            # the start itself, where a model whose reference does not fit is disabled.
            problems = check_config(config, references=False)
    if problems:
        _write_held(held)
        _print_problems(path, problems)
        return EXIT_USAGE
    _apply_config_logging(args, config)
    _write_held(held)
    try:
        return asyncio.run(run_until_signalled(config))
    except ConfigError as exc:  # found only when applied, e.g. http.port in use
        _print_problems(path, exc.problems)
        return EXIT_USAGE


def _cmd_simulate(args: argparse.Namespace) -> int:
    from monitor.simulate import DriftSpec, publish, write_reference

    if args.write_reference:
        try:
            p = write_reference(args.write_reference, args.events, model=args.model, seed=args.seed)
        except OSError as exc:  # a directory, a path below a file, a full disk: one line
            why = exc.strerror or type(exc).__name__
            if exc.filename and str(exc.filename) != str(args.write_reference):
                why += f" ({exc.filename})"  # the folder that could not be made
            raise MonitorError(f"{args.write_reference}: cannot write: {why}") from None
        print(f"wrote {args.events} reference events to {p}")
        return EXIT_OK
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
    return EXIT_OK


def _number(kind: type[T], *, minimum: float | None = None) -> Any:
    """An argparse ``type``: a finite ``kind`` (int or float) of at least ``minimum``, so a
    negative count or a NaN is a usage error (exit 2), not a traceback from deep inside."""

    def parse(text: str) -> T:
        try:
            value = kind(text)  # type: ignore[call-arg]
        except ValueError:
            what = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
        if value != value or value in (float("inf"), float("-inf")):  # type: ignore[comparison-overlap]
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        if minimum is not None and value < minimum:  # type: ignore[operator]
            raise argparse.ArgumentTypeError(f"{text!r}: must be at least {minimum:g}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def parse_features(text: str) -> dict[str, str]:
    """``income:numeric,region:categorical`` -> a schema (argparse ``type``)."""
    out: dict[str, str] = {}
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        name, sep, kind = item.rpartition(":")
        kind = kind.strip().lower()
        if not sep or not name or kind not in ("numeric", "categorical"):
            raise argparse.ArgumentTypeError(f"{item!r}: expected name:numeric or name:categorical")
        out[name.strip()] = kind
    if not out:
        raise argparse.ArgumentTypeError("no feature given")
    return out


def with_progress(
    rows: Iterable[T],
    label: str,
    *,
    every_rows: int = PROGRESS_ROWS,
    every_seconds: float = PROGRESS_SECONDS,
    clock: Any = time.monotonic,
    out: Any = None,
) -> Iterator[T]:
    """Pass ``rows`` through, writing ``label: N rows read (T s)`` to stderr every
    ``every_rows`` rows or ``every_seconds`` seconds, so a large input shows it is moving."""
    stream = out if out is not None else sys.stderr
    start = last = clock()
    for n, row in enumerate(rows, 1):
        yield row
        if n % 1000 == 0:  # look at the clock only now and then
            now = clock()
            if n % every_rows == 0 or now - last >= every_seconds:
                print(f"{label}: {n} rows read ({now - start:.1f} s)", file=stream, flush=True)
                last = now


def _cmd_report(args: argparse.Namespace) -> int:
    from monitor.drift_check import DriftCheck

    if args.config:
        check = DriftCheck.from_config(_load_config(args.config), args.model)
    else:
        try:
            check = DriftCheck(model=args.model or "model")
        except ConfigError as exc:
            args.subparser.error(f"--model: {'; '.join(exc.problems).removeprefix('model: ')}")
    result = check.run(args.reference, args.current)
    if args.output:
        try:
            result.to_html(args.output)
        except OSError as exc:
            raise MonitorError(f"{args.output}: cannot write: {exc.strerror}") from exc
    if args.json:
        text = json.dumps(result.to_dict(), indent=1)
        if args.json == "-":
            print(text)
        else:
            try:
                with open(args.json, "w", encoding="utf-8") as fh:
                    fh.write(text)
            except OSError as exc:
                raise MonitorError(f"{args.json}: cannot write: {exc.strerror}") from exc
    drifting = result.drifting
    columns = len(result.evaluation.numeric) + len(result.evaluation.categorical)
    print(
        f"{len(drifting)} of {columns} columns drifting"
        + (f": {', '.join(ascii(n)[1:-1] for n in drifting)}" if drifting else "")
        + f" ({result.worst_severity}; {result.seconds:.2f} s)",
        file=sys.stderr,
    )
    if args.fail_on and result.failed(args.fail_on):
        return EXIT_CHECK_FAILED
    return EXIT_OK


def _cmd_reference_build(args: argparse.Namespace) -> int:
    from monitor.reference import (
        build_profile,
        detect_format,
        infer_columns,
        iter_rows,
        load_reference,
    )
    from monitor.signals import MAX_CATEGORY_CHARS, PREDICTION

    declared: dict[str, Any] | None = args.features
    max_sample, prediction, max_categories = args.max_sample, "auto", 200
    max_category_chars = MAX_CATEGORY_CHARS
    if args.config:
        config = _load_config(args.config)
        settings = config.model(args.model)
        if settings is None:
            args.subparser.error(f"model {args.model!r} is not listed in {args.config}")
        if declared is None and settings.features is None:
            args.subparser.error(f"model {args.model!r} declares no features in {args.config}")
        declared = declared or dict(settings.features or {})
        if args.max_sample is None:
            max_sample = settings.reference.max_sample
        prediction = settings.prediction
        max_categories = config.limits.max_categories_per_feature
        max_category_chars = config.limits.max_category_chars
    max_sample = 10_000 if max_sample is None else max_sample
    fmt = detect_format(args.input) if args.format == "auto" else args.format
    if fmt == "profile":  # a profile in, a profile out: copy it with the version set
        profile = load_reference(
            args.input, model=args.model, fmt="profile", max_category_chars=max_category_chars
        )
        reports = []
    else:
        rows = list(with_progress(iter_rows(args.input, fmt, args.model), args.input))
        schema, reports = infer_columns(rows, declared, max_category_chars)
        if len(rows) >= PROGRESS_ROWS:
            print(f"{args.input}: profiling {len(schema)} columns", file=sys.stderr, flush=True)
        profile = build_profile(
            args.model,
            rows,
            schema=schema,
            prediction=prediction,  # type: ignore[arg-type]
            max_sample=max_sample,
            max_categories=max_categories,
            max_category_chars=max_category_chars,
            source=str(args.input),
        )
    profile.model_version = args.model_version
    try:
        profile.save(args.output)
        if args.schema_out:
            _write_schema(profile, args.schema_out, str(args.input))
    except OSError as exc:
        print(f"monitor: cannot write {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_FAILURE
    print(f"{args.input}: {profile.rows} rows")
    for r in reports:
        print(f"  {r.describe()}")
    pred = profile.features.get(PREDICTION)
    if pred is not None:
        print(f"  prediction: {pred.kind}, {pred.count} values")
    note = profile.too_long_note(max_category_chars)
    if note is not None:
        print(f"  {note}")
    print(
        f"{args.output}: {len(profile.features)} columns "
        f"({sum(f.kind == 'numeric' for f in profile.features.values())} numeric), "
        f"fingerprint {profile.fingerprint}"
    )
    if args.schema_out:
        print(f"{args.schema_out}: inferred constraints, to review and paste into the config")
    return EXIT_OK


def _write_schema(profile: Any, path: str, source: str) -> None:
    """The constraints inferred from ``profile``, as YAML to paste under a model."""
    import yaml

    from monitor.config import ValidationConfig
    from monitor.validation import infer_constraints

    constraints = infer_constraints(profile, ValidationConfig())
    doc = {
        "validation": {
            "constraints": {
                name: c.model_dump(exclude_none=True) for name, c in constraints.items()
            }
        }
    }
    head = (
        f"# Constraints inferred by `monitor reference build` from {json.dumps(source)}.\n"
        "# Review and edit them, then paste this under the model in the config; whatever a\n"
        "# feature leaves out is inferred from the reference at run time (validation.infer).\n"
    )
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=False))


def _cmd_validate(args: argparse.Namespace) -> int:
    from monitor.reference import (
        ReferenceProfile,
        detect_format,
        iter_rows,
        load_model_references,
    )
    from monitor.signals import PREDICTION
    from monitor.validation import validate_rows

    config = _load_config(args.config)
    settings = config.model(args.model)
    if settings is None:
        args.subparser.error(f"model {args.model!r} is not listed in {args.config}")
    refs = load_model_references(
        settings,
        max_features=config.limits.max_features_per_model,
        max_categories=config.limits.max_categories_per_feature,
        max_category_chars=config.limits.max_category_chars,
    )
    profile = refs.profile or ReferenceProfile(args.model, {}, 0, "")
    schema: dict[str, str] = dict(settings.features or profile.schema())
    pred = profile.features.get(PREDICTION)
    if pred is not None and settings.prediction != "none":
        schema[PREDICTION] = pred.kind
    for name, c in settings.validation.constraints.items():
        if name not in schema and c.type is not None:
            schema[name] = c.type
    if not schema:
        args.subparser.error(
            f"model {args.model!r} has no reference, no declared features and no typed "
            "constraints: nothing to check against"
        )
    fmt = detect_format(args.data) if args.format == "auto" else args.format
    rows = list(with_progress(iter_rows(args.data, fmt, args.model), args.data))
    breaches = validate_rows(
        settings.validation,
        profile,
        rows,
        schema,
        max_category_chars=config.limits.max_category_chars,
    )
    failed = [b for b in breaches if b.breached]
    if args.json:
        doc = {
            "model": args.model,
            "file": str(args.data),
            "rows": len(rows),
            "breached": len(failed),
            "rules": [b.to_dict() for b in breaches],
        }
        print(json.dumps(doc, ensure_ascii=True, indent=2))
    else:
        for b in failed:
            print(f"BREACH {b.rule}: {b.message} (threshold {b.threshold:.3g})")
        print(
            f"{args.data}: {len(rows)} rows, {len(breaches)} rules checked, {len(failed)} breached"
        )
    return EXIT_CHECK_FAILED if failed else EXIT_OK


# ----------------------------------------------------------------- parser


def _add_logging_options(
    p: argparse.ArgumentParser, *, top: bool, from_config: bool = False
) -> None:
    # Accepted before or after the subcommand; the subcommand's copy only sets what is given.
    # Only `run` applies the config's log_level/log_format: the other commands' help must
    # not promise it (``from_config``; the top level names `run`).
    default = None if top else argparse.SUPPRESS
    level, fmt = "INFO", "text"
    if from_config:
        level, fmt = "the config's log_level, INFO", "the config's log_format, text"
    elif top:
        level, fmt = "INFO; with run, the config's log_level", "text; with run, its log_format"
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=default,
        help=f"DEBUG, INFO, WARNING or ERROR, any case (default: {level})",
    )
    p.add_argument(
        "--log-format",
        type=str.lower,
        choices=LOG_FORMATS,
        default=default,
        help=f"text, or json: one JSON object per line (default: {fmt})",
    )


def _add_config_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config_file", nargs="?", metavar="CONFIG", help="the configuration file")
    p.add_argument("--config", dest="config_option", metavar="FILE", help="same as CONFIG")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="monitor",
        description="\n\n".join(__doc__.replace("``", "").split("\n\n")[:3]),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"monitor {__version__}")
    _add_logging_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, summary: str, description: str, **kw: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=summary,
            description=textwrap.fill(description, 79),
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            **kw,
        )
        _add_logging_options(p, top=False, from_config=name == "run")
        p.set_defaults(subparser=p)
        return p

    p = add(
        "run",
        "run the monitoring service",
        "Consume prediction and label events, monitor every model, serve /metrics, /healthz, "
        "/readyz and /api/status, and send alerts, until SIGTERM or SIGINT; then shut down in "
        "order (checkpoint, commit, flush the alert outbox).",
    )
    _add_config_arguments(p)
    p.set_defaults(func=_cmd_run)

    p = add(
        "check-config",
        "check a configuration file and every reference it names",
        "Validate the configuration, then load every reference file and check it against the "
        "model's declared features, exactly as `monitor run` will. Prints every problem with "
        "its config path; exit 2 if there is any.",
    )
    _add_config_arguments(p)
    p.set_defaults(func=_cmd_check_config)

    p = add(
        "simulate",
        "publish a synthetic prediction stream",
        "Publish synthetic prediction events (and labels) to Kafka, with drift injected from a "
        "given event on; or write stationary reference events as JSONL.",
    )
    p.add_argument("--bootstrap", default="127.0.0.1:9092")
    p.add_argument("--topic", default="predictions")
    p.add_argument("--labels-topic", default=None, help="also publish labels here")
    p.add_argument("--model", default="credit-risk")
    p.add_argument("--events", type=_number(int, minimum=0), default=20_000)
    p.add_argument(
        "--rate",
        type=_number(float, minimum=0),
        default=0.0,
        help="events per second; 0 = as fast as possible",
    )
    p.add_argument(
        "--drift", choices=["none", "mean", "scale", "category", "missing"], default="none"
    )
    p.add_argument("--drift-features", default="income,credit_score")
    p.add_argument("--drift-size", type=_number(float), default=1.0)
    p.add_argument(
        "--drift-start",
        type=_number(int, minimum=0),
        default=10_000,
        help="index of the first drifted event",
    )
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--write-reference",
        metavar="FILE",
        help="write stationary events as JSONL instead of publishing",
    )
    p.set_defaults(func=_cmd_simulate)

    p = add(
        "report",
        "drift report from a reference and a current file",
        "Compare a current data file with a reference (CSV, JSONL or Parquet; the reference may "
        "also be a profile) with the service's detectors, defaults and corrections (those of "
        "--model in --config when given), and write one self-contained HTML file (-o) that "
        "opens offline, and/or the results as JSON (--json). --fail-on sets exit code 3 when "
        "some column drifts critically (drift) or at all (warning), for CI gates.",
    )
    p.add_argument("--reference", required=True, metavar="REF", help="file or profile")
    p.add_argument("--current", required=True, metavar="CUR", help="file")
    p.add_argument("--config", metavar="FILE", help="take --model's settings from this config")
    p.add_argument("--model", default=None, help="the model (its settings, and its events)")
    p.add_argument("-o", "--output", metavar="HTML", help="the HTML report to write")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON ('-': stdout)")
    p.add_argument(
        "--fail-on",
        choices=["drift", "warning"],
        default=None,
        help="exit 3 if a column drifts critically (drift) or at all (warning)",
    )
    p.set_defaults(func=_cmd_report)

    p = add(
        "reference",
        "reference profiles",
        "Reference profiles: what normal data looks like for a model.",
    )
    rsub = p.add_subparsers(dest="reference_command", required=True, metavar="COMMAND")
    b = rsub.add_parser(
        "build",
        help="build a profile from JSONL, CSV or Parquet data",
        description=textwrap.fill(
            "Build a reference profile from training or validation data and report, "
            "per column, the type it got, its value count and why. CSV and flat JSONL/Parquet "
            "rows: every column is a feature except prediction (the model output, profiled too), "
            "label, event_id, timestamp, model and model_version. Cells empty, NA, n/a, null, NaN "
            "or None (any case) are missing. Event-shaped JSONL (the event contract) works too.",
            79,
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_logging_options(b, top=False)
    b.set_defaults(subparser=b)
    b.add_argument("--model", required=True)
    b.add_argument("--input", required=True, help="JSONL, CSV or Parquet file")
    b.add_argument("--output", required=True, help="the profile to write (JSON)")
    b.add_argument("--format", default="auto", choices=["auto", "jsonl", "csv", "parquet"])
    b.add_argument(
        "--features",
        type=parse_features,
        metavar="NAME:TYPE,...",
        help="force column types, e.g. income:numeric,region:categorical; only these columns "
        "are profiled",
    )
    b.add_argument(
        "--config",
        metavar="FILE",
        help="take --model's declared features (and max_sample, prediction) from this config",
    )
    b.add_argument(
        "--max-sample",
        type=_number(int, minimum=1),
        default=None,
        help="numeric values kept per feature (default: the config's reference.max_sample, "
        "else 10000)",
    )
    b.add_argument("--model-version", default=None)
    b.add_argument(
        "--schema-out",
        metavar="FILE",
        help="also write the constraints inferred from the data (YAML) for review",
    )
    b.set_defaults(func=_cmd_reference_build)

    p = add(
        "validate",
        "check a data file against a model's constraints",
        "Check every row of a JSONL, CSV or Parquet file against the model's data-validation "
        "constraints (declared in the config, the rest inferred from its reference), with the "
        "same rules and thresholds as `monitor run` applies to a window. Prints each breached "
        "rule with the offending values, or everything as JSON (--json); exit 3 if any rule "
        "is breached.",
    )
    p.add_argument("data", metavar="DATA", help="JSONL, CSV or Parquet file")
    p.add_argument("--config", required=True, metavar="FILE")
    p.add_argument("--model", required=True)
    p.add_argument("--format", default="auto", choices=["auto", "jsonl", "csv", "parquet"])
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_validate)
    return parser


#: What writing the standard output fails with when it cannot take more: a full disk or
#: quota, an I/O error, a file too large. Each command turns its own files' write errors into
#: a :class:`MonitorError` naming the file, so these are the standard output's.
_STDOUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EFBIG})


def _stdout_gone() -> None:
    """Point the standard output at ``/dev/null``, so the interpreter's last flush at exit
    cannot fail again (and print "Exception ignored ... BrokenPipeError")."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.log_level or "INFO", args.log_format or "text")
    try:
        code = int(args.func(args))
        if sys.stdout is not None:
            sys.stdout.flush()  # a full disk or a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        # The reader went away (``monitor report --json - | head``): nothing to tell it.
        _stdout_gone()
        return EXIT_FAILURE
    except OSError as exc:
        if exc.errno not in _STDOUT_ERRNOS:
            raise
        print(f"monitor: cannot write to standard output: {exc.strerror}", file=sys.stderr)
        _stdout_gone()
        return EXIT_FAILURE
    except ConfigError as exc:
        path = (
            getattr(args, "config_file", None)
            or getattr(args, "config_option", None)
            or getattr(args, "config", None)
        )
        _print_problems(str(path or "(config)"), exc.problems)
        return EXIT_USAGE
    except ReferenceError_ as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except MonitorError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_FAILURE


if __name__ == "__main__":
    sys.exit(main())
