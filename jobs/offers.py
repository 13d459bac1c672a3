"""The offer catalogue (conf/offers.yaml): the offers missions and NBO predictions may name, and
their optional daily grant budgets.

A mission completion that carries an offer is a grant of that offer. When an offer has a daily
budget, the completions of a day beyond it keep their points but are marked `capped`: the offer is
not granted, and the row says so (with the reason) instead of disappearing. A segment's
daily_offer_grants (conf/loyalty.yaml budgets) caps the grants of a day to its subscribers the
same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.window import Window

from jobs.config import ConfigError, load_yaml
from jobs.frames import local_frame

OFFER_TYPES = ("data_bundle", "voice_bundle", "sms_bundle", "partner_service", "roaming_pass", "loyalty_perk")
NBO = "nbo"  # a template's reward.offer_id meaning "the subscriber's next-best offer"
GRANTED, CAPPED = "granted", "capped"


@dataclass(frozen=True)
class Offer:
    id: str
    name: str
    type: str
    validity_days: int
    daily_max_grants: int | None = None


@dataclass(frozen=True)
class OfferCatalogue:
    offers: Mapping[str, Offer]
    version: str = "1"
    file: str = "conf/offers.yaml"

    @property
    def ids(self) -> list[str]:
        return sorted(self.offers)

    @classmethod
    def load(cls, path: str | Path) -> OfferCatalogue:
        path = Path(path)
        data = load_yaml(path) or {}
        specs = data.get("offers")
        if not isinstance(specs, Mapping) or not specs:
            raise ConfigError(path, "offers", "must map offer ids to their definition")
        offers = {}
        for offer_id, spec in specs.items():
            key = f"offers.{offer_id}"
            if not isinstance(spec, Mapping):
                raise ConfigError(path, key, "must be a mapping with name, type, validity_days, budget")
            if str(offer_id) == NBO:
                raise ConfigError(path, key, f"{NBO!r} is reserved for the next-best offer")
            if spec.get("type") not in OFFER_TYPES:
                raise ConfigError(path, f"{key}.type", f"must be one of {', '.join(OFFER_TYPES)}")
            validity = spec.get("validity_days")
            if not isinstance(validity, int) or validity < 1:
                raise ConfigError(path, f"{key}.validity_days", "must be a positive integer")
            if not spec.get("name"):
                raise ConfigError(path, f"{key}.name", "is required")
            budget = spec.get("budget") or {}
            cap = budget.get("daily_max_grants")
            if cap is not None and (not isinstance(cap, int) or cap < 0):
                raise ConfigError(path, f"{key}.budget.daily_max_grants", "must be a non-negative integer or null")
            offers[str(offer_id)] = Offer(str(offer_id), str(spec["name"]), spec["type"], validity, cap)
        return cls(offers, str(data.get("version", 1)), str(path))

    def unknown_reward_offer(self, offer_id: str | None) -> bool:
        """True when a template's reward.offer_id names no catalogue offer (null and `nbo` are fine)."""
        return offer_id not in (None, NBO) and offer_id not in self.offers

    def frame(self, spark: SparkSession) -> DataFrame:
        """One row per offer: offer_id, offer_name, offer_type, validity_days, daily_max_grants."""
        rows = [(o.id, o.name, o.type, o.validity_days, o.daily_max_grants) for o in self.offers.values()]
        return local_frame(
            spark,
            rows,
            "offer_id string, offer_name string, offer_type string, validity_days int, daily_max_grants int",
        )


def with_offer_grants(
    completions: DataFrame, offers: DataFrame, segment_grants: Mapping[str, int] | None = None
) -> DataFrame:
    """Completions (assignment_id, offer_id, completed_ds, ... and `segment` when
    `segment_grants` is given) -> the same rows plus offer_name, offer_type, offer_valid_until
    (completed_ds + validity), offer_status and offer_status_reason; null status without an offer.

    Offers are granted in the order completed_ds, assignment_id. A grant beyond the offer's
    daily_max_grants is `capped`; then, of the grants left, one beyond the daily_offer_grants of
    the subscriber's segment (`segment_grants`: segment -> limit, conf/loyalty.yaml budgets) is
    `capped` too; the reason names the budget."""
    order = (F.col("completed_ds"), F.col("assignment_id"))
    has_offer = F.col("offer_id").isNotNull()
    ranked = completions.join(F.broadcast(offers), "offer_id", "left").withColumn(
        "_grant_rank", F.when(has_offer, F.row_number().over(Window.partitionBy("offer_id").orderBy(*order)))
    )
    offer_ok = F.col("daily_max_grants").isNull() | (F.col("_grant_rank") <= F.col("daily_max_grants"))
    ranked = ranked.withColumn("_offer_ok", ~has_offer | offer_ok)
    segment_ok = F.lit(True)
    if segment_grants:
        segment_limit: Column = F.element_at(
            F.create_map(*[F.lit(v) for pair in sorted(segment_grants.items()) for v in pair]), F.col("segment")
        )
        in_segment = F.sum(F.when(has_offer & F.col("_offer_ok"), 1).otherwise(0)).over(
            Window.partitionBy("segment").orderBy(*order).rowsBetween(Window.unboundedPreceding, Window.currentRow)
        )
        segment_ok = segment_limit.isNull() | (in_segment <= segment_limit)
    status = (
        F.when(~has_offer, F.lit(None).cast("string"))
        .when(F.col("_offer_ok") & segment_ok, F.lit(GRANTED))
        .otherwise(F.lit(CAPPED))
    )
    reason = F.when(~has_offer, F.lit(None).cast("string")).when(
        ~F.col("_offer_ok"),
        F.concat(F.lit("offer daily_max_grants of "), F.col("daily_max_grants").cast("string"), F.lit(" reached")),
    )
    if segment_grants:
        reason = reason.when(
            ~segment_ok,
            F.concat(
                F.lit("segment "), F.col("segment"), F.lit(" daily_offer_grants of "), segment_limit.cast("string"),
                F.lit(" reached"),
            ),
        )  # fmt: skip
    return ranked.select(
        *completions.columns,
        "offer_name",
        "offer_type",
        F.when(status == GRANTED, F.date_add(F.col("completed_ds"), F.col("validity_days"))).alias("offer_valid_until"),
        status.alias("offer_status"),
        reason.alias("offer_status_reason"),
    )
