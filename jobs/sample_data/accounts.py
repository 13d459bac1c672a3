"""Billing transactions, CRM snapshots and interactions, and the monthly DWH KPIs."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.sample_data import defects as D
from jobs.sample_data import personas as P
from jobs.sample_data.clock import (
    DATA_PROFILE,
    EPOCH_ORDINAL,
    NIGHT_PROFILE,
    OFFICE_PROFILE,
    VOICE_PROFILE,
    date32,
    iso_dates,
    iso_local,
    timestamps_utc,
)
from jobs.sample_data.context import ChunkDay, Stream, trend_level
from jobs.sample_data.output import Batch, Lines, csv_parts, decimal_cents, padded
from jobs.sample_data.population import POSTPAID_PLANS, PREPAID_PLANS, REGIONS, Attr, Population, hash_uniform, pick

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
BILLING_DEFECTS = {D.DUPLICATE: D.Mode.COPY, D.UNKNOWN_SUBSCRIBER: D.Mode.INPLACE, D.MISSING_MSISDN: D.Mode.INPLACE}
SUBSCRIBER_COLUMNS = (
    "msisdn",
    "customer_id",
    "plan_code",
    "payment_type",
    "activation_date",
    "status",
    "age_band",
    "region",
    "snapshot_date",
)
INTERACTION_COLUMNS = ("interaction_id", "msisdn", "interaction_time", "channel", "interaction_type", "category")
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

RECHARGE, PAYMENT, BILL = range(3)
TXN_TYPES = pa.array(["RECHARGE", "PAYMENT", "BILL"])
BILLING_CHANNELS = pa.array([*P.RECHARGE_CHANNELS, "bank_transfer", "auto_debit", "billing_system"])
_PAYMENT_CHANNEL_CODES = np.array([5, 6, 2, 3])  # P.PAYMENT_CHANNELS in BILLING_CHANNELS
_BILL_CHANNEL = 7
PAYMENT_TERMS_DAYS = 14
RETRY_DAYS = 3
VAT = 1.2  # total_revenue is gross, arpu is net of VAT
CATEGORIES = pa.array(["billing", "network", "offer", "device"])
_CATEGORY_CDF = np.cumsum(
    [  # rows follow P.CRM_TYPES
        [0.45, 0.4, 0.1, 0.05],
        [0.4, 0.05, 0.4, 0.15],
        [0.1, 0.0, 0.9, 0.0],
        [0.0, 0.6, 0.0, 0.4],
    ],
    axis=1,
)


def month_index(day: dt.date) -> int:
    return day.year * 12 + day.month - 1


def month_start(month: int) -> dt.date:
    return dt.date(month // 12, month % 12 + 1, 1)


def _monthly_uniform(seed: int, pop: Population, month: int, k: int) -> np.ndarray:
    return hash_uniform(seed, Attr.MONTHLY + 16 * month + k, pop.index)


def bill_cents(seed: int, pop: Population, month: int) -> np.ndarray:
    """Postpaid bill of a month: base +-8%, plus roaming charges for some high-value months."""
    amount = pop.bill_base_cents * (0.92 + 0.16 * _monthly_uniform(seed, pop, month, 0))
    roaming = (pop.persona == P.HIGH_VALUE) & (_monthly_uniform(seed, pop, month, 1) < 0.3)
    amount += np.where(roaming, 1000 + 5000 * _monthly_uniform(seed, pop, month, 2), 0)
    return np.round(amount).astype(np.int64)


# ----------------------------------------------------------------------------------------------
# Billing


def billing(ctx: ChunkDay, first_seq: int) -> Batch:
    """Recharges (prepaid), bills and bill payments (postpaid) of the day, with defects."""
    rng = ctx.rng(Stream.BILLING)
    txns = [_recharges(ctx, rng), _bills(ctx), *(_payments(ctx, month) for month in _payable_months(ctx))]
    cols = {k: np.concatenate([t[k] for t in txns]) for k in txns[0]}
    profiles = {RECHARGE: VOICE_PROFILE, PAYMENT: VOICE_PROFILE, BILL: NIGHT_PROFILE}
    utc = np.zeros(len(cols["owner"]), dtype=np.int64)
    for kind, profile in profiles.items():
        rows = cols["type"] == kind
        utc[rows] = ctx.clock.sample(rng, int(rows.sum()), profile)
    order = np.argsort(utc, kind="stable")
    cols = {k: v[order] for k, v in cols.items()}
    utc = utc[order]
    defect_rng = ctx.defect_rng(Stream.BILLING)
    plan = D.plan(defect_rng, len(utc), ctx.settings.defect_rate, BILLING_DEFECTS)
    table = _billing_table(ctx, cols, utc, first_seq, plan, defect_rng)
    rows, _ = plan.layout(utc)
    return Batch(table.take(rows), len(utc), plan.counts())


def _txns(
    owner: np.ndarray,
    kind: int,
    cents: np.ndarray,
    channel: np.ndarray,
    failed: np.ndarray,
    month: int = -1,
    due: int = -1,
) -> dict[str, np.ndarray]:
    n = len(owner)
    return {
        "owner": owner,
        "type": np.full(n, kind),
        "cents": cents,
        "channel": channel,
        "failed": failed,
        "month": np.full(n, month),
        "due": np.full(n, due),
    }


def _recharges(ctx: ChunkDay, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Prepaid top-ups: steady_loyal on a fixed cadence, others at random; new lines on day one."""
    pop, day = ctx.pop, ctx.clock.ordinal
    on_cadence = ((day - pop.cadence_phase) % pop.cadence == 0) & (ctx.trend > 0)
    random_day = rng.random(pop.size) < P.column("recharge_rate")[pop.persona] * ctx.trend
    first_day = (pop.activation == day) & (rng.random(pop.size) < 0.85)
    steady = pop.persona == P.STEADY_LOYAL
    owner = np.flatnonzero(~pop.postpaid & (np.where(steady, on_cadence, random_day) | first_day))
    persona = pop.persona[owner]
    euros = P.column("recharge_eur")[persona, rng.integers(0, 4, len(owner))]
    channel = pick(rng.random(len(owner)), P.cdf("recharge_channels"), persona)
    failed = rng.random(len(owner)) < P.column("failed_payment")[persona]
    return _txns(owner, RECHARGE, np.round(euros * 100).astype(np.int64), channel, failed)


def _bill_dates(pop: Population, month: int) -> np.ndarray:
    return month_start(month).toordinal() + pop.bill_day - 1


def _bills(ctx: ChunkDay) -> dict[str, np.ndarray]:
    pop, day, month = ctx.pop, ctx.clock.ordinal, month_index(ctx.clock.ds)
    owner = np.flatnonzero(pop.postpaid & (_bill_dates(pop, month) == day) & (pop.activation < day))
    cents = bill_cents(ctx.settings.seed, pop, month)[owner]
    return _txns(
        owner,
        BILL,
        cents,
        np.full(len(owner), _BILL_CHANNEL),
        np.zeros(len(owner), bool),
        month,
        day + PAYMENT_TERMS_DAYS,
    )


def _payable_months(ctx: ChunkDay) -> range:
    """Bills of these months can be paid today (late payments run up to ~34 days after the bill)."""
    month = month_index(ctx.clock.ds)
    return range(month - 2, month + 1)


def _payments(ctx: ChunkDay, month: int) -> dict[str, np.ndarray]:
    """Payments of the bills of `month` due today: on time or late, a failed attempt is retried."""
    seed, pop, day = ctx.settings.seed, ctx.pop, ctx.clock.ordinal
    bill_date = _bill_dates(pop, month)
    late = _monthly_uniform(seed, pop, month, 3) < P.column("late_payment")[pop.persona]
    u = _monthly_uniform(seed, pop, month, 4)
    delay = np.where(late, 1 + np.floor(u * 20), -np.floor(u * 11)).astype(np.int64)
    first = bill_date + PAYMENT_TERMS_DAYS + delay
    failed = _monthly_uniform(seed, pop, month, 5) < P.column("failed_payment")[pop.persona]
    billed = pop.postpaid & (pop.activation < bill_date)
    attempt = billed & (first == day)
    retry = billed & failed & (first + RETRY_DAYS == day)
    owner = np.concatenate([np.flatnonzero(attempt), np.flatnonzero(retry)])
    status_failed = np.concatenate([failed[attempt], np.zeros(int(retry.sum()), bool)])
    channel_u = _monthly_uniform(seed, pop, month, 6)
    channel = _PAYMENT_CHANNEL_CODES[pick(channel_u, P.cdf("payment_channels"), pop.persona)]
    due = bill_date + PAYMENT_TERMS_DAYS
    txns = _txns(owner, PAYMENT, bill_cents(seed, pop, month)[owner], channel[owner], status_failed, month)
    txns["due"] = due[owner]
    return txns


def _billing_table(
    ctx: ChunkDay,
    cols: dict[str, np.ndarray],
    utc: np.ndarray,
    first_seq: int,
    plan: D.DefectPlan,
    rng: np.random.Generator,
) -> pa.Table:
    n, owner = len(utc), cols["owner"]
    msisdn = ctx.numbers.national(ctx.msisdn8).take(owner)
    unknown, missing = plan.mask(D.UNKNOWN_SUBSCRIBER), plan.mask(D.MISSING_MSISDN)
    if unknown.any():
        fake = ctx.numbers.national(ctx.unknown_numbers(rng, int(unknown.sum())), lead="7")
        msisdn = pc.replace_with_mask(msisdn, pa.array(unknown), fake)
    if missing.any():
        msisdn = pc.replace_with_mask(msisdn, pa.array(missing), pa.nulls(int(missing.sum()), pa.string()))
    has_bill = cols["month"] >= 0
    months = np.where(has_bill, cols["month"], month_index(ctx.clock.ds))
    values, inverse = np.unique(months, return_inverse=True)
    labels = pa.array([month_start(int(m)).strftime("%Y%m") for m in values], pa.string())
    bill_id = pc.binary_join_element_wise("B", labels.take(inverse), "-", padded(ctx.pop.index[owner], 8), "")
    return pa.table(
        [
            padded(first_seq + np.arange(n), 9, f"T{ctx.clock.yyyymmdd}"),
            msisdn,
            TXN_TYPES.take(cols["type"]),
            timestamps_utc(utc),
            decimal_cents(cols["cents"]),
            pa.array(np.full(n, "EUR")),
            BILLING_CHANNELS.take(cols["channel"]),
            pc.if_else(pa.array(cols["failed"]), "FAILED", "SUCCESS"),
            pc.if_else(pa.array(has_bill), bill_id, pa.scalar(None, pa.string())),
            pc.if_else(pa.array(has_bill), date32(cols["due"]), pa.scalar(None, pa.date32())),
        ],
        schema=BILLING_SCHEMA,
    )


# ----------------------------------------------------------------------------------------------
# CRM


def subscribers(ctx: ChunkDay) -> Batch:
    """Daily snapshot rows of the subscribers activated on or before the day."""
    pop = ctx.pop
    rows = np.flatnonzero(ctx.present)
    plans = pa.array([*PREPAID_PLANS, *POSTPAID_PLANS])
    columns = [
        ctx.numbers.plus(ctx.msisdn8).take(rows),
        padded(pop.index[rows], 7, "CUST"),
        plans.take(pop.plan_tier[rows] + 3 * pop.postpaid[rows]),
        pa.array(["PREPAID", "POSTPAID"]).take(pop.postpaid[rows].astype(np.int8)),
        iso_dates(pop.activation[rows]),
        pa.array(["ACTIVE", "SUSPENDED"]).take(pop.suspended[rows].astype(np.int8)),
        pa.array(P.AGE_BANDS).take(pop.age_band[rows]),
        pa.array(REGIONS).take(pop.region[rows]),
        ctx.clock.ds.isoformat(),
    ]
    return Batch(Lines(csv_parts(columns, ","), len(rows)), len(rows))


def interactions(ctx: ChunkDay, first_seq: int) -> Batch:
    """Contacts with customer care; churn_risk complains far more."""
    rng, pop = ctx.rng(Stream.CRM), ctx.pop
    counts = rng.poisson(P.column("crm_rate")[pop.persona] * ctx.present)
    owner = np.repeat(np.arange(pop.size), counts)
    persona = pop.persona[owner]
    channel = pick(rng.random(len(owner)), P.cdf("crm_channels"), persona)
    kind = pick(rng.random(len(owner)), P.cdf("crm_types"), persona)
    category = pick(rng.random(len(owner)), _CATEGORY_CDF, kind)
    remote = channel >= 2  # chat and email are answered around the clock
    utc = np.empty(len(owner), dtype=np.int64)
    utc[~remote] = ctx.clock.sample(rng, int((~remote).sum()), OFFICE_PROFILE)
    utc[remote] = ctx.clock.sample(rng, int(remote.sum()), DATA_PROFILE)
    local = ctx.clock.local(utc)
    order = np.argsort(local, kind="stable")
    columns = [
        padded(first_seq + np.arange(len(owner)), 8, f"I{ctx.clock.yyyymmdd}"),
        ctx.numbers.plus(ctx.msisdn8).take(owner[order]),
        iso_local(local[order]),
        pa.array(P.CRM_CHANNELS).take(channel[order]),
        pa.array(P.CRM_TYPES).take(kind[order]),
        CATEGORIES.take(category[order]),
    ]
    return Batch(Lines(csv_parts(columns, ","), len(owner)), len(owner))


# ----------------------------------------------------------------------------------------------
# DWH


def monthly_kpis(ctx: ChunkDay) -> Batch:
    """KPIs of the month before the day, for every subscriber activated by its end."""
    settings, pop, rng = ctx.settings, ctx.pop, ctx.rng(Stream.DWH)
    month = month_index(ctx.clock.ds) - 1
    first, end = month_start(month).toordinal(), month_start(month + 1).toordinal()
    level = sum(trend_level(pop, day, settings) for day in range(first, end))
    active_share = np.clip((end - pop.activation) / (end - first), 0.0, 1.0)
    volume = level * pop.hetero * rng.gamma(20.0, 1 / 20.0, pop.size)
    rates = P.column("cdr")[pop.persona]
    voice_minutes = (rates[:, 0] + rates[:, 1]) * P.column("voice_median_s")[pop.persona] * np.exp(0.9**2 / 2) / 60
    data_mb = rates[:, 4] * P.column("session_mb")[pop.persona] * np.exp(-0.3 + 0.8**2 / 2)
    recharges = np.where(pop.persona == P.STEADY_LOYAL, 1 / pop.cadence, P.column("recharge_rate")[pop.persona])
    spend = rng.gamma(8.0, 1 / 8.0, pop.size)
    prepaid = recharges * P.column("recharge_eur").mean(axis=1)[pop.persona] * 100 * level * spend
    postpaid = bill_cents(settings.seed, pop, month) * active_share
    revenue = np.round(np.where(pop.postpaid, postpaid, prepaid)).astype(np.int64)
    rows = np.flatnonzero(pop.activation < end)
    tenure = month - _months(pop.activation)
    table = pa.table(
        [
            ctx.numbers.e164(ctx.msisdn8).take(rows),
            pa.array(np.full(len(rows), month_start(month).strftime("%Y-%m"))),
            decimal_cents(np.round(revenue[rows] / VAT)),
            pa.array(tenure[rows], pa.int32()),
            decimal_cents(revenue[rows]),
            pa.array(np.round(data_mb * volume, 2)[rows]),
            pa.array(np.round(voice_minutes * volume, 2)[rows]),
            pa.array(rng.poisson(rates[:, 2] * volume)[rows], pa.int32()),
        ],
        schema=DWH_SCHEMA,
    )
    return Batch(table, len(rows))


def _months(ordinals: np.ndarray) -> np.ndarray:
    """Month index (year * 12 + month - 1) of proleptic ordinals."""
    days = (ordinals - EPOCH_ORDINAL).astype("datetime64[D]")
    return days.astype("datetime64[M]").astype(np.int64) + 1970 * 12
