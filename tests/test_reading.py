"""Reading a user's file (skvae/_reading.py): encodings, separators, decimal
marks, Excel, Parquet and compressed CSV, each from a messy file written here,
and every failure as one line naming the file and what to try."""

import gzip
import re
import sys
import zipfile

import numpy as np
import pandas as pd
import pytest

from skvae import VAEAnomalyDetector
from skvae._reading import SAMPLE_BYTES, ReadError, read_table
from skvae.cli import main

NAMES = ["José", "Renée", "Björn", "Zoë", "Ángel", "Noël", "François"]


def people(n=120, seed=0):
    """Accented names, a weight and a height; row 17's weight is absurd."""
    rng = np.random.RandomState(seed)
    frame = pd.DataFrame(
        {
            "nom": rng.choice(NAMES, n),
            "poids": rng.normal(70, 5, n).round(2),
            "taille": rng.normal(170, 8, n).round(1),
        }
    )
    if n > 17:
        frame.loc[17, "poids"] = 400.25
    return frame


def test_tab_separated_text_with_commas_is_read_as_tsv(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text(
        "name\tcomment\tvalue\n"
        "a\thello, world\t1.5\n"
        "b\tno comma here\t2.5\n"
        "c\tone, two, three, four\t-3\n"
        'd\t"quoted\tand, comma"\t4\n',
        encoding="utf-8",
    )
    frame, reading = read_table(path)
    assert reading.separator == "\t" and reading.encoding == "utf-8"
    assert list(frame.columns) == ["name", "comment", "value"]
    assert frame["comment"].tolist() == [
        "hello, world",
        "no comma here",
        "one, two, three, four",
        "quoted\tand, comma",
    ]
    assert frame["value"].dtype == np.float64
    assert frame["value"].tolist() == [1.5, 2.5, -3.0, 4.0]
    assert reading.describe(frame) == (
        f"read {path}: 4 rows x 3 columns (encoding utf-8, separator '\\t')"
    )


def test_comma_file_with_semicolons_inside_quotes_is_read_as_comma_separated(tmp_path):
    path = tmp_path / "quoted.csv"
    path.write_text('label,x,y\n"a;b;c",1,2\n"d;e",3,4\n"f",5,6\n', encoding="utf-8")
    frame, reading = read_table(path)
    assert reading.separator == ","
    assert frame["label"].tolist() == ["a;b;c", "d;e", "f"]
    assert frame["y"].tolist() == [2, 4, 6]


def test_cp1252_semicolons_and_decimal_commas_as_excel_writes_them(tmp_path):
    frame = people()
    path = tmp_path / "export.csv"
    frame.to_csv(path, sep=";", decimal=",", index=False, encoding="cp1252")
    assert "400,25" in path.read_text(encoding="cp1252")
    read, reading = read_table(path)
    assert (reading.encoding, reading.separator, reading.decimal) == ("cp1252", ";", ",")
    pd.testing.assert_frame_equal(read, frame, check_dtype=False)
    assert read["poids"].dtype == np.float64 and read["taille"].dtype == np.float64
    assert "Björn" in set(read["nom"])
    assert reading.describe(read) == (
        f"read {path}: 120 rows x 3 columns (encoding cp1252, separator ';', decimal ',')"
    )


def test_cp1252_whose_first_accent_comes_after_the_sample(tmp_path):
    rows = ["id;city"] + [f"{i};Paris" for i in range(SAMPLE_BYTES // 8)] + ["99999;Besançon"]
    path = tmp_path / "late.csv"
    path.write_bytes("\n".join(rows).encode("cp1252"))
    frame, reading = read_table(path)
    assert reading.encoding == "cp1252"
    assert frame["city"].iloc[-1] == "Besançon"
    assert len(frame) == len(rows) - 1


def test_utf8_with_bom_keeps_the_first_column_name_clean(tmp_path):
    path = tmp_path / "bom.csv"
    people(10).to_csv(path, index=False, encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    frame, reading = read_table(path)
    assert list(frame.columns) == ["nom", "poids", "taille"]
    assert reading.describe(frame).endswith("(encoding utf-8 with BOM, separator ',')")
    assert frame["nom"].tolist() == people(10)["nom"].tolist()


def test_utf16_tab_separated_as_excel_unicode_text(tmp_path):
    path = tmp_path / "unicode.txt"
    people(10).to_csv(path, sep="\t", index=False, encoding="utf-16")
    frame, reading = read_table(path)
    assert (reading.encoding, reading.separator) == ("utf-16", "\t")
    pd.testing.assert_frame_equal(frame, people(10), check_dtype=False)


def test_formatted_numbers_pass_through_as_text_unless_thousands_is_given(tmp_path):
    """ "3,750" may be 3.75 or 3750: the reader leaves it to the typing."""
    path = tmp_path / "grams.csv"
    path.write_text("id;mass;price\n1;3,750;$1,658.08\n2;4,100;$99.00\n", encoding="utf-8")
    frame, reading = read_table(path)
    assert reading.decimal is None
    assert frame["mass"].tolist() == ["3,750", "4,100"]
    assert frame["price"].tolist() == ["$1,658.08", "$99.00"]
    frame, reading = read_table(path, thousands=",")
    assert frame["mass"].tolist() == [3750, 4100]
    assert "thousands ','" in reading.describe(frame)


def test_thousands_groups_veto_the_decimal_comma(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("a;b\n1,5;1,250,000\n2,5;3\n", encoding="utf-8")
    frame, reading = read_table(path)
    assert reading.decimal is None
    assert frame["a"].tolist() == ["1,5", "2,5"]
    assert reading.describe(frame).endswith(
        "separator ';', decimal mark undecided: both '1,5' and '1,250,000' appear, "
        "so such values stay text; --decimal ',' or --thousands ',' decides)"
    )
    frame, _ = read_table(path, decimal=",")
    assert frame["a"].tolist() == [1.5, 2.5]


def test_excel_separator_line_is_honoured(tmp_path):
    path = tmp_path / "declared.csv"
    path.write_text("sep=;\na;b\n1,5;x\n2;y\n", encoding="utf-8")
    frame, reading = read_table(path)
    assert reading.separator == ";"
    assert frame["a"].tolist() == [1.5, 2.0]


def write_workbook(path, sheets):
    from openpyxl import Workbook

    workbook = Workbook()
    workbook.remove(workbook.active)
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    workbook.save(path)


def test_xlsx_first_sheet_or_the_one_named(tmp_path):
    path = tmp_path / "book.xlsx"
    frame = people(30)
    write_workbook(
        path,
        {
            "Data": [list(frame.columns), *frame.itertuples(index=False)],
            "Notes": [["note"], ["made by hand"]],
        },
    )
    read, reading = read_table(path)
    pd.testing.assert_frame_equal(read, frame)
    assert reading.describe(read) == (
        f"read {path}: 30 rows x 3 columns (Excel, sheet 'Data' of 2 (--sheet reads another))"
    )
    notes, reading = read_table(path, sheet="Notes")
    assert notes["note"].tolist() == ["made by hand"]
    assert read_table(path, sheet="2")[0].equals(notes)
    with pytest.raises(ReadError, match=r"has no sheet 'Raw'; its sheets are 'Data', 'Notes'"):
        read_table(path, sheet="Raw")


def test_xlsx_misnamed_as_csv_is_still_read_as_excel(tmp_path):
    path = tmp_path / "export.csv"
    write_workbook(path, {"S": [["a", "b"], [1, 2.5], [3, 4.5]]})
    frame, reading = read_table(path)
    assert reading.format == "Excel"
    assert frame["b"].tolist() == [2.5, 4.5]


def test_xlsx_without_openpyxl_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "book.xlsx"
    write_workbook(path, {"S": [["a"], [1]]})
    monkeypatch.setitem(sys.modules, "openpyxl", None)  # import openpyxl now fails
    with pytest.raises(ReadError) as error:
        read_table(path)
    assert str(error.value) == (
        f"reading the Excel file {path} needs openpyxl: pip install 'skvae[excel]'"
    )


@pytest.mark.parametrize("suffix", [".csv.gz", ".csv.bz2", ".csv.xz", ".zip", ".parquet"])
def test_parquet_and_compressed_csv_keep_working(tmp_path, suffix):
    frame = people(40)
    path = tmp_path / f"data{suffix}"
    if suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, sep=";", decimal=",", index=False, encoding="cp1252")
    read, reading = read_table(path)
    pd.testing.assert_frame_equal(read, frame, check_dtype=False)
    if suffix != ".parquet":
        assert (reading.encoding, reading.separator, reading.decimal) == ("cp1252", ";", ",")


def test_a_planted_outlier_in_a_european_export_leads_the_cli_table(tmp_path, capsys):
    frame = people(150)
    path = tmp_path / "export.csv"
    frame.to_csv(path, sep=";", decimal=",", index=False, encoding="cp1252")
    output = tmp_path / "scores.csv"
    args = ["detect", str(path), "--max-iter", "15", "--top", "3", "--output", str(output)]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == (
        f"read {path}: 150 rows x 3 columns (encoding cp1252, separator ';', decimal ',')"
    )
    scores = pd.read_csv(output)["score"]
    assert scores.idxmin() == 17  # the row whose weight is 400,25


@pytest.mark.parametrize(
    "content, options, expected",
    [
        ("nom;poids\nJosé;1,5\n".encode("cp1252"), {"encoding": "utf-8"}, "--encoding cp1252"),
        (b"a,b\n1,2\n", {"encoding": "klingon"}, "unknown encoding 'klingon'"),
        (b"a;b\n1;2;3;4\n5;6\n", {"sep": ";"}, r"separated by ';'.*try --sep ','"),
        (b"a,b\n1,2\n", {"sheet": "Data"}, "--sheet cannot apply to .* it is a CSV file"),
        (b"\x00\x01\x02binary", {}, "as CSV: it holds NUL bytes"),
        (b"\xd0\xcf\x11\xe0 old workbook", {}, r"an old Excel \.xls workbook; save it as \.xlsx"),
        (b"", {}, "as CSV: it is empty"),
        (b"a,b\n", {}, "has no rows"),
    ],
)
def test_each_reading_failure_is_one_line_naming_the_file(tmp_path, content, options, expected):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    with pytest.raises(ReadError) as error:
        read_table(path, **options)
    message = str(error.value)
    assert "\n" not in message and str(path) in message
    assert re.search(expected, message), message


def test_archives_and_other_formats_fail_in_one_line(tmp_path):
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as archive:
        archive.writestr("a.csv", "a\n1\n")
        archive.writestr("b.csv", "b\n2\n")
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(gzip.compress(b"a,b\n1,2\n")[:-12])
    parquet = tmp_path / "data.parquet"
    people(5).to_parquet(parquet)
    for path, options, expected in [
        (two, {}, "holds 2 files; skvae reads a .zip holding one"),
        (broken, {}, "cannot read"),
        (parquet, {"sep": ";"}, "--sep cannot apply to"),
        (tmp_path / "sheet.ods", {}, "OpenDocument spreadsheet; save it as .xlsx or CSV"),
        (tmp_path, {}, "is a folder, not a file; skvae reads CSV"),
    ]:
        if path.suffix == ".ods":
            path.write_bytes(b"PK")
        with pytest.raises(ReadError, match=expected) as error:
            read_table(path, **options)
        assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_dates_written_with_the_thousands_mark_stay_text_for_the_typing(tmp_path):
    # pandas drops a thousands mark wherever it stands: "01.01.2025" read as 1012025.
    path = tmp_path / "orders.csv"
    path.write_text(
        "datum;betrag;menge\n13.01.2025;1.324,02;3\n3.4.2025;999,5;12\n;5.012,00;\n",
        encoding="cp1252",
    )
    frame, reading = read_table(path, thousands=".")
    assert frame["datum"].tolist()[:2] == ["13.01.2025", "3.4.2025"]
    assert frame["datum"].isna().tolist() == [False, False, True]
    assert frame["betrag"].tolist() == [1324.02, 999.5, 5012.0]
    assert frame["menge"].iloc[:2].tolist() == [3, 12]
    schema = VAEAnomalyDetector(max_iter=1, random_state=0).fit(frame).describe_columns()
    assert "date (%d.%m.%Y)" in schema.set_index("column").loc["datum", "read as"]


def test_thousands_dots_and_decimal_commas_as_a_european_export(tmp_path):
    path = tmp_path / "europe.csv"
    path.write_text("masse;prix\n5.012;1.324,02\n60.000;999,5\n", encoding="cp1252")
    frame, reading = read_table(path, thousands=".")
    assert (reading.decimal, reading.thousands) == (",", ".")
    assert frame["masse"].tolist() == [5012, 60000]
    assert frame["prix"].tolist() == [1324.02, 999.5]
