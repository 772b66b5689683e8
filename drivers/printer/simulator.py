"""A network receipt printer on a TCP socket (like port 9100 of a real one): it records the
bytes it receives and answers the real-time status queries with a paper state that tests set.

    python -m selfcheck.drivers.printer.simulator --port 9100 --paper low

The stream is scanned with the command lengths of the ESC/POS reference, so a 10 04 04 that
happens to sit inside raster image data is not taken for a status query.
"""

from __future__ import annotations

import argparse
import socket
import threading
from dataclasses import dataclass, field

from selfcheck.drivers.printer.status import Paper

DLE, ESC, GS = 0x10, 0x1B, 0x1D
# ESC commands with one parameter byte (ESC @ has none); others are taken as 2 bytes.
_ESC_ONE_PARAM = frozenset(b"!-345ERGMVadeJtr{")


@dataclass
class Scanned:
    queries: list[bytes] = field(default_factory=list)  # real-time status commands
    printed: bytes = b""  # everything else, in order


class EscPosScanner:
    """Sans-IO: feed received bytes; get the status queries and the print data apart."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> Scanned:
        self._buf += data
        out, printed, i = Scanned(), bytearray(), 0
        while i < len(self._buf):
            n = self._command_length(i)
            if n is None:  # an incomplete command: wait for the rest
                break
            cmd = bytes(self._buf[i:i + n])
            if (cmd[0] == DLE and cmd[1:2] == b"\x04") or (cmd[0] == GS and cmd[1:2] == b"r"):
                out.queries.append(cmd)
            else:
                printed += cmd
            i += n
        del self._buf[:i]
        out.printed = bytes(printed)
        return out

    def _command_length(self, i: int) -> int | None:
        b, avail = self._buf, len(self._buf) - i
        first = b[i]
        if first not in (DLE, ESC, GS):
            return 1
        if avail < 2:
            return None
        second = b[i + 1]
        if first == DLE:
            return 3 if second == 0x04 and avail >= 3 else (None if second == 0x04 else 1)
        if first == ESC:
            n = 2 if second == ord("@") else (3 if second in _ESC_ONE_PARAM else 2)
            return n if avail >= n else None
        # GS
        if second == ord("v"):  # GS v 0 m xL xH yL yH data
            if avail < 8:
                return None
            x = b[i + 4] | b[i + 5] << 8
            y = b[i + 6] | b[i + 7] << 8
            n = 8 + x * y
            return n if avail >= n else None
        if second == ord("V"):  # GS V m, or GS V 65/66 n
            if avail < 3:
                return None
            n = 4 if b[i + 2] in (65, 66) else 3
            return n if avail >= n else None
        return 3 if avail >= 3 else None  # GS r n, GS ! n, GS B n, ...


def status_answer(query: bytes, paper: Paper) -> bytes:
    """The one-byte answer an Epson-compatible printer gives to a status query."""
    low = paper in (Paper.LOW, Paper.OUT)  # a roll that ran out has passed near-end too
    out = paper == Paper.OUT
    if query[:2] == b"\x10\x04":
        n = query[2]
        if n == 4:
            return bytes([0x12 | (0x0C if low else 0) | (0x60 if out else 0)])
        if n == 2:  # offline cause: bit 5 = stopped because the paper ran out
            return bytes([0x12 | (0x20 if out else 0)])
        return b"\x12"  # n=1 online, n=3 no error
    if query[:2] == b"\x1dr" and query[2] in (1, 49):
        return bytes([(0x03 if low else 0) | (0x0C if out else 0)])
    return b"\x00"


class PrinterSimulator:
    """A TCP printer on (host, port); port 0 picks a free one (see `.port`)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0,
                 paper: Paper = Paper.OK) -> None:
        self.paper = paper
        self.answer_status = True  # False: a printer that never answers (some USB-LAN boxes)
        self.received = bytearray()  # every byte, in order
        self.printed = bytearray()  # without the status queries
        self.queries: list[bytes] = []
        self._lock = threading.Lock()
        self._server = socket.create_server((host, port))
        self.host, self.port = self._server.getsockname()[:2]
        self._threads: list[threading.Thread] = []
        self._conns: list[socket.socket] = []
        self._closed = False

    def start(self) -> PrinterSimulator:
        t = threading.Thread(target=self._accept, name="printer-sim", daemon=True)
        t.start()
        self._threads.append(t)
        return self

    def __enter__(self) -> PrinterSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._closed = True
        try:  # wakes the thread blocked in accept(); close() alone does not on Linux
            self._server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._server.close()
        for conn in list(self._conns):
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            conn.close()
        for t in self._threads:
            t.join(timeout=2)

    def take_printed(self) -> bytes:
        with self._lock:
            data = bytes(self.printed)
            self.printed.clear()
            return data

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._conns.append(conn)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _serve(self, conn: socket.socket) -> None:
        scanner = EscPosScanner()
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                scanned = scanner.feed(data)
                with self._lock:
                    self.received += data
                    self.printed += scanned.printed
                    self.queries += scanned.queries
                if self.answer_status:
                    for q in scanned.queries:
                        try:
                            conn.sendall(status_answer(q, self.paper))
                        except OSError:
                            return


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=9100)
    ap.add_argument("--paper", choices=[p.value for p in Paper if p != Paper.UNKNOWN],
                    default="ok")
    args = ap.parse_args()
    sim = PrinterSimulator(args.host, args.port, Paper(args.paper)).start()
    print(f"printer simulator on {sim.host}:{sim.port}, paper {sim.paper}")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        sim.close()
        print(f"received {len(sim.received)} bytes")


if __name__ == "__main__":
    main()
