"""One agency of a running instance: its sample register, security server and witness.

``RunningAgency`` starts, stops and restarts them on the addresses the agency's ``server.toml``
names. An address naming port 0 is bound to a free port by the server itself; the agency then
records what it got (``server.toml``, the registry's entry for the server) before anyone needs
it, so no port is ever picked first and bound later. A restart binds the recorded port again.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from audit.witness import Witness, witness_for_security_server
from cdx.clock import Clock, utcnow
from cdx.files import write_atomically
from cdx.lawful import ConsentChecker
from registry.server import RunningRegistry
from security_server.backends.server import RunningBackend, start_backend
from security_server.config import SecurityServerConfig, dump_config, load_config
from security_server.outbox import AuditShipper
from security_server.server import (
    AuditShipperFactory,
    ConsentCheckerFactory,
    PluginContext,
    RunningSecurityServer,
    start_security_server,
)
from stack.provision import ADMIN, is_unbound
from stack.topology import AgencySpec

_BANNER = re.compile(
    r"security server \S+: exchange (?P<exchange>\S+), gateway (?P<gateway>[^\s,]+)"
    r"(?:, token gateway (?P<token>\S+))?"
)


def serve_banner_addresses(line: str) -> tuple[str, str, str] | None:
    """The exchange, gateway and token-gateway addresses in the line ``cdx security-server
    serve`` prints once it listens (``None`` for any other line)."""
    m = _BANNER.search(line)
    if m is None:
        return None
    return m["exchange"], m["gateway"], m["token"] or ""


#: Called after an agency recorded addresses it bound (the instance saves its layout and
#: makes every running component fetch the new global configuration).
OnBound = Callable[["RunningAgency"], None]


class RunningAgency:
    """An agency's register, security server and witness, each started on demand.

    ``consent_checker`` / ``audit_shipper`` plug a given object in (tests pass doubles); the
    ``*_factory`` arguments build one per start otherwise. ``advertise(bound)`` maps the bound
    exchange address to the one peers are told (default: itself; tests put a relay between).
    """

    def __init__(
        self,
        spec: AgencySpec,
        config_file: Path,
        registry: RunningRegistry,
        *,
        instance_dir: Path,
        clock: Clock = utcnow,
        consent_checker_factory: ConsentCheckerFactory | None = None,
        audit_shipper_factory: AuditShipperFactory | None = None,
        witness_interval: float | None = None,
        on_bound: OnBound | None = None,
    ) -> None:
        self.spec = spec
        self.config_file = config_file
        self.registry = registry
        #: The instance's data directory (``DATA``).
        self.instance_dir = instance_dir
        self.config: SecurityServerConfig = load_config(config_file)
        self.clock: Clock = clock
        self.consent_checker: ConsentChecker | None = None
        self.audit_shipper: AuditShipper | None = None
        self.consent_checker_factory = consent_checker_factory
        self.audit_shipper_factory = audit_shipper_factory
        self.witness_interval = witness_interval
        self.on_bound = on_bound
        #: The exchange address global configuration names for this server.
        self.registered_address = self.config.exchange_address
        self.backend: RunningBackend | None = None
        self.server: RunningSecurityServer | None = None
        self.witness: Witness | None = None

    # --- identity ------------------------------------------------------------------------------

    @property
    def key(self) -> str:
        return self.spec.key

    @property
    def server_id(self) -> str:
        return self.spec.server_id

    @property
    def subsystem(self) -> str:
        return self.spec.subsystem

    @property
    def service(self) -> str:
        return self.spec.service

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    @property
    def running(self) -> RunningSecurityServer:
        assert self.server is not None, f"server of {self.key} is not running"
        return self.server

    def advertise(self, bound: str) -> str:
        """The exchange address to register for a server bound to ``bound``."""
        return bound

    # --- lifecycle -----------------------------------------------------------------------------

    def start_backend(self) -> RunningBackend:
        """Serve the agency's sample register (on its recorded address, or a free port)."""
        assert self.spec.kind is not None
        self.backend = start_backend(
            self.spec.kind,
            self.instance_dir / "backends" / f"{self.spec.kind}.db",
            self.config.backends[self.subsystem],
        )
        self.backend_bound(self.backend.address)
        return self.backend

    def backend_bound(self, address: str) -> None:
        """Record that the register (here or in another process) listens on ``address``."""
        if address != self.config.backends.get(self.subsystem):
            backends = {**self.config.backends, self.subsystem: address}
            self._record(replace(self.config, backends=backends))
            self._announce()

    def start(self) -> RunningSecurityServer:
        """Start the security server (and the register first, when it is not running)."""
        if self.backend is None:
            self.start_backend()
        self.prepare()
        self.server = start_security_server(
            self.config,
            consent_checker=self.consent_checker,
            audit_shipper=self.audit_shipper,
            now_fn=self.clock,
            witness=lambda: self.witness,
            consent_checker_factory=self.consent_checker_factory,
            audit_shipper_factory=self.audit_shipper_factory,
        )
        self.server_bound(
            self.server.exchange_address,
            self.server.gateway_address,
            self.server.gateway_token_address or "",
        )
        if self.witness_interval is not None:
            self.witness = witness_for_security_server(
                PluginContext(
                    self.server_id,
                    self.config,
                    self.server.keys.tls,
                    self.server.conf_client,
                    self.server.keys,
                    self.clock,
                ),
                interval=self.witness_interval,
            )
            self.witness.start()
        return self.server

    def prepare(self) -> None:
        """Write ``server.toml`` for a start (here or as ``cdx security-server serve``): the
        settings as they are now, with the registry's address as bound."""
        config = self.config
        if is_unbound(config.registry_address):
            config = replace(config, registry_address=self.registry.address)
        self._record(config)

    def server_bound(self, exchange: str, gateway: str, gateway_token: str) -> None:
        """Record where the security server (here or in another process) listens: in
        ``server.toml`` (later starts bind the same ports) and, when peers must be told, in
        the registry."""
        bound = replace(
            self.config,
            exchange_address=exchange,
            gateway_address=gateway,
            gateway_token_address=gateway_token,
        )
        changed = bound != self.config
        if changed:
            self._record(bound)
        advertised = self.advertise(exchange)
        if advertised != self.registered_address:
            self.registry.service.set_server_address(self.server_id, advertised, ADMIN)
            self.registered_address = advertised
            changed = True
        if changed:
            self._announce()

    def stop(self, grace: float = 0.2) -> None:
        """Stop the witness and the security server (the register keeps running)."""
        if self.witness is not None:
            self.witness.stop()
            self.witness = None
        if self.server is not None:
            self.server.stop(grace)
            self.server = None

    def restart(self) -> RunningSecurityServer:
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop everything of this agency."""
        self.stop()
        if self.backend is not None:
            self.backend.stop()
            self.backend = None

    def _record(self, config: SecurityServerConfig) -> None:
        """Keep ``config`` (addresses just bound) here and in ``server.toml``."""
        self.config = config
        write_atomically(self.config_file, dump_config(config).encode())

    def _announce(self) -> None:
        if self.on_bound is not None:
            self.on_bound(self)
