"""``cdx notify ...``: set up and run the notification service; operators' dead letters.

``init`` creates the keys and settings and has the registry issue the service certificate;
``serve`` runs it; ``dead-letters`` lists messages that could not be delivered (never their
address or text), ``requeue`` gives them a fresh set of attempts, ``webhook-secret`` prints the
secret the national app verifies deliveries with.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cdx import clidefaults, db, keyfiles
from cdx.cliutil import (
    add_data_option,
    add_timeout_option,
    group,
    print_json,
    print_table,
    say,
    wait_for_stop_signal,
    when,
)
from cdx.files import read_file
from notify import store
from notify.instance import DEFAULT_LISTEN, NotifyPaths, init_notify, open_notify
from notify.webhook import secret_text


def _data(args: argparse.Namespace) -> Path:
    return clidefaults.data_paths(args).data_dir


def _engine(paths: NotifyPaths) -> sa.Engine:
    settings = paths.read_settings()
    url = settings.get("db_url") or db.sqlite_url(paths.database)
    return db.create_engine(url, schema=settings.get("db_schema"))


def cmd_init(args: argparse.Namespace) -> int:
    from registry.client import RegistryAdminClient

    data = _data(args)
    passphrase = clidefaults.passphrase(args)
    anchor_file = Path(args.anchor) if args.anchor else clidefaults.data_paths(args).anchor
    anchor_json = read_file(anchor_file, "anchor file")
    registry = clidefaults.registry_address(args)
    smtp = None
    if args.smtp_host:
        smtp = {
            "host": args.smtp_host,
            "port": args.smtp_port,
            "sender": args.smtp_sender,
            "starttls": args.smtp_starttls,
            "username": args.smtp_username or "",
            "password_file": args.smtp_password_file or "",
        }

    def init(registrar: RegistryAdminClient | None) -> NotifyPaths:
        return init_notify(
            data,
            passphrase,
            registrar=registrar,
            registry_address=registry,
            anchor_json=anchor_json,
            portal_url=args.portal_url,
            listen=args.listen,
            smtp=smtp,
            webhook_url=args.webhook_url or "",
            db_url=args.db_url,
            db_schema=args.db_schema,
            dns_names=args.dns_name or ["localhost"],
            ip_addresses=args.ip or ["127.0.0.1"],
        )

    if args.offline:
        paths = init(None)
        say(f"notification service keys created in {paths.dir}; now have a registry admin run:")
        say(
            f"  cdx registry cert issue --kind service --name notify --csr {paths.tls_csr} "
            f"--out {paths.tls_cert.parent}"
        )
        say(f"then place the certificate at {paths.tls_cert} and the CA at {paths.ca_pem}")
        return 0
    instance = clidefaults.data_paths(args)
    identity = keyfiles.load_identity(
        instance.admin_cert(args.admin),
        instance.admin_key(args.admin),
        clidefaults.ca_file(args),
        passphrase,
    )
    with (
        clidefaults.reaching("registry", registry),
        RegistryAdminClient(registry, identity, timeout=args.timeout) as client,
    ):
        paths = init(client)
    say(f"notification service created in {paths.dir}; start it with: cdx notify serve")
    say("give the portal its address (cdx portal serve --notify HOST:PORT)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from cdx import health

    operations = health.start_operations(args, component="notify")
    try:
        instance = open_notify(
            _data(args),
            clidefaults.passphrase(args),
            listen=args.listen,
            registry_address=args.registry,
        )
    except BaseException:
        operations.stop()
        raise
    operations.add_checks(health.conf_check("notify globalconf", instance.conf_client.current))
    say(f"notification service listening on {instance.running.address} (mutual TLS)")
    wait_for_stop_signal()
    instance.stop()
    operations.stop()
    return 0


def cmd_dead_letters(args: argparse.Namespace) -> int:
    engine = _engine(NotifyPaths(_data(args)))
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(store.outbox)
                .where(store.outbox.c.state == store.DEAD, store.outbox.c.id > args.after)
                .order_by(store.outbox.c.id)
                .limit(args.limit)
            ).all()
            dead = [store.outbox_row(r) for r in rows]
            totals = store.counts(conn)
    finally:
        engine.dispose()
    if args.json:
        print_json(
            {
                "counts": totals,
                "dead_letters": [
                    {
                        "id": r.id,
                        "channel": r.channel,
                        "entry_index": r.entry_index,
                        "attempts": r.attempts,
                        "error": r.last_error,
                        "queued_at_ms": r.created_at_ms,
                    }
                    for r in dead
                ],
            }
        )
        return 0
    say(f"{totals['pending']} pending, {totals['sent']} sent, {totals['dead']} dead letters")
    print_table(
        ("id", "channel", "entry", "attempts", "error", "queued"),
        [
            (
                str(r.id),
                r.channel,
                str(r.entry_index),
                str(r.attempts),
                r.last_error,
                when(r.created_at_ms),
            )
            for r in dead
        ],
    )
    return 0


def cmd_requeue(args: argparse.Namespace) -> int:
    engine = _engine(NotifyPaths(_data(args)))
    try:
        query = store.outbox.update().where(store.outbox.c.state == store.DEAD)
        if not args.all:
            query = query.where(store.outbox.c.id.in_(args.ids))
        with db.writer(engine).begin() as conn:
            n = conn.execute(query.values(state=store.PENDING, attempts=0, next_attempt_ms=0))
    finally:
        engine.dispose()
    say(f"{n.rowcount} dead letters queued again (a running service sends them within a second)")
    return 0


def cmd_webhook_secret(args: argparse.Namespace) -> int:
    paths = NotifyPaths(_data(args))
    say(secret_text(paths.webhook_secret(clidefaults.passphrase(args))))
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    add_data_option(p)
    p.add_argument("--passphrase-file", metavar="FILE", help="default: DATA/passphrase")
    add_timeout_option(p)


def register(subparsers: Any) -> None:
    sub = group(
        subparsers,
        "notify",
        "notification service: tell citizens about the use of their data",
        description="Citizens choose in the portal what to be told (every access, consent-based "
        "accesses, denials, consent requests, unsealed entries, representative actions) and how "
        "(e-mail, the national app's webhook); this service follows the audit log and sends.",
    )
    p = sub.add_parser("init", help="create the service's keys and settings and register it")
    _common(p)
    p.add_argument("--portal-url", required=True, help="the portal's address, for links")
    p.add_argument("--listen", default=DEFAULT_LISTEN, help="mutual-TLS address (%(default)s)")
    p.add_argument("--smtp-host", help="SMTP relay host (e-mail channel)")
    p.add_argument("--smtp-port", type=int, default=587, help="SMTP port (%(default)s)")
    p.add_argument("--smtp-sender", default="no-reply@cdx.example", help="From: address")
    p.add_argument("--smtp-starttls", action="store_true", help="STARTTLS before sending")
    p.add_argument("--smtp-username", help="SMTP login")
    p.add_argument("--smtp-password-file", metavar="FILE", help="file holding the SMTP password")
    p.add_argument("--webhook-url", help="the national app's webhook (https)")
    p.add_argument("--db-url", help="database URL (default: SQLite DATA/notify/notify.db)")
    p.add_argument("--db-schema", help="PostgreSQL schema")
    p.add_argument("--dns-name", action="append", help="DNS name in the certificate (repeatable)")
    p.add_argument("--ip", action="append", help="IP address in the certificate (repeatable)")
    p.add_argument("--anchor", metavar="FILE", help="anchor file (default: DATA/registry/...)")
    p.add_argument("--offline", action="store_true", help="only write a CSR; print the steps")
    p.add_argument("--registry", metavar="HOST:PORT", help="registry address")
    p.add_argument("--admin", default="bootstrap", help="admin in DATA/registry/admin")
    p.add_argument("--ca", metavar="FILE", help="instance CA (default: DATA/registry/ca.pem)")
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("serve", help="run the notification service until interrupted")
    _common(p)
    p.add_argument("--listen", help="override the mutual-TLS address")
    p.add_argument("--registry", metavar="HOST:PORT", help="override the registry address")
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("dead-letters", help="messages that could not be delivered")
    _common(p)
    p.add_argument("--after", type=int, default=0, help="only ids above this (paging)")
    p.add_argument("--limit", type=int, default=100, help="at most this many (%(default)s)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=cmd_dead_letters)

    p = sub.add_parser("requeue", help="give dead letters a fresh set of attempts")
    _common(p)
    p.add_argument("ids", nargs="*", type=int, help="dead letter ids")
    p.add_argument("--all", action="store_true", help="every dead letter")
    p.set_defaults(handler=cmd_requeue)

    p = sub.add_parser("webhook-secret", help="the secret the national app verifies with")
    _common(p)
    p.set_defaults(handler=cmd_webhook_secret)
