#!/bin/sh
# Creates the Kubernetes Secrets of deploy/k8s from an initialised data directory
# (deploy/scripts/bootstrap.sh run with the cluster's service names; docs/operations.md).
#   deploy/scripts/k8s-secrets.sh DATA_DIR 'postgresql://cdx:...@db:5432/cdx'
set -eu
D="$1"
DB_URL="$2"
NS="${CDX_NAMESPACE:-cdx}"
kubectl -n "$NS" create secret generic cdx-passphrase --from-file=passphrase="$D/passphrase"
kubectl -n "$NS" create secret generic cdx-database --from-literal=url="$DB_URL"
kubectl -n "$NS" create secret generic cdx-registry \
  --from-file=registry__anchor.json="$D/registry/anchor.json" \
  --from-file=registry__ca.key="$D/registry/ca.key" \
  --from-file=registry__ca.pem="$D/registry/ca.pem" \
  --from-file=registry__registry.json="$D/registry/registry.json" \
  --from-file=registry__registry.key="$D/registry/registry.key" \
  --from-file=registry__tls__registry.key="$D/registry/tls/registry.key" \
  --from-file=registry__tls__registry.pem="$D/registry/tls/registry.pem"
kubectl -n "$NS" create secret generic cdx-audit \
  --from-file=registry__anchor.json="$D/registry/anchor.json" \
  --from-file=registry__ca.pem="$D/registry/ca.pem" \
  --from-file=audit__log.key="$D/audit/log.key" \
  --from-file=audit__log.vkey="$D/audit/log.vkey" \
  --from-file=audit__openings.key="$D/audit/openings.key" \
  --from-file=audit__origin="$D/audit/origin" \
  --from-file=audit__record.key="$D/audit/record.key" \
  --from-file=audit__record.pub="$D/audit/record.pub" \
  --from-file=audit__tls__audit.key="$D/audit/tls/audit.key" \
  --from-file=audit__tls__audit.pem="$D/audit/tls/audit.pem"
kubectl -n "$NS" create secret generic cdx-consent \
  --from-file=consent__anchor.json="$D/consent/anchor.json" \
  --from-file=consent__ca.pem="$D/consent/ca.pem" \
  --from-file=consent__consent.json="$D/consent/consent.json" \
  --from-file=consent__signing.key="$D/consent/signing.key" \
  --from-file=consent__signing.pub.pem="$D/consent/signing.pub.pem" \
  --from-file=consent__subject-tag.key="$D/consent/subject-tag.key" \
  --from-file=consent__tls__consent.key="$D/consent/tls/consent.key" \
  --from-file=consent__tls__consent.pem="$D/consent/tls/consent.pem"
kubectl -n "$NS" create secret generic cdx-ss-bca \
  --from-file=servers__bca__anchor.json="$D/servers/bca/anchor.json" \
  --from-file=servers__bca__auth.key="$D/servers/bca/auth.key" \
  --from-file=servers__bca__auth.pem="$D/servers/bca/auth.pem" \
  --from-file=servers__bca__ca.pem="$D/servers/bca/ca.pem" \
  --from-file=servers__bca__hpke.key="$D/servers/bca/hpke.key" \
  --from-file=servers__bca__server.toml="$D/servers/bca/server.toml" \
  --from-file=servers__bca__signing.key="$D/servers/bca/signing.key" \
  --from-file=servers__bca__signing.pem="$D/servers/bca/signing.pem" \
  --from-file=servers__bca__witness.key="$D/servers/bca/witness.key"
kubectl -n "$NS" create secret generic cdx-ss-vss \
  --from-file=servers__vss__anchor.json="$D/servers/vss/anchor.json" \
  --from-file=servers__vss__auth.key="$D/servers/vss/auth.key" \
  --from-file=servers__vss__auth.pem="$D/servers/vss/auth.pem" \
  --from-file=servers__vss__ca.pem="$D/servers/vss/ca.pem" \
  --from-file=servers__vss__hpke.key="$D/servers/vss/hpke.key" \
  --from-file=servers__vss__server.toml="$D/servers/vss/server.toml" \
  --from-file=servers__vss__signing.key="$D/servers/vss/signing.key" \
  --from-file=servers__vss__signing.pem="$D/servers/vss/signing.pem" \
  --from-file=servers__vss__witness.key="$D/servers/vss/witness.key"
kubectl -n "$NS" create secret generic cdx-portal \
  --from-file=registry__anchor.json="$D/registry/anchor.json" \
  --from-file=registry__ca.pem="$D/registry/ca.pem" \
  --from-file=portal__tls__portal.key="$D/portal/tls/portal.key" \
  --from-file=portal__tls__portal.pem="$D/portal/tls/portal.pem" \
  --from-file=idp__idp.json="$D/idp/idp.json" \
  --from-file=idp__idp.key="$D/idp/idp.key" \
  --from-file=idp__idp.pub.pem="$D/idp/idp.pub.pem"
