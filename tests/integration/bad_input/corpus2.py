"""A second bad-input corpus, written independently of the first: another operator's layout
(';'-separated voice records, nested JSON payments, files matched by `*` so compressed names
are picked up), other encodings, line endings, compression faults, MSISDN spellings, numbers and
dates.

Expected outcomes are written down by hand from the file contents; the only computed ones are
line counts of text the corpus itself builds (a truncated gzip stream is decompressed with zlib
as far as it goes), never values from the code under test.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections import Counter
from datetime import date
from pathlib import Path

from tests.integration.bad_input.corpus import Case

DS = date(2025, 3, 4)
DAY = "2025-03-04"

# every MSISDN spelling of this corpus and the E.164 digits each stands for
MSISDNS = {
    "tel:+33612345711": "33612345711",
    "33612345712": "33612345712",
    "+33 (0)6-12-34-57-13": "33612345713",
    "(0)6 12 34 57 14": "33612345714",
    "０６１２３４５７１５": "33612345715",  # fullwidth digits
    "०६१२३४५७१६": "33612345716",  # Devanagari digits
    "\t06 12 34 57 17 ": "33612345717",
    "0033 6 12 34 57 18": "33612345718",
    "+33/6/12/34/57/19": "33612345719",
    "06\u00a012\u00a034\u00a057\u00a020": "33612345720",  # no-break spaces
    "+33.612.345.721": "33612345721",
    "06\u202f12\u202f34\u202f57\u202f22": "33612345722",  # narrow no-break spaces
}
SPELLINGS = list(MSISDNS)
# numbers of the bad cases: files quarantined whole, bad rows, unparseable lines
OTHER_NUMBERS = [
    "0687654301",
    "0687654302",
    "0687654303",
    "0687654304",
    "0687654305",
    "0687654306",
    "0687654307",
    "0687654308",
    "+33 6 87 65 43 09",
    "06\u00a087\u00a065\u00a043\u00a010",
    "٠٦٨٧٦٥٤٣١١",  # Arabic-Indic digits
    "0687654312",
    "0687654313",
    "0687654314",
]

VOICE_SOURCE = {
    "name": "voice",
    "kind": "cdr",
    "format": "csv",
    "sync_frequency": "daily",
    "mandatory": False,
    "check_known_subscriber": False,
    "connection": {"path": "{raw_root}/voice/{ds}/*"},
    "options": {"header": True, "sep": ";"},
    "contract": {
        "call_id": "string",
        "caller": "string",
        "started_at": "string",
        "seconds": "long",
        "volume_kb": "decimal(20,0)",
        "cell": {"type": "string", "nullable": True},
    },
    "natural_key": ["call_id"],
    "subscriber": {"column": "caller"},
    "event_time": {"column": "started_at", "format": "yyyy-MM-dd HH:mm:ss", "zone": "local"},
    "checks": [{"rule": "seconds >= 0", "reason": "negative_duration"}],
    "mappings": [
        {
            "event_type": "cdr",
            "event_subtype": "call",
            "quantity": {"expr": "seconds / 60.0"},
            "unit": "min",
            "amount": {"column": "volume_kb"},
            "attributes": {"cell": {"column": "cell"}},
        }
    ],
}

PAYMENTS_SOURCE = {
    "name": "payments",
    "kind": "xiva",
    "format": "json",
    "sync_frequency": "daily",
    "mandatory": False,
    "check_known_subscriber": False,
    "connection": {"path": "{raw_root}/payments/{ds}/*"},
    "contract": {
        "ref": "string",
        "payer.msisdn": "string",
        "at": "string",
        "value": "decimal(18,2)",
        "note": {"type": "string", "nullable": True},
    },
    "natural_key": ["ref"],
    "subscriber": {"column": "payer.msisdn"},
    "event_time": {"column": "at", "format": "yyyy-MM-dd'T'HH:mm:ss", "zone": "local"},
    "mappings": [
        {
            "event_type": "wallet",
            "event_subtype": "payment",
            "amount": {"column": "value"},
            "attributes": {"note": {"column": "note"}},
        }
    ],
}

HEADER = "call_id;caller;started_at;seconds;volume_kb;cell"


def _row(cid: str, caller: str, when: str = f"{DAY} 10:15:00", secs: str = "60", kb: str = "1500", cell: str = "C1"):
    return ";".join([cid, caller, when, secs, kb, cell])


def _text(lines: list[str], eol: str = "\n") -> str:
    return eol.join(lines) + eol


def _truncated_gzip() -> tuple[bytes, int]:
    """A gzip stream cut in the middle, and the lines zlib can still get out of it."""
    text = _text([HEADER, *[_row(f"TZ{i:03d}", OTHER_NUMBERS[0], cell=f"CELL{i:05d}") for i in range(4000)]])
    whole = gzip.compress(text.encode(), mtime=0)
    cut = whole[: len(whole) // 2]
    readable = zlib.decompressobj(wbits=31).decompress(cut)
    return cut, readable.count(b"\n") + (not readable.endswith(b"\n"))


def voice_cases() -> list[Case]:
    spelled = [_row(f"S{i:02d}", m) for i, m in enumerate(SPELLINGS)]
    truncated, truncated_lines = _truncated_gzip()
    mixed = HEADER + "\r\n" + _row("M1", "0612345711") + "\n" + _row("M2", "0612345712") + "\r\n"
    mixed += _row("M3", "0612345713")  # and no newline at the end
    return [
        Case("a01_spellings.csv", _text([HEADER, *spelled]).encode(), len(spelled), accepted=len(spelled)),
        Case(
            "a02_utf16_bom.csv",
            _text([HEADER, _row("U1", OTHER_NUMBERS[1]), _row("U2", "0612345714")], "\r\n").encode("utf-16"),
            3,
            file_reason="encoding_error",
        ),
        Case(
            "a03_cp1252.csv",
            _text([HEADER, _row("W1", OTHER_NUMBERS[2], cell="Café €5"), _row("W2", "0612345715")]).encode("cp1252"),
            3,
            file_reason="encoding_error",
        ),
        Case("a04_mixed_eol.csv", mixed.encode(), 3, accepted=3),
        Case("a05_truncated.csv.gz", truncated, truncated_lines, file_reason="unreadable_file"),
        Case(
            "a06_plain_text.csv.gz",
            _text([HEADER, _row("P1", OTHER_NUMBERS[3]), _row("P2", "0612345716")]).encode(),
            3,
            file_reason="compressed_mismatch",
        ),
        Case(
            "a07_good.csv.gz",
            gzip.compress(_text([HEADER, _row("Z1", "0612345717"), _row("Z2", "0612345718")]).encode(), mtime=0),
            2,
            accepted=2,
        ),
        Case("a08_zero_bytes.csv", b"", 0, file_reason="empty_file"),
        Case(
            "a09_trailing_delimiter.csv",
            _text([HEADER + ";", _row("TD1", "0612345719") + ";", _row("TD2", "0612345720") + ";"]).encode(),
            2,
            accepted=2,
        ),
        Case(  # the header's trailing delimiter names no column: rows without it lose nothing
            "a10_trailing_delimiter_header_only.csv",
            _text([HEADER + ";", _row("TH1", "0612345711"), _row("TH2", "0612345712")]).encode(),
            2,
            accepted=2,
        ),
        Case(
            "a11_quoted.csv",
            _text(
                [
                    HEADER,
                    _row("Q1", "0612345721", cell='"Paris; 1er"'),
                    _row("Q2", '"06 12 34 57 22"', cell='"a ""quoted"" cell"'),
                    # a quoted field across two lines: lines are read one by one (so one stray quote
                    # cannot swallow the rest of a file): the first keeps the text up to its end, the
                    # second is malformed
                    _row("Q3", OTHER_NUMBERS[6], cell='"first line'),
                    'second line"',
                ]
            ).encode(),
            4,
            row_reasons=Counter({"malformed_record": 1}),
            accepted=3,
        ),
        Case(
            "a12_header_case_duplicate.csv",
            _text([HEADER + ";CALLER", _row("CD1", "0612345711") + ";" + OTHER_NUMBERS[7]]).encode(),
            2,
            file_reason="duplicate_header",
        ),
        Case(
            "a13_huge_numbers.csv",
            _text(
                [
                    HEADER,
                    _row("H1", "0612345712", secs="9" * 30),
                    _row("H2", "0612345713", kb="1" + "0" * 400),
                    _row("H3", "0612345714", secs="0x10"),
                    _row("H4", "0612345715", secs="1e3"),
                    _row("H5", "9" * 40),
                    _row("H6", "0612345716", kb="-12"),
                ]
            ).encode(),
            6,
            row_reasons=Counter({"invalid_type": 4, "invalid_msisdn": 1}),
            accepted=1,
        ),
        Case(
            "a14_dates.csv",
            _text(
                [
                    HEADER,
                    _row("D1", "0612345717", when="0000-00-00 00:00:00"),
                    _row("D2", "0612345718", when="2025-02-30 10:00:00"),  # would be 2025-03-02 if rolled over
                    _row("D3", "0612345719", when=f"{DAY} 24:00:00"),
                    _row("D4", "0612345720", when="2025-02-27 10:00:00"),
                    _row("D5", "0612345721", when="2025-03-05 00:30:00"),
                    _row("D6", "0612345722", when="2025-03-01 00:30:00"),
                ]
            ).encode(),
            6,
            row_reasons=Counter({"invalid_timestamp": 3, "too_late": 1, "future_event": 1}),
            accepted=1,
        ),
        Case(
            "a15_unparseable_lines.csv",
            _text(
                [
                    HEADER,
                    f"X1;{OTHER_NUMBERS[8]};{DAY} 10:15:00;60;1500;C1;call back {OTHER_NUMBERS[5]};fields",
                    f"X2;{OTHER_NUMBERS[9]};{DAY} 10:15:00;60;1500;C1;one more",
                    f"X3;{OTHER_NUMBERS[10]};{DAY} 10:15:00;60;1500;C1;again",
                    f"X4;{OTHER_NUMBERS[4]}",
                ]
            ).encode(),
            4,
            row_reasons=Counter({"malformed_record": 4}),
        ),
        Case(
            "a16_copies.csv",
            _text([HEADER, _row("S00", SPELLINGS[0]), _row("K1", "0612345712"), _row("K1", "0612345712")]).encode(),
            3,
            row_reasons=Counter({"duplicate": 2}),
            accepted=1,
        ),
    ]


def _payment(ref: str, msisdn, at: str = f"{DAY}T09:00:00", value="12.50", note: str = "ok") -> str:
    record = {"ref": ref, "payer": {"msisdn": msisdn}, "at": at, "value": value, "note": note}
    return json.dumps(record, ensure_ascii=False)  # non-ASCII written as such, so the encoding matters


def payments_cases() -> list[Case]:
    truncated = gzip.compress((_text([_payment(f"PZ{i}", OTHER_NUMBERS[11]) for i in range(3000)])).encode(), mtime=0)
    cut = truncated[: len(truncated) // 3]
    readable = zlib.decompressobj(wbits=31).decompress(cut)
    return [
        Case(
            "b01_trailing_commas.jsonl",
            _text([_payment("T1", "+33612345711") + ",", _payment("T2", "0612345712"), ","]).encode(),
            3,
            row_reasons=Counter({"malformed_record": 2}),
            accepted=1,
        ),
        Case(
            "b02_nul.jsonl",
            _text(
                [
                    _payment("N1", OTHER_NUMBERS[12]).replace('"ok"', '"o\x00k"'),
                    "\x00" + _payment("N2", "0612345713"),
                    _payment("N3", "0612345714"),
                ]
            ).encode(),
            3,
            row_reasons=Counter({"malformed_record": 2}),
            accepted=1,
        ),
        Case(
            "b03_utf16_be.jsonl",
            b"\xfe\xff" + _text([_payment("U1", OTHER_NUMBERS[13]), _payment("U2", "0612345715")]).encode("utf-16-be"),
            2,
            file_reason="encoding_error",
        ),
        Case(
            "b04_cp1252.jsonl",
            _text([_payment("W1", "0612345716", note="reçu ‘x’"), _payment("W2", "0612345717")]).encode("cp1252"),
            2,
            file_reason="encoding_error",
        ),
        Case(
            "b05_mixed_eol.jsonl",
            (
                _payment("E1", "0612345718")
                + "\r\n"
                + _payment("E2", "0612345719")
                + "\n"
                + _payment("E3", 33612345720)
            ).encode(),
            3,
            accepted=3,
        ),
        Case(
            "b06_huge_numbers.jsonl",
            _text(
                [
                    _payment("H1", "0612345721", value="9" * 50),
                    _payment("H2", "0612345722", value=1e300),
                    _payment("H3", "0612345711", value="12,50"),
                    _payment("H4", "1" * 60),
                ]
            ).encode(),
            4,
            row_reasons=Counter({"invalid_type": 3, "invalid_msisdn": 1}),
        ),
        Case(
            "b07_dates.jsonl",
            _text(
                [
                    _payment("D1", "0612345712", at="0000-00-00T00:00:00"),
                    _payment("D2", "0612345713", at="2025-02-30T10:00:00"),
                    _payment("D3", "0612345714", at="2025-03-04T10:00:00Z"),
                    _payment("D4", "0612345715", at="2025-03-03T23:59:59"),
                ]
            ).encode(),
            4,
            row_reasons=Counter({"invalid_timestamp": 3}),
            accepted=1,
        ),
        Case("b08_zero_bytes.jsonl", b"", 0, file_reason="empty_file"),
        Case(
            "b09_truncated.jsonl.gz",
            cut,
            readable.count(b"\n") + (not readable.endswith(b"\n")),
            file_reason="unreadable_file",
        ),
    ]


def write(raw_root: Path) -> dict[str, list[Case]]:
    """Write the corpus for DS under raw_root; returns the cases per source name."""
    layout = {"voice": voice_cases(), "payments": payments_cases()}
    for folder, cases in layout.items():
        directory = raw_root / folder / DS.isoformat()
        directory.mkdir(parents=True, exist_ok=True)
        for case in cases:
            (directory / case.name).write_bytes(case.data)
    return layout


def digit_needles() -> list[str]:
    """The national significant part of every number in the corpus: none may appear anywhere."""
    digits = [d[2:] for d in MSISDNS.values()]
    for number in OTHER_NUMBERS:
        ascii_digits = "".join(str(int(ch)) for ch in number if ch.isdigit())
        digits.append(ascii_digits[-9:])
    return sorted(set(digits))
