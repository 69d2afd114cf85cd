"""``cdx portal serve``: run the citizen portal and inspector console of an instance."""

from __future__ import annotations

import argparse
from typing import Any

from cdx.cliutil import add_data_option, group, say

DEFAULT_LISTEN = "127.0.0.1:8080"


def cmd_serve(args: argparse.Namespace) -> int:
    from cdx import health
    from portal.instance import serve_instance

    operations = health.start_operations(args, component="portal")
    try:
        instance = serve_instance(
            args.data,
            listen=args.listen,
            insecure_cookies=args.insecure_cookies,
            registry=args.registry,
            tls_cert=args.tls_cert,
            tls_key=args.tls_key,
            log_level="info" if args.access_log else "warning",
            default_language=args.language,
            public_url=args.public_url or "",
            db_url=args.db_url,
            db_schema=args.db_schema,
            oidc_clients=args.oidc_clients,
            notify=args.notify,
        )
    except BaseException:
        operations.stop()
        raise
    operations.add_checks(health.conf_check("portal globalconf", instance.conf.current))
    if operations.endpoint is not None:  # the audit log and consent service, probed
        from portal.health import dependency_checks

        checks, stop_probing = dependency_checks(args.data, instance)
        operations.add_checks(*checks)
        operations.on_stop(stop_probing)
    for remove in health.observe_conf({"server": "portal"}, instance.conf.latest):
        operations.on_stop(remove)
    say(f"CDX portal listening on {instance.url}  (Ctrl-C to stop)")
    if args.insecure_cookies:
        say(
            "warning: --insecure-cookies: session cookies also travel over plain HTTP; "
            "use only on loopback"
        )
    try:
        instance.portal.wait()
    except KeyboardInterrupt:
        pass
    finally:
        instance.stop()
        operations.stop()
    return 0


def register(subparsers: Any) -> None:
    """Add ``cdx portal ...`` to the ``cdx`` command."""
    sub = group(
        subparsers,
        "portal",
        "the citizen portal and inspector console (web)",
        description="Run the web portal: citizens see every use of their data and manage "
        "consents; inspectors search and verify the audit log.",
    )
    p = sub.add_parser(
        "serve",
        help="run the portal until interrupted",
        description="Run the portal over the instance in DATA. It reaches the registry, the "
        "consent service and the audit log with mutual TLS as urn:cdx:service:portal (the "
        "certificate is requested from the registry on first start if the bootstrap admin "
        "certificate is in DATA). Session cookies are Secure (HTTPS only) unless "
        "--insecure-cookies is given for a loopback demo over plain HTTP.",
    )
    p.set_defaults(handler=cmd_serve)
    add_data_option(p)
    p.add_argument(
        "--listen",
        default=DEFAULT_LISTEN,
        help="HOST:PORT to listen on (default: %(default)s; port 0 picks one)",
    )
    p.add_argument(
        "--registry",
        metavar="HOST:PORT",
        help="registry address (default: the one a running registry wrote to DATA)",
    )
    p.add_argument(
        "--insecure-cookies",
        action="store_true",
        help="development only: session cookies without the Secure flag, for "
        "http://127.0.0.1 (off by default)",
    )
    p.add_argument("--tls-cert", metavar="FILE", help="serve HTTPS with this certificate (PEM)")
    p.add_argument(
        "--tls-key",
        metavar="FILE",
        help="its key (PEM, unencrypted or encrypted with the instance passphrase)",
    )
    p.add_argument(
        "--language",
        choices=("vi", "en"),
        default="vi",
        help="language when the browser states no preference (default: %(default)s)",
    )
    p.add_argument(
        "--public-url",
        metavar="URL",
        help="the portal's address as browsers reach it, e.g. https://portal.example.gov.vn "
        "(the OpenID redirect URI is URL/auth/callback; default: the listen address)",
    )
    p.add_argument(
        "--db-url",
        help="sessions database (default: SQLite DATA/portal/portal.db; PostgreSQL in production)",
    )
    p.add_argument("--db-schema", help="PostgreSQL schema")
    p.add_argument(
        "--oidc-clients",
        metavar="FILE",
        help="JSON {issuer: {client_secret, scope}} for confidential clients "
        "(default: DATA/portal/oidc-clients.json if present; mode 0600)",
    )
    p.add_argument(
        "--notify",
        metavar="HOST:PORT",
        help="the notification service (default: the address it wrote in DATA/notify/address)",
    )
    p.add_argument(
        "--access-log",
        action="store_true",
        help="log every request (method, path, status; never a national id)",
    )
