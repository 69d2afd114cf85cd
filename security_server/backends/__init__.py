"""Sample agency backends (``DataProvider`` servers over SQLite) for tests and the demo."""

from security_server.backends.sample import CITIZENS, KINDS, Citizen
from security_server.backends.server import RunningBackend, seed_database, start_backend

__all__ = ["CITIZENS", "KINDS", "Citizen", "RunningBackend", "seed_database", "start_backend"]
