"""``cdx idp ...``: the development identity provider (refused in production).

- ``cdx idp init [--register]`` creates its key in ``DATA/idp`` (and anchors it as a static
  key, for offline use);
- ``cdx idp serve`` runs it as an OpenID provider (discovery, JWKS, login page, token
  endpoint) and, with ``--register``, anchors it by its URL, so the portal logs users in
  through it exactly as through a national identity provider;
- ``cdx idp token`` prints a token for a test citizen or inspector (static key).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from cdx import clidefaults, errors
from cdx.cliutil import add_data_option, add_timeout_option, parse_duration, say
from cdx.clock import utcnow
from cdx.confclient import ConfClient
from cdx.files import read_file, write_atomically
from cdx.globalconf import Anchor, IdentityProviderInfo, verify_global_conf
from cdx.paths import InstancePaths
from consent.idp import DEFAULT_TTL, idp_dir, init_dev_idp, load_dev_idp
from consent.idp_server import PORTAL_CLIENT_ID, portal_client, serve_dev_provider
from registry.client import RegistryAdminClient


def _instance_name(args: argparse.Namespace) -> str:
    if args.instance:
        return str(args.instance)
    data = _data(args)
    for candidate in (data / "registry" / "anchor.json", data / "consent" / "anchor.json"):
        if candidate.exists():
            return Anchor.from_json(read_file(candidate, "anchor file")).instance
    raise errors.InvalidArgumentError("give --instance (no anchor file found in the data dir)")


def register_provider(args: argparse.Namespace, registration: IdentityProviderInfo) -> None:
    """Add (or replace) ``registration`` among the registry's identity providers.

    Raises:
        FailedPreconditionError: the instance is in production.
    """
    paths = InstancePaths(_data(args))
    address = clidefaults.registry_address(args)
    with (
        clidefaults.reaching("registry", address),
        RegistryAdminClient(
            address, paths.admin_identity(args.admin), timeout=args.timeout
        ) as client,
    ):
        raw = client.get_global_conf()
        keep: list[IdentityProviderInfo] = []
        if raw is not None:
            conf = verify_global_conf(
                raw, Anchor.from_json(read_file(paths.anchor, "anchor file")), utcnow()
            )
            if conf.production:
                raise errors.FailedPreconditionError(
                    "the instance is in production: development identity providers are refused"
                )
            keep = [p for p in conf.identity_providers if p.issuer != registration.issuer]
        client.set_trust_anchors(identity_providers=[*keep, registration])


def cmd_init(args: argparse.Namespace) -> int:
    idp = init_dev_idp(_data(args), _instance_name(args), clidefaults.passphrase(args))
    public = idp_dir(_data(args)) / "idp.pub.pem"
    say(f"development identity provider {idp.issuer} (key id {idp.key_id[:16]}) in {public.parent}")
    if args.register:
        register_provider(args, idp.registration())
        say("registered in the registry's trust anchors (development: refused in production)")
    else:
        say("serve it as an OpenID provider and anchor it by its URL with:")
        say("  cdx idp serve --register --portal-url http://127.0.0.1:8080")
        say("or anchor its static key (offline tests only) with:")
        say(f"  cdx registry anchors set --idp {idp.issuer} {public} --idp-development")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    data = _data(args)
    passphrase = clidefaults.passphrase(args)
    idp = load_dev_idp(data, passphrase)
    paths = InstancePaths(data)
    identity = paths.admin_identity(args.admin)
    conf = ConfClient(
        clidefaults.registry_address(args),
        identity,
        paths.load_anchor(),
        idp_dir(data) / "globalconf.bin",
    )
    conf.refresh()
    conf.start()
    try:
        provider, running = serve_dev_provider(
            idp, conf.current, [portal_client(url) for url in args.portal_url], listen=args.listen
        )
        try:
            write_atomically(idp_dir(data) / "issuer", (provider.issuer + "\n").encode())
            if args.register:
                register_provider(args, provider.registration())
            say(
                f"development identity provider (OpenID) at {provider.issuer}  (Ctrl-C to stop)",
            )
            try:
                running.wait()
            except KeyboardInterrupt:
                pass
        finally:
            running.stop()
    finally:
        conf.stop()
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    idp = load_dev_idp(_data(args), clidefaults.passphrase(args))
    conf = clidefaults.known_conf(args)
    if conf is None:
        raise errors.FailedPreconditionError(
            "no global configuration found to check the instance is not in production "
            "(start the registry or a service first)"
        )
    if args.inspector:
        subject, role = args.inspector, "inspector"
    else:
        subject, role = args.citizen, "citizen"
    # Served as an OpenID provider (cdx up, cdx idp serve): an ID token of that issuer.
    served = clidefaults.first_line(idp_dir(_data(args)) / "issuer") or None
    anchored = served is not None and any(p.issuer == served for p in conf.identity_providers)
    token = idp.issue(
        subject,
        conf=conf,
        now=utcnow(),
        role=role,  # type: ignore[arg-type]
        name=args.name or "",
        ttl=parse_duration(args.ttl) if args.ttl else DEFAULT_TTL,
        issuer=served if anchored else None,
        audience=PORTAL_CLIENT_ID if anchored else None,
    )
    if not anchored and not idp.is_registered(conf):
        say(
            "warning: this identity provider's static key is not registered in global "
            "configuration; services will refuse the token (run `cdx idp init --register`)",
            file=sys.stderr,
        )
    say(token)
    return 0


def _data(args: argparse.Namespace) -> Path:
    return clidefaults.data_paths(args).data_dir


def _common(p: argparse.ArgumentParser) -> None:
    add_data_option(p)
    p.add_argument("--passphrase-file", metavar="FILE", help="default: DATA/passphrase")
    add_timeout_option(p)
    p.add_argument("--registry", metavar="HOST:PORT", help="registry address")


def register(subparsers: Any) -> None:
    """Add ``cdx idp ...`` to the ``cdx`` command."""
    idp = subparsers.add_parser(
        "idp",
        help="development identity provider (refused in production)",
        description="Development identity provider: an OpenID provider with test citizens and "
        "inspectors for a pilot on one box. Production instances anchor the national OpenID "
        "provider instead (cdx registry anchors set --oidc URL ...).",
    )
    idp.set_defaults(handler=lambda _a, _p=idp: _p.print_help() or 1)
    sub = idp.add_subparsers(dest="idp_command", metavar="COMMAND")

    p = sub.add_parser("init", help="create the IdP key in DATA/idp (and register its key)")
    _common(p)
    p.add_argument("--instance", help="instance id (default: from the anchor)")
    p.add_argument(
        "--register", action="store_true", help="anchor its static key (offline tests) now"
    )
    p.add_argument("--admin", default="bootstrap", help="admin in DATA/registry/admin")
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("serve", help="run it as an OpenID provider until interrupted")
    _common(p)
    p.add_argument(
        "--listen", default="127.0.0.1:8090", help="loopback HOST:PORT (default: %(default)s)"
    )
    p.add_argument(
        "--portal-url",
        action="append",
        required=True,
        metavar="URL",
        help="the portal's public URL (its redirect URI is URL/auth/callback; repeatable)",
    )
    p.add_argument(
        "--register", action="store_true", help="anchor it by its URL in the registry now"
    )
    p.add_argument("--admin", default="bootstrap", help="admin in DATA/registry/admin")
    p.set_defaults(handler=cmd_serve)

    p = sub.add_parser("token", help="print a token for a citizen (or an inspector)")
    _common(p)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--citizen", metavar="ID", help="national id")
    who.add_argument("--inspector", metavar="NAME", help="inspector name")
    p.add_argument("--name", help="display name claim")
    p.add_argument("--ttl", help="lifetime, e.g. 30m (default: 30m, at most 24h)")
    p.set_defaults(handler=cmd_token)
