"""Sample ML predictions, as the data-science team would hand them over, consistent with the
personas: churn_risk subscribers get a rising churn probability, dormant ones a high one, and the
personas with an obvious next purchase get a next-best offer (heavy data users a data boost,
digital natives a streaming service, high-value postpaid a music service, voice-centric a voice
bundle). A few rows per day carry defects (an offer not in the catalogue, a probability above 1)
so the loader's quarantine has something to do.

Layout: ``ml_predictions/{ds}/predictions_{yyyymmdd}.csv`` (header, comma separated), one row per
subscriber and day for the model below, keyed by the subscriber's pseudonym.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa

from jobs.sample_data import personas as P
from jobs.sample_data.output import Lines, TextSink, csv_parts

HEADER = "subscriber_id,prediction_date,churn_probability,risk_score,nbo_offer_id,nbo_score,model_name,model_version"
MODEL_NAME, MODEL_VERSION = "churn_nbo_gbm", "2025.03.1"
STREAM = 7000  # random stream of the predictions, apart from every source's
# persona -> (churn probability range, offer or "", share of the persona given the offer, offer score range)
PROFILES = {
    P.HEAVY_DATA: ((0.03, 0.15), "DATA_BOOST_10GB", 0.85, (0.6, 0.95)),
    P.VOICE_CENTRIC: ((0.05, 0.2), "VOICE_BUNDLE_500", 0.7, (0.5, 0.8)),
    P.DIGITAL_NATIVE: ((0.03, 0.15), "PARTNER_STREAMING_3M", 0.85, (0.65, 0.95)),
    P.CHURN_RISK: ((0.45, 0.6), "", 0.0, (0.0, 0.0)),  # plus up to 0.3 as the window advances
    P.NEW_JOINER: ((0.1, 0.25), "WELCOME_DATA_1GB", 0.5, (0.4, 0.6)),
    P.HIGH_VALUE: ((0.02, 0.1), "PARTNER_MUSIC_1M", 0.8, (0.6, 0.9)),
    P.DORMANT: ((0.4, 0.7), "", 0.0, (0.0, 0.0)),
    P.STEADY_LOYAL: ((0.01, 0.08), "", 0.0, (0.0, 0.0)),
}
CHURN_DRIFT = 0.3
UNKNOWN_OFFER = "LEGACY_OFFER_2019"


def day_lines(
    ids: pa.Array, persona: np.ndarray, day: dt.date, progress: float, rng: np.random.Generator, defect_rate: float
) -> tuple[Lines, int]:
    """One day's prediction lines for a chunk (ids: pseudonyms; persona codes) and the defects injected."""
    n = len(persona)
    churn_lo = np.array([PROFILES[p][0][0] for p in range(len(P.PERSONAS))])[persona]
    churn_hi = np.array([PROFILES[p][0][1] for p in range(len(P.PERSONAS))])[persona]
    churn = churn_lo + (churn_hi - churn_lo) * rng.random(n)
    churn = np.where(persona == P.CHURN_RISK, churn + CHURN_DRIFT * progress, churn)
    risk = np.clip(np.round(100 * churn + rng.normal(0, 5, n), 1), 0, 100)
    offer = np.array([PROFILES[p][1] for p in range(len(P.PERSONAS))], dtype=object)[persona]
    share = np.array([PROFILES[p][2] for p in range(len(P.PERSONAS))])[persona]
    score_lo = np.array([PROFILES[p][3][0] for p in range(len(P.PERSONAS))])[persona]
    score_hi = np.array([PROFILES[p][3][1] for p in range(len(P.PERSONAS))])[persona]
    has_offer = (rng.random(n) < share) & (offer != "")
    score = np.round(score_lo + (score_hi - score_lo) * rng.random(n), 3)
    churn_text = np.char.mod("%.3f", np.round(churn, 3)).astype(object)
    defect = rng.random(n)
    unknown_offer = has_offer & (defect < defect_rate / 2)
    out_of_range = (defect >= defect_rate / 2) & (defect < defect_rate)
    offer = np.where(unknown_offer, UNKNOWN_OFFER, offer)
    churn_text = np.where(out_of_range, "1.700", churn_text)
    columns = [
        ids,
        day.isoformat(),
        pa.array(churn_text.tolist(), pa.string()),
        pa.array(np.char.mod("%.1f", risk).tolist(), pa.string()),
        pa.array(np.where(has_offer, offer, "").tolist(), pa.string()),
        pa.array(np.where(has_offer, np.char.mod("%.3f", score), "").tolist(), pa.string()),
        MODEL_NAME,
        MODEL_VERSION,
    ]
    return Lines(csv_parts(columns, ","), n), int(unknown_offer.sum() + out_of_range.sum())


def sink_for(out: Path, day: dt.date) -> TextSink:
    return TextSink(out / "ml_predictions" / day.isoformat() / f"predictions_{day:%Y%m%d}.csv", HEADER)


def rng_for(seed: int, day_index: int, chunk_lo: int) -> np.random.Generator:
    return np.random.default_rng([seed, STREAM + day_index, chunk_lo])
