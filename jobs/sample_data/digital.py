"""Digital channels: self-care app/web/USSD events and partner (xiva) events, as JSON lines."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from jobs.sample_data import defects as D
from jobs.sample_data import personas as P
from jobs.sample_data.clock import DATA_PROFILE, iso_offset, iso_utc
from jobs.sample_data.context import ChunkDay, Stream
from jobs.sample_data.output import Batch, Lines, money_text, padded, text
from jobs.sample_data.population import pick

APP_DEFECTS = {
    D.DUPLICATE: D.Mode.COPY,
    D.MALFORMED_TIMESTAMP: D.Mode.INPLACE,
    D.UNKNOWN_SUBSCRIBER: D.Mode.INPLACE,
    D.MISSING_MSISDN: D.Mode.INPLACE,
    D.BAD_LINE: D.Mode.INPLACE,
}
ACTIONS = (
    "login",
    "view_balance",
    "buy_bundle",
    "recharge",
    "pay_bill",
    "view_offers",
    "activate_offer",
    "support_chat",
    "profile_update",
)
LOGIN, VIEW_BALANCE, RECHARGE, PAY_BILL = 0, 1, 3, 4
FEATURES: dict[str, tuple[str, ...]] = {
    "buy_bundle": ("data_5gb", "data_20gb", "roaming_pass"),
    "recharge": ("card", "wallet"),
    "pay_bill": ("card", "direct_debit"),
    "view_offers": ("promo_tab", "home_banner"),
    "activate_offer": ("streamflix_bundle", "musicbox_trial", "extra_data"),
    "support_chat": ("faq", "agent"),
    "profile_update": ("email", "address", "consent"),
}
_FEATURE_WIDTH = 3
_FEATURE_JSON = pa.array(
    [f'"{FEATURES[a][k]}"' if k < len(FEATURES.get(a, ())) else "null" for a in ACTIONS for k in range(_FEATURE_WIDTH)]
)
_FEATURE_COUNT = np.array([len(FEATURES.get(a, ())) for a in ACTIONS])
# P.SESSION_ACTIONS -> ACTIONS; TOPUP (-1) becomes recharge or pay_bill
_SESSION_ACTION_CODES = np.array([ACTIONS.index(a) if a in ACTIONS else -1 for a in P.SESSION_ACTIONS])
USSD = P.APP_CHANNELS.index("ussd")
WEB = P.APP_CHANNELS.index("web")
FEATURE_PHONE = P.DEVICES.index("feature_phone")
OS_LABELS = pa.array([*P.DEVICES, "web"])
_BAD_TIMESTAMPS = pa.array(["not-a-time", "2025-13-45T99:99:99Z"])
TRUNCATE_AT = 48  # characters kept of a truncated JSON line

XIVA_PARTNERS = pa.array(["streamflix", "musicbox", "ridego", "payzone"])
_PARTNER_CODES = pa.array(["SFX", "MBX", "RDG", "PZN"])
_PARTNER_CDF = np.cumsum([0.35, 0.3, 0.2, 0.15])
_SUBSCRIPTION_PRICES = np.array([499, 799, 999, 1499])


def app_events(ctx: ChunkDay, first_seq: int) -> Batch:
    """Self-care sessions: each starts with a login (app/web), then persona-driven actions."""
    rng, pop = ctx.rng(Stream.APP), ctx.pop
    sessions = rng.poisson(P.column("app_sessions")[pop.persona] * ctx.activity)
    s_owner = np.repeat(np.arange(pop.size), sessions)
    s_rank = np.arange(len(s_owner)) - (np.cumsum(sessions) - sessions)[s_owner]
    s_persona = pop.persona[s_owner]
    channel = np.where(
        pop.device[s_owner] == FEATURE_PHONE, USSD, pick(rng.random(len(s_owner)), P.cdf("app_channels"), s_persona)
    )
    size = 1 + rng.poisson(P.column("app_extra")[s_persona])
    start = ctx.clock.sample(rng, len(s_owner), DATA_PROFILE)
    session = np.repeat(np.arange(len(s_owner)), size)
    first = np.cumsum(size) - size
    rank = np.arange(len(session)) - first[session]
    gaps = np.where(rank == 0, 0, rng.integers(15, 180, len(session)))
    elapsed = np.cumsum(gaps)
    span = elapsed[first + size - 1] - elapsed[first]
    start = np.minimum(start, ctx.clock.end_utc - 1 - span)  # sessions end before midnight
    utc = start[session] + elapsed - elapsed[first][session]
    owner = s_owner[session]
    action = _actions(rng, ctx, owner, rank, channel[session])
    feature = action * _FEATURE_WIDTH + np.floor(rng.random(len(session)) * _FEATURE_COUNT[action]).astype(np.int64)
    os = np.where(channel[session] == WEB, len(P.DEVICES), pop.device[owner])
    session_id = pc.binary_join_element_wise(f"S{ctx.clock.yyyymmdd}", text(pop.index[s_owner]), text(s_rank), "-")
    order = np.argsort(utc, kind="stable")
    owner, utc = owner[order], utc[order]
    defect_rng = ctx.defect_rng(Stream.APP)
    plan = D.plan(defect_rng, len(order), ctx.settings.defect_rate, APP_DEFECTS)
    lines = Lines(
        [
            '{"event_id": "',
            padded(first_seq + np.arange(len(order)), 10, f"E{ctx.clock.yyyymmdd}"),
            '", ',
            _msisdn_fields(ctx, owner, plan, defect_rng),
            '"ts": "',
            _timestamps(utc, plan),
            '", "channel": "',
            pa.array(P.APP_CHANNELS).take(channel[session][order]),
            '", "action": "',
            pa.array(ACTIONS).take(action[order]),
            '", "feature": ',
            _FEATURE_JSON.take(feature[order]),
            ', "session_id": "',
            session_id.take(session[order]),
            '", "os": "',
            OS_LABELS.take(os[order]),
            '"}',
        ],
        len(order),
    )
    truncated = plan.rows[D.BAD_LINE]
    if len(truncated):
        cut = pc.utf8_slice_codeunits(lines.take(truncated).render(), 0, TRUNCATE_AT)
        lines = lines.with_overrides(plan.mask(D.BAD_LINE), cut)
    rows, _ = plan.layout(utc)
    return Batch(lines.take(rows), len(utc), plan.counts())


def _actions(
    rng: np.random.Generator, ctx: ChunkDay, owner: np.ndarray, rank: np.ndarray, channel: np.ndarray
) -> np.ndarray:
    """Action codes: login (or balance check on USSD) first, then persona-weighted actions."""
    drawn = _SESSION_ACTION_CODES[pick(rng.random(len(owner)), P.cdf("actions"), ctx.pop.persona[owner])]
    topup = np.where(ctx.pop.postpaid[owner], PAY_BILL, RECHARGE)
    later = np.where(drawn < 0, topup, drawn)
    opening = np.where(channel == USSD, VIEW_BALANCE, LOGIN)
    return np.where(rank == 0, opening, later)


def _msisdn_fields(ctx: ChunkDay, owner: np.ndarray, plan: D.DefectPlan, rng: np.random.Generator) -> pa.Array:
    """'"msisdn": "+33 6 ..", ' per event; unknown numbers and dropped keys per the defect plan."""
    msisdn = ctx.numbers.spaced(ctx.msisdn8).take(owner)
    unknown = plan.mask(D.UNKNOWN_SUBSCRIBER)
    if unknown.any():
        fake = ctx.numbers.spaced(ctx.unknown_numbers(rng, int(unknown.sum())), lead="7")
        msisdn = pc.replace_with_mask(msisdn, pa.array(unknown), fake)
    fields = pc.binary_join_element_wise('"msisdn": "', msisdn, '", ', "")
    missing = plan.mask(D.MISSING_MSISDN)
    if missing.any():
        fields = pc.replace_with_mask(fields, pa.array(missing), pa.array([""] * int(missing.sum())))
    return fields


def _timestamps(utc: np.ndarray, plan: D.DefectPlan) -> pa.Array:
    ts = iso_utc(utc)
    bad = plan.rows[D.MALFORMED_TIMESTAMP]
    if len(bad):
        ts = pc.replace_with_mask(
            ts, pa.array(plan.mask(D.MALFORMED_TIMESTAMP)), _BAD_TIMESTAMPS.take(np.arange(len(bad)) % 2)
        )
    return ts


def xiva_events(ctx: ChunkDay, first_seq: int) -> Batch:
    """Partner events (subscriptions, referrals, rewards, purchases); digital natives lead."""
    rng, pop = ctx.rng(Stream.XIVA), ctx.pop
    counts = rng.poisson(P.column("xiva_rate")[pop.persona] * ctx.trend)
    owner = np.repeat(np.arange(pop.size), counts)
    n = len(owner)
    partner = pick(rng.random(n), _PARTNER_CDF)
    kind = pick(rng.random(n), P.cdf("xiva_types"), pop.persona[owner])
    cents = _xiva_values(rng, kind)
    utc = ctx.clock.sample(rng, n, DATA_PROFILE)
    order = np.argsort(utc, kind="stable")
    owner, partner, kind, cents, utc = owner[order], partner[order], kind[order], cents[order], utc[order]
    seq = first_seq + np.arange(n)
    lines = Lines(
        [
            '{"id": "',
            padded(seq, 9, f"X{ctx.clock.yyyymmdd}"),
            '", "partner": "',
            XIVA_PARTNERS.take(partner),
            '", "type": "',
            pa.array(P.XIVA_TYPES).take(kind),
            '", "occurred_at": "',
            iso_offset(ctx.clock.local(utc), ctx.clock.offsets(utc)),
            '", "subscriber": {"msisdn": "',
            ctx.numbers.international(ctx.msisdn8).take(owner),
            '"}, "payload": {"value": ',
            money_text(cents),
            ', "currency": "EUR", "reference": "',
            pc.binary_join_element_wise(_PARTNER_CODES.take(partner), padded(seq, 8, ctx.clock.yyyymmdd), "-"),
            '"}}',
        ],
        n,
    )
    return Batch(lines, n)


def _xiva_values(rng: np.random.Generator, kind: np.ndarray) -> np.ndarray:
    """Event value in cents by type (subscription price, referral bonus, reward, purchase)."""
    n = len(kind)
    subscription = _SUBSCRIPTION_PRICES[rng.integers(0, len(_SUBSCRIPTION_PRICES), n)]
    reward = 50 * rng.integers(2, 41, n)
    purchase = np.clip(np.round(1500 * rng.lognormal(0.0, 0.8, n)), 199, 15000).astype(np.int64)
    return np.select([kind <= 1, kind == 2, kind == 3], [subscription, 500, reward], purchase)
