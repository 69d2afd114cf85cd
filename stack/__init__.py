"""A whole CDX instance on one machine: provisioning, running, the demo scenario and `cdx up`.

This package is the composition root for single-box deployments (pilots, the demo, tests):
it wires the registry, consent service, audit log, security servers, sample backends and the
portal together. Production deployments run each component separately (see docs/operations.md).
"""
