"""``didban``: the command line.  Each sub-command is a small function; the
work is done by the packages it wires together."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from didban.config import ConfigError, DidbanConfig, load_config

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def _load(path: str) -> DidbanConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        for message in exc.messages:
            print(message, file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None


# -- validate, condition ---------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        for message in exc.messages:
            print(message, file=sys.stderr)
        print(f"{args.file}: {len(exc.messages)} error(s)", file=sys.stderr)
        return EXIT_USAGE
    services = sum(1 for _ in config.services())
    print(f"{args.file}: valid ({len(config.agencies)} agencies, {services} services, "
          f"{len(config.agreements)} agreements)")
    return EXIT_OK


def cmd_condition(args: argparse.Namespace) -> int:
    from probes.conditions import CheckFacts, Condition

    facts = CheckFacts(
        status=args.status,
        response_time_ms=args.response_time_ms,
        body=args.body.encode(),
        connected=args.connected == "true",
        ip=args.ip,
        dns_rcode=args.dns_rcode,
        certificate_expiration_ms=int(args.certificate_expiration_hours * 3_600_000),
    )
    outcome = Condition(args.expression).check(facts)
    print(json.dumps({"success": outcome.success, "description": outcome.description}, ensure_ascii=False))
    return EXIT_OK


# -- check ---------------------------------------------------------------------------


def _adhoc_probe(args: argparse.Namespace) -> Any:
    from pydantic import TypeAdapter, ValidationError

    from didban.config import ProbeConfig

    fields: dict[str, Any] = {"type": args.type}
    if args.type == "http":
        fields["url"] = args.target
    elif args.type == "dns":
        fields["name"] = args.target
        if args.nameserver:
            fields["nameserver"] = args.nameserver
        fields["query_type"] = args.query_type
    elif args.type == "icmp":
        fields["host"] = args.target
    else:
        fields["target"] = args.target
    if args.type == "tls":
        fields["min_days_left"] = 0  # ad hoc: report, use --condition to require days
    try:
        return TypeAdapter(ProbeConfig).validate_python(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SystemExit(f"didban check: --target: {first['msg'].removeprefix('Value error, ')}") from None


async def _check_once(check: Any, location: str, keepalive: bool = False) -> Any:
    from didban.engine import make_session
    from probes.base import ProbeContext
    from probes.runner import run_check

    async with make_session(4, keepalive) as session:
        return await run_check(check, ProbeContext(session), location, explain=True)


def _outcome_json(outcome: Any) -> dict[str, Any]:
    result = outcome.result
    return {
        "service": result.service,
        "status": result.status.value,
        "latency_ms": result.latency_ms,
        "error": result.error,
        "detail": result.detail,
        "http_status": result.http_status,
        "conditions": [
            {"condition": c.condition, "success": c.success, "description": c.description}
            for c in outcome.conditions
        ],
    }


def cmd_check(args: argparse.Namespace) -> int:
    from probes.runner import compile_check, compile_service

    if args.service:
        config = _load(args.config)
        try:
            service = config.service(args.service)
        except KeyError:
            print(f"didban check: no service {args.service!r} in {args.config}", file=sys.stderr)
            return EXIT_USAGE
        check = compile_service(service)
        location = args.location or config.locations[0].id
    else:
        if not args.type or not args.target:
            print("didban check: give a SERVICE, or --type and --target", file=sys.stderr)
            return EXIT_USAGE
        check = compile_check("adhoc", [_adhoc_probe(args)], args.condition, args.timeout)
        location = args.location or "local"
    outcome = asyncio.run(_check_once(check, location))
    data = _outcome_json(outcome)
    if args.json:
        _print_json(data)
    else:
        line = f"{data['service']}: {data['status']} in {data['latency_ms']:.0f} ms"
        if data["error"]:
            line += f" ({data['error']}: {data['detail']})"
        print(line)
        for condition in data["conditions"]:
            print(f"  [{'✓' if condition['success'] else '✗'}] {condition['description']}")
    return EXIT_OK if outcome.result.status.value == "up" else EXIT_FAILED


# -- status ----------------------------------------------------------------------------


def _status_rows(config: DidbanConfig, db_path: str) -> list[dict[str, Any]]:
    from collector.sqlite_store import SqliteStore
    from didban.timefmt import jalali

    store = SqliteStore(db_path)
    try:
        states = store.states()
    finally:
        store.close()
    rows = []
    for agency, service in config.services():
        state = states.get(service.id)
        outage = state.open_outage if state else None
        rows.append({
            "agency": agency.id,
            "service": service.id,
            "name": service.name.en,
            "name_fa": service.name.fa,
            "state": state.status.value if state and state.status else "no data",
            "since": jalali(state.since_ms) if state and state.since_ms else None,
            "since_ms": state.since_ms if state else None,
            "last_check_ms": state.last_check_ms if state else None,
            "last_latency_ms": state.last_latency_ms if state else None,
            "last_error": state.last_error if state else None,
            "open_outage": outage.tracking_code if outage else None,
        })
    return rows


def render_status_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'SERVICE':<26} {'STATE':<8} {'SINCE (Tehran, Jalali)':<22} {'LATENCY':>9}  NOTE"]
    for row in rows:
        latency = f"{row['last_latency_ms']:.0f} ms" if row["last_latency_ms"] is not None else "-"
        note = (row["open_outage"] and f"outage {row['open_outage']}") or row["last_error"] or ""
        lines.append(f"{row['service']:<26} {row['state']:<8} {row['since'] or '-':<22} {latency:>9}  {note}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    config = _load(args.config)
    db_path = args.db or config.store.sqlite.path
    if not Path(db_path).exists():
        print(f"didban status: no store at {db_path} yet (start `didban run` first)", file=sys.stderr)
        return EXIT_FAILED
    rows = _status_rows(config, db_path)
    if args.json:
        _print_json(rows)
    else:
        print(render_status_table(rows))
    return EXIT_OK


# -- run, demo ---------------------------------------------------------------------------


async def serve(config: DidbanConfig, db_path: str, location: str, *, keepalive: bool,
                duration: float | None, live_every: float | None, quiet: bool = False) -> int:
    """Run the engine until a signal (or ``duration``), showing live state when asked."""
    from collector.sqlite_store import SqliteStore
    from didban.engine import Engine

    store = SqliteStore(db_path)
    engine = Engine(config, store, location, keepalive=keepalive)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await engine.start()
    started = time.monotonic()
    try:
        while not stop.is_set():
            wait = live_every or 3600.0
            if duration is not None:
                wait = min(wait, max(0.0, duration - (time.monotonic() - started)))
            try:
                await asyncio.wait_for(stop.wait(), wait)
            except TimeoutError:
                pass
            if live_every and not quiet:
                _show_live(config, engine)
            if duration is not None and time.monotonic() - started >= duration:
                break
    finally:
        await engine.stop()
        store.close()
    return EXIT_OK


def _show_live(config: DidbanConfig, engine: Any) -> None:
    from didban.timefmt import jalali

    lines = []
    for _, service in config.services():
        result = engine.latest.get(service.id)
        outage = engine.collector.open_outage(service.id)
        if result is None:
            lines.append(f"  {service.id:<26} {'…':<8}")
            continue
        note = f"OUTAGE since {jalali(outage.start_ms)}" if outage else (result.detail or "")
        lines.append(f"  {service.id:<26} {result.status.value:<8} {result.latency_ms:>8.0f} ms  {note[:70]}")
    stats = engine.collector.stats
    header = (f"[{jalali(int(time.time() * 1000))} Tehran] checks {engine.checks_run}, stored {stats.written}, "
              f"queued {engine.collector.pending}, p99 lag {engine.lag.percentile(99) * 1000:.0f} ms")
    if sys.stdout.isatty():
        print("\x1b[2J\x1b[H", end="")
    print(header + "\n" + "\n".join(lines), flush=True)


def cmd_run(args: argparse.Namespace) -> int:
    from didban.config import Secrets

    config = _load(args.config)
    Secrets.load(args.secrets_file)  # fail early on a malformed secrets file; values stay unlogged
    location = args.location or config.locations[0].id
    if location not in {loc.id for loc in config.locations}:
        print(f"didban run: --location {location!r} is not among the configured locations", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(serve(config, args.db or config.store.sqlite.path, location, keepalive=args.keepalive,
                             duration=args.duration, live_every=args.live))


def cmd_demo(args: argparse.Namespace) -> int:
    from didban.demo import run_demo

    config = _load(args.config)
    return asyncio.run(run_demo(config, args.db, interval=args.interval, duration=args.duration))


# -- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="didban", description="Didban (دیدبان): availability and SLAs.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="probe 24/7 (production)")
    run.add_argument("--config", default="config.yaml")
    run.add_argument("--db", help="SQLite file (default: store.sqlite.path)")
    run.add_argument("--location", help="this node's location id (default: the first configured)")
    run.add_argument("--keepalive", action="store_true", help="reuse HTTP connections between checks")
    run.add_argument("--secrets-file", help="dotenv-style file with DIDBAN_* secrets")
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.add_argument("--live", type=float, metavar="SECONDS", help="print live state every SECONDS")
    run.set_defaults(handler=cmd_run)

    demo = commands.add_parser("demo", help="simulated e-services on 127.0.0.1, monitored for real")
    demo.add_argument("--config", default="config.yaml")
    demo.add_argument("--db", default="didban-demo.sqlite")
    demo.add_argument("--interval", type=float, default=5.0, help="check interval in seconds")
    demo.add_argument("--duration", type=float, help="stop after this many seconds (default: Ctrl-C)")
    demo.set_defaults(handler=cmd_demo)

    check = commands.add_parser("check", help="check one service (or an ad-hoc target) now")
    check.add_argument("service", nargs="?")
    check.add_argument("--config", default="config.yaml")
    check.add_argument("--type", choices=["http", "tcp", "dns", "tls", "icmp"])
    check.add_argument("--target", help="URL, HOST:PORT, DNS name or host")
    check.add_argument("--nameserver", help="for --type dns: IP[:PORT]")
    check.add_argument("--query-type", default="A")
    check.add_argument("--condition", action="append", default=[], metavar="EXPR")
    check.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS")
    check.add_argument("--location")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=cmd_check)

    status = commands.add_parser("status", help="per service: state, since when, last latency")
    status.add_argument("--config", default="config.yaml")
    status.add_argument("--db")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)

    validate = commands.add_parser("validate", help="validate a config file; exit 2 on errors")
    validate.add_argument("file")
    validate.set_defaults(handler=cmd_validate)

    condition = commands.add_parser("condition", help="evaluate a Gatus-style condition")
    condition.add_argument("expression")
    condition.add_argument("--status", type=int, default=0)
    condition.add_argument("--body", default="")
    condition.add_argument("--response-time-ms", type=int, default=0)
    condition.add_argument("--connected", choices=["true", "false"], default="false")
    condition.add_argument("--ip", default="")
    condition.add_argument("--dns-rcode", default="")
    condition.add_argument("--certificate-expiration-hours", type=float, default=0)
    condition.set_defaults(handler=cmd_condition)
    return parser


def _use_uvloop() -> None:
    """uvloop when installed: the same event loop the bench baseline uses, and ~2x cheaper per check."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _use_uvloop()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
