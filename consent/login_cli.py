"""``cdx consent login``: a citizen logs the CLI in with the device authorization grant
(RFC 8628) at the anchored identity provider, and the ID token goes to a file (mode 0600) that
the other citizen commands read with ``--token-file``. A token obtained elsewhere can still be
pasted (``--token-file -``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from cdx import clidefaults, errors
from cdx.cliutil import say
from cdx.clock import utcnow
from cdx.devicelogin import DeviceLogin, cli_provider
from cdx.files import write_atomically
from cdx.jwks import TokenVerifier

DEFAULT_TOKEN_FILE = "cdx-token"  # noqa: S105 (a file name, not a secret)


def cmd_login(args: argparse.Namespace) -> int:
    conf = clidefaults.known_conf(args)
    if conf is None:
        raise errors.FailedPreconditionError(
            "no global configuration found to learn the identity provider (start the registry "
            "or a service first)"
        )
    provider = cli_provider(conf, args.issuer)
    login = DeviceLogin(conf, provider, TokenVerifier(), scope=args.scope or "")
    authorization = login.start()
    say(f"To log in, open {authorization.verification_uri}", file=sys.stderr)
    say(f"and enter the code {authorization.user_code}", file=sys.stderr)
    if authorization.verification_uri_complete:
        say(f"(or open {authorization.verification_uri_complete})", file=sys.stderr)
    token, claims = login.wait(authorization, now=utcnow)
    if claims.role != "citizen":
        raise errors.PermissionDeniedError("only citizens manage consents from the CLI")
    out = Path(args.out)
    write_atomically(out, (token + "\n").encode(), mode=0o600)
    say(
        f"logged in; the token is in {out} (use --token-file {out}); it expires "
        f"{claims.expires_at:%Y-%m-%d %H:%M} UTC"
    )
    return 0


def add_login_command(sub: Any, common: Any) -> None:
    """Add ``login`` to ``cdx consent``."""
    p = sub.add_parser(
        "login",
        help="(citizen) log in with the identity provider (device code) and save the token",
        description="Shows a code and an address: confirm there (e.g. on your phone) and the "
        "ID token is saved to --out (mode 0600) for --token-file.",
    )
    common(p)
    p.add_argument(
        "--out",
        default=os.environ.get("CDX_TOKEN_FILE", DEFAULT_TOKEN_FILE),
        metavar="FILE",
        help="where to save the token (default: $CDX_TOKEN_FILE or ./%(default)s)",
    )
    p.add_argument("--issuer", help="the identity provider (default: the anchored one)")
    p.add_argument("--scope", help="extra scopes, e.g. the one that releases the national id")
    p.add_argument("--registry", metavar="HOST:PORT", help="registry address")
    p.set_defaults(handler=cmd_login)
