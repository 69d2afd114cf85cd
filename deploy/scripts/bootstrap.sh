#!/bin/sh
# Initialise a CDX instance on a shared data volume (Docker Compose pilot; docs/operations.md).
#
# Runs once: creates the registry (CA, registry key, anchor), registers two agencies (BCA:
# population register, provider; VSS: social insurance, consumer), their services, purposes and
# agreement, the audit log, the consent service, a development identity provider, both
# security servers, an information-system certificate for VSS and an inspector certificate.
# The registry runs in the background here only while the admin commands need it; afterwards
# every component runs in its own container. Every step is a real `cdx` command.
set -eu

D="${CDX_DATA:-/var/lib/cdx}"
INSTANCE="${CDX_INSTANCE:-VN}"
DB="${CDX_DATABASE_URL:-}"                 # PostgreSQL URL; empty: SQLite files in $D
REGISTRY_HOST="${REGISTRY_HOST:-registry}"
REGISTRY_PORT="${REGISTRY_PORT:-4400}"
AUDIT_HOST="${AUDIT_HOST:-audit}"
AUDIT_PORT="${AUDIT_PORT:-4500}"
CONSENT_HOST="${CONSENT_HOST:-consent}"
CONSENT_PORT="${CONSENT_PORT:-4600}"
CONSENT_PUBLIC_PORT="${CONSENT_PUBLIC_PORT:-4601}"
SS_BCA_HOST="${SS_BCA_HOST:-ss-bca}"
SS_VSS_HOST="${SS_VSS_HOST:-ss-vss}"
SS_EXCHANGE_PORT="${SS_EXCHANGE_PORT:-5500}"
SS_GATEWAY_PORT="${SS_GATEWAY_PORT:-5501}"
BACKEND_BCA="${BACKEND_BCA:-backend-bca:6001}"
LISTEN_HOST="${LISTEN_HOST:-0.0.0.0}"       # where servers listen inside their containers
SS_BCA_LISTEN="${SS_BCA_LISTEN:-$LISTEN_HOST}"
SS_VSS_LISTEN="${SS_VSS_LISTEN:-$LISTEN_HOST}"
AUDIT_ORIGIN="${AUDIT_ORIGIN:-cdx.example.vn/audit}"

if [ -f "$D/bootstrap.done" ]; then
  echo "instance already initialised in $D"
  exit 0
fi
mkdir -p "$D"

# 1. Registry: CA, signing key, anchor, database schema, bootstrap admin certificate.
if [ -n "$DB" ]; then
  cdx registry init --data "$D" --instance "$INSTANCE" --db-url "$DB" --db-schema registry \
    --dns-name "$REGISTRY_HOST" --dns-name localhost --ip 127.0.0.1
else
  cdx registry init --data "$D" --instance "$INSTANCE" \
    --dns-name "$REGISTRY_HOST" --dns-name localhost --ip 127.0.0.1
fi
cdx registry serve --data "$D" --listen "127.0.0.1:$REGISTRY_PORT" &
REGISTRY_PID=$!
trap 'kill "$REGISTRY_PID" 2>/dev/null || true' EXIT
i=0
until [ -s "$D/registry/address" ]; do
  i=$((i + 1)); [ "$i" -le 100 ] || { echo "the registry did not start" >&2; exit 1; }
  sleep 0.2
done
R="127.0.0.1:$REGISTRY_PORT"

# 2. Members, subsystems, services, purposes, agreements.
cdx registry member add VN:GOV:BCA --name "Ministry of Public Security" --data "$D" --registry "$R"
cdx registry member add VN:GOV:VSS --name "Vietnam Social Security" --data "$D" --registry "$R"
cdx registry subsystem add VN:GOV:BCA:population --data "$D" --registry "$R"
cdx registry subsystem add VN:GOV:VSS:benefits --data "$D" --registry "$R"
cdx registry service add VN:GOV:BCA:population/person/v1 \
  --fields full_name,birth_date,address,gender --categories identity,contact \
  --description "Population register: name, birth date, address, gender" --data "$D" --registry "$R"
cdx registry purpose add SOCIAL_BENEFIT_ELIGIBILITY \
  --description "Checking eligibility for a social benefit" \
  --description-vi "Xét điều kiện hưởng trợ cấp xã hội" --data "$D" --registry "$R"
cdx registry agreement add --client VN:GOV:VSS:benefits --service VN:GOV:BCA:population/person/v1 \
  --purpose SOCIAL_BENEFIT_ELIGIBILITY --basis LEGAL_OBLIGATION \
  --legal-reference "Law on Social Insurance 2024, Art. 10" \
  --fields full_name,birth_date,gender --data "$D" --registry "$R"

# 3. Audit log: keys, TLS certificate, trust anchors (witness quorum: both servers cosign).
if [ -n "$DB" ]; then
  cdx audit init --data "$D" --origin "$AUDIT_ORIGIN" --database "$DB" --schema audit
else
  cdx audit init --data "$D" --origin "$AUDIT_ORIGIN"
fi
cdx registry cert issue --kind service --name audit --dns-name "$AUDIT_HOST" --dns-name localhost \
  --ip 127.0.0.1 --out "$D/audit/tls" --data "$D" --registry "$R"
cdx registry anchors set --audit-origin "$AUDIT_ORIGIN" --audit-key "$(cat "$D/audit/log.vkey")" \
  --audit-service-key "$D/audit/record.pub" --audit-address "$AUDIT_HOST:$AUDIT_PORT" \
  --witness-quorum 1 --data "$D" --registry "$R"

# 4. Consent service (registers its certificate, artefact key and address itself).
if [ -n "$DB" ]; then
  cdx consent init --data "$D" --registry "$R" --listen "$LISTEN_HOST:$CONSENT_PORT" \
    --public-listen "$LISTEN_HOST:$CONSENT_PUBLIC_PORT" --advertise "$CONSENT_HOST:$CONSENT_PORT" \
    --dns-name "$CONSENT_HOST" --dns-name localhost --ip 127.0.0.1 --db-url "$DB" --db-schema consent
else
  cdx consent init --data "$D" --registry "$R" --listen "$LISTEN_HOST:$CONSENT_PORT" \
    --public-listen "$LISTEN_HOST:$CONSENT_PUBLIC_PORT" --advertise "$CONSENT_HOST:$CONSENT_PORT" \
    --dns-name "$CONSENT_HOST" --dns-name localhost --ip 127.0.0.1
fi

# 5. Development identity provider (a production instance anchors an OIDC issuer instead).
cdx idp init --data "$D" --register --registry "$R"

# 6. Security servers: keys generated in their own directories, registered over the admin API.
for agency in bca vss; do
  case "$agency" in
    bca) id=VN:GOV:BCA:ss1; host=$SS_BCA_HOST; listen=$SS_BCA_LISTEN; sub=VN:GOV:BCA:population ;;
    vss) id=VN:GOV:VSS:ss1; host=$SS_VSS_HOST; listen=$SS_VSS_LISTEN; sub=VN:GOV:VSS:benefits ;;
  esac
  cdx security-server init --data-dir "$D/servers/$agency" --server-id "$id" \
    --address "$host:$SS_EXCHANGE_PORT" --listen "$listen:$SS_EXCHANGE_PORT" \
    --gateway "$listen:$SS_GATEWAY_PORT" --subsystem "$sub" \
    --anchor "$D/registry/anchor.json" --passphrase-file "$D/passphrase" \
    --registry "$R" --ca "$D/registry/ca.pem" \
    --admin-cert "$D/registry/admin/bootstrap.pem" --admin-key "$D/registry/admin/bootstrap.key" \
    --admin-passphrase-file "$D/passphrase"
  # The server's settings (deploy/config/server.example.toml documents every key).
  {
    echo "server_id = \"$id\""
    echo 'data_dir = "."'
    echo "exchange_address = \"$listen:$SS_EXCHANGE_PORT\""
    echo "gateway_address = \"$listen:$SS_GATEWAY_PORT\""
    echo "registry_address = \"$REGISTRY_HOST:$REGISTRY_PORT\""
    echo 'passphrase_file = "../../passphrase"'
    echo "database_url = \"$DB\""
    if [ -n "$DB" ]; then echo "database_schema = \"ss_$agency\""; fi
    echo 'outbox_window_s = 300'
    echo ''
    echo '[backends]'
    if [ "$agency" = bca ]; then echo "\"VN:GOV:BCA:population\" = \"$BACKEND_BCA\""; fi
  } > "$D/servers/$agency/server.toml"
done

# 7. Certificates for VSS's information system and for an inspector (keys encrypted with the
#    instance passphrase).
cdx registry cert issue --kind client --name VN:GOV:VSS:benefits --out "$D/clients/vss" \
  --data "$D" --registry "$R"
cdx registry cert issue --kind inspector --name dpa --out "$D/inspector" --data "$D" --registry "$R"
# The portal's mutual-TLS identity (urn:cdx:service:portal) for the consent service and audit log.
cdx registry cert issue --kind service --name portal --out "$D/portal/tls" --data "$D" --registry "$R"
# The portal's HTTPS certificate (behind a TLS-terminating proxy it serves plain HTTP instead).
cdx registry cert issue --kind service --name portal-web --dns-name "${PORTAL_HOST:-localhost}" \
  --dns-name localhost --ip 127.0.0.1 --out "$D/portal/web" --data "$D" --registry "$R"

kill "$REGISTRY_PID"
wait "$REGISTRY_PID" 2>/dev/null || true
trap - EXIT
rm -f "$D/registry/address"
touch "$D/bootstrap.done"
echo "instance $INSTANCE initialised in $D"
