"""Catalogue import into the circulation store: loan rules, patrons and items from CSV, items
from MARC21 (binary .mrc) and MARCXML as exported by Koha and other library systems.

One import is one database transaction. Every row is checked first; a bad row is reported with
where it is (CSV line or MARC record number), the field and the reason. By default any bad row
rejects the whole import and nothing changes, so a half-imported catalogue never happens; with
`skip_bad=True` the good rows are written and the bad ones are listed as skipped.

Rows already in the store are updated (a re-export from the library system is the normal way
to refresh): rules by category, patrons by card number (their pseudonymous `ref` and `blocked`
flag are kept), items by barcode. Nothing is ever deleted by an import.

Text is stored NFC-normalised: Vietnamese arrives precomposed from one system and decomposed
(letter + combining marks, as MARC-8 has it) from another, and both must compare equal.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
import secrets
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.engine import Connection, Engine

from selfcheck.central import pin as pins
from selfcheck.central.schema import items, patrons, rules

Row = dict[str, Any]
KOHA_ITEMS_TAG = "952"


@dataclass(frozen=True)
class Problem:
    source: str  # file name
    where: str  # "line 7", "record 3"
    field: str  # CSV column or MARC tag$subfield
    reason: str

    def __str__(self) -> str:
        return f"{self.source}: {self.where}: {self.field}: {self.reason}"


@dataclass
class Report:
    inserted: dict[str, int] = field(default_factory=dict)  # by table
    updated: dict[str, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)  # rejected (or skipped) rows
    notes: list[str] = field(default_factory=list)  # nothing wrong, worth knowing
    committed: bool = False

    def lines(self) -> list[str]:
        out = []
        for table in ("rules", "patrons", "items"):
            if table in self.inserted or table in self.updated:
                out.append(f"{table}: {self.inserted.get(table, 0)} new, "
                           f"{self.updated.get(table, 0)} updated")
        out += [f"note: {n}" for n in self.notes]
        verb = "skipped" if self.committed else "rejected"
        out += [f"{verb}: {p}" for p in self.problems]
        if not self.committed:
            out.append(f"nothing imported: {len(self.problems)} bad row(s); fix them, or "
                       "import with --skip-bad to leave them out")
        return out


class CatalogueError(ValueError):
    """A whole file cannot be read (not CSV, not UTF-8, columns missing, not MARC)."""


@dataclass
class Parsed:
    """Rows read from one file, each with where it came from, and the rows that were bad."""

    table: Table
    source: str  # the file name
    rows: list[tuple[str, Row]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class _Bad(Exception):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


# -- field checks
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _text(value: str | None, name: str, max_len: int, *, required: bool = False) -> str | None:
    value = unicodedata.normalize("NFC", (value or "").strip())
    if not value:
        if required:
            raise _Bad(name, "is empty")
        return None
    if len(value) > max_len:
        raise _Bad(name, f"is {len(value)} characters long, at most {max_len} fit")
    if bad := _CONTROL.search(value):
        # A NUL, a tab or a line break inside a name or a title would reach the screen, the
        # receipt printer and SIP2 (where a line break ends a message) as it is.
        hint = ": a quote is probably missing" if bad.group() in "\r\n" else ""
        raise _Bad(name, f"has a control character (U+{ord(bad.group()):04X}) at character "
                   f"{bad.start() + 1}{hint}")
    return value


def _int(value: str | None, name: str, low: int, high: int) -> int:
    text = (value or "").strip()
    # ASCII digits, and few: `\d` takes other scripts' digits, and int() refuses a number of
    # thousands of digits with a ValueError of its own.
    if not re.fullmatch(r"-?[0-9]{1,18}", text):
        raise _Bad(name, f"{text[:40]!r} is not a whole number")
    number = int(text)
    if not low <= number <= high:
        raise _Bad(name, f"{number} is not between {low} and {high}")
    return number


def _date(value: str | None, name: str) -> dt.date | None:
    """ISO (Koha's export format) or DD/MM/YYYY (how dates are written in Vietnam)."""
    text = (value or "").strip()
    if not text or text == "0000-00-00":
        return None
    for fmt in ("%Y-%m-%d", "%d/%m/%Y"):
        try:
            return dt.datetime.strptime(text, fmt).date()
        except ValueError:
            pass
    raise _Bad(name, f"{text!r} is not a date (YYYY-MM-DD or DD/MM/YYYY)")


def _not_for_loan(value: str | None, name: str) -> bool:
    """Koha's notforloan is a number: 0 lends, anything else does not (negative: on order)."""
    text = (value or "").strip().lower()
    if text in ("", "0", "no", "false", "n"):
        return False
    if text in ("yes", "true", "y") or re.fullmatch(r"-?\d+", text):
        return True
    raise _Bad(name, f"{text!r} is not a number (0 = for loan) or yes/no")


# -- CSV
def _delimiter(text: str) -> str:
    """The header line's most frequent of , ; and tab. csv.Sniffer is not used: its quote
    regexes take time growing with about the fourth power of the quotes on a line."""
    header = text[:4096].partition("\n")[0]
    best = max(",;\t", key=header.count)
    return best if header.count(best) else ","


def _csv_rows(path: Path, columns: dict[str, tuple[str, ...]], required: set[str]
              ) -> Iterator[tuple[int, dict[str, str | None]]]:
    """(line number, row by our column names). `columns` maps our name to the header names
    accepted for it, Koha's first."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # Excel saves UTF-8 with a BOM
    except UnicodeDecodeError as exc:
        raise CatalogueError(f"{path.name}: not UTF-8 (byte {exc.start}); save it as UTF-8 "
                           "CSV") from None
    reader = csv.reader(io.StringIO(text, newline=""), csv.excel,
                        delimiter=_delimiter(text))
    try:
        yield from _csv_records(path, reader, columns, required)
    except csv.Error as exc:
        # The reader stops where the file stops being CSV (a cell over its field size limit,
        # a quote left open that swallows the rest): the line is the one place to look.
        raise CatalogueError(f"{path.name}: line {reader.line_num}: not readable as CSV: "
                             f"{exc} (a quote left open?)") from None


def _csv_records(path: Path, reader: Any, columns: dict[str, tuple[str, ...]],
                 required: set[str]) -> Iterator[tuple[int, dict[str, str | None]]]:
    header = [h.strip().lower() for h in next(reader, [])]
    where: dict[str, int] = {}
    for ours, names in columns.items():
        for name in names:
            if name in header:
                where[ours] = header.index(name)
                break
    for ours in sorted(required - set(where)):
        raise CatalogueError(f"{path.name}: line 1: no column {' or '.join(columns[ours])}")
    start = reader.line_num + 1
    for row in reader:
        # where the record starts: a quoted cell may run over several lines
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        yield line, {ours: row[i] if i < len(row) else None for ours, i in where.items()}


def _parse_csv(path: Path, table: Table, columns: dict[str, tuple[str, ...]],
               required: set[str], key: str, build: Callable[[dict[str, str | None]], Row]
               ) -> Parsed:
    out = Parsed(table, path.name)
    first: dict[str, int] = {}
    for line, raw in _csv_rows(path, columns, required):
        try:
            _quoting(raw, columns)
            row = build(raw)
        except _Bad as bad:
            out.problems.append(Problem(path.name, f"line {line}", bad.field, bad.reason))
            continue
        if row[key] in first:
            out.problems.append(Problem(path.name, f"line {line}", columns[key][0],
                                        f"{row[key]!r} is already on line {first[row[key]]}"))
            continue
        first[row[key]] = line
        out.rows.append((f"line {line}", row))
    return out


def _quoting(raw: dict[str, str | None], columns: dict[str, tuple[str, ...]]) -> None:
    """Two quote marks in a row left in a cell after CSV unquoting: the quoting went wrong
    (a quote inside a quoted cell is written doubled once, and no title holds `""`)."""
    for ours, value in raw.items():
        if value and '""' in value:
            raise _Bad(columns[ours][0], f"has {value.count(chr(34))} quote marks, some in a "
                       "row: the CSV quoting is broken")


def parse_rules(path: Path) -> Parsed:
    columns = {"category": ("category", "categorycode"), "loan_days": ("loan_days",),
               "max_loans": ("max_loans",)}

    def build(r: dict[str, str | None]) -> Row:
        return {"category": _text(r["category"], "category", 32, required=True),
                "loan_days": _int(r["loan_days"], "loan_days", 1, 3650),
                "max_loans": _int(r["max_loans"], "max_loans", 0, 1000)}

    return _parse_csv(path, rules, columns, set(columns), "category", build)


PIN_CHARS = re.compile(r"[0-9A-Za-z]{4,32}")


def _pin(value: str | None) -> str | None:
    """The stored form of a reader's PIN from the `pin` column: a salted hash, never the PIN;
    an empty cell: no PIN on file."""
    pin = (value or "").strip()
    if not pin:
        return None
    if not PIN_CHARS.fullmatch(pin):
        raise _Bad("pin", "must be 4 to 32 letters or digits")
    return pins.hash_pin(pin)


def parse_patrons(path: Path) -> Parsed:
    """Koha's borrowers export (cardnumber, surname, firstname, categorycode, dateexpiry, ...)
    or our own columns (card_id, name, category, expires), and optionally `pin`: the PIN each
    reader types at the station (a central that asks for PINs needs one for each reader).
    Koha's own `password` column is a hash of the OPAC password, not a PIN, and is ignored."""
    columns = {"card_id": ("cardnumber", "card_id"), "surname": ("surname",),
               "firstname": ("firstname",), "name": ("name",),
               "category": ("categorycode", "category"), "expires": ("dateexpiry", "expires"),
               "pin": ("pin",)}
    with_pins = _header_has(path, "pin")

    def build(r: dict[str, str | None]) -> Row:
        if "name" in r:
            name = _text(r["name"], "name", 200, required=True)
        else:  # Vietnamese names are written family name first: "Nguyễn" + "Văn An"
            parts = [p for p in (_text(r.get("surname"), "surname", 200),
                                 _text(r.get("firstname"), "firstname", 200)) if p]
            if not parts:
                raise _Bad("surname", "is empty, and so is firstname")
            name = _text(" ".join(parts), "surname", 200)
        row: Row = {"card_id": _text(r["card_id"], "cardnumber", 64, required=True),
                    "name": name,
                    "category": _text(r["category"], "categorycode", 32, required=True),
                    "expires": _date(r.get("expires"), "dateexpiry")}
        if with_pins:  # a file without the column leaves the PINs on file as they are
            row["pin_hash"] = _pin(r.get("pin"))
        return row

    def names(header_has_name: bool) -> dict[str, tuple[str, ...]]:
        drop = ("surname", "firstname") if header_has_name else ("name",)
        return {k: v for k, v in columns.items() if k not in drop}

    has_name = _header_has(path, "name") and not _header_has(path, "surname")
    return _parse_csv(path, patrons, names(has_name), {"card_id", "category",
                      "name" if has_name else "surname"}, "card_id", build)


def _header_has(path: Path, column: str) -> bool:
    try:
        first = path.read_text(encoding="utf-8-sig").partition("\n")[0]
    except UnicodeDecodeError:
        return False  # _csv_rows reports it
    return column in {c.strip().strip('"').lower() for c in re.split(r"[,;\t]", first)}


def parse_items_csv(path: Path) -> Parsed:
    columns = {"item_id": ("barcode", "item_id"), "title": ("title",),
               "author": ("author",), "call_number": ("itemcallnumber", "call_number"),
               "not_for_loan": ("notforloan", "not_for_loan"),
               "sort_bin": ("location", "sort_bin")}

    def build(r: dict[str, str | None]) -> Row:
        return {"item_id": _text(r["item_id"], "barcode", 64, required=True),
                "title": _text(r["title"], "title", 500, required=True),
                "author": _text(r.get("author"), "author", 200),
                "call_number": _text(r.get("call_number"), "itemcallnumber", 255),
                "not_for_loan": _not_for_loan(r.get("not_for_loan"), "notforloan"),
                "sort_bin": _text(r.get("sort_bin"), "location", 16)}

    return _parse_csv(path, items, columns, {"item_id", "title"}, "item_id", build)


# -- MARC
_ISBD_END = " /:;,=."


def marc_title(record: Any) -> str | None:
    """245 $a and $b, without the ISBD punctuation that announces the next subfield
    ("Truyện Kiều /" -> "Truyện Kiều"; "Dế Mèn phiêu lưu ký : truyện dài /" keeps its colon)."""
    f245 = record.get("245")
    if f245 is None:
        return None
    parts = [p.strip() for p in f245.get_subfields("a", "b") if p.strip()]
    return " ".join(parts).rstrip(_ISBD_END) or None


def marc_author(record: Any) -> str | None:
    for tag in ("100", "110", "111"):
        f = record.get(tag)
        if f is not None and (a := f.get("a")):
            return str(a).strip().rstrip(",.").strip() or None
    return None


def _marc_items(record: Any, where: str, source: str, out: Parsed, first: dict[str, str],
                tag: str) -> None:
    fields = record.get_fields(tag)
    if not fields:
        out.notes.append(f"{source}: {where}: no {tag} holdings, nothing to lend")
        return
    title_raw = marc_title(record)
    author_raw = marc_author(record)
    for f in fields:
        try:
            title = _text(title_raw, "245$a", 500, required=True)
            row: Row = {"item_id": _text(f.get("p"), f"{tag}$p", 64, required=True),
                        "title": title, "author": _text(author_raw, "100$a", 200),
                        "call_number": _text(f.get("o"), f"{tag}$o", 255),
                        "not_for_loan": _not_for_loan(f.get("7"), f"{tag}$7"),
                        "sort_bin": _text(f.get("c"), f"{tag}$c", 16)}
        except _Bad as bad:
            out.problems.append(Problem(source, where, bad.field, bad.reason))
            continue
        if row["item_id"] in first:
            out.problems.append(Problem(source, where, f"{tag}$p", f"barcode {row['item_id']!r}"
                                        f" is already in {first[row['item_id']]}"))
            continue
        first[row["item_id"]] = where
        out.rows.append((where, row))


def _marc_chunks(data: bytes) -> Iterator[bytes]:
    """ISO 2709 records, split by the length in each leader."""
    pos = 0
    while pos < len(data):
        if data[pos:].strip(b"\x1a\r\n \x00") == b"":  # trailing EOF marks and newlines
            return
        head = data[pos:pos + 5]
        if not head.isdigit() or int(head) < 24:
            raise CatalogueError(f"record at byte {pos}: leader length {head!r} is not a "
                               "record length")
        yield data[pos:pos + int(head)]
        pos += int(head)


def _directory_problem(chunk: bytes) -> str | None:
    """What is wrong with an ISO 2709 record's leader and directory, checked before pymarc
    reads it: pymarc takes a field's length and offset as given, so a broken directory would
    otherwise come out as an empty or cut title rather than a broken record."""
    if len(chunk) != int(chunk[:5]):
        return f"the leader says {int(chunk[:5])} bytes, the file has {len(chunk)} left"
    base = chunk[12:17]
    if not base.isdigit() or not 25 <= int(base) <= len(chunk):
        return f"leader base address {base!r} is not inside the record"
    end = int(base) - 1  # the directory's field terminator
    if chunk[end:end + 1] != b"\x1e":
        return "the directory does not end where the leader's base address says"
    directory, data = chunk[24:end], chunk[int(base):]
    if len(directory) % 12:
        return f"directory of {len(directory)} bytes, not whole 12-byte entries"
    for i in range(0, len(directory), 12):
        entry = directory[i:i + 12]
        tag, length, start = entry[:3], entry[3:7], entry[7:12]
        n = i // 12 + 1
        if not tag.isalnum() or not length.isdigit() or not start.isdigit():
            return f"directory entry {n} {entry!r} is not a tag, a length and an offset"
        stop = int(start) + int(length)
        if int(length) < 1 or stop > len(data):
            return (f"directory entry {n} (tag {tag.decode()}): bytes {int(start)} to {stop} "
                    f"are outside the record's {len(data)} bytes of data")
        if data[stop - 1:stop] != b"\x1e":
            return f"directory entry {n} (tag {tag.decode()}) does not end at a field end"
    return None


def parse_marc(path: Path, tag: str = KOHA_ITEMS_TAG) -> Parsed:
    """Binary MARC21. Leader/09 'a' means UTF-8 (Koha's exports); blank means MARC-8, but
    some systems write blank over UTF-8 data: a record whose bytes are valid non-ASCII UTF-8
    is read as UTF-8 then, since MARC-8 diacritics hardly ever form valid UTF-8."""
    import pymarc

    out = Parsed(items, path.name)
    first: dict[str, str] = {}
    for n, chunk in enumerate(_marc_chunks(path.read_bytes()), 1):
        where = f"record {n}"
        if problem := _directory_problem(chunk):
            out.problems.append(Problem(path.name, where, "directory", problem))
            continue
        utf8 = chunk[9:10] == b"a"
        if not utf8 and max(chunk, default=0) >= 0x80:
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError:
                pass  # really MARC-8
            else:
                utf8 = True
                out.notes.append(f"{path.name}: {where}: leader says MARC-8 but the data is "
                                 "UTF-8; read as UTF-8")
        try:
            record = pymarc.Record(data=chunk, to_unicode=True, force_utf8=utf8)
        except (pymarc.PymarcException, UnicodeDecodeError, ValueError) as exc:
            out.problems.append(Problem(path.name, where, "record",
                                        f"not a readable MARC record: {exc}"))
            continue
        _marc_items(record, where, path.name, out, first, tag)
    return out


def parse_marcxml(path: Path, tag: str = KOHA_ITEMS_TAG) -> Parsed:
    import xml.sax

    import pymarc

    out = Parsed(items, path.name)
    first: dict[str, str] = {}
    try:
        records = pymarc.parse_xml_to_array(str(path))
    except xml.sax.SAXParseException as exc:
        raise CatalogueError(f"{path.name}: line {exc.getLineNumber()}: not MARCXML: "
                           f"{exc.getMessage()}") from None
    for n, record in enumerate(records, 1):
        _marc_items(record, f"record {n}", path.name, out, first, tag)
    return out


def parse_items(path: Path) -> Parsed:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return parse_items_csv(path)
    if suffix in (".mrc", ".marc", ".iso", ".dat"):
        return parse_marc(path)
    if suffix == ".xml":
        return parse_marcxml(path)
    raise CatalogueError(f"{path.name}: items come as .csv, .mrc (MARC21) or .xml (MARCXML)")


# -- writing
KEYS = {"rules": "category", "patrons": "card_id", "items": "item_id"}


def _existing(conn: Connection, table: Table, key: str, values: list[Any]) -> set[Any]:
    found: set[Any] = set()
    col = table.c[key]
    for i in range(0, len(values), 500):  # stay far below the bind parameter limits
        found.update(conn.execute(select(col).where(col.in_(values[i:i + 500]))).scalars())
    return found


def _upsert(conn: Connection, table: Table, rows: list[Row], report: Report) -> None:
    key = KEYS[table.name]
    old = _existing(conn, table, key, [r[key] for r in rows])
    new = [r for r in rows if r[key] not in old]
    changed = [r for r in rows if r[key] in old]
    if table is patrons:  # a new patron gets a pseudonymous reference; an old one keeps its
        new = [{"ref": "p-" + secrets.token_hex(8), "blocked": False, **r} for r in new]
    if new:
        conn.execute(insert(table), new)
    if changed:
        cols = [c for c in changed[0] if c != key]
        conn.execute(update(table).where(table.c[key] == bindparam("_key"))
                     .values({c: bindparam(c) for c in cols}),
                     [{"_key": r[key], **{c: r[c] for c in cols}} for r in changed])
    report.inserted[table.name] = report.inserted.get(table.name, 0) + len(new)
    report.updated[table.name] = report.updated.get(table.name, 0) + len(changed)


def run_import(engine: Engine, parsed: Iterable[Parsed], *, skip_bad: bool = False) -> Report:
    """Write parsed files (rules before patrons) in one transaction; see the module doc."""
    parsed = list(parsed)
    report = Report()
    for p in parsed:
        report.problems += p.problems
        report.notes += p.notes
    with engine.begin() as conn:
        new_rules = {r["category"] for p in parsed if p.table is rules for _, r in p.rows}
        known = new_rules | set(conn.execute(select(rules.c.category)).scalars())
        batches: list[tuple[Table, list[Row]]] = []
        for p in sorted(parsed, key=lambda p: list(KEYS).index(p.table.name)):
            good = []
            for where, row in p.rows:
                if p.table is patrons and row["category"] not in known:
                    report.problems.append(Problem(
                        p.source, where, "categorycode",
                        f"{row['category']!r} has no loan rule (import --rules first)"))
                    continue
                good.append(row)
            batches.append((p.table, good))
        if report.problems and not skip_bad:
            conn.rollback()
            return report
        for table, rows in batches:
            if rows:
                _upsert(conn, table, rows, report)
            else:
                report.inserted.setdefault(table.name, 0)
    report.committed = True
    return report


def import_files(engine: Engine, *, rules_csv: Path | None = None,
                 patrons_csv: Path | None = None, items_file: Path | None = None,
                 skip_bad: bool = False) -> Report:
    """Read and check the given files, then import them together. Raises CatalogueError for a
    file that cannot be read at all (nothing changes then either)."""
    parsed = []
    for path, parse in ((rules_csv, parse_rules), (patrons_csv, parse_patrons),
                        (items_file, parse_items)):
        if path is None:
            continue
        if not path.is_file():
            raise CatalogueError(f"{path}: no such file")
        try:
            parsed.append(parse(path))
        except OSError as exc:  # unreadable (permissions, a disk error): the file, not a bug
            raise CatalogueError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    return run_import(engine, parsed, skip_bad=skip_bad)
