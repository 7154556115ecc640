"""``didban``: the command line.  Each sub-command is a small function; the
work is done by the packages it wires together."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.config import ConfigError, DidbanConfig, load_config
from didban.pack_reader import DEFAULT_MAX_PACK_BYTES

if TYPE_CHECKING:
    from store.backend import Backend

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TAMPERED = 0, 1, 2, 3
# The seed agencies' configuration, shipped inside the package so `didban demo` runs from any directory.
SEED_CONFIG = Path(__file__).resolve().parent / "seed" / "config.yaml"


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


def _count(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else many or one + 's'}"


def cmd_init(args: argparse.Namespace) -> int:
    target = Path(args.dir) / "config.yaml"
    if target.exists() and not args.force:
        print(f"didban init: {target} exists; --force replaces it", file=sys.stderr)
        return EXIT_USAGE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text((SEED_CONFIG.parent / "starter.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    print(f"{target} written: every section commented; edit the agencies and services, then "
          f"`didban validate {target}` and `didban run --config {target}`")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        for message in exc.messages:
            print(message, file=sys.stderr)
        print(f"{args.file}: {exc.count} error(s)", file=sys.stderr)
        return EXIT_USAGE
    services = sum(1 for _ in config.services())
    print(f"{args.file}: valid ({_count(len(config.agencies), 'agency', 'agencies')}, "
          f"{_count(services, 'service')}, {_count(len(config.agreements), 'agreement')})")
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

    from core.config import ProbeConfig

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
        if service.heartbeat is not None:
            print(f"didban check: {service.id} reports in by heartbeat (POST /api/heartbeat/TOKEN); "
                  "it cannot be checked from here", file=sys.stderr)
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


def _status_rows(config: DidbanConfig, backend: Backend) -> list[dict[str, Any]]:
    from core.timefmt import jalali

    with backend.store() as store:
        states = store.states()
    now_ms = _now_ms()
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
            "last_check": jalali(state.last_check_ms) if state and state.last_check_ms else None,
            # Stale: no result for three intervals — the monitor stopped, not the service.
            "stale": bool(state and state.last_check_ms
                          and now_ms - state.last_check_ms > 3 * service.interval_seconds * 1000),
        })
    return rows


def render_status_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'SERVICE':<26} {'STATE':<8} {'SINCE (Tehran, Jalali)':<22} {'LAST CHECK':<17} {'LATENCY':>9}  NOTE"]
    for row in rows:
        latency = f"{row['last_latency_ms']:.0f} ms" if row["last_latency_ms"] is not None else "-"
        note = (row["open_outage"] and f"outage {row['open_outage']}") or row["last_error"] or ""
        if row["stale"]:
            note = f"STALE: no check for over three intervals (is didban run running?) {note}".strip()
        lines.append(f"{row['service']:<26} {row['state']:<8} {row['since'] or '-':<22} "
                     f"{row['last_check'] or '-':<17} {latency:>9}  {note}")
    return "\n".join(lines)


def cmd_status(args: argparse.Namespace) -> int:
    config = _load(args.config)
    backend = _backend(args, config)
    if not backend.exists():
        print(f"didban status: no store at {backend.describe()} yet (start `didban run` first)", file=sys.stderr)
        return EXIT_FAILED
    rows = _status_rows(config, backend)
    if args.json:
        _print_json(rows)
        return EXIT_OK
    print(render_status_table(rows))
    from didban.locations import location_states

    with backend.store() as store:
        progress = store.agents()
    if progress:  # agents ship to this store: where each location stands (a silent one is missing coverage)
        now = _now_ms()
        print(f"\n{'LOCATION':<26} {'STATE':<8} {'LAST RESULT (Tehran)':<22} {'LAG':>9}")
        for state in location_states(config, progress, now):
            shown = "silent" if state.silent else "ok" if state.reported else "no agent"
            last = state.as_json(now)
            lag = f"{last['lag_seconds']:.0f} s" if last["lag_seconds"] is not None else "-"
            print(f"{state.location:<26} {shown:<8} {last['last_result_tehran'] or '-':<22} {lag:>9}")
    return EXIT_OK


# -- run, demo ---------------------------------------------------------------------------


def cmd_influx_backfill(args: argparse.Namespace) -> int:

    config = _load(args.config)
    from didban.service import influx_sink

    sink = influx_sink(config, _backend(args, config), args.secrets_file)
    if sink is None:
        print("didban influx backfill: no store.influxdb in the config", file=sys.stderr)
        return EXIT_USAGE
    from core.timefmt import jalali

    since_ms = _instant(args.since)  # Jalali or ISO; a bare date is a Tehran date
    print(f"rewriting points since {jalali(since_ms)} Tehran …", file=sys.stderr)
    try:
        written = asyncio.run(sink.backfill(
            since_ms, lambda total: print(f"  {total:,} check points written …", file=sys.stderr, flush=True)))
    except Exception as exc:  # InfluxDB unreachable or refusing: one line with the cause, never a traceback
        print(f"didban influx backfill: InfluxDB at {sink.url} did not take the points: "
              f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        sink.close()
    print(f"{written} check points rewritten (same points, same timestamps)")
    return EXIT_OK


def cmd_dashboards_push(args: argparse.Namespace) -> int:
    from core.config import Secrets
    from dashboards.push import GrafanaError, push

    config = _load(args.config)
    secrets = Secrets.load(args.secrets_file)
    token = secrets.grafana_token
    if token is None:
        print("didban dashboards push: set DIDBAN_GRAFANA_TOKEN (a Grafana service-account token)", file=sys.stderr)
        return EXIT_USAGE
    try:
        influx_token = secrets.influxdb_token.get_secret_value() if secrets.influxdb_token else None
        report = asyncio.run(push(config, args.grafana_url, token.get_secret_value(), args.influx_url, args.lang,
                                  args.force, influx_token=influx_token,
                                  progress=lambda step: print(f"  {step} …", file=sys.stderr, flush=True)))
    except GrafanaError as exc:
        print(f"didban dashboards push: {exc}", file=sys.stderr)
        return EXIT_FAILED
    for kind, items in (("created", report.created), ("updated", report.updated), ("unchanged", report.unchanged)):
        print(f"{kind}: {len(items)}" + (f" ({', '.join(items)})" if items and kind != "unchanged" else ""))
    return EXIT_OK


def cmd_dashboards_export(args: argparse.Namespace) -> int:
    from dashboards.provisioning import export

    config = _load(args.config)
    written = export(config, Path(args.dir), influx_url=args.influx_url, lang=args.lang)
    print(f"{len(written)} files written under {args.dir}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from core.config import Secrets
    from didban.service import serve, web_from_environment

    config = web_from_environment(_load(args.config))
    Secrets.load(args.secrets_file)  # fail early on a malformed secrets file; values stay unlogged
    location = args.location or config.locations[0].id
    if location not in {loc.id for loc in config.locations}:
        print(f"didban run: --location {location!r} is not among the configured locations", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(serve(config, _backend(args, config), location, keepalive=args.keepalive,
                             duration=args.duration, live_every=args.live, secrets_file=args.secrets_file))


def cmd_server(args: argparse.Namespace) -> int:
    """The center: ingest, outages, store, settlement, notices, web; it probes only with --location."""
    from core.config import Secrets
    from didban.service import serve, web_from_environment

    config = web_from_environment(_load(args.config))
    Secrets.load(args.secrets_file)
    if args.location is not None and args.location not in {loc.id for loc in config.locations}:
        print(f"didban server: --location {args.location!r} is not among the configured locations", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(serve(config, _backend(args, config), args.location or "center", keepalive=args.keepalive,
                             duration=args.duration, live_every=None, secrets_file=args.secrets_file, center=True,
                             probing=args.location is not None))


def _agent_token(args: argparse.Namespace) -> str | None:
    from core.config import Secrets

    if args.token_file:
        try:
            return Path(args.token_file).read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise SystemExit(f"didban agent: cannot read the token file {args.token_file} ({exc.strerror})") from None
    token = Secrets.load(args.secrets_file).agent_token
    return token.get_secret_value() if token is not None else None


def cmd_agent(args: argparse.Namespace) -> int:
    """One probe location: it probes, buffers durably and ships to the center; it stores nothing."""
    from urllib.parse import urlsplit

    from didban.agent import run_agent

    config = _load(args.config)
    if args.location not in {loc.id for loc in config.locations}:
        print(f"didban agent: --location {args.location!r} is not among the configured locations "
              f"({', '.join(loc.id for loc in config.locations)})", file=sys.stderr)
        return EXIT_USAGE
    centers = [url.strip() for given in args.center for url in given.split(",") if url.strip()]
    bad = [url for url in centers if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc]
    if not centers or bad:
        print(f"didban agent: --center takes the center's URL, like https://didban.agency.ir (got {bad or centers})",
              file=sys.stderr)
        return EXIT_USAGE
    token = _agent_token(args)
    if token is None:
        print("didban agent: no agent token: give --token-file FILE or set DIDBAN_AGENT_TOKEN (made on the center "
              f"with: didban token create --role agent --name {args.location})", file=sys.stderr)
        return EXIT_USAGE
    listen = None
    if args.listen:
        host, _, port = args.listen.rpartition(":")
        if not port.isdigit():
            print("didban agent: --listen takes HOST:PORT", file=sys.stderr)
            return EXIT_USAGE
        listen = (host or "127.0.0.1", int(port))
    buffer = Path(args.buffer or f"didban-agent-{args.location}.buffer")
    return asyncio.run(run_agent(config, args.location, centers, token, buffer, keepalive=args.keepalive,
                                 listen=listen, duration=args.duration))


def cmd_demo(args: argparse.Namespace) -> int:
    from didban.demo import run_demo

    config = _load(args.config)
    config = config.model_copy(update={"web": config.web.model_copy(update={"port": args.web_port})})
    from store.backend import from_url

    return asyncio.run(run_demo(config, from_url(args.db), interval=args.interval, duration=args.duration,
                                config_path=args.config))


# -- SLA: month, close, credits, export, replay ----------------------------------------------


def _now_ms() -> int:
    return int(time.time() * 1000)


def _month(text: str) -> Any:
    from sla_calc.periods import BadMonth, JalaliMonth

    try:
        return JalaliMonth.parse(text)
    except BadMonth as exc:
        raise SystemExit(f"didban: {exc}") from None


def _backend(args: argparse.Namespace, config: DidbanConfig) -> Backend:
    """The store of this invocation: --db (a path or URL), DIDBAN_STORE_URL, or the config's."""
    from store.backend import BadStoreUrl, locate

    try:
        return locate(config, getattr(args, "db", None), secrets_file=getattr(args, "secrets_file", None))
    except BadStoreUrl as exc:
        raise SystemExit(f"didban: {exc}") from None


def _store(args: argparse.Namespace, config: DidbanConfig) -> Any:
    backend = _backend(args, config)
    if not backend.exists():
        raise SystemExit(f"didban: no store at {backend.describe()}")
    return backend.store()


def cmd_sla_month(args: argparse.Namespace) -> int:
    from didban.exports import build_model
    from didban.settlement import settle

    config = _load(args.config)
    month = _month(args.month)
    with _store(args, config) as store, closing(_backend(args, config).web_records()) as records:
        settled = settle(config, store, month, now_ms=_now_ms())
        model = build_model(config, store, records, settled, digest="")
    model.pop("evidence_pack_sha256")
    if args.json:
        _print_json(model)
        return EXIT_OK
    print(f"SLA month {model['month']} ({model['start_jalali']} – {model['end_jalali']} Tehran), "
          f"denominator {model['denominator_minutes']:g} min, {'closed' if model['closed'] else 'open'}")
    for agency in model["agencies"]:
        print(f"\n{agency['name_en']} ({agency['id']})")
        print(f"  {'SERVICE':<24} {'AVAIL %':>8} {'TARGET':>7} {'':11} {'DOWN min':>9} {'EXCL min':>9} "
              f"{'COVER %':>8}  CREDIT")
        for s in agency["services"]:
            credit = f"{s['credit_percent']:g}% = {s['credit_amount']:g}" if s["credit_percent"] else "-"
            verdict = {"met": "met", "missed": "MISSED", "insufficient_evidence": "NO EVIDENCE"}[s["verdict"]]
            print(f"  {s['id']:<24} {s['availability_display']:>8} {s['target_percent']:>7g} "
                  f"{verdict:11} {s['downtime_minutes']:>9g} {s['excluded_minutes']:>9g} "
                  f"{s['coverage_percent']:>8.2f}  {credit} {' '.join(s['tracking_codes'])}")
            if s["verdict"] == "insufficient_evidence":
                print(f"      insufficient evidence: only {s['coverage_percent']:.2f} % of the month covered by "
                      "results; neither met nor missed")
            for reason in s["exclusion_reasons"]:
                print(f"      excluded: {reason}")
            for late in s["late_maintenance"]:
                print(f"      late maintenance: {late['id']} ({late['hours_short']:g} h short of the notice)")
            for outage in s["outages"]:
                print(f"      outage {outage['start_jalali']} → {outage['end_jalali']}: {outage['minutes']:g} min")
    if model["no_agreement_in_force"]:
        print(f"\nno agreement in force: {', '.join(model['no_agreement_in_force'])}")
    return EXIT_OK


def cmd_sla_close(args: argparse.Namespace) -> int:
    from didban.settlement import InsufficientEvidence, NotYetEnded, close_month

    config = _load(args.config)
    month = _month(args.month)
    store = _store(args, config)
    try:
        outcome = close_month(config, store, month, _now_ms(),
                              accept_insufficient_evidence=args.accept_insufficient_evidence)
    except (NotYetEnded, InsufficientEvidence) as exc:
        print(f"didban sla close: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        store.close()
    if outcome.closed_now:
        print(f"{outcome.month} closed: {len(outcome.credits)} credit(s); evidence pack sha256 {outcome.pack_sha256}")
        if outcome.accepted_insufficient:
            print(f"  closed with insufficient evidence, accepted and recorded for: "
                  f"{', '.join(outcome.accepted_insufficient)}")
        for credit in outcome.credits:
            print(f"  {credit.tracking_code} {credit.service} {credit.credit_percent:g}% = {credit.amount:g}")
    elif outcome.adjustments:
        print(f"{outcome.month} was already closed; late evidence recorded as {len(outcome.adjustments)} adjustment(s)")
        for entry in outcome.adjustments:
            print(f"  {entry.tracking_code} {entry.service} adjusts {entry.adjusts}: {entry.note}")
    else:
        print(f"{outcome.month} was already closed; nothing changed")
    return EXIT_OK


def cmd_sla_credits(args: argparse.Namespace) -> int:
    from core.model import iso_utc
    from core.timefmt import jalali

    config = _load(args.config)
    with _store(args, config) as store:
        entries = store.ledger(args.month, args.service)
    rows = [
        {"tracking_code": e.tracking_code, "month": e.month, "service": e.service, "kind": e.kind,
         "credit_percent": e.credit_percent, "amount": e.amount, "availability_percent": e.availability_percent,
         "issued": iso_utc(e.issued_ms), "issued_jalali": jalali(e.issued_ms), "adjusts": e.adjusts,
         "note": e.note, "pack_sha256": e.pack_sha256}
        for e in entries
    ]
    if args.json:
        _print_json(rows)
    else:
        print(f"{'TRACKING CODE':<14} {'MONTH':<8} {'SERVICE':<24} {'KIND':<10} {'CREDIT':>7} {'AMOUNT':>12}  NOTE")
        for row in rows:
            print(f"{row['tracking_code']:<14} {row['month']:<8} {row['service']:<24} {row['kind']:<10} "
                  f"{row['credit_percent']:>6g}% {row['amount']:>12g}  {row['adjusts'] or ''} {row['note']}")
    return EXIT_OK


def cmd_sla_export(args: argparse.Namespace) -> int:
    from didban.exports import export, parse_formats
    from didban.settlement import snapshot

    config = _load(args.config)
    month = _month(args.month)
    try:
        formats = parse_formats(args.format)
    except ValueError as exc:
        print(f"didban sla export: {exc}", file=sys.stderr)
        return EXIT_USAGE
    with _store(args, config) as store, closing(_backend(args, config).web_records()) as records:
        snap = snapshot(config, store, month, _now_ms())
        source = "the pack archived when the month was closed" if snap.archived else "one snapshot of the store"
        print(f"exporting {month} as {', '.join(formats)} from {source} …", file=sys.stderr)
        written = export(config, store, records, snap, formats, Path(args.out),
                         progress=lambda path: print(f"  {path.name} written", file=sys.stderr, flush=True))
    for path in written:
        print(path)
    print(f"evidence pack sha256: {snap.digest}")
    return EXIT_OK


def cmd_sla_replay(args: argparse.Namespace) -> int:
    from didban.evidence import BadPack
    from didban.pack_reader import PackTampered, replay

    try:
        figures = replay(args.pack, args.month, verify_pack=not args.no_verify, max_bytes=args.max_bytes)
    except PackTampered as exc:
        print(f"didban sla replay: the pack failed verification: {exc}", file=sys.stderr)
        return EXIT_TAMPERED
    except BadPack as exc:
        print(f"didban sla replay: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(json.dumps(figures, ensure_ascii=False))
    return EXIT_OK


# -- maintenance windows and exclusions -----------------------------------------------------


def _instant(text: str) -> int:
    from core.timefmt import BadInstant, parse_instant

    try:
        return parse_instant(text)
    except BadInstant as exc:
        raise SystemExit(f"didban: {exc}") from None


def _services(config: DidbanConfig, text: str) -> tuple[str, ...]:
    from didban.operations import UnknownServices, known_services

    try:
        return known_services(config, tuple(s.strip() for s in text.split(",") if s.strip()))
    except UnknownServices as exc:
        raise SystemExit(f"didban: {exc}; expected ids from the config or *") from None


def cmd_maintenance(args: argparse.Namespace) -> int:
    from core.timefmt import jalali

    config = _load(args.config)
    with _store(args, config) as store:
        if args.action == "add":
            from didban.settlement import BadWindow, announce_maintenance, describe_notice

            notifier = None
            if config.alerting.channels:  # queue the announcement; the running service delivers it
                notifier, _ = _alerting(args, config)
            try:
                announced = announce_maintenance(config, store, _services(config, args.services),
                                                 _instant(args.start), _instant(args.end), args.title, _now_ms(),
                                                 notifier)
            except BadWindow as exc:
                print(f"didban maintenance add: {exc}", file=sys.stderr)
                return EXIT_USAGE
            window = announced.window
            print(f"{window.id} announced: {jalali(window.start_ms)} → {jalali(window.end_ms)} Tehran "
                  f"({describe_notice(announced.notice)})")
        elif args.action == "cancel":
            from didban.operations import NotFound, cancel_maintenance

            try:
                cancel_maintenance(store, args.id)
            except NotFound:
                print(f"didban maintenance cancel: no window {args.id}", file=sys.stderr)
                return EXIT_USAGE
            print(f"{args.id} cancelled: it excludes nothing")
        else:
            from didban.settlement import describe_notice, notice

            for w in store.maintenance():
                rule = "CANCELLED: excludes nothing" if w.cancelled else describe_notice(
                    notice(config, w.services, w.start_ms, w.announced_at_ms))
                print(f"{w.id} {','.join(w.services)} {jalali(w.start_ms)} → {jalali(w.end_ms)} Tehran ({rule})")
    return EXIT_OK


def cmd_exclusion(args: argparse.Namespace) -> int:
    from core.timefmt import jalali
    from didban.operations import Conflict, record_exclusion

    config = _load(args.config)
    with _store(args, config) as store:
        if args.action == "add":
            try:
                exclusion = record_exclusion(config, store, _services(config, args.services), _instant(args.start),
                                             _instant(args.end), args.reason, args.evidence, args.approved_by,
                                             _now_ms())
            except Conflict as exc:
                print(f"didban exclusion add: {exc}", file=sys.stderr)
                return EXIT_USAGE
            print(f"{exclusion.id} recorded: {jalali(exclusion.start_ms)} → {jalali(exclusion.end_ms)}")
        else:
            for e in store.exclusions():
                print(f"{e.id} {','.join(e.services)} {jalali(e.start_ms)} → {jalali(e.end_ms)}: {e.reason}")
    return EXIT_OK


# -- alerting: test notices, the outbox, acknowledgements, subscriptions -------------------


def _alerting(args: argparse.Namespace, config: DidbanConfig) -> tuple[Any, Backend]:
    from alerting.notifier import Notifier

    backend = _backend(args, config)
    return Notifier(config, backend.outbox(), backend.subscribers()), backend


def cmd_notify_test(args: argparse.Namespace) -> int:
    from alerting.channels import build_channels
    from alerting.dispatcher import Dispatcher
    from core.addresses import BadAddress, normalise
    from core.config import Secrets

    config = _load(args.config)
    channel = next((c for c in config.alerting.channels if c.id == args.channel), None)
    if channel is not None and channel.type in ("email", "kavenegar", "http_sms"):
        try:  # the same check as subscribing: a bogus address is refused, not "sent"
            args.to = normalise("email" if channel.type == "email" else "sms", args.to)
        except BadAddress as exc:
            print(f"didban notify test: {exc}", file=sys.stderr)
            return EXIT_USAGE
    notifier, backend = _alerting(args, config)
    try:
        notifier.test(args.channel, args.to, args.lang, _now_ms())
    except KeyError:
        print(f"didban notify test: no channel {args.channel!r} in {args.config}", file=sys.stderr)
        return EXIT_USAGE
    outbox = backend.outbox()
    channels = build_channels([c for c in config.alerting.channels if c.id == args.channel],
                              Secrets.load(args.secrets_file))

    async def deliver() -> bool:
        dispatcher = Dispatcher(outbox, channels)
        try:
            return await dispatcher.drain(args.timeout)
        finally:
            await dispatcher.close()

    delivered = asyncio.run(deliver())
    rows = outbox.rows(("pending", "failed"))
    failure = next((r for r in rows if r.notice.event.startswith("test:") and r.notice.recipient == args.to), None)
    if delivered and failure is None:
        print(f"test notice sent through {args.channel} to {args.to}")
        return EXIT_OK
    reason = failure.last_error if failure else "not delivered in time"
    print(f"test notice through {args.channel} NOT delivered: {reason} (it stays in the outbox)", file=sys.stderr)
    return EXIT_FAILED


def cmd_outbox(args: argparse.Namespace) -> int:
    config = _load(args.config)
    outbox = _backend(args, config).outbox()
    states = ("pending", "sending", "failed", "sent") if args.all else ("pending", "sending", "failed")
    rows = outbox.rows(states)
    if args.json:
        _print_json({"counts": outbox.counts(), "notices": [
            {"id": r.notice.id, "event": r.notice.event, "channel": r.notice.channel, "to": r.notice.recipient,
             "state": r.state, "attempts": r.attempts, "last_error": r.last_error} for r in rows]})
        return EXIT_OK
    print("outbox: " + ", ".join(f"{k} {v}" for k, v in sorted(outbox.counts().items())) or "outbox: empty")
    for r in rows:
        print(f"  #{r.notice.id} {r.state:<8} {r.notice.channel:<10} {r.notice.recipient:<28} {r.notice.event} "
              f"attempts {r.attempts}{'  — ' + r.last_error if r.last_error else ''}")
    return EXIT_OK


def cmd_ack(args: argparse.Namespace) -> int:
    from contextlib import closing

    from didban.operations import NotFound, acknowledge_outage

    config = _load(args.config)
    with _store(args, config) as store, closing(_backend(args, config).subscribers()) as subscribers:
        try:
            done = acknowledge_outage(store, subscribers, args.outage, args.by, _now_ms())
        except NotFound:
            print(f"didban ack: no outage {args.outage!r} (give its number or tracking code)", file=sys.stderr)
            return EXIT_USAGE
    outage = done.outage
    print(f"outage {outage.tracking_code} ({outage.service}) "
          f"{'acknowledged' if done.new else 'was already acknowledged'}: no further escalation")
    return EXIT_OK


def cmd_token(args: argparse.Namespace) -> int:
    from core.timefmt import jalali

    config = _load(args.config)
    records = _backend(args, config).web_records()
    now = _now_ms()
    try:
        if args.action == "create":
            from didban.tokens import BadToken, issue_token

            try:
                issued = issue_token(config, records, args.name, args.role, now, args.expires_days)
            except BadToken as exc:
                print(f"didban token create: {exc}", file=sys.stderr)
                return EXIT_USAGE
            token, expires = issued.token, issued.expires_ms
            print(token)
            until = f", valid until {jalali(expires)} Tehran time" if expires else ""
            print(f"(token {args.name!r} with the {args.role} role{until}; it is shown only now and stored hashed)",
                  file=sys.stderr)
        elif args.action == "list":
            rows = [{"id": t.id, "name": t.name, "role": t.role, "created": jalali(t.created_ms),
                     "expires": jalali(t.expires_ms) if t.expires_ms else None, "state": t.state(now)}
                    for t in records.tokens()]
            if args.json:
                _print_json(rows)
            else:
                print(f"{'ID':>4}  {'NAME':<24} {'ROLE':<9} {'STATE':<8} {'CREATED (Tehran)':<18} EXPIRES")
                for row in rows:
                    print(f"{row['id']:>4}  {row['name']:<24} {row['role']:<9} {row['state']:<8} "
                          f"{row['created']:<18} {row['expires'] or '-'}")
        elif not records.revoke_token(args.id, now):
            print(f"didban token revoke: no active token with id {args.id} (see didban token list)", file=sys.stderr)
            return EXIT_FAILED
        else:
            print(f"token {args.id} revoked; it is refused from now on")
    finally:
        records.close()
    return EXIT_OK


def cmd_subscribe(args: argparse.Namespace) -> int:
    from core.addresses import BadAddress

    config = _load(args.config)
    notifier, _ = _alerting(args, config)
    try:
        config.service(args.service)
    except KeyError:
        print(f"didban subscribe: no service {args.service!r}", file=sys.stderr)
        return EXIT_USAGE
    kind, address = ("email", args.email) if args.email else ("sms", args.sms)
    try:
        if args.code:
            ok = notifier.subscribers.confirm(args.service, kind, address, args.code)
            print("subscription confirmed" if ok else "wrong code: subscription not confirmed")
            return EXIT_OK if ok else EXIT_FAILED
        subscriber = notifier.subscribers.subscribe(args.service, kind, address, args.lang, _now_ms())
    except BadAddress as exc:
        print(f"didban subscribe: {exc}", file=sys.stderr)
        return EXIT_USAGE
    notifier.confirm_subscription(args.service, kind, subscriber.address, args.lang, subscriber.code,
                                  subscriber.token, _now_ms())
    print(f"a confirmation code was queued for {subscriber.address}; confirm with --code")
    return EXIT_OK


# -- the store: schema upgrades, moving to another backend ------------------------------------


def cmd_store_upgrade(args: argparse.Namespace) -> int:
    from store.schema import SCHEMA_HEAD, check, current_revision

    backend = _backend(args, _load(args.config))
    db = backend.connect()
    try:
        before = current_revision(db)
        applied = check(db)
    finally:
        db.close()
    if applied:
        print(f"{backend.describe()}: schema upgraded from {before or 'nothing'} to {SCHEMA_HEAD} "
              f"({', '.join(applied)} applied)")
    else:
        print(f"{backend.describe()}: schema already at {SCHEMA_HEAD}")
    return EXIT_OK


def cmd_store_migrate(args: argparse.Namespace) -> int:
    from core.config import Secrets
    from didban.migration import migrate
    from store.backend import BadStoreUrl, from_url

    config = _load(args.config)
    secrets = Secrets.load(args.secrets_file)
    password = secrets.store_password.get_secret_value() if secrets.store_password else None
    try:
        source, target = from_url(args.source, password), from_url(args.target, password)
    except BadStoreUrl as exc:
        print(f"didban store migrate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not source.exists():
        print(f"didban store migrate: no store at {source.describe()}", file=sys.stderr)
        return EXIT_USAGE
    shown: dict[str, int] = {}

    def progress(table: str, done: int, total: int) -> None:
        if done != shown.get(table):
            shown[table] = done
            print(f"  {table}: {done:,} of {total:,}", file=sys.stderr, flush=True)

    print(f"copying {source.describe()} → {target.describe()} (run again to resume) …", file=sys.stderr)
    report = migrate(config, source, target, progress,
                     checking=lambda month: print(f"  checking closed month {month} …", file=sys.stderr, flush=True))
    copied = sum(report.copied.values())
    print(f"{copied:,} rows copied now; {sum(report.counts.values()):,} rows in {target.describe()}")
    if not report.identical:
        for difference in report.differences:
            print(f"  DIFFERS: {difference}", file=sys.stderr)
        print("the copy is not identical (was the service still writing to the source?); run again",
              file=sys.stderr)
        return EXIT_FAILED
    months = ", ".join(report.months_checked) or "none"
    print(f"identical: every table's count, and each closed month's report, pack digest and figures ({months})")
    return EXIT_OK


# -- parser ---------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="didban", description="Didban (دیدبان): availability and SLAs.")
    parser.add_argument("--version", action="version", version=f"didban {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="probe 24/7 (production)")
    run.add_argument("--config", default="config.yaml")
    run.add_argument("--db", help="the store: a SQLite file or sqlite:PATH or postgresql://… "
                     "(default: DIDBAN_STORE_URL, else the config's store)")
    run.add_argument("--location", help="this node's location id (default: the first configured)")
    run.add_argument("--keepalive", action="store_true", help="reuse HTTP connections between checks")
    run.add_argument("--secrets-file", help="dotenv-style file with DIDBAN_* secrets")
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.add_argument("--live", type=float, metavar="SECONDS", help="print live state every SECONDS")
    run.set_defaults(handler=cmd_run)

    server = commands.add_parser("server", help="the center: takes agents' results, stores, settles, serves")
    server.add_argument("--config", default="config.yaml")
    server.add_argument("--db", help="the store: postgresql://… for several centers, or a SQLite file "
                        "(default: DIDBAN_STORE_URL, else the config's store)")
    server.add_argument("--location", help="probe from here too, as this location (default: probe nothing)")
    server.add_argument("--keepalive", action="store_true", help="reuse HTTP connections between checks")
    server.add_argument("--secrets-file", help="dotenv-style file with DIDBAN_* secrets")
    server.add_argument("--duration", type=float, help="stop after this many seconds")
    server.set_defaults(handler=cmd_server)

    agent = commands.add_parser("agent", help="one probe location: probes and ships its results to the center")
    agent.add_argument("--config", default="config.yaml")
    agent.add_argument("--location", required=True, help="this agent's location id (from the config)")
    agent.add_argument("--center", action="append", required=True, metavar="URL",
                       help="the center's URL; repeat it (or separate with commas) to fail over between centers")
    agent.add_argument("--token-file", help="a file holding the agent token (else DIDBAN_AGENT_TOKEN)")
    agent.add_argument("--secrets-file", help="dotenv-style file with DIDBAN_AGENT_TOKEN")
    agent.add_argument("--buffer", help="the durable buffer file (default: didban-agent-LOCATION.buffer here)")
    agent.add_argument("--listen", metavar="HOST:PORT", help="serve /healthz, /readyz and /metrics there")
    agent.add_argument("--keepalive", action="store_true", help="reuse HTTP connections between checks")
    agent.add_argument("--duration", type=float, help="stop after this many seconds")
    agent.set_defaults(handler=cmd_agent)

    demo = commands.add_parser("demo", help="simulated e-services on 127.0.0.1, monitored for real")
    demo.add_argument("--config", default=str(SEED_CONFIG),
                      help="the seed agencies' config shipped with Didban (default), or your own")
    demo.add_argument("--db", default="didban-demo.sqlite")
    demo.add_argument("--interval", type=float, default=5.0, help="check interval in seconds")
    demo.add_argument("--duration", type=float, help="stop after this many seconds (default: Ctrl-C)")
    demo.add_argument("--web-port", type=int, default=8080, help="status page port (0: any free port)")
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

    init = commands.add_parser("init", help="write a starter config.yaml, every section commented")
    init.add_argument("dir", nargs="?", default=".")
    init.add_argument("--force", action="store_true", help="replace an existing config.yaml")
    init.set_defaults(handler=cmd_init)

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

    sla = commands.add_parser("sla", help="SLA settlement: month figures, close, credits, exports, replay")
    sla_commands = sla.add_subparsers(dest="sla_command", required=True)

    def with_store(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--config", default="config.yaml")
        parser.add_argument("--db", help="the store: a SQLite file or sqlite:PATH or postgresql://… "
                            "(default: DIDBAN_STORE_URL, else the config's store)")
        parser.add_argument("--secrets-file", help="dotenv-style file with DIDBAN_* secrets (the store password)")
        return parser

    month = with_store(sla_commands.add_parser("month", help="a Jalali month's figures per agency and service"))
    month.add_argument("month", help="Jalali YYYY-MM, e.g. 1403-07")
    month.add_argument("--json", action="store_true")
    month.set_defaults(handler=cmd_sla_month)

    close = with_store(sla_commands.add_parser("close", help="close a month: report and credits (idempotent)"))
    close.add_argument("month")
    close.add_argument("--accept-insufficient-evidence", action="store_true",
                       help="close a month whose coverage is below the agreement's minimum; recorded on the close")
    close.set_defaults(handler=cmd_sla_close)

    credits = with_store(sla_commands.add_parser("credits", help="the credits ledger"))
    credits.add_argument("--month")
    credits.add_argument("--service")
    credits.add_argument("--json", action="store_true")
    credits.set_defaults(handler=cmd_sla_credits)

    export = with_store(sla_commands.add_parser("export", help="the monthly compliance export"))
    export.add_argument("--month", required=True)
    export.add_argument("--format", required=True,
                        help="pdf, xlsx, csv, json, pack, several comma-separated (one snapshot for all), or all")
    export.add_argument("--out", required=True, help="folder to write into")
    export.set_defaults(handler=cmd_sla_export)

    replay = sla_commands.add_parser("replay", help="recompute a month from an evidence pack alone")
    replay.add_argument("pack", help="a pack folder, .zip or .tar.gz")
    replay.add_argument("--month", required=True)
    replay.add_argument("--no-verify", action="store_true",
                        help="compute a hand-made pack without a manifest; the output says \"verified\": false")
    replay.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_PACK_BYTES,
                        help="refuse a pack larger than this (default 1 GiB)")
    replay.set_defaults(handler=cmd_sla_replay)

    # The store options are the actions' own, so they may come before or after the action's name.
    maintenance = commands.add_parser("maintenance", help="planned maintenance windows")
    maintenance_actions = maintenance.add_subparsers(dest="action", required=True)
    when = "Jalali (1405/09/20 10:00) or ISO 8601; without an offset, Tehran time"
    add = with_store(maintenance_actions.add_parser("add", help="announce a window (announced now, by the server's "
                                                                "clock)"))
    add.add_argument("--services", required=True, help="comma-separated service ids, or *")
    add.add_argument("--start", required=True, help=when)
    add.add_argument("--end", required=True, help=when)
    add.add_argument("--title", default="")
    cancel = with_store(maintenance_actions.add_parser("cancel"))
    cancel.add_argument("id")
    with_store(maintenance_actions.add_parser("list"))
    maintenance.set_defaults(handler=cmd_maintenance)

    exclusion = commands.add_parser("exclusion", help="infrastructure exclusions (telecom clause)")
    exclusion_actions = exclusion.add_subparsers(dest="action", required=True)
    add_ex = with_store(exclusion_actions.add_parser("add"))
    add_ex.add_argument("--services", required=True)
    add_ex.add_argument("--start", required=True, help=when)
    add_ex.add_argument("--end", required=True, help=when)
    add_ex.add_argument("--reason", required=True)
    add_ex.add_argument("--evidence", default="")
    add_ex.add_argument("--approved-by", default="", help="who at the agency approved it")
    with_store(exclusion_actions.add_parser("list"))
    exclusion.set_defaults(handler=cmd_exclusion)

    notify = commands.add_parser("notify", help="notices")
    notify_actions = notify.add_subparsers(dest="action", required=True)
    test = with_store(notify_actions.add_parser("test", help="send a test notice through a channel now"))
    test.add_argument("--channel", required=True)
    test.add_argument("--to", required=True)
    test.add_argument("--lang", choices=["fa", "en"], default="fa")
    test.add_argument("--timeout", type=float, default=30)
    test.set_defaults(handler=cmd_notify_test)

    outbox = with_store(commands.add_parser("outbox", help="notices pending or failed, with reasons"))
    outbox.add_argument("--all", action="store_true", help="include sent notices")
    outbox.add_argument("--json", action="store_true")
    outbox.set_defaults(handler=cmd_outbox)

    ack = with_store(commands.add_parser("ack", help="acknowledge an outage: stops its escalation"))
    ack.add_argument("outage", help="outage number or tracking code")
    ack.add_argument("--by", default="operator")
    ack.set_defaults(handler=cmd_ack)

    subscribe = with_store(commands.add_parser("subscribe", help="subscribe an address to a service's notices"))
    subscribe.add_argument("service")
    target = subscribe.add_mutually_exclusive_group(required=True)
    target.add_argument("--email")
    target.add_argument("--sms")
    subscribe.add_argument("--lang", choices=["fa", "en"], default="fa")
    subscribe.add_argument("--code", help="the confirmation code received")
    subscribe.set_defaults(handler=cmd_subscribe)

    influx = commands.add_parser("influx", help="the InfluxDB feed")
    influx_actions = influx.add_subparsers(dest="action", required=True)
    backfill = with_store(influx_actions.add_parser("backfill", help="rewrite history since a date (idempotent)"))
    backfill.add_argument("--since", required=True, help="ISO date or time; a bare date is in Tehran")
    backfill.set_defaults(handler=cmd_influx_backfill)

    dashboards = commands.add_parser("dashboards", help="Grafana dashboards as code")
    dashboards_actions = dashboards.add_subparsers(dest="action", required=True)
    export_dashboards = dashboards_actions.add_parser("export", help="write Grafana file provisioning")
    export_dashboards.add_argument("dir")
    export_dashboards.add_argument("--config", default="config.yaml")
    export_dashboards.add_argument("--influx-url", default="http://influxdb:8086")
    export_dashboards.add_argument("--lang", choices=["fa", "en"], default="fa")
    export_dashboards.set_defaults(handler=cmd_dashboards_export)
    push_dashboards = dashboards_actions.add_parser("push", help="provision Grafana over its HTTP API (idempotent)")
    push_dashboards.add_argument("--grafana-url", required=True)
    push_dashboards.add_argument("--influx-url", default="http://influxdb:8086", help="as Grafana reaches it")
    push_dashboards.add_argument("--config", default="config.yaml")
    push_dashboards.add_argument("--lang", choices=["fa", "en"], default="fa")
    push_dashboards.add_argument("--force", action="store_true", help="overwrite edits made in Grafana")
    push_dashboards.add_argument("--secrets-file")
    push_dashboards.set_defaults(handler=cmd_dashboards_push)

    token = commands.add_parser("token", help="admin API tokens")
    token_actions = token.add_subparsers(dest="action", required=True)
    create = with_store(token_actions.add_parser("create", help="create a token (printed once, stored hashed)"))
    create.add_argument("--role", required=True, choices=["admin", "operator", "viewer", "heartbeat", "agent"],
                        help="heartbeat: the token a heartbeat service reports in with (--name is the service); "
                             "agent: the token a probe agent ships its results with (--name is its location)")
    create.add_argument("--name", default="token")
    create.add_argument("--expires-days", type=float, help="the token stops working after this many days")
    create.set_defaults(handler=cmd_token)
    listing = with_store(token_actions.add_parser("list", help="tokens, their roles and states (never values)"))
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_token)
    revoke = with_store(token_actions.add_parser("revoke", help="revoke a token at once"))
    revoke.add_argument("id", type=int)
    revoke.set_defaults(handler=cmd_token)

    store = commands.add_parser("store", help="the system of record: schema upgrades, moving to PostgreSQL")
    store_actions = store.add_subparsers(dest="action", required=True)
    upgrade = with_store(store_actions.add_parser("upgrade", help="bring the store's schema up to this version"))
    upgrade.set_defaults(handler=cmd_store_upgrade)
    move = store_actions.add_parser("migrate", help="copy a whole store to another (resumable), then compare them")
    move.add_argument("--config", default="config.yaml", help="its agreements settle the closed months again")
    move.add_argument("--from", dest="source", required=True, help="sqlite:PATH (or any store URL)")
    move.add_argument("--to", dest="target", required=True, help="postgresql://user@host:port/db (or any store URL)")
    move.add_argument("--secrets-file", help="dotenv-style file with DIDBAN_* secrets (the store password)")
    move.set_defaults(handler=cmd_store_migrate)
    for leaf in _leaves(parser):
        leaf.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    return parser


def _use_uvloop() -> None:
    """uvloop when installed: the same event loop the bench baseline uses, and ~2x cheaper per check."""
    try:
        import uvloop
    except ImportError:
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("didban")
    except PackageNotFoundError:
        return "unknown (not installed)"


# Options every command that has them accepts before or after its name: `didban --config C sla month M`
# is `didban sla month M --config C`.
_GLOBAL_FLAGS = ("-v", "--verbose", "--json")
_GLOBAL_VALUED = ("--config", "--db", "--secrets-file")


def hoist_global_options(argv: Sequence[str]) -> list[str]:
    """Move the global options to the end, where the command's own parser takes them, wherever they were
    given: before the command (``didban --db D status``) or between its words (``didban maintenance --db D add``)."""
    rest: list[str] = []
    hoisted: list[str] = []
    words = list(argv)
    while words:
        word = words.pop(0)
        if word == "--":  # everything after it is the command's own
            rest += [word, *words]
            break
        if word in _GLOBAL_FLAGS or (word.split("=", 1)[0] in _GLOBAL_VALUED and "=" in word):
            hoisted.append(word)
        elif word in _GLOBAL_VALUED and words:
            hoisted += [word, words.pop(0)]
        else:
            rest.append(word)
    return rest + hoisted


def _leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    children = [choice for action in parser._actions if isinstance(action, argparse._SubParsersAction)
                for choice in action.choices.values()]
    return [leaf for child in children for leaf in _leaves(child)] if children else [parser]


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(hoist_global_options(sys.argv[1:] if argv is None else argv))
    _use_uvloop()
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("weasyprint", "fontTools", "PIL"):  # an export prints its result, not the renderer's chatter
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from store.contract import StoreUnavailable
    from store.schema import SchemaBehind, SchemaTooNew

    try:
        result: int = args.handler(args)
        sys.stdout.flush()
    except BrokenPipeError:  # `didban … | head`: the reader left; that is not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except (StoreUnavailable, SchemaTooNew, SchemaBehind) as exc:  # one line with the cause, never a traceback
        print(f"didban: the store cannot be used: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return result


if __name__ == "__main__":
    sys.exit(main())
