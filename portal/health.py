"""The portal's dependencies in its health endpoint: the audit log and the consent service.

Citizens' histories and consents come from those two services; when one fails the portal
still serves (pages say the service is unavailable), so ``/healthz`` turns ``degraded`` — with
the failing peer, its last success and last error — not unhealthy. Their addresses follow
global configuration; a prober asks each one's gRPC health service every few seconds with the
portal's own certificate (``cdx.dependencies``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cdx import health
from cdx.dependencies import Dependencies, Prober, channels, conf_address
from cdx.keyfiles import load_identity
from cdx.paths import InstancePaths
from portal.instance import PortalInstance, PortalPaths

PROBE_INTERVAL_S = 5.0


def dependency_checks(
    data_dir: str | Path,
    instance: PortalInstance,
    *,
    interval: float = PROBE_INTERVAL_S,
) -> tuple[list[health.Check], Callable[[], None]]:
    """Non-critical checks of the audit log and the consent service of the portal running
    over ``data_dir``, and the function that stops probing them.

    Raises:
        NotFoundError / KeyStoreError: the portal's identity cannot be loaded.
    """
    data, paths = Path(data_dir), PortalPaths(Path(data_dir))
    passphrase = InstancePaths(data).passphrase()
    identity = load_identity(paths.tls_cert, paths.tls_key, InstancePaths(data).ca_pem, passphrase)
    deps = Dependencies("portal")
    deps.add("audit log", conf_address(instance.conf.latest, "audit_log_address"))
    deps.add("consent service", conf_address(instance.conf.latest, "consent_service_address"))
    prober = Prober(interval=interval, name="cdx-portal-probe")
    for dep in deps:
        prober.add(dep, channels(identity))
    prober.start()
    return deps.health_checks("portal "), prober.stop
