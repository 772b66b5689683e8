"""Reads how the station's machine is doing: CPU temperature and throttling (Raspberry Pi),
disk, memory, load, uptime and the kernel's NTP clock estimate. Every reading is optional:
what a machine does not have is reported as None, never as an error."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


class _Timex(ctypes.Structure):
    # struct timex from <sys/timex.h> (Linux, LP64 and ILP32 alike: longs and ints).
    _fields_ = [
        ("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
        ("constant", ctypes.c_long), ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long), ("time_sec", ctypes.c_long), ("time_usec", ctypes.c_long),
        ("tick", ctypes.c_long), ("ppsfreq", ctypes.c_long), ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int), ("stabil", ctypes.c_long), ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long), ("errcnt", ctypes.c_long), ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int), ("_pad", ctypes.c_int * 11),
    ]


_TIME_ERROR = 5  # adjtimex(): the clock is not synchronised
_STA_NANO = 0x2000


@dataclass(frozen=True)
class Reading:
    cpu_temp_c: float | None
    throttled: int | None
    load1: float | None
    disk_free_pct: float | None
    mem_available_pct: float | None
    os_uptime_s: float | None
    clock_offset_s: float | None
    clock_synced: bool | None


class HealthProbe:
    """`root` stands in for `/` in tests (a fake /sys and /proc); `vcgencmd` for the tool."""

    def __init__(self, disk_path: Path | str = ".", *, root: Path | str = "/",
                 vcgencmd: str | None = None, adjtimex: bool = True) -> None:
        self.root = Path(root)
        self.disk_path = Path(disk_path)
        self.vcgencmd = vcgencmd if vcgencmd is not None else shutil.which("vcgencmd")
        self._libc = None
        if adjtimex:
            name = ctypes.util.find_library("c")
            try:
                self._libc = ctypes.CDLL(name, use_errno=True) if name else None
            except OSError:
                self._libc = None

    def read(self) -> Reading:
        offset, synced = self.clock()
        return Reading(self.cpu_temp(), self.throttled(), self.load1(), self.disk_free_pct(),
                       self.mem_available_pct(), self.os_uptime(), offset, synced)

    def _text(self, rel: str) -> str | None:
        try:
            return (self.root / rel).read_text().strip()
        except (OSError, UnicodeDecodeError):
            return None

    def cpu_temp(self) -> float | None:
        zones = sorted((self.root / "sys/class/thermal").glob("thermal_zone*"))
        # The CPU zone by its type where the kernel names one, else the first zone.
        zones.sort(key=lambda z: "cpu" not in (self._text(str(z.relative_to(self.root))
                                                          + "/type") or "").lower())
        for zone in zones:
            raw = self._text(str(zone.relative_to(self.root)) + "/temp")
            if raw and raw.lstrip("-").isdigit():
                return int(raw) / 1000
        return None

    def throttled(self) -> int | None:
        # Newer Pi kernels expose the firmware's bit field in sysfs; older ones need vcgencmd.
        raw = self._text("sys/devices/platform/soc/soc:firmware/get_throttled")
        if raw:
            try:
                return int(raw, 16)
            except ValueError:
                pass
        if not self.vcgencmd:
            return None
        try:
            out = subprocess.run([self.vcgencmd, "get_throttled"], capture_output=True,
                                 text=True, timeout=2).stdout
            return int(out.strip().partition("=")[2], 16)
        except (OSError, ValueError, subprocess.SubprocessError):
            return None

    def load1(self) -> float | None:
        raw = self._text("proc/loadavg")
        try:
            return float(raw.split()[0]) if raw else None
        except ValueError:
            return None

    def disk_free_pct(self) -> float | None:
        try:
            usage = shutil.disk_usage(self.disk_path)
        except OSError:
            return None
        return round(100 * usage.free / usage.total, 1) if usage.total else None

    def mem_available_pct(self) -> float | None:
        raw = self._text("proc/meminfo")
        if not raw:
            return None
        values = {}
        for line in raw.splitlines():
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts and parts[0].isdigit():
                values[key] = int(parts[0])
        total, avail = values.get("MemTotal"), values.get("MemAvailable")
        return round(100 * avail / total, 1) if total and avail is not None else None

    def os_uptime(self) -> float | None:
        raw = self._text("proc/uptime")
        try:
            return float(raw.split()[0]) if raw else None
        except ValueError:
            return None

    def clock(self) -> tuple[float | None, bool | None]:
        """The kernel's NTP offset estimate and whether it calls the clock synchronised."""
        if self._libc is None or os.name != "posix":
            return None, None
        tx = _Timex()
        try:
            state = self._libc.adjtimex(ctypes.byref(tx))  # modes 0: read only
        except (AttributeError, OSError):
            return None, None
        if state < 0:
            return None, None
        scale = 1e-9 if tx.status & _STA_NANO else 1e-6
        return round(tx.offset * scale, 6), state != _TIME_ERROR
