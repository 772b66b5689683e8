"""When something outside breaks (the broker, the database, the book pad's port, the library
system), the real commands say so in one line, in the IT person's language, and once more when
it clears: never a traceback for it, never the same line at every retry."""

from __future__ import annotations

import itertools
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfcheck.lab.broker import Broker, free_port
from tests.conftest import ROOT, wait_until
from tests.dbs import fresh_db

TRACEBACK = "Traceback (most recent call last)"


class Run:
    """A `selfcheck ...` child process whose stdout and stderr lines are collected as they
    come, so that a test waits for a line instead of guessing a delay."""

    def __init__(self, argv: list[str], *, lang: str = "en",
                 env: dict[str, str] | None = None, unprivileged: bool = False) -> None:
        full = {k: v for k, v in os.environ.items()
                if not k.startswith(("SELFCHECK_", "LC_", "LANG"))}
        full.update({"LANG": "vi_VN.UTF-8" if lang == "vi" else "C.UTF-8",
                     "PYTHONPATH": str(ROOT), **(env or {})})
        self.out: list[str] = []
        self.err: list[str] = []
        # Unprivileged: root without the capabilities that let it ignore file permissions,
        # as the services' own users are (they cannot run the checkout's interpreter).
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"] \
            if unprivileged else []
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "selfcheck.cli", *argv], cwd=ROOT, env=full,
            text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for stream, into in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, into), daemon=True).start()

    @staticmethod
    def _read(stream: object, into: list[str]) -> None:
        for line in stream:  # type: ignore[attr-defined]
            into.append(line.rstrip("\n"))

    def count(self, pattern: str, *, level: str | None = None) -> int:
        return len(self.lines(pattern, level=level))

    def lines(self, pattern: str, *, level: str | None = None) -> list[str]:
        rx = re.compile(pattern)
        return [ln for ln in list(self.err)
                if rx.search(ln) and (level is None or f" {level} " in ln)]

    def wait_err(self, pattern: str, n: int = 1, timeout_s: float = 30.0, *,
                 level: str | None = None) -> None:
        wait_until(lambda: self.count(pattern, level=level) >= n or self.proc.poll() is not None,
                   timeout_s, f"{n} x {pattern!r} on stderr")
        assert self.count(pattern, level=level) >= n, self.text()

    def wait_out(self, text: str, timeout_s: float = 30.0) -> None:
        wait_until(lambda: text in self.out or self.proc.poll() is not None, timeout_s,
                   f"{text!r} on stdout")
        assert text in self.out, self.text()

    def text(self) -> str:
        return "\n".join(["-- stdout", *self.out, "-- stderr", *self.err])

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for r in started:
        r.stop()


class Gate:
    """A TCP forwarder in front of the real PostgreSQL that the test shuts and opens: shut, it
    cuts every connection and takes each new one only to close it (counting them), which is
    what a client sees of a server that went away, without touching the shared server."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.open = False
        self.refused = 0  # connections closed at once while shut: the client's retries
        self._lock = threading.Lock()
        self._live: list[socket.socket] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                if not self.open:
                    self.refused += 1
                    conn.close()
                    continue
                upstream = socket.create_connection(self.target)
                self._live += [conn, upstream]
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def set_open(self, value: bool) -> None:
        with self._lock:
            self.open = value
            if not value:
                for s in self._live:
                    try:
                        s.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                    s.close()
                self._live = []

    def close(self) -> None:
        self.set_open(False)
        self._server.close()


def _metrics(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def _metric(port: int, name: str) -> float | None:
    try:
        return _metrics(port).get(name)
    except OSError:
        return None


def _central(tmp_path: Path, broker: str, db: str, *extra: str, lang: str = "en",
             log_level: str = "info") -> list[str]:
    return ["--log-level", log_level, "central", "--broker", broker, "--db", db,
            "--ils-check", "3600", *extra]


# -- the database

def test_postgresql_down_at_start_and_while_running_is_said_once_each_time(
        tmp_path: Path, broker: Broker, runs: list[Run]) -> None:
    with fresh_db("postgresql", tmp_path) as url:
        gate = Gate(("127.0.0.1", 5432))
        try:
            db = url.replace("127.0.0.1:5432", f"127.0.0.1:{gate.port}")
            mport = free_port()
            c = Run(_central(tmp_path, str(broker.address), db, "--metrics",
                             f"127.0.0.1:{mport}", log_level="debug"))
            runs.append(c)
            down = r"The database .* cannot be used"
            c.wait_err(down, level="WARNING")
            # It keeps trying (each retry a debug line only), waiting longer each time.
            # Counted from the log, not the gate: the line follows the refusal by a moment.
            wait_until(lambda: c.count("still store.down") >= 3, 30, "three more tries")
            assert c.count(down) == 1 and c.proc.poll() is None, c.text()
            gate.set_open(True)
            c.wait_err(r"The database .* works again", level="INFO")
            c.wait_out("central ready")
            wait_until(lambda: _metric(mport, "selfcheck_store_up") == 1.0, 10, "store up")
            # Now it goes away under the running central: its every-second step meets it.
            before = gate.refused
            gate.set_open(False)
            c.wait_err(down, 2)
            wait_until(lambda: gate.refused >= before + 5, 30, "five more tries")
            assert c.count(down) == 2, c.text()
            assert _metric(mport, "selfcheck_store_up") == 0.0
            assert _metric(mport, 'selfcheck_store_fault{fault="down"}') == 1.0
            gate.set_open(True)
            c.wait_err(r"The database .* works again", 2)
            wait_until(lambda: _metric(mport, "selfcheck_store_up") == 1.0, 10, "store up")
            assert TRACEBACK not in c.text()
            assert c.count(r"_release_due|bridge step") == 0, c.text()
        finally:
            gate.close()


def test_a_store_that_may_not_be_written_waits_with_one_line(
        tmp_path: Path, broker: Broker, runs: list[Run]) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    folder.chmod(0o500)
    c = Run(_central(tmp_path, str(broker.address), f"sqlite:///{folder / 'c.db'}"),
            lang="vi", unprivileged=True)
    runs.append(c)
    c.wait_err("Không được phép ghi vào cơ sở dữ liệu", level="WARNING")
    assert c.proc.poll() is None  # waiting, not exiting into a restart loop
    folder.chmod(0o700)  # the IT person gives the service's user its folder
    c.wait_err("đã hoạt động trở lại", level="INFO", timeout_s=60)
    c.wait_out("central ready")
    assert c.count("Không được phép ghi") == 1 and TRACEBACK not in c.text(), c.text()


# -- the broker

def test_broker_down_is_said_once_and_back_once_with_a_metric(
        tmp_path: Path, runs: list[Run]) -> None:
    port, mport = free_port(), free_port()
    c = Run(_central(tmp_path, f"127.0.0.1:{port}", f"sqlite:///{tmp_path / 'c.db'}",
                     "--metrics", f"127.0.0.1:{mport}", log_level="debug"))
    runs.append(c)
    c.wait_err(rf"The broker 127.0.0.1:{port} cannot be reached", level="WARNING")
    c.wait_err("still broker.down", 3)  # paho's retries, each a debug line only
    assert c.count("cannot be reached") == 1, c.text()
    c.wait_out("central ready")  # it connects by itself: nothing to fix in the central
    assert _metric(mport, "selfcheck_broker_up") == 0.0
    broker = Broker(tmp_path / "broker", port).start()
    try:
        c.wait_err(rf"The broker 127.0.0.1:{port} is reached again", level="INFO")
        wait_until(lambda: _metric(mport, "selfcheck_broker_up") == 1.0, 10, "broker up")
        broker.stop()
        c.wait_err("was lost", level="WARNING")
        wait_until(lambda: _metric(mport, "selfcheck_broker_up") == 0.0, 10, "broker down")
        broker.start()
        c.wait_err("is reached again", 2)
        assert c.count("was lost") == 1 and TRACEBACK not in c.text(), c.text()
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def two_cas(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two credential sets from deploy/mosquitto/make-credentials: the broker's, and another
    whose CA did not sign the broker's certificate."""
    made = []
    for name in ("right", "other"):
        base = tmp_path_factory.mktemp(name)
        (base / "roles").write_text("station st-a site-1\nbridge central-bridge-1\n")
        subprocess.run([str(ROOT / "deploy" / "mosquitto" / "make-credentials"),
                        str(base / "roles"), str(base / "out")], check=True,
                       capture_output=True)
        made.append(base / "out")
    return made[0], made[1]


@pytest.fixture(scope="module")
def secure_broker(two_cas: tuple[Path, Path],
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("sbroker"), secure=two_cas[0]).start()
    yield b
    b.stop()


def test_central_with_a_wrong_broker_password_says_so_and_is_not_ready(
        tmp_path: Path, secure_broker: Broker, runs: list[Run]) -> None:
    wrong = tmp_path / "bridge.pass"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    c = Run(_central(tmp_path, str(secure_broker.plain_address),
                     f"sqlite:///{tmp_path / 'c.db'}", "--id", "central-bridge-1",
                     "--password-file", str(wrong), log_level="debug"), lang="vi")
    runs.append(c)
    c.wait_err("từ chối đăng nhập của central-bridge-1", level="WARNING")
    c.wait_err("still broker.login_refused", 4)  # it went on trying past the first 10 s
    assert "central ready" not in c.out, c.text()
    assert c.count("từ chối đăng nhập") == 1 and TRACEBACK not in c.text(), c.text()


def test_a_wrong_ca_is_named_by_central_and_station(
        tmp_path: Path, two_cas: tuple[Path, Path], secure_broker: Broker,
        runs: list[Run]) -> None:
    right, other = two_cas
    bridge_pass = right / "secrets" / "central-bridge-1.pass"
    c = Run(_central(tmp_path, str(secure_broker.address), f"sqlite:///{tmp_path / 'c.db'}",
                     "--id", "central-bridge-1", "--password-file", str(bridge_pass),
                     "--tls", "--ca-file", str(other / "ca.crt"), log_level="debug"))
    runs.append(c)
    c.wait_err("certificate is not trusted", level="WARNING")
    cfg = tmp_path / "station.toml"
    cfg.write_text(f'site = "site-1"\nstation = "st-a"\nbroker = "{secure_broker.address}"\n'
                   f'tls = true\nca_file = "{other / "ca.crt"}"\n'
                   f'password_file = "{right / "secrets" / "st-a.pass"}"\n'
                   f'journal = "{tmp_path / "journal.db"}"\nlang = "en"\n')
    st = Run(["station", "--headless", "--config", str(cfg)])
    runs.append(st)
    st.wait_err("certificate is not trusted", level="WARNING")
    c.wait_err("still broker.tls_untrusted", 4)  # past the 10 s a broker that is down gets
    assert "central ready" not in c.out
    for r in (c, st):
        assert r.count("certificate is not trusted") == 1 and TRACEBACK not in r.text()


def test_station_says_broker_down_once_and_back(tmp_path: Path, runs: list[Run]) -> None:
    port = free_port()
    cfg = tmp_path / "station.toml"
    cfg.write_text(f'site = "site-1"\nstation = "st-a"\nbroker = "127.0.0.1:{port}"\n'
                   f'journal = "{tmp_path / "journal.db"}"\nlang = "vi"\n')
    st = Run(["--log-level", "debug", "station", "--headless", "--config", str(cfg)])
    runs.append(st)
    st.wait_err(f"Không kết nối được broker 127.0.0.1:{port}", level="WARNING")
    st.wait_err("still broker.down", 2)
    broker = Broker(tmp_path / "broker", port).start()
    try:
        st.wait_err("đã kết nối lại được broker", level="INFO")
    finally:
        broker.stop()
    assert st.count("Không kết nối được broker") == 1 and TRACEBACK not in st.text()


# -- the station's own parts

def _station_cfg(tmp_path: Path, pad_url: str, journal: Path | None = None,
                 lang: str = "en") -> Path:
    cfg = tmp_path / "station.toml"
    cfg.write_text(f'site = "site-1"\nstation = "st-a"\nbroker = "127.0.0.1:{free_port()}"\n'
                   f'journal = "{journal or tmp_path / "journal.db"}"\nlang = "{lang}"\n'
                   f'pad = "3m810"\npad_url = "{pad_url}"\n')
    cfg.chmod(0o644)
    return cfg


def _gaps(r: Run, pattern: str) -> list[float]:
    """Seconds between the stamped lines that match."""
    stamps = [time.mktime(time.strptime(ln[:19], "%Y-%m-%dT%H:%M:%S"))
              for ln in r.lines(pattern)]
    return [b - a for a, b in itertools.pairwise(stamps)]


def test_an_absent_pad_port_is_said_once_and_asked_less_and_less(
        tmp_path: Path, runs: list[Run]) -> None:
    st = Run(["--log-level", "debug", "station", "--headless", "--config",
              str(_station_cfg(tmp_path, str(tmp_path / "ttyUSB-gone")))])
    runs.append(st)
    st.wait_err("The book pad's port .* does not exist", level="WARNING")
    st.wait_err("still pad.absent", 4, timeout_s=40)  # 1 + 2 + 4 + 8 s
    assert st.count("does not exist") == 1, st.text()
    assert st.count("pad inventory failed") == 0
    gaps = _gaps(st, "still pad.absent")
    assert gaps[-1] >= 3, gaps  # backing off, not once a second
    assert TRACEBACK not in st.text()


def test_a_pad_port_the_station_may_not_open_names_the_dialout_group(
        tmp_path: Path, runs: list[Run]) -> None:
    master, slave = os.openpty()  # a real tty the station's user may not open
    try:
        tty = os.ttyname(slave)
        os.chmod(tty, 0)
        st = Run(["station", "--headless", "--config", str(_station_cfg(tmp_path, tty))],
                 unprivileged=True)
        runs.append(st)
        st.wait_err("dialout")  # the start-up check: permission, not the cable
        st.wait_err("may not open the book pad's port", level="WARNING")
        assert st.count("check the cable") == 0 and st.count("Check the cable") == 0
        assert st.count("may not open the book pad's port", level="WARNING") == 1
        assert TRACEBACK not in st.text()
    finally:
        os.close(master)
        os.close(slave)


def test_a_journal_folder_that_may_not_be_written_is_one_line_and_exit_1(
        tmp_path: Path) -> None:
    folder = tmp_path / "journal"
    folder.mkdir()
    folder.chmod(0o500)
    cfg = _station_cfg(tmp_path, "socket://127.0.0.1:9", journal=folder / "j.db",
                       lang="vi")
    st = Run(["station", "--headless", "--config", str(cfg)], lang="vi", unprivileged=True)
    assert st.proc.wait(60) == 1
    st.wait_err("Không ghi được nhật ký trạm")
    text = st.text()
    assert "chown" in text and len(st.err) == 1, text
    assert TRACEBACK not in text


# -- the library system

def _sip2(tmp_path: Path, port: int, password: str, timeout: float = 5) -> list[str]:
    secret = tmp_path / "ils.pass"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    return ["--ils", f"sip2://sc@127.0.0.1:{port}?institution=tv-test&timeout={timeout:g}",
            "--ils-password-file", str(secret)]


def test_doctor_and_central_name_timeout_for_a_slow_library_system(
        tmp_path: Path, broker: Broker, runs: list[Run]) -> None:
    from selfcheck.lab.standins.sip2_server import Library, running

    lib = Library(delay_s=2.0)  # slower than the URL's timeout=1 below allows
    with running(lib) as (server, _proxy):
        ils = _sip2(tmp_path, server.port, lib.password, timeout=1)
        doctor = Run(["doctor", "--central", "--broker", str(broker.address), "--db",
                      f"sqlite:///{tmp_path / 'd.db'}", "--lang", "en", *ils])
        doctor.proc.wait(60)
        wait_until(lambda: any("library system" in ln for ln in doctor.out + doctor.err), 5)
        text = doctor.text()
        assert "timeout=" in text and "now 1 s" in text, text
        assert "firewall" not in text
        c = Run(_central(tmp_path, str(broker.address), f"sqlite:///{tmp_path / 'c.db'}",
                         *ils))
        runs.append(c)
        c.wait_err("library system down: .* raise timeout=SECONDS in the SIP2 URL",
                   level="WARNING")
    assert TRACEBACK not in doctor.text() + c.text()


def test_a_wrong_sip2_password_points_at_the_file_and_a_fixed_file_is_used_at_once(
        tmp_path: Path, broker: Broker, runs: list[Run]) -> None:
    from selfcheck.lab.standins.sip2_server import Library, running

    lib = Library()
    with running(lib) as (server, _proxy):
        ils = _sip2(tmp_path, server.port, "wrong")
        doctor = Run(["doctor", "--central", "--broker", str(broker.address), "--db",
                      f"sqlite:///{tmp_path / 'd.db'}", "--lang", "vi", *ils])
        doctor.proc.wait(60)
        wait_until(lambda: any("--ils-password-file" in ln
                               for ln in doctor.out + doctor.err), 5)
        text = doctor.text()
        assert "dòng đầu của tệp --ils-password-file" in text, text
        assert "trong --ils." not in text  # not where the password is
        c = Run(_central(tmp_path, str(broker.address), f"sqlite:///{tmp_path / 'c.db'}",
                         *ils[:-2], "--ils-password-file", ils[-1], "--ils-check", "0.5",
                         log_level="debug"), lang="vi")
        runs.append(c)
        c.wait_err("library system login refused: .*--ils-password-file.*không cần khởi động "
                   "lại", level="WARNING")
        (tmp_path / "ils.pass").write_text(lib.password + "\n")  # the IT person fixes it
        c.wait_err("library system answers", level="INFO")
        assert c.count("login refused") == 1, c.text()
    assert TRACEBACK not in doctor.text() + c.text()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs: a disk that can really fill up (mounting needs root)."""
    where = tmp_path / "disk"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(where)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def _fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_is_said_once_and_its_end_too(
        tmp_path: Path, tiny_disk: Path, broker: Broker, runs: list[Run]) -> None:
    import datetime as dt

    from selfcheck.mqtt import messages, topics
    from selfcheck.mqtt.connection import make_client
    from selfcheck.mqtt.ids import uuid7

    c = Run(_central(tmp_path, str(broker.address), f"sqlite:///{tiny_disk / 'c.db'}",
                     "--load-sample", log_level="debug"))
    runs.append(c)
    c.wait_out("central ready")
    acks: list[bytes] = []
    station = make_client("st-a")
    station.on_message = lambda cl, ud, m: acks.append(m.payload)
    station.connect(broker.address.host, broker.address.port)
    station.subscribe(topics.ack_tx("site-1", "st-a"), qos=1)
    station.loop_start()
    try:
        tx = messages.TxReturn(msg_id=uuid7(), seq=1, site="site-1", station="st-a",
                               at=dt.datetime.now(dt.UTC), item_id="39000001")

        def send() -> None:  # what the station's outbox does until it has its ack
            station.publish(topics.tx("site-1", "st-a", "return"), messages.encode(tx), qos=1)

        filler = _fill(tiny_disk)
        full = "its disk is full"
        send()
        c.wait_err(full, level="WARNING")
        for n in range(2, 5):
            send()
            c.wait_err("still store.full", n - 1)
        assert acks == [] and c.count(full) == 1, c.text()
        filler.unlink()  # space again

        def acked() -> bool:
            send()
            return bool(acks)

        wait_until(acked, 20, "an ack once there is space")
        c.wait_err("works again", level="INFO")
        assert c.count(full) == 1 and c.count("works again") == 1, c.text()
    finally:
        station.loop_stop()
        station.disconnect()
    assert TRACEBACK not in c.text(), c.text()


def test_every_fault_the_code_names_has_its_words_in_both_languages() -> None:
    from selfcheck.system.faults import FAULTS

    sources = [ROOT / p for p in ("mqtt/broker_state.py", "central/bridge.py",
                                  "drivers/pad/watcher.py", "central/ils_health.py")]
    used = {k for src in sources for k in re.findall(
        r'"((?:broker|store|pad|ils)\.[a-z_]+)"', src.read_text())}
    assert {"broker.down", "store.full", "pad.permission", "ils.slow"} <= used
    vi, en = FAULTS.texts("vi"), FAULTS.texts("en")
    assert used <= set(en) and used <= set(vi), used - set(en) - set(vi)
    assert set(vi) == set(en)
    # Vietnamese with its diacritics, not ASCII stripped of them.
    assert all(re.search(r"[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹáàãéèíìóòõúùýỏ]",
                         text.lower()) for text in vi.values()), vi
