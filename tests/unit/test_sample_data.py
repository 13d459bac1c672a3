"""Tests of the sample data generator (jobs.sample_data): layout, determinism, signal, defects."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import hmac
import json
import re
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.sample_data import DEMO_KEY, generate, main

START = dt.date(2025, 3, 1)
DAYS = ("2025-03-01", "2025-03-02", "2025-03-03")
PARAMS = {"subscribers": 300, "days": 3, "start": START, "seed": 7, "chunk_size": 128}
CDR_HEADER = "record_id|msisdn|record_type|start_time|duration_s|bytes_up|bytes_down|cell_id|roaming_flag|other_party"
APP_KEYS = {"event_id", "msisdn", "ts", "channel", "action", "feature", "session_id", "os"}
MIX = {
    "heavy_data": 0.15,
    "voice_centric": 0.15,
    "digital_native": 0.15,
    "churn_risk": 0.10,
    "new_joiner": 0.08,
    "high_value_postpaid": 0.10,
    "dormant": 0.10,
    "steady_loyal": 0.17,
}
BILLING_SCHEMA = pa.schema(
    [
        ("transaction_id", pa.string()),
        ("msisdn", pa.string()),
        ("txn_type", pa.string()),
        ("txn_time", pa.timestamp("us", tz="UTC")),
        ("amount", pa.decimal128(12, 2)),
        ("currency", pa.string()),
        ("channel", pa.string()),
        ("status", pa.string()),
        ("bill_id", pa.string()),
        ("due_date", pa.date32()),
    ]
)
NETWORK_SCHEMA = pa.schema(
    [
        ("msisdn", pa.string()),
        ("cell_id", pa.string()),
        ("measurement_date", pa.date32()),
        ("call_attempts", pa.int32()),
        ("dropped_calls", pa.int32()),
        ("data_sessions", pa.int32()),
        ("avg_throughput_kbps", pa.float64()),
        ("avg_latency_ms", pa.float64()),
    ]
)
DWH_SCHEMA = pa.schema(
    [
        ("msisdn", pa.string()),
        ("month", pa.string()),
        ("arpu", pa.decimal128(12, 2)),
        ("tenure_months", pa.int32()),
        ("total_revenue", pa.decimal128(12, 2)),
        ("data_mb", pa.float64()),
        ("voice_minutes", pa.float64()),
        ("sms_count", pa.int32()),
    ]
)
VALID_CDR_TIME = re.compile(r"2025030[1-3](?:[01]\d|2[0-3])[0-5]\d[0-5]\d")
VALID_APP_TS = re.compile(r"2025-0[23]-\d\dT(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\dZ")


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sample") / "run"
    generate(out, **PARAMS)
    return out


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "run"
    generate(out, **PARAMS, defect_rate=0.0)
    return out


def manifest(root: Path) -> dict:
    return json.loads((root / "_manifest.json").read_text())


def digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def truth(root: Path) -> dict[str, str]:
    """Persona by E.164 digits."""
    with (root / "_truth" / "personas.csv").open() as fh:
        return {row["msisdn"].lstrip("+"): row["persona"] for row in csv.DictReader(fh)}


def cdr_lines(root: Path, ds: str) -> list[str]:
    """Data lines of all hourly files of a day (headers checked and dropped)."""
    lines = []
    for path in sorted((root / "cdr" / ds).glob("*.csv")):
        header, *rows = path.read_text().splitlines()
        assert header == CDR_HEADER
        lines += rows
    return lines


def cdr_records(root: Path, ds: str) -> list[list[str]]:
    return [fields for fields in (line.split("|") for line in cdr_lines(root, ds)) if len(fields) == 10]


def app_lines(root: Path, ds: str) -> list[str]:
    return (root / "app" / ds / f"app_events_{ds.replace('-', '')}.jsonl").read_text().splitlines()


def app_events(root: Path, ds: str) -> list[dict]:
    events = []
    for line in app_lines(root, ds):
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


def parquet(root: Path, source: str, ds: str, name: str) -> pa.Table:
    return pq.read_table(root / source / ds / name)


def billing(root: Path, ds: str) -> pa.Table:
    return parquet(root, "billing", ds, f"billing_{ds.replace('-', '')}.parquet")


def network(root: Path, ds: str) -> pa.Table:
    return parquet(root, "network", ds, f"qoe_{ds.replace('-', '')}.parquet")


def csv_rows(root: Path, source: str, ds: str, name: str) -> tuple[list[str], list[dict]]:
    with (root / source / ds / f"{name}_{ds.replace('-', '')}.csv").open() as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


# ---------------------------------------------------------------------------------------------- determinism


@pytest.mark.unit
def test_same_seed_gives_byte_identical_files(data: Path, tmp_path: Path) -> None:
    generate(tmp_path / "again", **PARAMS)
    assert digests(tmp_path / "again") == digests(data)


@pytest.mark.unit
def test_different_seed_gives_different_data(data: Path, tmp_path: Path) -> None:
    generate(tmp_path / "other", **{**PARAMS, "seed": 8})
    ours, theirs = digests(data), digests(tmp_path / "other")
    assert ours.keys() == theirs.keys()
    for ds in DAYS:
        ymd = ds.replace("-", "")
        for name in (
            f"billing/{ds}/billing_{ymd}.parquet",
            f"app/{ds}/app_events_{ymd}.jsonl",
            f"cdr/{ds}/cdr_{ymd}_12.csv",
            "_truth/personas.csv",
        ):
            assert ours[name] != theirs[name], name


@pytest.mark.unit
def test_population_does_not_depend_on_chunk_size(data: Path, tmp_path: Path) -> None:
    generate(tmp_path / "one_chunk", **{**PARAMS, "days": 1, "chunk_size": 1000})
    assert (tmp_path / "one_chunk/_truth/personas.csv").read_bytes() == (data / "_truth/personas.csv").read_bytes()


# ---------------------------------------------------------------------------------------------- layout


@pytest.mark.unit
def test_every_source_has_the_specified_files_and_columns(data: Path) -> None:
    for ds in DAYS:
        ymd = ds.replace("-", "")
        hours = sorted(p.name for p in (data / "cdr" / ds).iterdir())
        assert hours == [f"cdr_{ymd}_{h:02d}.csv" for h in range(24)]
        assert billing(data, ds).schema == BILLING_SCHEMA
        assert network(data, ds).schema == NETWORK_SCHEMA
        header, _ = csv_rows(data, "crm_subscribers", ds, "subscribers")
        assert header == [
            "msisdn",
            "customer_id",
            "plan_code",
            "payment_type",
            "activation_date",
            "status",
            "age_band",
            "region",
            "snapshot_date",
        ]
        header, _ = csv_rows(data, "crm_interactions", ds, "interactions")
        assert header == ["interaction_id", "msisdn", "interaction_time", "channel", "interaction_type", "category"]
        clean_keys = [set(e) for e in app_events(data, ds) if "msisdn" in e]
        assert clean_keys and all(keys == APP_KEYS for keys in clean_keys)
        for line in (data / "xiva" / ds / f"xiva_{ymd}.json").read_text().splitlines():
            event = json.loads(line)
            assert set(event) == {"id", "partner", "type", "occurred_at", "subscriber", "payload"}
            assert re.fullmatch(r"0033[67]\d{8}", event["subscriber"]["msisdn"])
            assert set(event["payload"]) == {"value", "currency", "reference"}
            assert event["occurred_at"].startswith(ds) and event["occurred_at"].endswith("+01:00")
    assert [p.name for p in (data / "dwh").rglob("*.parquet")] == ["monthly_kpis_202502.parquet"]
    dwh = parquet(data, "dwh", "2025-03-01", "monthly_kpis_202502.parquet")
    assert dwh.schema == DWH_SCHEMA and set(dwh.column("month").to_pylist()) == {"2025-02"}


@pytest.mark.unit
def test_msisdn_formats_differ_per_source_on_purpose(clean: Path) -> None:
    ds = "2025-03-02"
    assert all(re.fullmatch(r"336\d{8}", r[1]) for r in cdr_records(clean, ds))
    assert all(re.fullmatch(r"06\d{8}", m) for m in billing(clean, ds).column("msisdn").to_pylist())
    assert all(re.fullmatch(r"\+33 6 \d\d \d\d \d\d \d\d", e["msisdn"]) for e in app_events(clean, ds))
    assert all(re.fullmatch(r"\+336\d{8}", m) for m in network(clean, ds).column("msisdn").to_pylist())
    _, subs = csv_rows(clean, "crm_subscribers", ds, "subscribers")
    assert all(re.fullmatch(r"\+336\d{8}", s["msisdn"]) for s in subs)


@pytest.mark.unit
def test_local_times_stay_inside_the_day(clean: Path) -> None:
    for ds in DAYS:
        ymd = ds.replace("-", "")
        for path in (clean / "cdr" / ds).glob("*.csv"):
            hour = path.stem[-2:]
            assert all(line.split("|")[3].startswith(ymd + hour) for line in path.read_text().splitlines()[1:])
        _, rows = csv_rows(clean, "crm_interactions", ds, "interactions")
        assert all(r["interaction_time"].startswith(ds + " ") for r in rows)
        for event in app_events(clean, ds):  # UTC: local midnight is 23:00 the day before
            utc = dt.datetime.fromisoformat(event["ts"].replace("Z", "+00:00"))
            assert (utc + dt.timedelta(hours=1)).date().isoformat() == ds


@pytest.mark.unit
def test_truth_file_maps_msisdn_to_pseudonymised_id(data: Path) -> None:
    with (data / "_truth" / "personas.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 300 and len({r["msisdn"] for r in rows}) == 300
    assert rows[42]["msisdn"] == "+33610000042"
    for row in rows:
        assert re.fullmatch(r"\+33[67]\d{8}", row["msisdn"]), row["msisdn"]
        # HMAC-SHA256 of the E.164 digits, computed here with the standard library
        expected = hmac.new(DEMO_KEY.encode(), row["msisdn"][1:].encode(), hashlib.sha256).hexdigest()
        assert row["subscriber_id"] == expected
        assert row["persona"] in MIX
    assert rows[42]["subscriber_id"] == hmac.new(DEMO_KEY.encode(), b"33610000042", hashlib.sha256).hexdigest()


@pytest.mark.unit
def test_manifest_rows_match_the_files(data: Path) -> None:
    rows = manifest(data)["rows"]
    for ds in DAYS:
        assert rows["cdr"][ds] == len(cdr_lines(data, ds))
        assert rows["app"][ds] == len(app_lines(data, ds))
        assert rows["billing"][ds] == billing(data, ds).num_rows
        assert rows["network"][ds] == network(data, ds).num_rows
        assert rows["crm_subscribers"][ds] == len(csv_rows(data, "crm_subscribers", ds, "subscribers")[1])
    assert rows["dwh_monthly_kpis"] == {"2025-03-01": 297}
    assert manifest(data)["files"] == sum(1 for p in data.rglob("*") if p.is_file())


# ---------------------------------------------------------------------------------------------- behaviour


@pytest.mark.unit
def test_persona_shares_follow_the_mix(tmp_path: Path) -> None:
    summary = generate(tmp_path, subscribers=2000, days=1, start=START, seed=3)
    assert sum(summary["personas"].values()) == 2000
    for persona, share in MIX.items():
        assert summary["personas"][persona] / 2000 == pytest.approx(share, abs=0.03), persona


@pytest.mark.unit
def test_churn_risk_activity_declines(clean: Path) -> None:
    persona = truth(clean)
    first, last = (sum(persona[r[1]] == "churn_risk" for r in cdr_records(clean, ds)) for ds in (DAYS[0], DAYS[-1]))
    assert first > 100 and last < 0.5 * first


@pytest.mark.unit
def test_digital_natives_use_the_app_far_more_than_voice_centric(clean: Path) -> None:
    persona = truth(clean)
    counts = Counter(persona[e["msisdn"].replace(" ", "").lstrip("+")] for ds in DAYS for e in app_events(clean, ds))
    members = Counter(persona.values())
    digital = counts["digital_native"] / members["digital_native"]
    voice = counts["voice_centric"] / members["voice_centric"]
    assert digital > 3 * len(DAYS) and digital > 10 * voice


@pytest.mark.unit
def test_new_joiners_appear_nowhere_before_activation(clean: Path) -> None:
    activation: dict[str, str] = {}
    for ds in DAYS:
        _, subs = csv_rows(clean, "crm_subscribers", ds, "subscribers")
        assert all(s["activation_date"] <= ds == s["snapshot_date"] for s in subs)
        for s in subs:
            activation.setdefault(s["msisdn"].lstrip("+"), s["activation_date"])
        present = {s["msisdn"].lstrip("+") for s in subs}
        assert {r[1] for r in cdr_records(clean, ds)} <= present
        assert {e["msisdn"].replace(" ", "").lstrip("+") for e in app_events(clean, ds)} <= present
        assert {"33" + m[1:] for m in billing(clean, ds).column("msisdn").to_pylist()} <= present
    joiners = [m for m, p in truth(clean).items() if p == "new_joiner"]
    late = [m for m in joiners if activation.get(m, "9999") > DAYS[0]]
    assert late, "some new joiners should activate inside the window"


# ---------------------------------------------------------------------------------------------- defects


def cdr_defects(root: Path, ds: str) -> dict[str, int]:
    lines = cdr_lines(root, ds)
    records = [line.split("|") for line in lines if line.count("|") == 9]
    ids = Counter(r[0] for r in records)
    return {
        "bad_line": len(lines) - len(records),
        "duplicate": sum(n - 1 for n in ids.values()),
        "malformed_timestamp": sum(not VALID_CDR_TIME.fullmatch(r[3]) for r in records),
        "negative_duration": sum(int(r[4]) < 0 for r in records),
        "unknown_subscriber": sum(r[1].startswith("337") for r in records),
    }


def app_defects(root: Path, ds: str) -> dict[str, int]:
    events = app_events(root, ds)
    ids = Counter(e["event_id"] for e in events)
    return {
        "bad_line": len(app_lines(root, ds)) - len(events),
        "duplicate": sum(n - 1 for n in ids.values()),
        "malformed_timestamp": sum(not VALID_APP_TS.fullmatch(e["ts"]) for e in events),
        "missing_msisdn": sum("msisdn" not in e for e in events),
        "unknown_subscriber": sum(e.get("msisdn", "").startswith("+33 7") for e in events),
    }


def billing_defects(root: Path, ds: str) -> dict[str, int]:
    table = billing(root, ds)
    msisdn = table.column("msisdn").to_pylist()
    return {
        "duplicate": table.num_rows - len(set(table.column("transaction_id").to_pylist())),
        "missing_msisdn": msisdn.count(None),
        "unknown_subscriber": sum(m is not None and m.startswith("07") for m in msisdn),
    }


def network_defects(root: Path, ds: str) -> dict[str, int]:
    return {"missing_msisdn": network(root, ds).column("msisdn").null_count}


OBSERVED = {"cdr": cdr_defects, "app": app_defects, "billing": billing_defects, "network": network_defects}


@pytest.mark.unit
def test_manifest_defect_counts_match_the_files(data: Path) -> None:
    defects = manifest(data)["defects"]
    for source, observe in OBSERVED.items():
        for ds in DAYS:
            expected = defects[source][ds]
            assert all(n >= 1 for n in expected.values()), (source, ds, expected)
            assert observe(data, ds) == expected, (source, ds)


@pytest.mark.unit
def test_cdr_defect_volume_follows_the_rate(data: Path) -> None:
    counts = manifest(data)["defects"]["cdr"][DAYS[0]]
    clean_rows = manifest(data)["rows"]["cdr"][DAYS[0]] - counts["duplicate"] - counts["bad_line"]
    assert counts["negative_duration"] == pytest.approx(0.005 * clean_rows, abs=3)  # one round() per chunk


@pytest.mark.unit
def test_zero_defect_rate_gives_clean_data(clean: Path) -> None:
    for source, observe in OBSERVED.items():
        for ds in DAYS:
            assert set(manifest(clean)["defects"][source][ds].values()) == {0}
            assert set(observe(clean, ds).values()) == {0}, (source, ds)


@pytest.mark.unit
def test_natural_keys_are_unique_in_clean_data(clean: Path) -> None:
    for ds in DAYS:
        qoe = network(clean, ds)
        keys = list(zip(qoe.column("msisdn").to_pylist(), qoe.column("cell_id").to_pylist(), strict=True))
        assert len(keys) == len(set(keys))
        for source, name, key in (
            ("crm_subscribers", "subscribers", "msisdn"),
            ("crm_interactions", "interactions", "interaction_id"),
        ):
            _, rows = csv_rows(clean, source, ds, name)
            assert len(rows) == len({r[key] for r in rows})
        xiva = (clean / "xiva" / ds / f"xiva_{ds.replace('-', '')}.json").read_text().splitlines()
        assert len(xiva) == len({json.loads(line)["id"] for line in xiva})
    dwh = parquet(clean, "dwh", "2025-03-01", "monthly_kpis_202502.parquet").column("msisdn").to_pylist()
    assert len(dwh) == len(set(dwh))


@pytest.mark.unit
def test_defects_only_alter_the_chosen_rows(data: Path, clean: Path) -> None:
    ds = DAYS[1]
    tidy = {r[0]: r for r in cdr_records(clean, ds)}
    dirty = {r[0]: r for r in cdr_records(data, ds)}
    assert tidy.keys() == dirty.keys()
    changed = Counter(i for key, row in tidy.items() for i, value in enumerate(row) if dirty[key][i] != value)
    expected = manifest(data)["defects"]["cdr"][ds]
    assert changed == {
        1: expected["unknown_subscriber"],
        3: expected["malformed_timestamp"],
        4: expected["negative_duration"],
    }


# ---------------------------------------------------------------------------------------------- CLI


@pytest.mark.unit
def test_cli_writes_data_and_prints_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--subscribers", "50", "--days", "2", "--start", "2025-03-30", "--seed", "1", "--out", str(tmp_path)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "2025-03-30" in printed and "2025-03-31" in printed and "wrote" in printed
    assert len(list((tmp_path / "cdr" / "2025-03-30").glob("*.csv"))) == 23  # DST: no 02:00 local hour


@pytest.mark.unit
def test_invalid_parameters_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        generate(tmp_path, subscribers=0, days=1, start=START, seed=1)
    with pytest.raises(SystemExit):
        main(
            [
                "--subscribers",
                "10",
                "--days",
                "1",
                "--start",
                "2025-03-01",
                "--seed",
                "1",
                "--out",
                str(tmp_path),
                "--defect-rate",
                "0.9",
            ]
        )
