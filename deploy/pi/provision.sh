#!/usr/bin/env bash
# Turns a fresh 64-bit Raspberry Pi OS Lite (bookworm or later) into a selfcheck station.
# Idempotent: run it again after an update; it changes only what differs.
#
# usage: sudo deploy/pi/provision.sh [options]
#   --dry-run           print what would be done, change nothing (works on any machine)
#   --card-reader KIND  uart (PN532 on the Pi UART, default), usb (nfcpy via libusb), none
#   --read-only-root    overlay file system on / (overlayroot in an initramfs: a power cut
#                       cannot corrupt the system); needs --data-device for the journal
#   --data-device DEV   ext4 partition (/dev/sda1, LABEL=..., UUID=...) mounted at
#                       /var/lib/selfcheck: station journal, Kivy home, /var/log/journal
#   --mkfs              make an ext4 file system (label selfcheck-data) on --data-device when
#                       it has none; one it already has is kept
#   --time-server HOST  NTP server for systemd-timesyncd (the central); default: Debian's pool
#   --src DIR           the selfcheck source tree (default: this checkout)
set -euo pipefail

DRY_RUN=0
CARD_READER=uart
READ_ONLY=0
DATA_DEVICE=""
MKFS=0
TIME_SERVER=""
SRC=$(cd "$(dirname "$0")/../.." && pwd)
APP=/opt/selfcheck
ETC=/etc/selfcheck
DATA=/var/lib/selfcheck
BOOT=/boot/firmware  # bookworm; older images used /boot
USER_NAME=kiosk
GROUPS_NEEDED=(video render input dialout plugdev lp)

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1; shift ;;
    --card-reader) CARD_READER=$2; shift 2 ;;
    --read-only-root) READ_ONLY=1; shift ;;
    --data-device) DATA_DEVICE=$2; shift 2 ;;
    --mkfs) MKFS=1; shift ;;
    --time-server) TIME_SERVER=$2; shift 2 ;;
    --src) SRC=$2; shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "provision: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$CARD_READER" in uart|usb|none) ;; *)
  echo "provision: --card-reader must be uart, usb or none, not '$CARD_READER'" >&2; exit 2 ;;
esac
if [ "$READ_ONLY" -eq 1 ] && [ -z "$DATA_DEVICE" ]; then
  echo "provision: --read-only-root needs --data-device (the journal must stay writable)" >&2
  exit 2
fi
if [ "$MKFS" -eq 1 ] && [ -z "$DATA_DEVICE" ]; then
  echo "provision: --mkfs needs --data-device" >&2; exit 2
fi

say() { printf '== %s\n' "$*"; }
# run CMD...: do it, or in a dry run print it.
run() {
  if [ "$DRY_RUN" -eq 1 ]; then printf '+ %s\n' "$*"; else "$@"; fi
}
# put_file SRC DEST MODE: install when missing or different.
put_file() {
  if [ -f "$2" ] && cmp -s "$1" "$2"; then return 0; fi
  run install -D -m "$3" "$1" "$2"
}
# ensure_line FILE LINE: append LINE to FILE unless it is there.
ensure_line() {
  if [ -f "$1" ] && grep -qxF "$2" "$1"; then return 0; fi
  if [ "$DRY_RUN" -eq 1 ]; then printf '+ append to %s: %s\n' "$1" "$2"; return 0; fi
  printf '%s\n' "$2" >>"$1"
}
# put_text DEST MODE TEXT: install TEXT as DEST when missing or different.
put_text() {
  local tmp
  tmp=$(mktemp)
  printf '%s\n' "$3" >"$tmp"
  put_file "$tmp" "$1" "$2"
  rm -f "$tmp"
}
# fstab_entry MOUNTPOINT LINE: LINE is the one fstab entry for MOUNTPOINT (an older entry for
# it, say one naming the device by path, is replaced, not kept beside it).
fstab_entry() {
  local tmp
  if [ "$(awk -v m="$1" '$2 == m' /etc/fstab 2>/dev/null)" = "$2" ]; then return 0; fi
  if [ "$DRY_RUN" -eq 1 ]; then printf '+ fstab: %s\n' "$2"; return 0; fi
  tmp=$(mktemp)
  awk -v m="$1" '$2 != m' /etc/fstab >"$tmp" 2>/dev/null || true
  printf '%s\n' "$2" >>"$tmp"
  install -m 0644 "$tmp" /etc/fstab
  rm -f "$tmp"
}
# cmdline_param PARAM: the kernel command line is one line; add PARAM to it once.
cmdline_param() {
  local f=$BOOT/cmdline.txt
  if [ -f "$f" ] && grep -qw -- "$1" "$f"; then return 0; fi
  if [ "$DRY_RUN" -eq 1 ]; then printf '+ add to %s: %s\n' "$f" "$1"; return 0; fi
  sed -i "1 s|\$| $1|" "$f"
}
cmdline_drop() {
  local f=$BOOT/cmdline.txt
  if [ ! -f "$f" ] || ! grep -qw -- "$1" "$f"; then
    [ "$DRY_RUN" -eq 0 ] || printf '+ remove from %s: %s\n' "$f" "$1"
    return 0
  fi
  run sed -i "s| *$1||" "$f"
}

if [ "$DRY_RUN" -eq 0 ]; then
  [ "$(id -u)" -eq 0 ] || { echo "provision: run as root (sudo)" >&2; exit 2; }
  [ "$(uname -m)" = aarch64 ] ||
    { echo "provision: needs 64-bit Raspberry Pi OS (Kivy has no 32-bit ARM wheel)" >&2; exit 2; }
  [ -d "$BOOT" ] || BOOT=/boot
fi

say "packages"
# GL/EGL/GBM for Kivy on KMS/DRM (SDL2 comes inside the Kivy wheel), libusb for nfcpy.
run apt-get update -qq
run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  python3-venv python3-dev libegl1 libgles2 libgbm1 libdrm2 libgl1-mesa-dri libmtdev1 \
  libusb-1.0-0 rsync e2fsprogs systemd-timesyncd
if [ "$READ_ONLY" -eq 1 ]; then
  # The read-only root of bookworm: overlayroot's hook in an initramfs mounts / as an overlay
  # (tmpfs upper, SD card lower) before systemd starts.
  run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    initramfs-tools overlayroot
fi

say "kiosk user $USER_NAME and its groups"
if ! id "$USER_NAME" >/dev/null 2>&1; then
  run useradd --system --home-dir "$DATA" --shell /usr/sbin/nologin "$USER_NAME"
fi
for g in "${GROUPS_NEEDED[@]}"; do
  if ! id -nG "$USER_NAME" 2>/dev/null | grep -qw "$g"; then run usermod -aG "$g" "$USER_NAME"; fi
done

say "app in $APP with its venv"
run rsync -a --delete --exclude .venv --exclude .git --exclude var "$SRC/" "$APP/"
[ -x "$APP/.venv/bin/python" ] || run python3 -m venv "$APP/.venv"
run "$APP/.venv/bin/pip" install -q --upgrade pip
run "$APP/.venv/bin/pip" install -q "$APP"

say "config in $ETC (kept if present)"
run install -d -m 0750 -g "$USER_NAME" "$ETC" "$ETC/secrets"
if [ ! -f "$ETC/station.toml" ]; then
  run install -m 0640 -g "$USER_NAME" "$SRC/deploy/station.example.toml" "$ETC/station.toml"
  say "edit $ETC/station.toml, put ca.crt in $ETC and the password in $ETC/secrets/broker.pass"
  say "(owned by $USER_NAME, mode 0600: the app refuses a password file others can read)"
fi

say "data partition ${DATA_DEVICE:-(none: $DATA stays on the root file system)}"
if [ -n "$DATA_DEVICE" ]; then
  # The partition is made (if asked), put in fstab by UUID and mounted BEFORE anything is
  # created under $DATA: folders made on the root file system would be hidden by the
  # partition at the next boot, and the journal's bind mount would then have no source.
  case "$DATA_DEVICE" in *=*) dev=$(findfs "$DATA_DEVICE" 2>/dev/null || true) ;; *) dev=$DATA_DEVICE ;; esac
  if [ -z "$dev" ] || [ ! -b "$dev" ]; then
    if [ "$DRY_RUN" -eq 0 ]; then
      echo "provision: --data-device $DATA_DEVICE: no such block device" >&2; exit 2
    fi
    dev=$DATA_DEVICE  # a dry run on another machine: show the steps all the same
  fi
  fstype=$(blkid -o value -s TYPE "$dev" 2>/dev/null || true)
  if [ -z "$fstype" ] && [ "$MKFS" -eq 1 ]; then
    run mkfs.ext4 -q -L selfcheck-data "$dev"
    fstype=ext4
  fi
  [ "$fstype" = ext4 ] || [ "$DRY_RUN" -eq 1 ] || {
    echo "provision: $dev holds ${fstype:-no file system}, not ext4 (--mkfs makes one on an empty device)" >&2
    exit 2; }
  uuid=$(blkid -o value -s UUID "$dev" 2>/dev/null || true)
  [ -n "$uuid" ] || [ "$DRY_RUN" -eq 0 ] || uuid="(uuid of $DATA_DEVICE)"
  [ -n "$uuid" ] || { echo "provision: $dev has no UUID" >&2; exit 2; }
  # nofail: a missing or broken data partition must not stop the boot in an emergency shell
  # (the station unit, which RequiresMountsFor= it, then stays down and says why in the
  # journal); noatime: fewer writes; the station journal fsyncs each transaction itself.
  fstab_entry "$DATA" \
    "UUID=$uuid $DATA ext4 defaults,noatime,commit=5,nofail,x-systemd.device-timeout=10s 0 2"
  # The system journal on the data partition, bound only once that partition is mounted
  # (x-systemd.requires: no data mount, no bind; nofail: and the boot goes on).
  fstab_entry /var/log/journal "$DATA/journal /var/log/journal none bind,nofail,x-systemd.requires=$(systemd-escape -p --suffix=mount "$DATA") 0 0"
  if ! mountpoint -q "$DATA"; then
    run install -d "$DATA"
    # Anything already under $DATA on the root (a station that ran without the partition)
    # is copied onto it first, so no journal entry is hidden under the mount.
    if [ -n "$(ls -A "$DATA" 2>/dev/null)" ]; then
      tmpmnt=$(mktemp -d)
      run mount "$dev" "$tmpmnt"
      run cp -an "$DATA/." "$tmpmnt/"
      run umount "$tmpmnt"
      rmdir "$tmpmnt"
      # Copied: gone from the root, where the mount would only hide it.
      run find "$DATA" -mindepth 1 -delete
    fi
    run mount "$DATA"
  fi
fi
# From here on $DATA is the data partition when there is one.
run install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" "$DATA"
if [ -n "$DATA_DEVICE" ]; then
  # setgid: journald's files take the folder's group (systemd-journal, who may read them).
  run install -d -m 2755 -g systemd-journal "$DATA/journal"
  if ! mountpoint -q /var/log/journal; then
    # Only when not yet bound: install -d sets the mode of what is there, here the data
    # partition's journal folder.
    run install -d /var/log/journal
    run mount /var/log/journal
    # journald still writes to the files now hidden under the mount: reopen them.
    run systemctl restart systemd-journald.service
  fi
fi

say "releases in $DATA/releases: the unit starts 'current', which an update from the central switches"
# The first release is the venv installed above; the ones the central sends (fleet send ...
# update) get venvs of their own beside it, on the data partition (writable under a read-only
# root), and `current`/`previous` say which one runs (kiosk/runtime/releases.py).
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$SRC/pyproject.toml" | head -1)
rel="$DATA/releases"
run install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" "$rel"
if [ ! -e "$rel/current" ]; then
  run install -d -m 0750 -o "$USER_NAME" -g "$USER_NAME" "$rel/$version"
  run ln -sfn "$APP/.venv" "$rel/$version/venv"
  run touch "$rel/$version/installed"
  run ln -sfn "$version" "$rel/current"
  run chown -h "$USER_NAME:$USER_NAME" "$rel/$version/venv" "$rel/$version/installed" "$rel/current"
fi

say "udev rules for the readers and the printer"
put_file "$SRC/deploy/pi/99-selfcheck.rules" /etc/udev/rules.d/99-selfcheck.rules 0644
run udevadm control --reload
run udevadm trigger --subsystem-match=tty --subsystem-match=usb --subsystem-match=usbmisc

say "card reader: $CARD_READER"
case "$CARD_READER" in
  usb)
    put_file "$SRC/deploy/pi/blacklist-nfc.conf" /etc/modprobe.d/selfcheck-nfc-blacklist.conf 0644
    ;;
  uart)
    # The PL011 UART on GPIO 14/15 for the PN532: Bluetooth off it, no serial console on it.
    ensure_line "$BOOT/config.txt" "enable_uart=1"
    ensure_line "$BOOT/config.txt" "dtoverlay=disable-bt"
    cmdline_drop "console=serial0,115200"
    run systemctl disable --now hciuart.service
    ;;
esac

say "display: Kivy on KMS/DRM, no desktop, never blank"
ensure_line "$BOOT/config.txt" "dtoverlay=vc4-kms-v3d"
cmdline_param "consoleblank=0"          # the console never blanks the kiosk's screen
cmdline_param "vt.global_cursor_default=0"
cmdline_param "quiet"
cmdline_param "loglevel=3"
cmdline_param "logo.nologo"
run systemctl set-default multi-user.target

say "journald: persistent and bounded"
put_file "$SRC/deploy/pi/journald-selfcheck.conf" /etc/systemd/journald.conf.d/selfcheck.conf 0644

say "hardware watchdog: a hung kernel or systemd reboots the Pi"
# The SoC watchdog (bcm2835-wdt, at most about 15 s) fed by systemd itself; a reboot that
# hangs is forced after RebootWatchdogSec.
ensure_line "$BOOT/config.txt" "dtparam=watchdog=on"
put_text /etc/systemd/system.conf.d/selfcheck-watchdog.conf 0644 \
  "$(printf '%s\n' '# deploy/pi/provision.sh: the hardware watchdog, fed by systemd.' \
     '[Manager]' 'RuntimeWatchdogSec=15s' 'RebootWatchdogSec=2min')"

say "time: systemd-timesyncd${TIME_SERVER:+ from $TIME_SERVER}"
# A Pi has no real-time clock: loans' due dates and the journal's times need the network's.
if [ -n "$TIME_SERVER" ]; then
  put_text /etc/systemd/timesyncd.conf.d/selfcheck.conf 0644 \
    "$(printf '%s\n' '# deploy/pi/provision.sh: the central (or the library'"'"'s) NTP server first.' \
       '[Time]' "NTP=$TIME_SERVER")"
fi
run systemctl enable systemd-timesyncd.service

say "the station service on tty1"
put_file "$SRC/systemd/selfcheck-station.service" /etc/systemd/system/selfcheck-station.service 0644
run systemctl daemon-reload
run systemctl disable getty@tty1.service
run systemctl enable selfcheck-station.service
# Boot time: nothing here needs these on a kiosk.
for unit in apt-daily.timer apt-daily-upgrade.timer man-db.timer triggerhappy.service \
            ModemManager.service NetworkManager-wait-online.service; do
  if systemctl list-unit-files "$unit" >/dev/null 2>&1; then run systemctl disable "$unit"; fi
done

if [ "$READ_ONLY" -eq 1 ]; then
  say "read-only root (overlayroot): changes to / are lost at reboot, $DATA is not"
  # recurse=0: only / is overlaid; the data partition (and its journal bind) stay writable.
  put_text /etc/overlayroot.local.conf 0644 \
    "$(printf '%s\n' '# deploy/pi/provision.sh: / on a tmpfs overlay; other mounts as they are.' \
       'overlayroot="tmpfs:recurse=0"')"
  # The firmware loads the initramfs matching the kernel (initramfs8, initramfs_2712).
  ensure_line "$BOOT/config.txt" "auto_initramfs=1"
  if compgen -G "/lib/modules/*" >/dev/null; then
    run update-initramfs -u -k all
  else
    say "no kernel installed here: the initramfs is made when the kernel package is"
  fi
  say "to change the system later: 'sudo overlayroot-chroot', or remove /etc/overlayroot.local.conf there and reboot"
fi

say "done: reboot, then 'journalctl -u selfcheck-station -f' shows the app"
