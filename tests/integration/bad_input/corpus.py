"""A bad-input corpus: real file-level cases an operator's extracts contain, written for one
run date, with what each must end as (lines read, file reason or per-row reasons).

Expected outcomes are written down here by hand from the file contents, not computed by the
code under test.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

DS = date(2025, 3, 10)
STAMP = "20250310"

# every MSISDN format the corpus uses, and the E.164 digits each stands for
MSISDNS = {
    "+33612345601": "33612345601",
    "+33 6 12 34 56 02": "33612345602",
    "0033612345603": "33612345603",
    "0612345604": "33612345604",
    "06-12-34-56-05": "33612345605",
    "+33-6-12-34-56-06": "33612345606",
    "+33(0)6 12 34 56 07": "33612345607",
    "+33 (0) 6.12.34.56.08": "33612345608",
    "٠٦١٢٣٤٥٦٠٩": "33612345609",
    "06.12.34.56.10": "33612345610",
}
FORMATS = list(MSISDNS)
# numbers that only appear in files quarantined whole, or in bad rows
OTHER_NUMBERS = ["0698765401", "0698765402", "0698765403", "0698765404", "0698765405", "+33698765406"]

CSV_SOURCE = {
    "name": "calls",
    "kind": "cdr",
    "format": "csv",
    "sync_frequency": "daily",
    "mandatory": False,
    "check_known_subscriber": False,
    "connection": {"path": "{raw_root}/calls/{ds}/*.csv"},
    "options": {"header": True, "sep": ","},
    "contract": {
        "record_id": "string",
        "msisdn": "string",
        "start_time": "string",
        "duration_s": "long",
        "bytes_up": "long",
        "bytes_down": "long",
        "cell_id": {"type": "string", "nullable": True},
    },
    "natural_key": ["record_id"],
    "subscriber": {"column": "msisdn"},
    "event_time": {"column": "start_time", "format": "yyyyMMddHHmmss", "zone": "local"},
    "checks": [{"rule": "duration_s >= 0", "reason": "negative_duration"}],
    "mappings": [
        {
            "event_type": "cdr",
            "event_subtype": "call",
            "quantity": {"expr": "(bytes_up + bytes_down) / 1048576.0"},
            "amount": {"expr": "duration_s * 1000000000"},
            "unit": "MB",
        }
    ],
}

JSON_SOURCE = {
    "name": "wallet",
    "kind": "xiva",
    "format": "json",
    "sync_frequency": "daily",
    "mandatory": False,
    "check_known_subscriber": False,
    "connection": {"path": "{raw_root}/wallet/{ds}/*.jsonl"},
    "contract": {"id": "string", "subscriber.msisdn": "string", "ts": "timestamp", "amount": "decimal(18,2)"},
    "natural_key": ["id"],
    "subscriber": {"column": "subscriber.msisdn"},
    "event_time": {"column": "ts"},
    "mappings": [{"event_type": "wallet", "event_subtype": "payment", "amount": {"column": "amount"}}],
}

HEADER = "record_id,msisdn,start_time,duration_s,bytes_up,bytes_down,cell_id"


@dataclass
class Case:
    """One file and its expected outcome."""

    name: str
    data: bytes
    lines_read: int  # data lines counted as read (every line for a file quarantined whole)
    file_reason: str | None = None
    row_reasons: Counter = field(default_factory=Counter)  # reject reasons of its rows
    accepted: int = 0


def _row(
    rid: str, msisdn: str, when: str = f"{STAMP}101500", dur: str = "60", up: str = "1000", down: str = "2000"
) -> str:
    return ",".join([rid, msisdn, when, dur, up, down, "CELL1"])


def _csv(lines: list[str], *, crlf: bool = False, bom: bool = False, encoding: str = "utf-8") -> bytes:
    text = ("\r\n" if crlf else "\n").join(lines) + ("\r\n" if crlf else "\n")
    return (b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding)


def csv_cases() -> list[Case]:
    good = [_row(f"G{i}", m) for i, m in enumerate(FORMATS)]
    cases = [
        Case("01_every_format.csv", _csv([HEADER, *good]), len(good), accepted=len(good)),
        Case(
            "02_bom_crlf.csv",
            _csv([HEADER, _row("B1", "+33612345601"), _row("B2", "0612345602")], crlf=True, bom=True),
            2,
            accepted=2,
        ),
        Case(
            "03_latin1_row.csv",
            _csv([HEADER, _row("L1", OTHER_NUMBERS[0]), _row("L2", "0612345601") + " Sèvres"], encoding="latin-1"),
            3,
            file_reason="encoding_error",
        ),
        Case(
            "04_latin1_header.csv",
            _csv([HEADER.replace("cell_id", "cellule_é"), _row("L3", OTHER_NUMBERS[1])], encoding="latin-1"),
            2,
            file_reason="encoding_error",
        ),
        Case(
            "05_gzip_named_csv.csv",
            gzip.compress(_csv([HEADER, _row("Z1", OTHER_NUMBERS[2])]), mtime=0),
            0,
            file_reason="compressed_mismatch",
        ),
        Case("06_empty.csv", b"", 0, file_reason="empty_file"),
        Case("07_header_only.csv", _csv([HEADER]), 0),
        Case(
            "08_truncated_last_line.csv",
            _csv([HEADER, _row("T1", "0612345603")]) + b"T2,0612345604,2025031",
            2,
            row_reasons=Counter({"malformed_record": 1}),
            accepted=1,
        ),
        Case(
            "09_duplicate_header.csv",
            _csv([HEADER + ",msisdn", _row("D1", OTHER_NUMBERS[3]) + ",x"]),
            2,
            file_reason="duplicate_header",
        ),
        Case(
            "10_padded_header.csv",
            _csv([" " + HEADER.replace(",", " , ") + " ", _row("P1", "0612345605")]),
            1,
            accepted=1,
        ),
        Case(
            "11_reordered_extra.csv",
            _csv(
                [
                    "extra,cell_id,bytes_down,bytes_up,duration_s,start_time,msisdn,record_id",
                    f"zz,CELL9,2000,1000,30,{STAMP}120000,0612345606,R1",
                ]
            ),
            1,
            accepted=1,
        ),
        Case(
            "12_missing_column.csv",
            _csv([HEADER.replace(",bytes_up", ""), "M1,0612345607,20250310101500,60,2000,CELL1"]),
            2,
            file_reason="missing_column",
        ),
        Case(
            "13_no_header.csv",
            _csv([_row("N1", OTHER_NUMBERS[4]), _row("N2", "0612345608")]),
            2,
            file_reason="missing_column",
        ),
        Case(
            "14_numbers.csv",
            _csv(
                [
                    HEADER,
                    _row("O1", "0612345609", up="9223372036854775807", down="1"),  # sum overflows: null quantity
                    _row("O2", "0612345610", dur="99999999999999999999999"),  # beyond long
                    _row("O3", "0612345601", dur="-5"),
                    _row("O4", "N/A"),
                    _row("O5", ""),
                    _row("O6", "12"),
                ]
            ),
            6,
            row_reasons=Counter({"invalid_type": 1, "negative_duration": 1, "invalid_msisdn": 2, "missing_field": 1}),
            accepted=1,
        ),
        Case(
            "15_dates.csv",
            _csv(
                [
                    HEADER,
                    _row("E1", "0612345602", when="99991231235959"),
                    _row("E2", "0612345603", when="00010101000000"),
                    _row("E3", "0612345604", when="20251399000000"),
                    _row("E4", "0612345605", when="2025-03-10"),
                ]
            ),
            4,
            row_reasons=Counter({"future_event": 1, "too_late": 1, "invalid_timestamp": 2}),
        ),
        Case(
            "16_ten_megabyte_line.csv",
            _csv([HEADER, _row("X1", "0612345606").replace("CELL1", "C" * 10_000_000)]),
            1,
            accepted=1,
        ),
        Case(
            "17_duplicates.csv",
            _csv([HEADER, _row("G0", "+33612345601"), _row("U1", "0612345607"), _row("U1", "0612345607")]),
            3,
            row_reasons=Counter({"duplicate": 2}),
            accepted=1,
        ),
    ]
    return cases


def _json_line(rid: str, msisdn: str, amount: str = "12.50") -> str:
    return json.dumps({"id": rid, "subscriber": {"msisdn": msisdn}, "ts": "2025-03-10T09:00:00Z", "amount": amount})


def json_cases() -> list[Case]:
    array = "[" + _json_line("A1", "0612345601") + ", " + _json_line("A2", "0612345602") + "]"
    return [
        Case(
            "01_lines.jsonl",
            (
                "\ufeff" + "\n".join([_json_line("J1", "+33612345601"), "", _json_line("J2", "0033612345602")]) + "\n"
            ).encode(),
            2,
            accepted=2,
        ),
        Case(
            "02_arrays_and_junk.jsonl",
            "\n".join([array, "42", '{"id": "J3", "subscriber": ', _json_line("J4", OTHER_NUMBERS[5])]).encode(),
            4,
            row_reasons=Counter({"malformed_record": 3}),
            accepted=1,
        ),
        Case(
            "03_bad_values.jsonl",
            "\n".join(
                [
                    _json_line("J5", "0612345603", amount="1e400"),
                    _json_line("J6", "0612345604", amount="123456789012345678901234567890"),
                    _json_line("J7", "N/A"),
                ]
            ).encode(),
            3,
            row_reasons=Counter({"invalid_type": 2, "invalid_msisdn": 1}),
        ),
        Case("04_gzip.jsonl", gzip.compress(b"{}\n", mtime=0), 0, file_reason="compressed_mismatch"),
    ]


def write(raw_root: Path) -> dict[str, list[Case]]:
    """Write the corpus for DS under raw_root; returns the cases per source name."""
    layout = {"calls": ("calls", csv_cases()), "wallet": ("wallet", json_cases())}
    for folder, cases in layout.values():
        directory = raw_root / folder / DS.isoformat()
        directory.mkdir(parents=True, exist_ok=True)
        for case in cases:
            (directory / case.name).write_bytes(case.data)
    return {name: cases for name, (_, cases) in layout.items()}


def digit_needles() -> list[str]:
    """The national significant part of every number in the corpus: none may appear anywhere."""
    digits = [d[2:] for d in MSISDNS.values()] + [n[-9:] for n in OTHER_NUMBERS]
    return sorted(set(digits))
