"""Names, grains and schemas of the lakehouse tables this package writes."""

from __future__ import annotations

from pyspark.sql import types as T

EVENTS = "events"
EVENTS_REJECTED = "events_rejected"
PIPELINE_RUNS = "pipeline_runs"
SUBSCRIBER_PROFILE = "subscriber_profile"

_SCHEMAS: dict[str, str] = {
    # one row per normalized event; partitioned by event_date (operator-local day)
    EVENTS: (
        "event_id string, subscriber_id string, event_type string, event_subtype string, source string, "
        "event_ts timestamp, event_date date, quantity double, unit string, amount decimal(18,4), "
        "currency string, channel string, attributes map<string,string>, record_key string, "
        "ingest_batch_id string, ingest_date date, processing_status string"
    ),
    # one row per quarantined raw record (rejected or duplicate); partitioned by ingest_date
    EVENTS_REJECTED: (
        "reject_id string, source string, source_file string, reject_reason string, reject_message string, "
        "raw_record string, subscriber_id string, ingest_batch_id string, ingest_date date"
    ),
    # one row per stage per source per run date; partitioned by run_ds
    PIPELINE_RUNS: (
        "run_ds date, stage string, source string, status string, rows_read long, rows_accepted long, "
        "rows_rejected long, rows_duplicate long, events_written long, duration_s double, message string"
    ),
    # one row per subscriber per CRM snapshot day; partitioned by snapshot_date
    SUBSCRIBER_PROFILE: (
        "subscriber_id string, plan_code string, payment_type string, activation_date date, status string, "
        "age_band string, region string, snapshot_date date"
    ),
}


def schema_of(table: str) -> T.StructType:
    return T._parse_datatype_string(_SCHEMAS[table])


DAILY_ACTIVITY = "daily_activity"
BEHAVIOR_FEATURES = "behavior_features"
BEHAVIOR_SCORES = "behavior_scores"
SUBSCRIBER_SEGMENTS = "subscriber_segments"
ML_PREDICTIONS = "ml_predictions"  # optional input written by the data-science platform

_SCHEMAS.update(
    {
        # one row per subscriber per scoring day; features as a map (the set is configured)
        BEHAVIOR_FEATURES: "subscriber_id string, features map<string,double>, config_version string, score_date date",
        # one row per subscriber per day; partitioned by segment_date
        SUBSCRIBER_SEGMENTS: (
            "subscriber_id string, segment string, matched_rule string, segments_version string, segment_date date"
        ),
        # optional input: one row per subscriber per prediction day per model; by ds (the prediction day)
        ML_PREDICTIONS: (
            "subscriber_id string, ds date, churn_probability double, risk_score double, nbo_offer_id string, "
            "nbo_score double, model_name string, model_version string, loaded_ds date"
        ),
    }
)

MISSION_CATALOG = "mission_catalog"
MISSION_ASSIGNMENTS = "mission_assignments"

_SCHEMAS.update(
    {
        # one row per catalog mission (template x segment x level x period) per day; by catalog_date
        MISSION_CATALOG: (
            "mission_id string, template_id string, template_version int, category string, name string, "
            "segment string, level string, metric string, aggregation string, unit string, target_value double, "
            "target_rule string, period string, reward_points int, offer_id string, badge string, priority int, "
            "cooldown_days int, is_dynamic boolean, description string, catalog_date date"
        ),
        # one row per mission given to (or held out from) a subscriber; by assigned_ds
        MISSION_ASSIGNMENTS: (
            "assignment_id string, subscriber_id string, mission_id string, template_id string, "
            "template_version int, segment string, category string, metric string, aggregation string, "
            "level string, target_value double, period string, period_start date, period_end date, "
            "reward_points int, offer_id string, badge string, priority int, cooldown_days int, "
            "is_dynamic boolean, generated_for string, holdout boolean, reason string, description string, "
            "assigned_ds date"
        ),
    }
)

MISSION_PROGRESS = "mission_progress"
SUBSCRIBER_LIFETIME = "subscriber_lifetime"
BADGE_CATALOG = "badge_catalog"
BADGE_AWARDS = "badge_awards"
LOYALTY_LEDGER = "loyalty_ledger"
LOYALTY_TIERS = "loyalty_tiers"
CAMPAIGN_TRIGGERS = "campaign_triggers"
CAMPAIGN_AUDIENCES = "campaign_audiences"
QUALITY_RESULTS = "quality_results"  # written by jobs.quality: one row per expectation per run date

_SCHEMAS.update(
    {
        # one row per assignment per day from assignment to the end of its period; by progress_ds
        MISSION_PROGRESS: (
            "assignment_id string, subscriber_id string, mission_id string, template_id string, category string, "
            "metric string, aggregation string, period_start date, period_end date, target_value double, "
            "progress_value double, progress_pct double, status string, completed_ds date, newly_completed boolean, "
            "reward_points int, holdout boolean, progress_ds date"
        ),
        # one row per subscriber per day: lifetime metrics for badge rules; by stats_date.
        # `settled` is the state over days that can no longer change (older than the lateness window).
        SUBSCRIBER_LIFETIME: (
            "subscriber_id string, settled map<string,double>, settled_through date, metrics map<string,double>, "
            "stats_date date"
        ),
        # one row per badge level (type x level) per day; by catalog_date
        BADGE_CATALOG: (
            "badge_id string, badge_type string, name string, level string, level_rank int, rule string, "
            "points int, unlock_order int, description string, badge_version int, catalog_date date"
        ),
        # one row per badge level a subscriber earned, on the day earned; never repeated; by awarded_ds
        BADGE_AWARDS: (
            "award_id string, subscriber_id string, badge_id string, badge_type string, level string, "
            "level_rank int, badge_version int, rule string, qualifying_values string, points int, "
            "holdout boolean, awarded_ds date"
        ),
        # one row per points movement (earned, expired); balances are sums of entries; by entry_ds
        LOYALTY_LEDGER: (
            "entry_id string, subscriber_id string, entry_type string, source_id string, points int, "
            "description string, expires_ds date, entry_ds date"
        ),
        # one row per scored subscriber per day; by tier_ds
        LOYALTY_TIERS: (
            "subscriber_id string, points_balance long, lifetime_points long, tier string, tier_rank int, "
            "qualified_tier string, previous_tier string, tier_change string, tier_since date, below_since date, "
            "holdout boolean, tier_ds date"
        ),
        # one row per event for the campaign system; by trigger_ds
        CAMPAIGN_TRIGGERS: (
            "trigger_id string, subscriber_id string, trigger_type string, source_id string, "
            "payload map<string,string>, trigger_ds date"
        ),
        # one row per subscriber per named audience per day; by audience_ds
        CAMPAIGN_AUDIENCES: "audience string, subscriber_id string, audience_version string, audience_ds date",
        # one row per expectation per suite per run date; by run_ds
        QUALITY_RESULTS: (
            "run_ds date, suite string, table_name string, expectation string, column string, scope string, "
            "severity string, status string, success boolean, observed string, details string"
        ),
    }
)

SUBSCRIBER_STATE = "subscriber_state"
EXPORT_RUNS = "export_runs"

_SCHEMAS.update(
    {
        # one row per scored subscriber per day: the app's picture of the subscriber; by state_ds
        SUBSCRIBER_STATE: (
            "subscriber_id string, segment string, engagement double, revenue double, loyalty double, "
            "risk double, digital double, holdout boolean, "
            "active_missions array<struct<period_end:date,assignment_id:string,mission_id:string,"
            "template_id:string,category:string,level:string,text:string,progress_value:double,"
            "target_value:double,progress_pct:double,status:string,reward_points:int,offer_id:string>>, "
            "recent_completions array<struct<completed_ds:date,assignment_id:string,template_id:string,"
            "category:string,text:string,reward_points:int,offer_id:string>>, "
            "badges array<struct<badge_type:string,level:string,level_rank:int,awarded_ds:date>>, "
            "points_balance long, points_expiring_30d long, tier string, next_tier string, "
            "points_to_next_tier long, state_hash string, changed boolean, state_ds date"
        ),
        # one row per consumer per dataset per run date: what an export delivered; by run_ds
        EXPORT_RUNS: (
            "run_ds date, consumer string, kind string, dataset string, identifier string, rows long, "
            "location string, checksum string, status string"
        ),
    }
)


def table_doc(table: str):
    """The table's description and column comments for the Delta metadata, when documented."""
    return None
