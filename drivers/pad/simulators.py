"""Pad simulators that speak the real frames at the real baud rate, over a pty or TCP.

Tests and the demo hold a simulator object and place and lift tags on it
(``sim.place(uid, memory, afi)``, ``sim.lift(uid)``); a driver connects to ``sim.url``
(``/dev/pts/N`` or ``socket://127.0.0.1:PORT``) exactly as it would to a pad. The line is paced:
an answer is not started before the request would have finished arriving at the configured baud
rate, and its bytes leave no faster than the baud rate allows (10 bits a byte for 8N1, 11 for
8E1), so timings measured against a simulator are wire timings.

Fault injection for tests: `silent` (no answers), `inject_garbage(b)` (bytes before the next
answer), `corrupt_next` (answers sent with a broken CRC), `unplug()` / `replug()` (the port goes
away and comes back on the same address, like a USB cable pulled and put back).
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import termios
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

from selfcheck.drivers.pad import ascii_codec
from selfcheck.drivers.pad import feig_codec as fc
from selfcheck.drivers.pad import m810_codec as mc

_BAUD_CONSTANTS = {9600: termios.B9600, 19200: termios.B19200, 38400: termios.B38400}


@dataclass
class SimTag:
    uid: bytes
    memory: bytearray
    afi: int = 0x07
    dsfid: int = 0x00


class PadSimulator:
    baudrate = 19200
    bits_per_byte = 10
    block_size = 4

    def __init__(self, *, listen: str | None = None, pty: bool = False,
                 turnaround: float = 0.0) -> None:
        if (listen is None) == (not pty):
            raise ValueError("give either listen='host:port' or pty=True")
        self._listen = listen
        self._pty = pty
        self.turnaround = turnaround  # the pad's own processing time per command
        self.byte_time = self.bits_per_byte / self.baudrate
        self._tags: dict[bytes, SimTag] = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._server: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._master = -1
        self._slave = -1
        self._address: tuple[str, int] | None = None
        self.url = ""
        self.silent = False
        self.corrupt_next = 0
        self._garbage = bytearray()
        self.requests = 0

    # -- tags, as a person handles books
    def place(self, uid: bytes, memory: bytes = b"", afi: int = 0x07) -> None:
        size = self.block_size
        padded = bytearray(memory) + bytes(-len(memory) % size)
        with self._lock:
            self._tags[bytes(uid)] = SimTag(bytes(uid), padded, afi)

    def lift(self, uid: bytes) -> None:
        with self._lock:
            self._tags.pop(bytes(uid), None)

    def clear(self) -> None:
        with self._lock:
            self._tags.clear()

    def tag(self, uid: bytes) -> SimTag | None:
        with self._lock:
            return self._tags.get(bytes(uid))

    def afi_of(self, uid: bytes) -> int | None:
        tag = self.tag(uid)
        return tag.afi if tag else None

    def on_pad(self) -> list[bytes]:
        with self._lock:
            return list(self._tags)

    # -- faults
    def inject_garbage(self, data: bytes) -> None:
        with self._lock:
            self._garbage += data

    # -- protocol, per subclass
    def new_decoder(self) -> Any:
        raise NotImplementedError

    def respond(self, frame: Any) -> bytes | None:
        """The encoded answer to one request frame, or None to stay quiet."""
        raise NotImplementedError

    def corrupt(self, answer: bytes) -> bytes:
        return answer[:-1] + bytes([answer[-1] ^ 0x5A])

    # -- lifecycle
    def start(self) -> str:
        if self._pty:
            self._open_pty()
        else:
            self._open_server()
        return self.url

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._halt()

    def unplug(self) -> None:
        """The cable is pulled: the listening socket and the connection go away."""
        if self._pty:
            raise RuntimeError("unplug() needs a TCP simulator: a new pty gets a new path")
        self._halt()

    def _halt(self) -> None:
        # Threads first (they poll `_stop` every 0.1 s), then the fds they were using.
        self._stop.set()
        for t in self._threads:
            t.join(timeout=2)
        self._threads.clear()
        self._close_port()

    def replug(self) -> None:
        """The cable is back: listen again on the same address."""
        self._stop = threading.Event()
        self._open_server()

    def _close_port(self) -> None:
        for sock in (self._conn, self._server):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
        self._conn = self._server = None
        for fd in (self._master, self._slave):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._master = self._slave = -1

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        t = threading.Thread(target=target, args=args, daemon=True,
                             name=f"{type(self).__name__}-{target.__name__}")
        t.start()
        self._threads.append(t)

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        attrs = termios.tcgetattr(slave)
        speed = _BAUD_CONSTANTS.get(self.baudrate, termios.B19200)
        attrs[4] = attrs[5] = speed  # ispeed, ospeed
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        # Keep our slave fd open: the pty lives on while drivers open and close it.
        self._master, self._slave = master, slave
        self.url = os.ttyname(slave)
        stop = self._stop

        def read() -> bytes:
            while not stop.is_set():
                try:
                    ready, _, _ = select.select([master], [], [], 0.05)
                    if ready:
                        return os.read(master, 4096)
                except OSError:
                    return b""
            return b""

        os.set_blocking(master, False)

        def write(data: bytes) -> None:
            # With nobody on the other end the pty buffer fills; a real line drops the bytes.
            with contextlib.suppress(BlockingIOError):
                os.write(master, data)

        self._spawn(self._serve, read, write, stop)

    def _open_server(self) -> None:
        host, _, port = (self._listen or "127.0.0.1:0").rpartition(":")
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        address = self._address or (host or "127.0.0.1", int(port))
        server.bind(address)
        server.listen(2)
        self._address = server.getsockname()
        self._server = server
        self.url = f"socket://{self._address[0]}:{self._address[1]}"
        self._spawn(self._accept, server, self._stop)

    def _accept(self, server: socket.socket, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                ready, _, _ = select.select([server], [], [], 0.05)
                if not ready:
                    continue
                conn, _ = server.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            old, self._conn = self._conn, conn  # one host at a time, like a serial line
            if old is not None:
                with contextlib.suppress(OSError):
                    old.close()

            def read(conn: socket.socket = conn) -> bytes:
                while not stop.is_set():
                    try:
                        ready, _, _ = select.select([conn], [], [], 0.05)
                        if ready:
                            return conn.recv(4096)
                    except OSError:
                        return b""
                return b""

            def write(data: bytes, conn: socket.socket = conn) -> None:
                conn.sendall(data)

            self._spawn(self._serve, read, write, stop)

    # -- the line
    def _serve(self, read: Callable[[], bytes], write: Callable[[bytes], None],
               stop: threading.Event) -> None:
        decoder = self.new_decoder()
        rx_started = 0.0
        line_free = 0.0
        while not stop.is_set():
            chunk = read()
            if not chunk:
                return
            now = time.monotonic()
            if decoder.pending == 0:
                rx_started = now
            for frame in decoder.feed(chunk):
                self.requests += 1
                request_len = len(frame.encode())
                with self._lock:
                    answer = None if self.silent else self.respond(frame)
                    garbage, self._garbage = bytes(self._garbage), bytearray()
                    if answer is not None and self.corrupt_next > 0:
                        self.corrupt_next -= 1
                        answer = self.corrupt(answer)
                if answer is None and not garbage:
                    continue
                # The request took its wire time to arrive; the pad then needs its turnaround.
                begin = max(rx_started + request_len * self.byte_time + self.turnaround,
                            line_free)
                try:
                    line_free = self._paced(write, garbage + (answer or b""), begin, stop)
                except OSError:
                    return
                rx_started = time.monotonic()

    def _paced(self, write: Callable[[bytes], None], data: bytes, begin: float,
               stop: threading.Event) -> float:
        """Send `data` so that byte k is out no sooner than begin + (k+1) byte times."""
        step = max(1, int(0.002 / self.byte_time))  # ~2 ms of line per write
        bt = self.byte_time
        for k in range(0, len(data), step):
            part = data[k:k + step]
            due = begin + (k + len(part)) * bt
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if stop.is_set():
                break
            write(part)
        return begin + len(data) * bt


class M810Simulator(PadSimulator):
    """A 3M 810 pad. `uid_lsb_first` makes it report UIDs reversed, as some clones do."""

    baudrate = mc.BAUDRATE
    bits_per_byte = mc.BITS_PER_BYTE
    version = bytes([0x0A, 0x05, 0x00, 0x02])  # what the captured pad reported

    def __init__(self, *, uid_lsb_first: bool = False, fail_afi_writes: int = 0,
                 ignore_afi_writes: bool = False, fail_block_writes: int = 0,
                 garble_block_writes: int = 0, **kw: Any) -> None:
        super().__init__(**kw)
        self.uid_lsb_first = uid_lsb_first
        self.fail_afi_writes = fail_afi_writes
        self.ignore_afi_writes = ignore_afi_writes
        # Tag-programming faults: the next N block writes are refused (RF error), or are
        # answered OK but store a flipped byte (a weak tag: only reading back tells)
        self.fail_block_writes = fail_block_writes
        self.garble_block_writes = garble_block_writes

    def new_decoder(self) -> mc.Decoder:
        return mc.Decoder()

    def _wire(self, uid: bytes) -> bytes:
        return uid[::-1] if self.uid_lsb_first else uid

    def _find(self, wire: bytes) -> SimTag | None:
        return self._tags.get(self._wire(wire))  # the reversal is its own inverse

    def respond(self, frame: mc.Frame) -> bytes | None:
        body = frame.body
        if frame.start == mc.START_VERSION:
            if body == mc.VERSION_BODY:
                return mc.Frame(mc.VERSION_BODY + self.version, mc.START_VERSION).encode()
            return None
        cmd = frame.cmd
        if cmd == mc.CMD_INVENTORY:
            return mc.inventory_response([self._wire(u) for u in self._tags]).encode()
        if cmd not in (mc.CMD_READ, mc.CMD_WRITE, mc.CMD_GET_AFI, mc.CMD_WRITE_AFI):
            return None
        wire = body[1:9]
        tag = self._find(wire)
        if len(wire) != 8 or tag is None:
            extra = b"\x00" if cmd in (mc.CMD_READ, mc.CMD_WRITE) else b""
            return mc.fail_response(cmd, wire.ljust(8, b"\x00"), extra).encode()
        if cmd == mc.CMD_READ and len(body) == 11:
            first, count = body[9], body[10]
            mem = tag.memory
            if (first + count) * 4 > len(mem):
                return mc.fail_response(cmd, wire, b"\x00").encode()
            blocks = [bytes(mem[4 * b:4 * b + 4]) for b in range(first, first + count)]
            return mc.read_response(wire, first, blocks).encode()
        if cmd == mc.CMD_WRITE and len(body) >= 12:
            first, count, data = body[9], body[10], body[12:]
            if len(data) != 4 * count or self.fail_block_writes > 0:
                self.fail_block_writes = max(0, self.fail_block_writes - 1)
                return mc.fail_response(cmd, wire, b"\x00").encode()
            if self.garble_block_writes > 0:
                self.garble_block_writes -= 1
                data = bytes([data[0] ^ 0x01]) + data[1:]
            end = 4 * first + len(data)
            if end > len(tag.memory):
                tag.memory.extend(bytes(end - len(tag.memory)))
            tag.memory[4 * first:end] = data
            return mc.ok_response(cmd, wire + bytes([count])).encode()
        if cmd == mc.CMD_GET_AFI:
            return mc.ok_response(cmd, wire + bytes([tag.afi])).encode()
        if cmd == mc.CMD_WRITE_AFI and len(body) == 10:
            if self.fail_afi_writes > 0:
                self.fail_afi_writes -= 1
                return mc.fail_response(cmd, wire).encode()
            if not self.ignore_afi_writes:
                tag.afi = body[9]
            return mc.ok_response(cmd, wire).encode()
        return None


class FeigSimulator(PadSimulator):
    """A FEIG ISO host reader (standard protocol). `block_order` as in FeigPad."""

    baudrate = fc.BAUDRATE
    bits_per_byte = fc.BITS_PER_BYTE
    adr = 0x00

    def __init__(self, *, block_order: str = "reversed", max_datasets: int = 20,
                 rf_error_next: int = 0, **kw: Any) -> None:
        super().__init__(**kw)
        self.reversed_blocks = block_order == "reversed"
        self.max_datasets = max_datasets
        self.rf_error_next = rf_error_next
        self._pending: list[bytes] = []
        self.locked_afi = False

    def new_decoder(self) -> fc.Decoder:
        return fc.Decoder()

    def _answer(self, cmd: int, status: int, data: bytes = b"") -> bytes:
        return fc.response(self.adr, cmd, status, data).encode()

    def respond(self, frame: fc.Frame) -> bytes | None:
        if frame.cmd == fc.CMD_SOFTWARE_VERSION:
            return self._answer(frame.cmd, 0, bytes([0x03, 0x00, 0x00, 0x00, 0x00]))
        if frame.cmd == fc.CMD_RF_RESET:
            return self._answer(frame.cmd, 0)
        if frame.cmd != fc.CMD_ISO or len(frame.data) < 2:
            return self._answer(frame.cmd, 0x82)  # command not available
        if self.rf_error_next > 0:
            self.rf_error_next -= 1
            return self._answer(frame.cmd, fc.STATUS_RF_ERROR)
        iso, mode, rest = frame.data[0], frame.data[1], frame.data[2:]
        if iso == fc.ISO_INVENTORY:
            if not mode & fc.MODE_MORE:
                self._pending = list(self._tags)
            batch, self._pending = (self._pending[:self.max_datasets],
                                    self._pending[self.max_datasets:])
            if not batch:
                return self._answer(frame.cmd, fc.STATUS_NO_TRANSPONDER)
            records = b"".join(bytes([fc.TR_TYPE_ISO15693, self._tags[u].dsfid]) + u
                               for u in batch if u in self._tags)
            status = fc.STATUS_MORE_DATA if self._pending else fc.STATUS_OK
            return self._answer(frame.cmd, status, bytes([len(records) // 10]) + records)
        if not mode & fc.MODE_ADDRESSED or len(rest) < 8:
            return self._answer(frame.cmd, 0x80)
        tag = self._tags.get(rest[:8])
        if tag is None:
            return self._answer(frame.cmd, fc.STATUS_NO_TRANSPONDER)
        args = rest[8:]
        size = self.block_size
        if iso == fc.ISO_READ_MULTIPLE and len(args) == 2:
            first, count = args
            if (first + count) * size > len(tag.memory):
                return self._answer(frame.cmd, fc.STATUS_ISO_ERROR, b"\x10")
            data = fc.reorder_blocks(bytes(tag.memory[first * size:(first + count) * size]),
                                     size, self.reversed_blocks)
            records = b"".join(b"\x00" + data[k * size:(k + 1) * size] for k in range(count))
            return self._answer(frame.cmd, 0, bytes([count, size]) + records)
        if iso == fc.ISO_WRITE_MULTIPLE and len(args) >= 3:
            first, count, db_size = args[0], args[1], args[2]
            data = args[3:]
            if db_size != size or len(data) != count * size:
                return self._answer(frame.cmd, 0x81)  # length error
            data = fc.reorder_blocks(data, size, self.reversed_blocks)
            end = first * size + len(data)
            if end > len(tag.memory):
                tag.memory.extend(bytes(end - len(tag.memory)))
            tag.memory[first * size:end] = data
            return self._answer(frame.cmd, 0)
        if iso == fc.ISO_WRITE_AFI and len(args) == 1:
            tag.afi = args[0]
            return self._answer(frame.cmd, 0)
        if iso == fc.ISO_LOCK_AFI:
            self.locked_afi = True  # recorded so tests can prove it is never sent
            return self._answer(frame.cmd, 0)
        if iso == fc.ISO_SYSTEM_INFO:
            blocks = max(1, len(tag.memory) // size)
            info = (bytes([tag.dsfid]) + tag.uid + bytes([tag.afi, size - 1, blocks - 1])
                    + b"\x01")
            return self._answer(frame.cmd, 0, info)
        return self._answer(frame.cmd, 0x82)


class _LineDecoderShim:
    """The ASCII simulator ignores what the host sends."""

    pending = 0

    def feed(self, data: bytes) -> list[Any]:
        return []


class AsciiSimulator(PadSimulator):
    """A line reader printing the UIDs in its field every `interval` seconds."""

    baudrate = 9600
    bits_per_byte = 10

    def __init__(self, *, interval: float = 0.1, lsb_first: bool = False, **kw: Any) -> None:
        super().__init__(**kw)
        self.interval = interval
        self.lsb_first = lsb_first

    def new_decoder(self) -> _LineDecoderShim:
        return _LineDecoderShim()

    def respond(self, frame: Any) -> bytes | None:
        return None

    def _serve(self, read: Callable[[], bytes], write: Callable[[bytes], None],
               stop: threading.Event) -> None:
        while not stop.is_set():
            with self._lock:
                lines = b"".join(ascii_codec.encode_line(u, self.lsb_first) for u in self._tags)
                garbage, self._garbage = bytes(self._garbage), bytearray()
            if not self.silent and (lines or garbage):
                try:
                    self._paced(write, garbage + lines, time.monotonic(), stop)
                except OSError:
                    return
            stop.wait(self.interval)


SIMULATORS: dict[str, type[PadSimulator]] = {
    "3m810": M810Simulator,
    "feig": FeigSimulator,
    "ascii": AsciiSimulator,
}
