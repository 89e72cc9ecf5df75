"""A user's file as a DataFrame: CSV (any common separator, encoding and
compression), Parquet and Excel, with what was decided said back.

The reader decides how the file is *written*: its format, encoding,
separator and decimal mark. It does not decide what the values *mean*: text
such as ``"3,750"``, ``"$1,658.08"`` or a date passes through as text, to be
typed where the estimators type every DataFrame (so Python users get the
same), unless the user names ``decimal`` or ``thousands``. The one exception
is the decimal comma of a file not separated by commas (``1,5`` in a
semicolon file, as Excel writes it in much of Europe): that is the file's
convention, taken only when no value reads as a thousands group.

Every failure is a :class:`ReadError` whose message is one line naming the
file and what to try.
"""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import lzma
import re
import tarfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

PARQUET_SUFFIXES = {".parquet", ".pq"}
EXCEL_SUFFIXES = {".xlsx", ".xlsm"}
# Formats pandas can only read with packages skvae does not install.
OLD_SPREADSHEETS = {".xls": "an old Excel .xls workbook", ".ods": "an OpenDocument spreadsheet"}
# Leading bytes that name a format whatever the file's name.
PARQUET_MAGIC = b"PAR1"
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # the container of old .xls workbooks
SEPARATORS = (",", ";", "\t", "|")
# How much of a text file is looked at to decide its encoding, separator and
# decimal mark; the whole file is then read once.
SAMPLE_BYTES = 1 << 16
FORMATS_READ = (
    "CSV or other delimited text (comma, semicolon, tab or | separated; UTF-8, UTF-8 with "
    "BOM, UTF-16 or cp1252/latin-1; plain or .gz, .bz2, .xz, .zip, .tar compressed), "
    "Parquet (.parquet, .pq) and Excel (.xlsx, .xlsm)"
)
# A decimal comma, written as in "1,5" or "-0,25": anything but the
# ambiguous "3,750", which may be 3.75 or 3750.
_DECIMAL_COMMA = re.compile(r"\s*[-+]?(\d*,\d{1,2}|\d*,\d{4,}|0?,\d+|\d{4,},\d+)\s*")
# Unmistakably thousands groups: "1,250,000" or "1,658.08" (also inside "$1,658.08").
_THOUSANDS_GROUPS = re.compile(r"\d,\d{3},\d{3}|\d,\d{3}\.\d")


class ReadError(ValueError):
    """A file that cannot be read as a table; the message is one line."""


@dataclass(frozen=True)
class Reading:
    """How a file was read: what the reader decided or was told."""

    path: str
    format: str
    encoding: str | None = None
    separator: str | None = None
    decimal: str | None = None
    thousands: str | None = None
    sheet: str | None = None
    sheets: tuple[str, ...] = ()
    note: str | None = None  # what the user should know and could not be decided

    def describe(self, frame: pd.DataFrame) -> str:
        """One line: ``read data.csv: 344 rows x 9 columns (encoding cp1252, ...)``."""
        details = []
        if self.format != "CSV":
            details.append(self.format)
        if self.encoding is not None:
            details.append(f"encoding {ENCODING_NAMES.get(self.encoding, self.encoding)}")
        if self.separator is not None:
            details.append(f"separator {self.separator!r}")
        if self.decimal not in (None, "."):
            details.append(f"decimal {self.decimal!r}")
        if self.thousands is not None:
            details.append(f"thousands {self.thousands!r}")
        if self.sheet is not None:
            sheet = f"sheet {self.sheet!r}"
            if len(self.sheets) > 1:
                sheet += f" of {len(self.sheets)} (--sheet reads another)"
            details.append(sheet)
        if self.note is not None:
            details.append(self.note)
        n_rows, n_columns = frame.shape
        return f"read {self.path}: {n_rows} rows x {n_columns} columns ({', '.join(details)})"


ENCODING_NAMES = {"utf-8-sig": "utf-8 with BOM", "iso8859-1": "latin-1"}


def read_table(
    path,
    *,
    encoding: str | None = None,
    sep: str | None = None,
    decimal: str | None = None,
    thousands: str | None = None,
    sheet: str | None = None,
) -> tuple[pd.DataFrame, Reading]:
    """The table in ``path`` and how it was read, or a :class:`ReadError`.

    Each keyword left as None is decided from the file; a given one is used
    as it is. Column names come back as strings.
    """
    path = Path(path)
    if not path.exists():
        raise ReadError(f"no such file: {path}")
    if path.is_dir():
        raise ReadError(f"{path} is a folder, not a file; skvae reads {FORMATS_READ}")
    kind = _format(path)
    options = {"--encoding": encoding, "--sep": sep, "--sheet": sheet}
    options.update({"--decimal": decimal, "--thousands": thousands})
    _refuse_options(path, kind, options)
    if kind == "Parquet":
        frame, reading = _read_parquet(path), Reading(str(path), "Parquet")
    elif kind == "Excel":
        frame, reading = _read_excel(path, sheet, decimal, thousands)
    else:
        frame, reading = _read_text(path, encoding, sep, decimal, thousands)
    if len(frame) == 0:
        raise ReadError(f"{path} has no rows")
    frame.columns = [str(column) for column in frame.columns]
    return frame, reading


def _format(path):
    suffix = path.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        return "Parquet"
    if suffix in EXCEL_SUFFIXES:
        return "Excel"
    if suffix in OLD_SPREADSHEETS:
        raise ReadError(
            f"{path} is {OLD_SPREADSHEETS[suffix]}; save it as .xlsx or CSV and read that"
        )
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
    except OSError as error:
        raise ReadError(f"cannot open {path}: {error.strerror or error}") from error
    if head == PARQUET_MAGIC:
        return "Parquet"
    if head == OLE_MAGIC:
        raise ReadError(f"{path} is {OLD_SPREADSHEETS['.xls']}; save it as .xlsx or CSV")
    if head == ZIP_MAGIC and _is_workbook(path):
        return "Excel"
    return "CSV"


def _is_workbook(path):
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.startswith("xl/") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


# The reading options each format takes.
OPTIONS_TAKEN = {
    "CSV": {"--encoding", "--sep", "--decimal", "--thousands"},
    "Excel": {"--sheet", "--decimal", "--thousands"},
    "Parquet": set(),
}


def _refuse_options(path, kind, options):
    """A ReadError for options given that the file's format has no use for:
    silently ignoring them would hide that the file is not what the user thinks."""
    given = [
        name
        for name, value in options.items()
        if value is not None and name not in OPTIONS_TAKEN[kind]
    ]
    if given:
        raise ReadError(f"{' and '.join(given)} cannot apply to {path}: it is a {kind} file")


# ------------------------------------------------------------------ Parquet
def _read_parquet(path):
    try:
        return pd.read_parquet(path)
    except ImportError as error:
        raise ReadError(f"reading {path} needs pyarrow: pip install 'skvae[parquet]'") from error
    except (OSError, ValueError) as error:
        raise ReadError(f"cannot read {path} as Parquet: {_first_line(error)}") from error


# -------------------------------------------------------------------- Excel
def _read_excel(path, sheet, decimal, thousands):
    try:
        import openpyxl  # noqa: F401
    except ImportError as error:
        raise ReadError(
            f"reading the Excel file {path} needs openpyxl: pip install 'skvae[excel]'"
        ) from error
    try:
        with pd.ExcelFile(path, engine="openpyxl") as workbook:
            sheets = tuple(str(name) for name in workbook.sheet_names)
            chosen = _sheet(path, sheet, sheets)
            frame = pd.read_excel(
                workbook, sheet_name=chosen, decimal=decimal or ".", thousands=thousands
            )
    except ReadError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        raise ReadError(f"cannot read {path} as Excel: {_first_line(error)}") from error
    reading = Reading(
        str(path), "Excel", decimal=decimal, thousands=thousands, sheet=chosen, sheets=sheets
    )
    return frame, reading


def _sheet(path, sheet, sheets):
    if not sheets:
        raise ReadError(f"{path} has no sheet")
    if sheet is None:
        return sheets[0]
    if sheet in sheets:
        return sheet
    if sheet.isdigit() and 1 <= int(sheet) <= len(sheets):
        return sheets[int(sheet) - 1]
    listed = ", ".join(map(repr, sheets))
    raise ReadError(
        f"{path} has no sheet {sheet!r}; its sheets are {listed} (or 1 to {len(sheets)})"
    )


# --------------------------------------------------------------------- text
def _read_text(path, encoding, sep, decimal, thousands):
    sample, complete = _head(path)
    detected = encoding is None
    if detected:
        encoding = _detect_encoding(path, sample, complete)
    else:
        try:
            encoding = codecs.lookup(encoding).name
        except LookupError as error:
            raise ReadError(
                f"cannot read {path}: unknown encoding {encoding!r}; "
                "try --encoding utf-8 or --encoding cp1252"
            ) from error
    try:
        text = _decode_sample(sample, encoding, complete)
        sep, decimal, skip, note = _layout(text, sep, decimal, thousands)
        options = dict(sep=sep, decimal=decimal or ".", thousands=thousands, skiprows=skip)
        try:
            frame = _read_csv(path, encoding, options)
        except UnicodeDecodeError:
            # The sample was plain ASCII, and a later byte is not UTF-8: a
            # cp1252 file whose first accent comes late.
            if not (detected and encoding == "utf-8" and sample.isascii()):
                raise
            encoding = "cp1252"
            frame = _read_csv(path, encoding, options)
        if thousands is not None:
            frame = _misgrouped_back_to_text(frame, path, encoding, options)
    except UnicodeError as error:  # UTF-16 without a BOM raises the parent class
        raise ReadError(
            f"cannot read {path} as {ENCODING_NAMES.get(encoding, encoding)} text: "
            f"{getattr(error, 'reason', error)}; try {_other_encoding(encoding)}"
        ) from error
    reading = Reading(
        str(path),
        "CSV",
        encoding=encoding,
        separator=sep,
        decimal=decimal,
        thousands=thousands,
        note=note,
    )
    return frame, reading


def _misgrouped_back_to_text(frame, path, encoding, options):
    """``frame`` with the columns pandas' ``thousands`` made numbers of
    values that are not numbers grouped in threes put back as the text they
    were: pandas drops the mark wherever it stands, so with ``thousands='.'``
    the date "01.01.2025" became the number 1012025. The typing then reads
    such a column as what it is (a date, here) and says so."""
    raw = _read_csv(path, encoding, {**options, "thousands": None, "dtype": str})
    mark, decimal = re.escape(options["thousands"]), re.escape(options["decimal"])
    grouped = re.compile(rf"\s*[+-]?\d{{1,3}}({mark}\d{{3}})+({decimal}\d*)?\s*")
    for column in frame.columns:
        if frame[column].dtype.kind not in "iuf":
            continue
        marked = raw[column].dropna()
        marked = marked[marked.str.contains(options["thousands"], regex=False)]
        if not marked.map(lambda value: bool(grouped.fullmatch(value))).all():
            frame[column] = raw[column]
    return frame


def _layout(text, sep, decimal, thousands):
    """The separator, decimal mark and lines to skip, each as given or
    decided from the sample ``text``, and a note on what was left undecided."""
    skip, note = 0, None
    declared = re.match(r"sep=(.)\r?\n", text)  # Excel's "sep=;" first line
    if declared:
        skip, text = 1, text[declared.end() :]
        sep = sep or declared.group(1)
    if sep is None:
        sep = _sniff_separator(text)
    if decimal is None and sep != "," and thousands != ",":
        decimal, note = _decimal_mark(text, sep)
    return sep, decimal, skip, note


def _read_csv(path, encoding, options):
    try:
        # index_col=False: a row wider than the header is an error, not an
        # index pandas would build from the row's first fields in silence.
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, encoding=encoding, index_col=False, **options)
    except UnicodeError:
        raise
    except pd.errors.ParserWarning as error:
        raise ReadError(
            f"cannot read {path} as CSV separated by {options['sep']!r}: a row has more "
            f"fields than the header; {_try_other_separators(options['sep'])}"
        ) from error
    except ImportError as error:  # .zst without zstandard
        raise ReadError(
            f"reading {path} needs {error.name or 'a package'}: {_first_line(error)}"
        ) from error
    except pd.errors.EmptyDataError as error:
        raise ReadError(f"cannot read {path} as CSV: it is empty") from error
    except pd.errors.ParserError as error:
        reason = _first_line(error).replace("Error tokenizing data. C error: ", "")
        raise ReadError(
            f"cannot read {path} as CSV separated by {options['sep']!r}: {reason}; "
            f"{_try_other_separators(options['sep'])}"
        ) from error
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, tarfile.TarError) as error:
        raise ReadError(f"cannot read {path} as CSV: {_first_line(error)}") from error


def _try_other_separators(sep):
    others = " or ".join(f"--sep {other!r}" for other in SEPARATORS if other != sep)
    return f"try {others}, or fix the row"


def _head(path):
    """Up to SAMPLE_BYTES of the file's (decompressed) bytes, and whether that
    is all of it."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                members = [info for info in archive.infolist() if not info.is_dir()]
                if len(members) != 1:
                    raise ReadError(
                        f"{path} holds {len(members)} files; skvae reads a .zip holding one"
                    )
                with archive.open(members[0]) as handle:
                    data = handle.read(SAMPLE_BYTES + 1)
        elif suffix == ".tar":
            with tarfile.open(path) as archive:
                members = [info for info in archive.getmembers() if info.isfile()]
                if len(members) != 1:
                    raise ReadError(
                        f"{path} holds {len(members)} files; skvae reads a .tar holding one"
                    )
                data = archive.extractfile(members[0]).read(SAMPLE_BYTES + 1)
        elif suffix == ".zst":
            return b"", False  # decided from no sample: pandas opens it (with zstandard)
        else:
            opener = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}.get(suffix, open)
            with opener(path, "rb") as handle:
                data = handle.read(SAMPLE_BYTES + 1)
    except ReadError:
        raise
    except (OSError, EOFError, lzma.LZMAError, zipfile.BadZipFile, tarfile.TarError) as error:
        raise ReadError(
            f"cannot read {path} as {suffix} compressed CSV: {_first_line(error)}"
        ) from error
    return data[:SAMPLE_BYTES], len(data) <= SAMPLE_BYTES


def _detect_encoding(path, sample, complete):
    """UTF-8 (with or without BOM) or UTF-16 when the bytes say so, else the
    Windows code page Excel writes in western Europe (cp1252), or latin-1 for
    the few bytes cp1252 leaves undefined."""
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    if b"\x00" in sample:
        raise ReadError(
            f"cannot read {path} as CSV: it holds NUL bytes, as binary files do; "
            f"skvae reads {FORMATS_READ}"
        )
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=complete)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        sample.decode("cp1252")
        return "cp1252"
    except UnicodeDecodeError:
        return "latin-1"


def _other_encoding(encoding):
    if encoding in ("utf-8", "utf-8-sig"):
        return "--encoding cp1252 (Windows, western Europe) or the encoding the file was saved in"
    return "--encoding utf-8, or the encoding the file was saved in"


def _decode_sample(sample, encoding, complete):
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample, final=True)
    if not complete:  # the last line may be cut short
        text = text[: text.rfind("\n") + 1] or text
    return text


def _sniff_separator(text):
    """The separator that splits every line into as many fields as the
    header: quoted fields are one field, so commas inside values (or inside
    quotes) do not mislead it. Ties go to the wider split, then to ','."""
    best, best_key = ",", None
    for sep in SEPARATORS:
        rows = _rows(text, sep)
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        key = (sum(len(row) == width for row in rows) / len(rows), width)
        if best_key is None or key > best_key:
            best, best_key = sep, key
    return best


def _rows(text, sep):
    try:
        return [row for row in csv.reader(io.StringIO(text), delimiter=sep) if row]
    except csv.Error:
        return []


def _decimal_mark(text, sep):
    """',' when some value is a decimal comma and none reads as thousands
    groups; else None (the default '.': text such as "3,750" stays text).
    Second, a note for the user when both kinds of value appear."""
    cells = [cell for row in _rows(text, sep)[1:] for cell in row if "," in cell]
    grouped = next((cell for cell in cells if _THOUSANDS_GROUPS.search(cell)), None)
    decimal = next((cell for cell in cells if _DECIMAL_COMMA.fullmatch(cell)), None)
    if decimal is None:
        return None, None
    if grouped is None:
        return ",", None
    return None, (
        f"decimal mark undecided: both {decimal.strip()!r} and {grouped.strip()!r} appear, "
        "so such values stay text; --decimal ',' or --thousands ',' decides"
    )


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
