"""Behaviour profiles of the eight personas of the fictional operator.

Each profile holds the parameters the source generators draw from. `column(field)` turns one
field into a numpy array indexed by persona code, so generators look parameters up per row
with plain fancy indexing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

PERSONAS = (
    "heavy_data",
    "voice_centric",
    "digital_native",
    "churn_risk",
    "new_joiner",
    "high_value_postpaid",
    "dormant",
    "steady_loyal",
)
HEAVY_DATA, VOICE_CENTRIC, DIGITAL_NATIVE, CHURN_RISK, NEW_JOINER, HIGH_VALUE, DORMANT, STEADY_LOYAL = range(8)

AGE_BANDS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
DEVICES = ("android", "ios", "feature_phone")
APP_CHANNELS = ("app", "web", "ussd")
# Actions after the first one of a session; TOPUP becomes recharge (prepaid) or pay_bill (postpaid).
SESSION_ACTIONS = (
    "view_balance",
    "buy_bundle",
    "TOPUP",
    "view_offers",
    "activate_offer",
    "support_chat",
    "profile_update",
)
RECHARGE_CHANNELS = ("retail", "voucher", "app", "web", "ussd")
PAYMENT_CHANNELS = ("bank_transfer", "auto_debit", "app", "web")
CRM_CHANNELS = ("call_centre", "store", "chat", "email")
CRM_TYPES = ("complaint", "inquiry", "plan_change", "technical_issue")
XIVA_TYPES = ("subscription_activated", "subscription_cancelled", "referral_completed", "reward_redeemed", "purchase")


@dataclass(frozen=True)
class Profile:
    """Parameters of one persona; tuples of weights are normalised when used."""

    share: float
    postpaid: float  # probability of a POSTPAID contract
    tenure_years: tuple[float, float]  # activation this many years before the start (not new_joiner)
    plan_tier: tuple[float, float, float]  # S/M/L prepaid, M/L/XL postpaid
    age_bands: tuple[float, float, float, float, float, float]
    device: tuple[float, float, float]
    dispersion: float  # gamma shape of the day-to-day activity noise: higher is steadier
    cdr: tuple[float, float, float, float, float]  # mean MOC, MTC, SMSMO, SMSMT, GPRS records per day
    voice_median_s: float
    session_mb: float
    drop_rate: float
    throughput_kbps: float
    latency_ms: float
    roaming: float  # probability of a roaming day
    app_sessions: float  # mean app/web/ussd sessions per day
    app_extra: float  # mean events per session after the first
    app_channels: tuple[float, float, float]
    actions: tuple[float, float, float, float, float, float, float]  # over SESSION_ACTIONS
    recharge_rate: float  # prepaid recharges per day (steady_loyal uses a fixed cadence instead)
    recharge_eur: tuple[int, int, int, int]  # amounts drawn uniformly
    recharge_channels: tuple[float, float, float, float, float]
    bill_eur: tuple[float, float]  # monthly postpaid bill range
    payment_channels: tuple[float, float, float, float]
    late_payment: float
    failed_payment: float
    crm_rate: float  # CRM interactions per day
    crm_channels: tuple[float, float, float, float]
    crm_types: tuple[float, float, float, float]
    xiva_rate: float  # partner events per day
    xiva_types: tuple[float, float, float, float, float]
    suspended: float


_XIVA_DEFAULT = (0.2, 0.08, 0.07, 0.2, 0.45)

PROFILES: dict[str, Profile] = {
    "heavy_data": Profile(
        share=0.15,
        postpaid=0.10,
        tenure_years=(1, 5),
        plan_tier=(0.1, 0.4, 0.5),
        age_bands=(0.25, 0.35, 0.2, 0.12, 0.05, 0.03),
        device=(0.6, 0.4, 0.0),
        dispersion=5,
        cdr=(3, 3, 1, 2, 20),
        voice_median_s=70,
        session_mb=60,
        drop_rate=0.012,
        throughput_kbps=18000,
        latency_ms=35,
        roaming=0.01,
        app_sessions=1.0,
        app_extra=1.0,
        app_channels=(0.6, 0.25, 0.15),
        actions=(0.35, 0.25, 0.1, 0.15, 0.08, 0.03, 0.04),
        recharge_rate=0.08,
        recharge_eur=(10, 15, 20, 30),
        recharge_channels=(0.3, 0.2, 0.25, 0.1, 0.15),
        bill_eur=(35, 70),
        payment_channels=(0.3, 0.4, 0.2, 0.1),
        late_payment=0.03,
        failed_payment=0.015,
        crm_rate=0.01,
        crm_channels=(0.55, 0.2, 0.15, 0.1),
        crm_types=(0.2, 0.5, 0.15, 0.15),
        xiva_rate=0.03,
        xiva_types=_XIVA_DEFAULT,
        suspended=0.005,
    ),
    "voice_centric": Profile(
        share=0.15,
        postpaid=0.10,
        tenure_years=(1, 5),
        plan_tier=(0.4, 0.45, 0.15),
        age_bands=(0.03, 0.08, 0.15, 0.24, 0.26, 0.24),
        device=(0.45, 0.15, 0.4),
        dispersion=5,
        cdr=(10, 9, 5, 6, 2),
        voice_median_s=120,
        session_mb=3,
        drop_rate=0.012,
        throughput_kbps=12000,
        latency_ms=40,
        roaming=0.005,
        app_sessions=0.06,
        app_extra=0.5,
        app_channels=(0.3, 0.2, 0.5),
        actions=(0.55, 0.05, 0.15, 0.1, 0.03, 0.07, 0.05),
        recharge_rate=0.1,
        recharge_eur=(5, 10, 10, 15),
        recharge_channels=(0.45, 0.3, 0.02, 0.03, 0.2),
        bill_eur=(25, 45),
        payment_channels=(0.45, 0.35, 0.1, 0.1),
        late_payment=0.03,
        failed_payment=0.015,
        crm_rate=0.012,
        crm_channels=(0.7, 0.2, 0.05, 0.05),
        crm_types=(0.15, 0.55, 0.15, 0.15),
        xiva_rate=0.005,
        xiva_types=_XIVA_DEFAULT,
        suspended=0.005,
    ),
    "digital_native": Profile(
        share=0.15,
        postpaid=0.10,
        tenure_years=(1, 5),
        plan_tier=(0.2, 0.5, 0.3),
        age_bands=(0.45, 0.4, 0.1, 0.04, 0.01, 0.0),
        device=(0.55, 0.45, 0.0),
        dispersion=5,
        cdr=(2, 2, 1, 1, 12),
        voice_median_s=45,
        session_mb=25,
        drop_rate=0.01,
        throughput_kbps=16000,
        latency_ms=35,
        roaming=0.01,
        app_sessions=2.5,
        app_extra=2.0,
        app_channels=(0.7, 0.27, 0.03),
        actions=(0.15, 0.22, 0.15, 0.2, 0.15, 0.04, 0.09),
        recharge_rate=0.1,
        recharge_eur=(5, 10, 15, 20),
        recharge_channels=(0.02, 0.02, 0.6, 0.34, 0.02),
        bill_eur=(25, 50),
        payment_channels=(0.05, 0.15, 0.5, 0.3),
        late_payment=0.02,
        failed_payment=0.01,
        crm_rate=0.004,
        crm_channels=(0.05, 0.05, 0.6, 0.3),
        crm_types=(0.15, 0.45, 0.3, 0.1),
        xiva_rate=0.06,
        xiva_types=(0.2, 0.06, 0.15, 0.24, 0.35),
        suspended=0.003,
    ),
    "churn_risk": Profile(
        share=0.10,
        postpaid=0.10,
        tenure_years=(1, 5),
        plan_tier=(0.5, 0.35, 0.15),
        age_bands=(0.15, 0.25, 0.22, 0.18, 0.12, 0.08),
        device=(0.65, 0.25, 0.1),
        dispersion=4,
        cdr=(4, 4, 2, 2, 6),
        voice_median_s=60,
        session_mb=10,
        drop_rate=0.08,
        throughput_kbps=2500,
        latency_ms=95,
        roaming=0.003,
        app_sessions=0.5,
        app_extra=0.8,
        app_channels=(0.5, 0.2, 0.3),
        actions=(0.45, 0.04, 0.12, 0.08, 0.02, 0.22, 0.07),
        recharge_rate=0.08,
        recharge_eur=(5, 5, 10, 10),
        recharge_channels=(0.4, 0.3, 0.1, 0.05, 0.15),
        bill_eur=(20, 45),
        payment_channels=(0.4, 0.2, 0.2, 0.2),
        late_payment=0.45,
        failed_payment=0.15,
        crm_rate=0.05,
        crm_channels=(0.65, 0.2, 0.1, 0.05),
        crm_types=(0.5, 0.15, 0.1, 0.25),
        xiva_rate=0.01,
        xiva_types=(0.08, 0.35, 0.02, 0.1, 0.45),
        suspended=0.05,
    ),
    "new_joiner": Profile(
        share=0.08,
        postpaid=0.10,
        tenure_years=(0, 0),
        plan_tier=(0.35, 0.45, 0.2),
        age_bands=(0.25, 0.3, 0.2, 0.12, 0.08, 0.05),
        device=(0.6, 0.35, 0.05),
        dispersion=5,
        cdr=(3, 3, 2, 2, 8),
        voice_median_s=60,
        session_mb=15,
        drop_rate=0.012,
        throughput_kbps=14000,
        latency_ms=40,
        roaming=0.005,
        app_sessions=1.2,
        app_extra=1.5,
        app_channels=(0.6, 0.3, 0.1),
        actions=(0.35, 0.12, 0.12, 0.18, 0.08, 0.08, 0.07),
        recharge_rate=0.08,
        recharge_eur=(10, 10, 15, 20),
        recharge_channels=(0.35, 0.15, 0.2, 0.1, 0.2),
        bill_eur=(25, 50),
        payment_channels=(0.2, 0.4, 0.25, 0.15),
        late_payment=0.03,
        failed_payment=0.02,
        crm_rate=0.02,
        crm_channels=(0.35, 0.35, 0.2, 0.1),
        crm_types=(0.1, 0.55, 0.25, 0.1),
        xiva_rate=0.02,
        xiva_types=_XIVA_DEFAULT,
        suspended=0.0,
    ),
    "high_value_postpaid": Profile(
        share=0.10,
        postpaid=1.0,
        tenure_years=(1, 5),
        plan_tier=(0.0, 0.4, 0.6),
        age_bands=(0.03, 0.17, 0.3, 0.28, 0.15, 0.07),
        device=(0.35, 0.65, 0.0),
        dispersion=6,
        cdr=(6, 5, 2, 2, 10),
        voice_median_s=90,
        session_mb=30,
        drop_rate=0.008,
        throughput_kbps=20000,
        latency_ms=30,
        roaming=0.06,
        app_sessions=0.8,
        app_extra=1.2,
        app_channels=(0.6, 0.35, 0.05),
        actions=(0.3, 0.1, 0.2, 0.15, 0.1, 0.05, 0.1),
        recharge_rate=0.0,
        recharge_eur=(20, 30, 50, 50),
        recharge_channels=(0.2, 0.1, 0.3, 0.3, 0.1),
        bill_eur=(60, 150),
        payment_channels=(0.3, 0.55, 0.1, 0.05),
        late_payment=0.0,
        failed_payment=0.005,
        crm_rate=0.008,
        crm_channels=(0.4, 0.3, 0.2, 0.1),
        crm_types=(0.1, 0.55, 0.25, 0.1),
        xiva_rate=0.03,
        xiva_types=_XIVA_DEFAULT,
        suspended=0.002,
    ),
    "dormant": Profile(
        share=0.10,
        postpaid=0.10,
        tenure_years=(1, 5),
        plan_tier=(0.7, 0.25, 0.05),
        age_bands=(0.05, 0.1, 0.15, 0.2, 0.22, 0.28),
        device=(0.4, 0.1, 0.5),
        dispersion=3,
        cdr=(0.1, 0.2, 0.05, 0.15, 0.1),
        voice_median_s=40,
        session_mb=2,
        drop_rate=0.012,
        throughput_kbps=10000,
        latency_ms=45,
        roaming=0.0,
        app_sessions=0.01,
        app_extra=0.2,
        app_channels=(0.3, 0.2, 0.5),
        actions=(0.6, 0.02, 0.2, 0.1, 0.02, 0.03, 0.03),
        recharge_rate=0.02,
        recharge_eur=(5, 5, 10, 10),
        recharge_channels=(0.5, 0.4, 0.0, 0.0, 0.1),
        bill_eur=(15, 25),
        payment_channels=(0.5, 0.4, 0.05, 0.05),
        late_payment=0.05,
        failed_payment=0.02,
        crm_rate=0.002,
        crm_channels=(0.6, 0.3, 0.05, 0.05),
        crm_types=(0.15, 0.6, 0.1, 0.15),
        xiva_rate=0.001,
        xiva_types=_XIVA_DEFAULT,
        suspended=0.01,
    ),
    "steady_loyal": Profile(
        share=0.17,
        postpaid=0.5,
        tenure_years=(5, 15),
        plan_tier=(0.2, 0.6, 0.2),
        age_bands=(0.02, 0.1, 0.2, 0.26, 0.24, 0.18),
        device=(0.55, 0.3, 0.15),
        dispersion=30,
        cdr=(5, 5, 2, 3, 7),
        voice_median_s=80,
        session_mb=12,
        drop_rate=0.01,
        throughput_kbps=15000,
        latency_ms=35,
        roaming=0.01,
        app_sessions=0.8,
        app_extra=1.0,
        app_channels=(0.5, 0.3, 0.2),
        actions=(0.45, 0.08, 0.15, 0.12, 0.05, 0.05, 0.1),
        recharge_rate=0.0,
        recharge_eur=(5, 10, 10, 15),
        recharge_channels=(0.35, 0.15, 0.2, 0.1, 0.2),
        bill_eur=(25, 55),
        payment_channels=(0.25, 0.6, 0.1, 0.05),
        late_payment=0.005,
        failed_payment=0.005,
        crm_rate=0.006,
        crm_channels=(0.5, 0.25, 0.15, 0.1),
        crm_types=(0.08, 0.6, 0.22, 0.1),
        xiva_rate=0.015,
        xiva_types=_XIVA_DEFAULT,
        suspended=0.002,
    ),
}


@functools.cache
def column(field: str) -> np.ndarray:
    """One profile field for all personas: shape (8,) for scalars, (8, k) for tuples."""
    values = np.array([getattr(PROFILES[name], field) for name in PERSONAS], dtype=np.float64)
    values.setflags(write=False)
    return values


@functools.cache
def cdf(field: str) -> np.ndarray:
    """Cumulative, normalised weights of a tuple field, one row per persona."""
    weights = column(field)
    out = np.cumsum(weights, axis=1) / weights.sum(axis=1, keepdims=True)
    out.setflags(write=False)
    return out


def shares() -> np.ndarray:
    """Persona mix as probabilities."""
    s = column("share")
    return s / s.sum()
