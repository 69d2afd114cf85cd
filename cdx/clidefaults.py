"""Where a ``cdx`` command finds an instance's services, credentials and configuration.

Every default derives from the data directory's layout (``cdx.paths``), in one order for every
command: the flag, then the environment variable, then the address file a running service
wrote in DATA, then the single-box instance description (``DATA/instance.toml``, written by
``cdx up`` and ``cdx demo``), and last the address the service listens on by default. So
``cdx audit …`` and ``cdx consent …`` work on a single-box data directory without flags, and a
missing address is one clear error naming the flag and the variable that would give it.

Every call that reaches a peer runs inside ``reaching(what, address)``, so that an unreachable
or silent peer is named in the error an operator reads.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path

from cdx import errors, keyfiles, pki
from cdx.clock import utcnow
from cdx.confclient import fetch_global_conf
from cdx.files import read_file
from cdx.globalconf import Anchor, VerifiedGlobalConf, verify_global_conf
from cdx.paths import InstancePaths
from cdx.rpc import TlsIdentity

__all__ = [
    "DEFAULT_REGISTRY_ADDRESS",
    "INSTANCE_FORMAT",
    "address",
    "admin_conf",
    "anchor",
    "ca_file",
    "client_identity",
    "data_paths",
    "fetch_conf",
    "first_line",
    "identity",
    "inspector_identity",
    "instance_addresses",
    "known_conf",
    "passphrase",
    "reaching",
    "registry_address",
    "stored_conf",
    "tiles_url",
]

#: Where ``cdx registry serve`` listens unless told otherwise, and so where commands look last.
DEFAULT_REGISTRY_ADDRESS = "127.0.0.1:4400"
#: Format of ``DATA/instance.toml`` (a single-box instance).
INSTANCE_FORMAT = "cdx-instance/v1"


def data_paths(args: argparse.Namespace) -> InstancePaths:
    """The layout of the data directory the command works on (``--data``)."""
    return InstancePaths(Path(args.data))


def passphrase(args: argparse.Namespace) -> bytes:
    """The key-store passphrase: ``--passphrase-file`` if the command has it, else
    ``DATA/passphrase``.

    Raises:
        NotFoundError: the file is missing.
        KeyStoreError: it is empty or accessible by group or others.
    """
    given = getattr(args, "passphrase_file", None)
    if given:
        return keyfiles.read_passphrase(Path(given))
    return data_paths(args).passphrase()


def first_line(path: Path) -> str:
    """The first line of a small file a running service wrote (``""`` when there is none)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        for line in path.read_text().splitlines():
            if line.strip():
                return line.strip()
    return ""


def instance_addresses(data_dir: Path) -> dict[str, str]:
    """The component addresses of a single-box instance (``DATA/instance.toml``): ``registry``,
    ``consent``, ``audit``, ``portal`` and ``audit_tiles`` (a URL); empty when the directory
    holds none.

    Raises:
        MalformedError: the file exists but is not an instance description.
    """
    path = InstancePaths(data_dir).instance_file
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise errors.MalformedError(f"{path} is not a readable instance description") from exc
    if raw.get("format") != INSTANCE_FORMAT:
        raise errors.MalformedError(f"{path} is not a CDX instance description")
    keys = ("registry", "consent", "audit", "portal", "audit_tiles")
    return {k: str(raw[k]) for k in keys if isinstance(raw.get(k), str) and raw[k]}


def address(
    what: str,
    data_dir: Path,
    *,
    flag: str | None,
    flag_name: str,
    env: str,
    address_files: tuple[Path, ...] = (),
    instance_key: str = "",
    default: str = "",
) -> str:
    """Resolve a service address in the one order (module docstring).

    Raises:
        NotFoundError: nothing gives one (the message names the flag and the variable).
        MalformedError: ``DATA/instance.toml`` is broken.
    """
    if flag:
        return flag
    from_env = os.environ.get(env, "").strip()
    if from_env:
        return from_env
    for path in address_files:
        found = first_line(path)
        if found:
            return found
    if instance_key:
        found = instance_addresses(data_dir).get(instance_key, "")
        if found and not found.endswith(":0"):  # port 0: never started, nothing listens there
            return found
    if default:
        return default
    raise errors.NotFoundError(
        f"no {what} address in {data_dir}: give {flag_name} HOST:PORT or set ${env}"
    )


def registry_address(args: argparse.Namespace) -> str:
    """``--registry``, ``$CDX_REGISTRY``, ``DATA/registry/address``, ``DATA/instance.toml``,
    then ``DEFAULT_REGISTRY_ADDRESS``."""
    paths = data_paths(args)
    return address(
        "registry",
        paths.data_dir,
        flag=getattr(args, "registry", None),
        flag_name="--registry",
        env="CDX_REGISTRY",
        address_files=(paths.address_file,),
        instance_key="registry",
        default=DEFAULT_REGISTRY_ADDRESS,
    )


def tiles_url(args: argparse.Namespace, conf: VerifiedGlobalConf | None) -> str:
    """Where the audit log's tiles (c2sp.org/tlog-tiles) are served: ``--tiles``,
    ``$CDX_AUDIT_TILES``, ``DATA/audit/tiles-url`` (written by ``cdx audit serve
    --tiles-listen``), ``DATA/instance.toml`` (``cdx up``), then global configuration;
    ``""`` when none is known or ``--api`` was given (the log's API is used then).

    Raises:
        MalformedError: ``DATA/instance.toml`` is broken.
    """
    if getattr(args, "api", False):
        return ""
    paths = data_paths(args)
    from_conf = conf.audit_tiles_url if conf is not None else ""
    try:
        found = address(
            "audit log tiles",
            paths.data_dir,
            flag=getattr(args, "tiles", None),
            flag_name="--tiles",
            env="CDX_AUDIT_TILES",
            address_files=(paths.audit_dir / "tiles-url",),
            instance_key="audit_tiles",
            default=from_conf,
        )
    except errors.NotFoundError:
        return ""
    return found


@contextlib.contextmanager
def reaching(what: str, peer: str) -> Iterator[None]:
    """Name ``what`` at ``peer`` in an unreachable or timed-out call's error, and say what to do.

    Raises:
        UnavailableError / DeadlineExceededError: re-raised with the peer named.
    """
    try:
        yield
    except (errors.UnavailableError, errors.DeadlineExceededError) as exc:
        raise type(exc)(
            f"the {what} at {peer} did not answer ({exc.message}); is it running, and is "
            "the address right?"
        ) from exc


# --- credentials -----------------------------------------------------------------------------


def ca_file(args: argparse.Namespace, *fallbacks: Path) -> Path:
    """The instance CA: ``--ca``, else the first of ``fallbacks`` and ``DATA/registry/ca.pem``
    that exists.

    Raises:
        NotFoundError: none does.
    """
    given = getattr(args, "ca", None)
    if given:
        return Path(given)
    paths = data_paths(args)
    for candidate in (*fallbacks, paths.ca_pem):
        if candidate.exists():
            return candidate
    raise errors.NotFoundError(f"no CA certificate in {paths.data_dir}: give --ca FILE")


def identity(args: argparse.Namespace, cert: Path, key: Path) -> TlsIdentity:
    """An mTLS identity from ``cert`` and its key (encrypted with the passphrase of
    ``passphrase``), with the CA of ``ca_file``.

    Raises:
        NotFoundError / KeyStoreError: a file is missing or the key cannot be opened.
    """
    return keyfiles.load_identity(cert, key, ca_file(args), passphrase(args))


def inspector_identity(args: argparse.Namespace) -> TlsIdentity:
    """``--cert``/``--key``, else inspector ``--inspector NAME`` of the data directory.

    Raises:
        InvalidArgumentError: only one of ``--cert`` and ``--key``.
        NotFoundError / KeyStoreError: as ``identity``.
    """
    if args.cert or args.key:
        if not (args.cert and args.key):
            raise errors.InvalidArgumentError("give both --cert and --key")
        return identity(args, Path(args.cert), Path(args.key))
    cert, key = data_paths(args).inspector_files(args.inspector)
    if not cert.exists():
        raise errors.NotFoundError(
            f"no inspector certificate {cert}: issue one with `cdx registry cert issue "
            f"--kind inspector --name {args.inspector} --out {cert.parent}` or give --cert/--key"
        )
    return identity(args, cert, key)


def client_identity(args: argparse.Namespace, subsystem: str) -> TlsIdentity | None:
    """The information-system client certificate issued to ``subsystem`` in
    ``DATA/clients/*/`` (a single-box instance has one per agency), or ``None``."""
    clients = data_paths(args).clients_dir
    if not clients.is_dir():
        return None
    wanted = f"urn:cdx:client:{subsystem}"
    for directory in sorted(p for p in clients.iterdir() if p.is_dir()):
        cert = directory / "client.pem"
        try:
            uris = pki.certificate_uris(pki.cert_from_pem(cert.read_bytes()))
        except (OSError, errors.CdxError):
            continue
        if wanted in uris:
            return identity(args, cert, directory / "client.key")
    return None


# --- global configuration --------------------------------------------------------------------


def anchor(args: argparse.Namespace) -> Anchor:
    """The trust root: ``--anchor`` if the command has it, else ``DATA/registry/anchor.json``.

    Raises:
        NotFoundError / MalformedError: missing or not an anchor.
    """
    given = getattr(args, "anchor", None)
    if given:
        return Anchor.from_json(read_file(Path(given), "anchor file"))
    return data_paths(args).load_anchor()


def fetch_conf(args: argparse.Namespace, who: TlsIdentity) -> VerifiedGlobalConf:
    """The current global configuration from the registry, verified against ``anchor``; or a
    stored copy given with ``--globalconf FILE`` (verified the same way).

    Raises:
        UnavailableError / DeadlineExceededError: the registry did not answer (named).
        ConfSignatureError / ConfExpiredError / MalformedError / ...: it does not verify.
    """
    trust = anchor(args)
    stored = getattr(args, "globalconf", None)
    if stored:
        return verify_global_conf(read_file(Path(stored), "global configuration"), trust, utcnow())
    where = registry_address(args)
    with reaching("registry", where):
        return fetch_global_conf(where, who, trust, utcnow(), timeout=args.timeout)


def admin_conf(args: argparse.Namespace) -> VerifiedGlobalConf | None:
    """The registry's current configuration through the data dir's admin identity, or
    ``None`` when there is no admin identity here or the registry does not answer."""
    paths = data_paths(args)
    if not paths.admin_cert().exists():
        return None
    try:
        who = identity(args, paths.admin_cert(), paths.admin_key())
        return fetch_conf(args, who)
    except errors.CdxError:
        return None


def known_conf(args: argparse.Namespace) -> VerifiedGlobalConf | None:
    """The registry's configuration if it answers, else the newest copy a component stored
    in the data dir (possibly expired), else ``None``."""
    return admin_conf(args) or stored_conf(data_paths(args).data_dir)


def stored_conf(data_dir: Path) -> VerifiedGlobalConf | None:
    """The newest verifiable global configuration a component stored under ``data_dir``
    (possibly expired: for display and checks that tolerate it), or ``None``."""
    paths = InstancePaths(data_dir)
    candidates = sorted(data_dir.glob("*/globalconf.bin"))
    if paths.servers_dir.is_dir():
        candidates += sorted(paths.servers_dir.glob("*/globalconf.bin"))
    best: VerifiedGlobalConf | None = None
    for conf_path in candidates:
        own_anchor = conf_path.parent / "anchor.json"
        try:
            trust = Anchor.from_json(
                (own_anchor if own_anchor.exists() else paths.anchor).read_bytes()
            )
            conf = verify_global_conf(conf_path.read_bytes(), trust, utcnow(), allow_expired=True)
        except (OSError, errors.CdxError):
            continue
        if best is None or conf.version > best.version:
            best = conf
    return best
