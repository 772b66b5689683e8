#!/usr/bin/env bash
# Turns a Debian/Ubuntu server into a working central: PostgreSQL from the distribution with
# the selfcheck database and user, migrated; Mosquitto with the secure profile and the broker
# credentials; the app in a venv; two bridges (selfcheck-central@1, @2) and the fleet-state
# service enabled and started; `selfcheck doctor --central` run at the end. Idempotent.
#
# usage: sudo deploy/central/setup.sh [--dry-run] [--host BROKER_NAME]... ROLES_FILE
#   ROLES_FILE  who may use the broker (see deploy/mosquitto/roles.example); it must name the
#               bridges central-bridge-1 and central-bridge-2 and the fleet role central-fleet
#   --host      names/addresses the stations use for the broker (go into its certificate)
set -euo pipefail

DRY_RUN=0
hosts=()
SRC=$(cd "$(dirname "$0")/../.." && pwd)
APP=/opt/selfcheck
CREDS=/etc/mosquitto/selfcheck
DB_NAME=selfcheck
DB_USER=selfcheck
BRIDGES=(1 2)  # a province: two bridges for availability (docs/deployment.md)
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1; shift ;;
    --host) hosts+=(--host "$2"); shift 2 ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || { echo "usage: $0 [--dry-run] [--host NAME]... ROLES_FILE" >&2; exit 2; }
roles=$1

run() { if [ "$DRY_RUN" -eq 1 ]; then printf '+ %s\n' "$*"; else "$@"; fi; }
say() { printf '== %s\n' "$*"; }
die() { echo "setup: $*" >&2; exit 2; }
[ "$DRY_RUN" -eq 1 ] || [ "$(id -u)" -eq 0 ] || die "run as root"
# Every service below logs in to the broker with its own password: a name missing from the
# roles file would leave that unit failing at every start, so say so before changing anything.
for name in "${BRIDGES[@]/#/central-bridge-}" central-fleet; do
  grep -Eq "^[[:space:]]*(bridge|fleet)[[:space:]]+$name([[:space:]]|\$)" "$roles" ||
    die "$roles names no '$name' (see deploy/mosquitto/roles.example)"
done
# A booted systemd has /run/systemd/system (sd_booted). Without it (a container or a chroot
# being prepared) the units are enabled for the next boot and the daemons this script needs
# (PostgreSQL, Mosquitto) are started through their init scripts instead.
SYSTEMD=0
[ -d /run/systemd/system ] && SYSTEMD=1
# service_restart NAME: restart a distribution daemon now, with or without systemd.
service_restart() {
  if [ "$SYSTEMD" -eq 1 ]; then run systemctl restart "$1.service"
  else
    # What systemd's tmpfiles.d would have made at boot (the init script's pid file goes there).
    if [ "$1" = mosquitto ]; then run install -d -o mosquitto -g mosquitto /run/mosquitto; fi
    run "/etc/init.d/$1" restart
  fi
}

say "packages"
pkgs=(mosquitto openssl python3-venv rsync postgresql postgresql-client)
# A package list that cannot be refreshed (no mirror reachable) is not fatal when apt already
# has what is needed: the install below then fails with apt's own message if it does not.
run apt-get update -qq || say "warning: apt-get update failed; installing from the lists apt has"
run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}"

say "app in $APP"
if ! id selfcheck >/dev/null 2>&1; then
  run useradd --system --home-dir /var/lib/selfcheck --shell /usr/sbin/nologin selfcheck
fi
run install -d -m 0750 -o selfcheck -g selfcheck /var/lib/selfcheck
run rsync -a --delete --exclude .venv --exclude .git --exclude var "$SRC/" "$APP/"
[ -x "$APP/.venv/bin/python" ] || run python3 -m venv "$APP/.venv"
run "$APP/.venv/bin/pip" install -q "$APP"

say "PostgreSQL: database $DB_NAME owned by role $DB_USER (peer login over the local socket)"
# The distribution's cluster (Debian creates 'main' when the server package is installed).
if [ "$DRY_RUN" -eq 0 ]; then
  cluster=$(pg_lsclusters --no-header | awk 'NR == 1 { print $1 " " $2 }')
  [ -n "$cluster" ] || die "no PostgreSQL cluster (pg_lsclusters shows none)"
  # shellcheck disable=SC2086  # "VERSION NAME", two words on purpose
  if ! pg_lsclusters --no-header | awk 'NR == 1 { exit $4 != "online" }'; then
    if [ "$SYSTEMD" -eq 1 ]; then systemctl enable --now postgresql.service
    else pg_ctlcluster $cluster start; fi
  fi
  [ "$SYSTEMD" -eq 0 ] || systemctl enable postgresql.service
  psql_admin() { runuser -u postgres -- psql -XqAt -v ON_ERROR_STOP=1 "$@"; }
  # Peer authentication: the bridges run as the system user selfcheck, so the role has that
  # name and no password (none to leak, none to rotate); central.env's STORE_URL says so.
  [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'")" = 1 ] ||
    psql_admin -c "CREATE ROLE $DB_USER LOGIN"
  [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" = 1 ] ||
    psql_admin -c "CREATE DATABASE $DB_NAME OWNER $DB_USER ENCODING 'UTF8' TEMPLATE template0"
else
  run runuser -u postgres -- psql -c "CREATE ROLE $DB_USER LOGIN  (unless present)"
  run runuser -u postgres -- psql -c "CREATE DATABASE $DB_NAME OWNER $DB_USER  (unless present)"
fi

say "service secrets and settings in /etc/selfcheck"
# Secrets stay root-only (0600); the units hand them to their service with LoadCredential=.
run install -d -m 0750 -g selfcheck /etc/selfcheck
run install -d -m 0700 /etc/selfcheck/secrets
[ -f /etc/selfcheck/central.env ] ||
  run install -m 0640 -g selfcheck "$SRC/deploy/central/central.env.example" /etc/selfcheck/central.env
# The settings the units and the checks below use: the installed file's, as edited.
env_value() { sed -n "s/^$1=//p" /etc/selfcheck/central.env 2>/dev/null | tail -n1; }
store_url=$(env_value STORE_URL); store_url=${store_url:-postgresql://$DB_USER@/$DB_NAME}
broker=$(env_value BROKER); broker=${broker:-127.0.0.1:1883}

say "schema: selfcheck central migrate --db $store_url"
# As the selfcheck user: the peer login above is that user's, as for the bridges.
run runuser -u selfcheck -- "$APP/.venv/bin/selfcheck" central migrate --db "$store_url"

say "broker: credentials in $CREDS, secure profile as /etc/mosquitto/mosquitto.conf"
run "$SRC/deploy/mosquitto/make-credentials" "${hosts[@]}" "$roles" "$CREDS"
# secure.conf names the access-control plugin at its Debian amd64 path: use this machine's.
plugin=$(dpkg -L mosquitto 2>/dev/null | grep -m1 '/mosquitto_dynamic_security\.so$' || true)
if [ -n "$plugin" ]; then
  conf=$(mktemp)
  sed "s#^plugin .*/mosquitto_dynamic_security\.so\$#plugin $plugin#" \
    "$SRC/deploy/mosquitto/secure.conf" >"$conf"
  # Unchanged config, unchanged file: a second run rewrites nothing.
  cmp -s "$conf" /etc/mosquitto/mosquitto.conf ||
    run install -m 0644 "$conf" /etc/mosquitto/mosquitto.conf
  rm -f "$conf"
elif [ "$DRY_RUN" -eq 0 ]; then
  die "mosquitto_dynamic_security.so not found (is mosquitto 2.0+ installed?)"
else
  run install -m 0644 "$SRC/deploy/mosquitto/secure.conf" /etc/mosquitto/mosquitto.conf
fi
for pass in "$CREDS"/secrets/central-*.pass; do
  [ -e "$pass" ] || continue
  cmp -s "$pass" "/etc/selfcheck/secrets/${pass##*/}" ||
    run install -m 0600 "$pass" /etc/selfcheck/secrets/
done
# The library system's password (SIP2): empty until you write it; the bridge unit loads it.
[ -f /etc/selfcheck/secrets/ils.pass ] || run install -m 0600 /dev/null /etc/selfcheck/secrets/ils.pass
run systemctl enable mosquitto.service
# The dynamic-security plugin reads its file only at start: restart for new passwords/rules.
service_restart mosquitto

say "units: ${BRIDGES[*]/#/selfcheck-central@} and selfcheck-fleet"
units=("${BRIDGES[@]/#/selfcheck-central@}")
units=("${units[@]/%/.service}" selfcheck-fleet.service)
for unit in selfcheck-central@.service selfcheck-fleet.service; do
  cmp -s "$SRC/systemd/$unit" "/etc/systemd/system/$unit" ||
    run install -m 0644 "$SRC/systemd/$unit" /etc/systemd/system/
done
if [ "$SYSTEMD" -eq 1 ]; then
  run systemctl daemon-reload
  run systemctl enable "${units[@]}"
  # Restart, not start: a re-run after an update brings the new code up.
  run systemctl restart "${units[@]}"
else
  run systemctl enable "${units[@]}"
  say "no running systemd here: ${units[*]} start at the next boot"
fi

say "check: selfcheck doctor --central"
if [ "$DRY_RUN" -eq 0 ]; then
  # The doctor logs in as bridge 1 and opens the store as the bridges do: as user selfcheck,
  # with a copy of the bridge's password readable by that user alone, removed afterwards.
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  install -m 0600 -o selfcheck /etc/selfcheck/secrets/central-bridge-1.pass "$tmp/broker.pass"
  chown selfcheck "$tmp"
  # The broker was just restarted: give it a few seconds to listen before calling it down.
  ok=0
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    if runuser -u selfcheck -- "$APP/.venv/bin/selfcheck" doctor --central --lang en \
         --broker "$broker" --db "$store_url" --id central-bridge-1 \
         --password-file "$tmp/broker.pass" >"$tmp/doctor.out" 2>&1; then ok=1; break; fi
    sleep 1
  done
  cat "$tmp/doctor.out"
  [ "$ok" -eq 1 ] || die "selfcheck doctor --central found a problem (above)"
else
  run runuser -u selfcheck -- "$APP/.venv/bin/selfcheck" doctor --central --broker "$broker" \
    --db "$store_url" --id central-bridge-1 --password-file "(copy of central-bridge-1.pass)"
fi
say "done: give each station its $CREDS/secrets/STATION.pass and $CREDS/ca.crt"
