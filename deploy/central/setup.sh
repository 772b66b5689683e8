#!/usr/bin/env bash
# Turns a Debian/Ubuntu server into the central side: Mosquitto with the secure profile, the
# broker credentials, the app in a venv, and the bridge and fleet-state units. Idempotent.
#
# usage: sudo deploy/central/setup.sh [--dry-run] [--host BROKER_NAME]... ROLES_FILE
#   ROLES_FILE  who may use the broker (see deploy/mosquitto/roles.example)
#   --host      names/addresses the stations use for the broker (go into its certificate)
set -euo pipefail

DRY_RUN=0
hosts=()
SRC=$(cd "$(dirname "$0")/../.." && pwd)
APP=/opt/selfcheck
CREDS=/etc/mosquitto/selfcheck
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1; shift ;;
    --host) hosts+=(--host "$2"); shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || { echo "usage: $0 [--dry-run] [--host NAME]... ROLES_FILE" >&2; exit 2; }
roles=$1

run() { if [ "$DRY_RUN" -eq 1 ]; then printf '+ %s\n' "$*"; else "$@"; fi; }
say() { printf '== %s\n' "$*"; }
[ "$DRY_RUN" -eq 1 ] || [ "$(id -u)" -eq 0 ] || { echo "setup: run as root" >&2; exit 2; }

say "packages"
run apt-get update -qq
run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto openssl python3-venv rsync

say "broker: credentials in $CREDS, secure profile as /etc/mosquitto/mosquitto.conf"
run "$SRC/deploy/mosquitto/make-credentials" "${hosts[@]}" "$roles" "$CREDS"
run install -m 0644 "$SRC/deploy/mosquitto/secure.conf" /etc/mosquitto/mosquitto.conf
# secure.conf names the access-control plugin at its Debian amd64 path: use this machine's.
plugin=$(dpkg -L mosquitto 2>/dev/null | grep -m1 '/mosquitto_dynamic_security\.so$' || true)
if [ -n "$plugin" ]; then
  run sed -i "s#^plugin .*/mosquitto_dynamic_security\.so\$#plugin $plugin#" \
    /etc/mosquitto/mosquitto.conf
elif [ "$DRY_RUN" -eq 0 ]; then
  echo "setup: mosquitto_dynamic_security.so not found (is mosquitto 2.0+ installed?)" >&2
  exit 2
fi
run systemctl enable mosquitto.service
run systemctl restart mosquitto.service

say "app in $APP"
if ! id selfcheck >/dev/null 2>&1; then
  run useradd --system --home-dir /var/lib/selfcheck --shell /usr/sbin/nologin selfcheck
fi
run rsync -a --delete --exclude .venv --exclude .git --exclude var "$SRC/" "$APP/"
[ -x "$APP/.venv/bin/python" ] || run python3 -m venv "$APP/.venv"
run "$APP/.venv/bin/pip" install -q "$APP"

say "service secrets and settings in /etc/selfcheck"
# Secrets stay root-only (0600); the units hand them to their service with LoadCredential=.
run install -d -m 0750 -g selfcheck /etc/selfcheck
run install -d -m 0700 /etc/selfcheck/secrets
for pass in "$CREDS"/secrets/central-*.pass; do
  [ -e "$pass" ] || continue
  run install -m 0600 "$pass" /etc/selfcheck/secrets/
done
# The library system's password (SIP2): empty until you write it; the bridge unit loads it.
[ -f /etc/selfcheck/secrets/ils.pass ] || run install -m 0600 /dev/null /etc/selfcheck/secrets/ils.pass
[ -f /etc/selfcheck/central.env ] ||
  run install -m 0640 -g selfcheck "$SRC/deploy/central/central.env.example" /etc/selfcheck/central.env

say "units"
run install -m 0644 "$SRC/systemd/selfcheck-central@.service" "$SRC/systemd/selfcheck-fleet.service" \
  /etc/systemd/system/
run systemctl daemon-reload
run systemctl enable --now selfcheck-central@1.service selfcheck-fleet.service
say "done: give each station its $CREDS/secrets/STATION.pass and $CREDS/ca.crt"
