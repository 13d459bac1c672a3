"""The data dictionary: every lakehouse table this package writes (and the optional ML input),
declared once with its grain, partitioning, writing stage, description and typed columns.

`schema_of` gives the Spark schema jobs write with, `spec_of` the whole declaration; docs/tables.md
is rendered from these specs (`gamify docs`). Columns whose set is configured (the daily metrics of
`daily_activity`) are added to the spec from the configuration by `jobs.metrics.activity_spec`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyspark.sql import types as T

EVENTS = "events"
EVENTS_REJECTED = "events_rejected"
PIPELINE_RUNS = "pipeline_runs"
SUBSCRIBER_PROFILE = "subscriber_profile"
DAILY_ACTIVITY = "daily_activity"
BEHAVIOR_FEATURES = "behavior_features"
BEHAVIOR_SCORES = "behavior_scores"
SUBSCRIBER_SEGMENTS = "subscriber_segments"
ML_PREDICTIONS = "ml_predictions"  # optional input written by the data-science platform
MISSION_CATALOG = "mission_catalog"
MISSION_ASSIGNMENTS = "mission_assignments"
MISSION_PROGRESS = "mission_progress"
SUBSCRIBER_LIFETIME = "subscriber_lifetime"
BADGE_CATALOG = "badge_catalog"
BADGE_AWARDS = "badge_awards"
LOYALTY_LEDGER = "loyalty_ledger"
LOYALTY_TIERS = "loyalty_tiers"
CAMPAIGN_TRIGGERS = "campaign_triggers"
CAMPAIGN_AUDIENCES = "campaign_audiences"
QUALITY_RESULTS = "quality_results"  # written by jobs.quality: one row per expectation per run date

SCORES = ("engagement", "revenue", "loyalty", "risk", "digital")
# The subscriber_profile columns that describe the contract (all text): the profile attributes
# segment, eligibility, badge, tier and audience rules may name, and that rule subjects carry.
PROFILE_NAMES = ("payment_type", "plan_code", "status", "age_band", "region")
BREAKDOWN = (
    "map<string,struct<raw:double,normalized:double,weight:double,contribution:double,missing:boolean,"
    "degraded:boolean>>"
)

SUBSCRIBER_STATE = "subscriber_state"
EXPORT_RUNS = "export_runs"


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # Spark DDL type, e.g. "string", "decimal(18,4)", "map<string,double>"
    comment: str  # meaning and unit


@dataclass(frozen=True)
class TableSpec:
    name: str
    grain: str
    partition_by: tuple[str, ...]
    written_by: str  # the pipeline stage (or external system) that writes the table
    description: str
    columns: tuple[Column, ...]
    append_only: bool = False  # rows of a partition are added, never replaced by a later run
    also_written_by: tuple[str, ...] = ()  # other stages adding rows (e.g. their quarantined records)

    @property
    def schema(self) -> T.StructType:
        return T.StructType([T.StructField(c.name, T._parse_datatype_string(c.type), True) for c in self.columns])

    def comments(self) -> dict[str, str]:
        return {c.name: c.comment for c in self.columns}


def _columns(*rows: tuple[str, str, str]) -> tuple[Column, ...]:
    return tuple(Column(name, type_, comment) for name, type_, comment in rows)


SUBSCRIBER_ID = (
    "subscriber_id",
    "string",
    "Pseudonymised subscriber: HMAC-SHA256 (64 hex characters) of the E.164 MSISDN digits; never the MSISDN",
)
HOLDOUT = (
    "holdout",
    "boolean",
    "True for the universal control group (salted hash of the subscriber below holdout.share): "
    "recorded for uplift measurement, never delivered, never rewarded",
)


def _breakdown(score: str) -> tuple[str, str, str]:
    return (
        f"{score}_breakdown",
        BREAKDOWN,
        f"Explanation of `{score}`: component -> raw feature value, normalized value (0-1), weight "
        f"(share of the weights counted), contribution (score points; contributions add up to `{score}`), "
        "missing (feature absent) and degraded (its source failed today)",
    )


_SPECS = (
    TableSpec(
        name=EVENTS,
        grain="one normalized event; a raw record may give several (one per matching mapping)",
        partition_by=("event_date",),
        written_by="ingest",
        description="Every accepted raw record of every source, normalized to one vocabulary. A run replaces "
        "only the rows it ingested itself (its ingest_date and source), so late rows of earlier days are kept.",
        columns=_columns(
            ("event_id", "string", "SHA-256 of record_key and the mapping that produced the event: unique, stable"),
            SUBSCRIBER_ID,
            ("event_type", "string", "Kind of activity: cdr, billing, app, care, network, crm, dwh, partner"),
            ("event_subtype", "string", "Activity within the type, e.g. voice_out, data_session, recharge, login"),
            ("source", "string", "Configured data source the record came from (conf/sources/<source>.yaml)"),
            (
                "event_ts",
                "timestamp",
                "When the activity happened, UTC (local midnight of the run date if the source has no event time)",
            ),
            ("event_date", "date", "Operator-local calendar day of event_ts (operator.timezone)"),
            ("quantity", "double", "Measured amount in `unit` (minutes, MB, SMS, calls, kbps, days late...)"),
            ("unit", "string", "Unit of `quantity`, from the source mapping"),
            ("amount", "decimal(18,4)", "Money value of the event in `currency` (recharges, payments, bills, ARPU)"),
            ("currency", "string", "ISO 4217 currency code of `amount`"),
            ("channel", "string", "Where it happened: network, app, web, ussd, call_centre, crm, dwh, xiva..."),
            (
                "attributes",
                "map<string,string>",
                "Extra source attributes configured per source (roaming flag, "
                "status, category...); PII attributes are pseudonymised",
            ),
            (
                "record_key",
                "string",
                "SHA-256 of source and natural key of the raw record (MSISDN pseudonymised): the de-duplication key",
            ),
            ("ingest_batch_id", "string", "<source>-<run date yyyyMMdd> of the ingest run that wrote the row"),
            ("ingest_date", "date", "Run date of the ingest that wrote the row"),
            ("processing_status", "string", "normalized, or late_arrival when event_date is before ingest_date"),
        ),
    ),
    TableSpec(
        name=EVENTS_REJECTED,
        grain="one quarantined raw record (rejected or duplicate)",
        partition_by=("ingest_date",),
        written_by="ingest",
        also_written_by=("predictions",),
        description="Raw records that did not become events, with the first check they failed. Rows read = "
        "accepted + rejected + duplicates for every source and run; nothing is dropped silently.",
        columns=_columns(
            ("reject_id", "string", "SHA-256 of source, file, raw record and its copy number: unique, stable"),
            ("source", "string", "Configured data source of the record"),
            ("source_file", "string", "Extract file the record was read from"),
            (
                "reject_reason",
                "string",
                "Reason code: malformed_record, missing_field, invalid_type, invalid_msisdn, "
                "invalid_timestamp, a source rule's reason, future_event, too_late, unknown_subscriber, "
                "unmapped_record or duplicate",
            ),
            ("reject_message", "string", "Readable explanation naming the field and the value"),
            ("raw_record", "string", "The raw record as JSON, with MSISDNs and PII columns pseudonymised"),
            ("subscriber_id", "string", "Pseudonymised subscriber when the MSISDN was valid, else null"),
            ("ingest_batch_id", "string", "<source>-<run date yyyyMMdd> of the ingest run"),
            ("ingest_date", "date", "Run date of the ingest that quarantined the record"),
        ),
    ),
    TableSpec(
        name=PIPELINE_RUNS,
        grain="one stage x source x run date (source null for stages other than ingest)",
        partition_by=("run_ds",),
        written_by="every stage (ingest: one row per source)",
        description="The run log: what every stage did for a run date, replaced when the stage reruns.",
        columns=_columns(
            ("run_ds", "date", "Run date (the day of data processed, not the wall-clock day)"),
            ("stage", "string", "Pipeline stage: ingest, activity, scores, ..., quality"),
            ("source", "string", "Data source (ingest rows only)"),
            (
                "status",
                "string",
                "succeeded or failed; ingest also missing (optional extract absent), not_due, inactive",
            ),
            ("rows_read", "long", "Raw records read from the extract (ingest), rows"),
            ("rows_accepted", "long", "Records that became events (ingest), rows"),
            ("rows_rejected", "long", "Records quarantined in events_rejected, duplicates excluded (ingest), rows"),
            ("rows_duplicate", "long", "Repeated records quarantined as duplicate (ingest), rows"),
            ("events_written", "long", "Events written (a record may give several) (ingest), rows"),
            ("duration_s", "double", "Wall-clock duration of the stage or source, seconds"),
            ("message", "string", "Error message of a failure, or the stage's summary as JSON (first 2,000 chars)"),
        ),
    ),
    TableSpec(
        name=SUBSCRIBER_PROFILE,
        grain="one subscriber per CRM snapshot day",
        partition_by=("snapshot_date",),
        written_by="ingest",
        description="The CRM subscriber snapshot of the day: the known subscribers and their contract facts.",
        columns=_columns(
            SUBSCRIBER_ID,
            ("plan_code", "string", "Tariff plan code"),
            ("payment_type", "string", "prepaid or postpaid"),
            ("activation_date", "date", "Day the line was activated"),
            ("status", "string", "Line status in the CRM: ACTIVE, SUSPENDED, CHURNED..."),
            ("age_band", "string", "Age band of the subscriber, e.g. 25-34 (null when unknown)"),
            ("region", "string", "Home region of the subscriber"),
            ("snapshot_date", "date", "Day of the CRM snapshot (the run date that ingested it)"),
        ),
    ),
    TableSpec(
        name=DAILY_ACTIVITY,
        grain="one subscriber per day with any event",
        partition_by=("activity_date",),
        written_by="activity",
        description="Every daily metric of conf/metrics.yaml per subscriber and day, from one wide aggregation "
        "of `events`; scoring windows, mission progress and lifetime metrics read this instead of raw events. "
        "A run rewrites its date and any earlier day that received late events. The metric columns (doubles, "
        "0 when no event counted; derived metrics are 0/1 flags) sit between subscriber_id and activity_date.",
        columns=_columns(
            SUBSCRIBER_ID,
            ("activity_date", "date", "Operator-local day the metrics cover (event_date of the events)"),
        ),
    ),
    TableSpec(
        name=BEHAVIOR_FEATURES,
        grain="one scored subscriber per scoring day",
        partition_by=("score_date",),
        written_by="scores",
        description="Every feature the scores were computed from (windows over daily_activity, profile facts, "
        "ML predictions and expressions of conf/scoring.yaml), kept as a map so the feature set can change.",
        columns=_columns(
            SUBSCRIBER_ID,
            (
                "features",
                "map<string,double>",
                "Feature name -> value (units per feature in conf/scoring.yaml: "
                "counts, days, EUR, MB, ratios); null when missing",
            ),
            ("config_version", "string", "Version and digest of conf/scoring.yaml that produced the row"),
            ("score_date", "date", "Scoring day (run date); windows end on it"),
        ),
    ),
    TableSpec(
        name=BEHAVIOR_SCORES,
        grain="one scored subscriber per scoring day",
        partition_by=("score_date",),
        written_by="scores",
        description="Five explainable 0-100 behavior scores per subscriber: weighted sums of normalized "
        "components of conf/scoring.yaml, each with a breakdown whose contributions add up to the score.",
        columns=_columns(
            SUBSCRIBER_ID,
            ("engagement", "double", "Engagement score 0-100: activity days, recency, breadth of services used"),
            _breakdown("engagement"),
            (
                "revenue",
                "double",
                "Revenue score 0-100: spend (recharges, payments, bills, ARPU) against the population",
            ),
            _breakdown("revenue"),
            ("loyalty", "double", "Loyalty score 0-100: tenure, on-time payments, stability of the plan"),
            _breakdown("loyalty"),
            (
                "risk",
                "double",
                "Churn risk score 0-100 (higher is riskier): inactivity, failed payments, "
                "complaints, dropped calls, ML churn probability",
            ),
            _breakdown("risk"),
            ("digital", "double", "Digital adoption score 0-100: app logins, self-service, digital payments"),
            _breakdown("digital"),
            ("churn_probability", "double", "Churn probability 0-1 from the latest ml_predictions (null without)"),
            ("nbo_offer_id", "string", "Next-best offer id from the latest ml_predictions (null without)"),
            ("nbo_score", "double", "Score 0-1 of the next-best offer (null without)"),
            ("model_version", "string", "Version of the ML model behind the prediction (null without)"),
            (
                "degraded_sources",
                "array<string>",
                "Sources that failed or were missing on the scoring day; "
                "components depending on them are flagged degraded",
            ),
            ("config_version", "string", "Version and digest of conf/scoring.yaml"),
            ("score_date", "date", "Scoring day (run date)"),
        ),
    ),
    TableSpec(
        name=SUBSCRIBER_SEGMENTS,
        grain="one scored subscriber per day",
        partition_by=("segment_date",),
        written_by="segments",
        description="The segment of every scored subscriber: the first rule of conf/segments.yaml that "
        "matches (over scores, features and profile), else the default segment.",
        columns=_columns(
            SUBSCRIBER_ID,
            ("segment", "string", "Segment name from conf/segments.yaml"),
            ("matched_rule", "string", "The rule that matched, or 'default'"),
            ("segments_version", "string", "Highest version among the segment definitions of conf/segments.yaml"),
            ("segment_date", "date", "Day segmented (run date)"),
        ),
    ),
    TableSpec(
        name=ML_PREDICTIONS,
        grain="one subscriber per prediction day per model",
        partition_by=("ds",),
        written_by="predictions",
        description="Churn, risk and next-best-offer predictions handed over by the data-science team "
        "(conf/ml_predictions.yaml, docs/ml_predictions.md), loaded with quarantine and accounting; scoring "
        "uses the newest prediction at most ml.max_age_days old.",
        columns=_columns(
            SUBSCRIBER_ID,
            ("ds", "date", "Prediction day"),
            ("churn_probability", "double", "Probability 0-1 that the subscriber churns"),
            ("risk_score", "double", "Model risk score 0-100, used as the ml_risk_score feature"),
            ("nbo_offer_id", "string", "Next-best offer id; must be in conf/offers.yaml"),
            ("nbo_score", "double", "Score 0-1 of the next-best offer"),
            ("model_name", "string", "Model that predicted"),
            ("model_version", "string", "Version of the model that predicted"),
            ("loaded_ds", "date", "Run date that loaded the row (reruns replace by it)"),
        ),
    ),
    TableSpec(
        name=MISSION_CATALOG,
        grain="one catalog mission (template x segment x level x period) per day",
        partition_by=("catalog_date",),
        written_by="missions",
        description="The missions on offer on a day: every active template of templates/missions/ expanded "
        "over its segments, difficulty levels and periods, with deterministic mission ids.",
        columns=_columns(
            ("mission_id", "string", "<template>.v<version>.<segment>.<level>.<period>: stable id"),
            ("template_id", "string", "Mission template id (file name in templates/missions/)"),
            ("template_version", "int", "Version of the template"),
            ("category", "string", "onboarding, engagement, revenue, loyalty or correction"),
            ("name", "string", "Template display name"),
            ("segment", "string", "Segment the mission is for"),
            ("level", "string", "Difficulty: easy, medium or hard"),
            ("metric", "string", "Mission metric measured (mission_metrics of conf/metrics.yaml)"),
            ("aggregation", "string", "How the metric is measured over the period: sum, days, streak or max"),
            ("unit", "string", "Unit of the target and of progress (minutes, MB, days, EUR...)"),
            ("target_value", "double", "Target in `unit` over the period; null for a relative (personalised) one"),
            ("target_rule", "string", "For a relative target: baseline multiplier and minimum; else null"),
            ("period", "string", "daily, weekly or monthly (length in conf/missions.yaml period_days)"),
            ("reward_points", "int", "Loyalty points credited on completion, points"),
            ("offer_id", "string", "Offer attached (nbo: the subscriber's next-best offer), or null"),
            ("badge", "string", "Badge type the mission counts toward, or null"),
            ("priority", "int", "Assignment priority (higher first when the active-mission cap bites)"),
            ("cooldown_days", "int", "Days after the period ends before the template can be assigned again"),
            ("is_dynamic", "boolean", "True for personalised missions with a baseline-relative target"),
            ("description", "string", "Template text with {target}, {period}, {points} placeholders"),
            ("catalog_date", "date", "Day of the catalog (run date)"),
        ),
    ),
    TableSpec(
        name=MISSION_ASSIGNMENTS,
        grain="one mission given to (or held out from) one subscriber on one day",
        partition_by=("assigned_ds",),
        written_by="missions",
        description="Missions assigned on a run date: the easiest level above the subscriber's usual pace, "
        "at most max_active_per_subscriber live missions, cooldowns and priorities applied. Holdout "
        "subscribers' would-be missions are recorded with holdout = true and never delivered.",
        columns=_columns(
            ("assignment_id", "string", "SHA-256 of subscriber, mission and assignment day: unique, stable"),
            SUBSCRIBER_ID,
            ("mission_id", "string", "Catalog mission id, or a personalised mission id (.dyn.)"),
            ("template_id", "string", "Mission template id"),
            ("template_version", "int", "Version of the template"),
            ("segment", "string", "Subscriber's segment on the assignment day"),
            ("category", "string", "onboarding, engagement, revenue, loyalty or correction"),
            ("metric", "string", "Mission metric measured"),
            ("aggregation", "string", "sum, days, streak or max over the period"),
            ("level", "string", "Difficulty: easy, medium or hard"),
            ("target_value", "double", "Target to reach over the period, in the metric's unit"),
            ("period", "string", "daily, weekly or monthly"),
            ("period_start", "date", "First day counted (the day after assignment)"),
            ("period_end", "date", "Last day of the period"),
            ("reward_points", "int", "Points credited on completion, points"),
            ("offer_id", "string", "Offer attached, or null"),
            ("badge", "string", "Badge type the mission counts toward, or null"),
            ("priority", "int", "Template priority"),
            ("cooldown_days", "int", "Days after period_end before the template can be assigned again"),
            ("is_dynamic", "boolean", "True when the target was personalised from the subscriber's baseline"),
            ("generated_for", "string", "Subscriber a personalised mission was generated for, else null"),
            HOLDOUT,
            (
                "reason",
                "string",
                "Why: the eligibility rule with the values that fired, the segment, and the "
                "usual pace behind the level",
            ),
            ("description", "string", "Mission text as shown to the subscriber (target, period, points filled in)"),
            ("assigned_ds", "date", "Run date that assigned the mission"),
        ),
    ),
    TableSpec(
        name=MISSION_PROGRESS,
        grain="one live assignment per day (from assignment to missions.settle_days after its period)",
        partition_by=("progress_ds",),
        written_by="progress",
        description="Each live assignment measured over daily_activity from period_start to the run date. "
        "Status: assigned -> active -> completed | expired; a completion is final.",
        columns=_columns(
            ("assignment_id", "string", "Assignment measured (mission_assignments.assignment_id)"),
            SUBSCRIBER_ID,
            ("mission_id", "string", "Mission id"),
            ("template_id", "string", "Mission template id"),
            ("category", "string", "Mission category"),
            ("metric", "string", "Mission metric measured"),
            ("aggregation", "string", "sum, days, streak or max over the period"),
            ("period_start", "date", "First day of the period"),
            ("period_end", "date", "Last day of the period"),
            ("target_value", "double", "Target, in the metric's unit"),
            ("progress_value", "double", "Value reached so far over the period, in the metric's unit"),
            ("progress_pct", "double", "progress_value / target_value, percent, capped at 100, 1 decimal"),
            (
                "status",
                "string",
                "assigned (period not started), active, completed, or expired (period over below target; a "
                "late event of its days can still complete it while it settles)",
            ),
            ("completed_ds", "date", "First day the target was reached; null until completed"),
            ("newly_completed", "boolean", "True only on the run date the completion was first recorded"),
            ("reward_points", "int", "Points credited on completion, points"),
            HOLDOUT,
            ("progress_ds", "date", "Run date of the measurement"),
        ),
    ),
    TableSpec(
        name=SUBSCRIBER_LIFETIME,
        grain="one subscriber per day",
        partition_by=("stats_date",),
        written_by="badges",
        description="Lifetime metrics for badge rules (lifetime_metrics of conf/metrics.yaml plus "
        "missions_completed[_<category>]), folded incrementally: `settled` covers days older than the "
        "lateness window, `metrics` adds the recent days on top.",
        columns=_columns(
            SUBSCRIBER_ID,
            (
                "settled",
                "map<string,double>",
                "Internal fold state over settled days (totals, day sets as "
                "counters, streak ends, gaps), keyed <metric>.<part>",
            ),
            (
                "settled_through",
                "date",
                "Last day folded into `settled`: run date - max_lateness_days, or the previous snapshot's if later",
            ),
            (
                "metrics",
                "map<string,double>",
                "Lifetime metric -> value as of stats_date (totals in the daily "
                "metric's unit, days, streak lengths in days, missions completed)",
            ),
            ("stats_date", "date", "Day of the snapshot (run date)"),
        ),
    ),
    TableSpec(
        name=BADGE_CATALOG,
        grain="one badge level (type x level) per day",
        partition_by=("catalog_date",),
        written_by="badges",
        description="Every badge level of templates/badges/ with its award rule and points.",
        columns=_columns(
            ("badge_id", "string", "<badge type>.<level>: stable id"),
            ("badge_type", "string", "Badge type id (file name in templates/badges/)"),
            ("name", "string", "Badge display name"),
            ("level", "string", "bronze, silver, gold or platinum"),
            ("level_rank", "int", "1 (bronze) to 4 (platinum)"),
            ("rule", "string", "Auto-award rule (expression over scores, features, lifetime metrics)"),
            ("points", "int", "Loyalty points credited when earned, points"),
            ("unlock_order", "int", "Display order of the badge type"),
            ("description", "string", "Badge description"),
            ("badge_version", "int", "Version of the badge definition"),
            ("catalog_date", "date", "Day of the catalog (run date)"),
        ),
    ),
    TableSpec(
        name=BADGE_AWARDS,
        grain="one badge level earned by one subscriber (on the day earned; never repeated)",
        partition_by=("awarded_ds",),
        written_by="badges",
        description="Badge levels earned, progressively (a level only with the level below held or earned "
        "the same day). Holdout subscribers' would-be awards are recorded with holdout = true, no points.",
        columns=_columns(
            ("award_id", "string", "SHA-256 of subscriber and badge_id: unique, stable"),
            SUBSCRIBER_ID,
            ("badge_id", "string", "<badge type>.<level>"),
            ("badge_type", "string", "Badge type id"),
            ("level", "string", "bronze, silver, gold or platinum"),
            ("level_rank", "int", "1 (bronze) to 4 (platinum)"),
            ("badge_version", "int", "Version of the badge definition"),
            ("rule", "string", "The rule that was met"),
            ("qualifying_values", "string", "name=value of every input of the rule on the day (numbers rounded)"),
            ("points", "int", "Points of the level, points (credited unless holdout)"),
            HOLDOUT,
            ("awarded_ds", "date", "Run date the level was earned"),
        ),
    ),
    TableSpec(
        name=LOYALTY_LEDGER,
        grain="one points movement (earned or expired)",
        partition_by=("entry_ds",),
        written_by="loyalty",
        description="Points ledger: credits for completed missions and badge levels, "
        "debits when points expire; a balance is the sum of a subscriber's entries. Holdout earns nothing. "
        "Earnings beyond a daily budget of conf/loyalty.yaml (over everyone or per segment) are recorded "
        "with status capped, their reason and the points requested, and 0 points.",
        columns=_columns(
            ("entry_id", "string", "SHA-256 of entry type and what earned it: a rerun never credits twice"),
            SUBSCRIBER_ID,
            ("entry_type", "string", "mission_completion, badge_award or expiry"),
            ("source_id", "string", "assignment_id, award_id, or the expired entry's entry_id"),
            ("points", "int", "Points moved: positive when earned, negative when expired, 0 when capped"),
            ("description", "string", "What earned (or expired) the points"),
            (
                "expires_ds",
                "date",
                "Day the points expire (points_expiry_days after the day they were earned, kept if the "
                "setting changes); null for expiries",
            ),
            ("requested_points", "int", "Points the reward carried before the budgets, points"),
            ("status", "string", "credited, or capped when a daily points budget was used up"),
            ("status_reason", "string", "Which budget capped the entry (segment or day, its limit); else null"),
            ("entry_ds", "date", "Run date of the movement"),
        ),
    ),
    TableSpec(
        name=LOYALTY_TIERS,
        grain="one subscriber per day: every scored subscriber, and those not scored that day who hold points or a tier",
        partition_by=("tier_ds",),
        written_by="loyalty",
        description="Points balance and loyalty tier of every scored subscriber: the highest tier of "
        "conf/loyalty.yaml whose rule holds; upgrades at once, downgrades after downgrade_grace_days. A "
        "subscriber not scored on the day (absent from the CRM snapshot) who ever earned points or holds a "
        "tier above the first keeps a row: balance carried with the ledger, tier held, `qualified_tier` null.",
        columns=_columns(
            SUBSCRIBER_ID,
            ("points_balance", "long", "Outstanding points (sum of ledger entries up to the day), points"),
            ("lifetime_points", "long", "Points ever earned (expiries not deducted), points"),
            ("tier", "string", "Tier held: member, silver, gold, platinum"),
            ("tier_rank", "int", "1 (lowest tier) upward"),
            (
                "qualified_tier",
                "string",
                "Tier the rules give today (differs from `tier` during a grace period); null when the "
                "subscriber was not scored that day",
            ),
            ("previous_tier", "string", "Tier held on the previous tiering day, null on the first"),
            ("tier_change", "string", "up, down, or null when unchanged"),
            ("tier_since", "date", "Day the current tier was reached"),
            ("below_since", "date", "First day below the held tier's rule (grace running), else null"),
            HOLDOUT,
            ("tier_ds", "date", "Run date"),
        ),
    ),
    TableSpec(
        name=CAMPAIGN_TRIGGERS,
        grain="one event for the campaign system",
        partition_by=("trigger_ds",),
        written_by="campaigns",
        description="What the campaign system should act on: missions assigned and completed, badges "
        "awarded, tier changes and score threshold crossings (conf/campaigns.yaml). Never for the holdout.",
        columns=_columns(
            ("trigger_id", "string", "SHA-256 of type, subscriber, source and run date: unique, stable"),
            SUBSCRIBER_ID,
            (
                "trigger_type",
                "string",
                "mission_assigned, mission_completed, badge_awarded, tier_changed or score_crossed",
            ),
            ("source_id", "string", "assignment_id, award_id, '<from>><to>' tier, or the crossing's name"),
            (
                "payload",
                "map<string,string>",
                "Values the campaign system renders from (mission text, offer_id, "
                "reward_points, badge, level, tiers, score previous/current...)",
            ),
            ("trigger_ds", "date", "Run date"),
        ),
    ),
    TableSpec(
        name=CAMPAIGN_AUDIENCES,
        grain="one subscriber in one configured audience per day",
        partition_by=("audience_ds",),
        written_by="campaigns",
        description="Members of the named audiences of conf/campaigns.yaml, holdout excluded.",
        columns=_columns(
            ("audience", "string", "Audience name from conf/campaigns.yaml"),
            SUBSCRIBER_ID,
            ("audience_version", "string", "Highest version among the audience definitions of conf/campaigns.yaml"),
            ("audience_ds", "date", "Run date"),
        ),
    ),
    TableSpec(
        name=QUALITY_RESULTS,
        grain="one expectation per suite per run date",
        partition_by=("run_ds",),
        written_by="quality",
        description="Outcome of every Great Expectations check of conf/quality.yaml for the run date; the "
        "same results are browsable in the date's Data Docs (<lakehouse>/_data_docs/<ds>/index.html).",
        columns=_columns(
            ("run_ds", "date", "Run date validated"),
            ("suite", "string", "Suite: raw.<source> for an extract, or a table name"),
            ("table_name", "string", "Table or source validated"),
            ("expectation", "string", "GX expectation type, e.g. expect_column_values_to_not_be_null"),
            ("column", "string", "Column checked, null for table-level expectations"),
            ("scope", "string", "What the check compared against (previous day, parent table...), or null"),
            ("severity", "string", "critical (fails the run) or warning (logged)"),
            ("status", "string", "passed, failed or skipped"),
            ("success", "boolean", "True passed, false failed, null skipped"),
            ("observed", "string", "Observed value or the failing values, shortened"),
            ("details", "string", "JSON with the GX result details"),
            (
                "table_version",
                "long",
                "Delta version of the table the suite read (a rerun records its own): exports refuse a "
                "date whose delivered rows were rewritten after it; null for raw extracts",
            ),
        ),
    ),
    TableSpec(
        name=SUBSCRIBER_STATE,
        grain="one subscriber scored on the day per day (none once no longer scored)",
        partition_by=("state_ds",),
        written_by="subscriber_state",
        description="What an app or agent desktop shows for a subscriber on the day: scores, segment, live "
        "and recently completed missions, badges held, points, tier; exports deliver the changed rows. "
        "Written incrementally from the previous state day: only subscribers with an input that can change "
        "their row are recomputed (new or moved scores, segment, holdout, balance or tier; assignments and "
        "progress rows that differ from the previous day, missions no longer live; completions recorded or "
        "leaving the 7-day window; badge awards; ledger entries, points entering or leaving the 30-day "
        "expiry window); everyone else carries the previous row with the date moved and changed = false. "
        "Everyone is computed on the first day, on a full refresh (subscriber_state.full_refresh) and when "
        "more than subscriber_state.max_changed_share of the previous state day's rows changed. "
        "Rules in jobs/subscriber_state.py.",
        columns=_columns(
            SUBSCRIBER_ID,
            ("segment", "string", "Segment of the day"),
            ("engagement", "double", "Engagement score 0-100"),
            ("revenue", "double", "Revenue score 0-100"),
            ("loyalty", "double", "Loyalty score 0-100"),
            ("risk", "double", "Risk score 0-100 (higher is riskier)"),
            ("digital", "double", "Digital score 0-100"),
            ("holdout", "boolean", "True for the control group: shown without rewards"),
            (
                "active_missions",
                "array<struct<period_end:date,assignment_id:string,mission_id:string,template_id:string,"
                "category:string,level:string,text:string,progress_value:double,target_value:double,"
                "progress_pct:double,status:string,reward_points:int,offer_id:string>>",
                "Live missions with progress, target, period end and rendered text",
            ),
            (
                "recent_completions",
                "array<struct<completed_ds:date,assignment_id:string,template_id:string,category:string,"
                "text:string,reward_points:int,offer_id:string>>",
                "Missions completed in the last 7 days",
            ),
            (
                "badges",
                "array<struct<badge_type:string,level:string,level_rank:int,awarded_ds:date>>",
                "Badges held: the highest level per badge type",
            ),
            ("points_balance", "long", "Loyalty points balance (points)"),
            ("points_expiring_30d", "long", "Points that expire within the next 30 days (points)"),
            ("tier", "string", "Loyalty tier"),
            ("next_tier", "string", "The next tier up, null at the top"),
            ("points_to_next_tier", "long", "Points still needed for the next tier (points)"),
            ("state_hash", "string", "SHA-256 of the shown content"),
            (
                "changed",
                "boolean",
                "True when the content differs from the subscriber's previous row (or there is none); "
                "false on carried rows",
            ),
            ("state_ds", "date", "Run date"),
        ),
    ),
    TableSpec(
        name=EXPORT_RUNS,
        grain="one consumer x dataset per run date",
        partition_by=("run_ds",),
        written_by="exports",
        description="What each consumer of conf/exports.yaml received for the run date, and with which "
        "subscriber identifier.",
        columns=_columns(
            ("run_ds", "date", "Run date exported"),
            ("consumer", "string", "Consumer name from conf/exports.yaml"),
            ("kind", "string", "files or jdbc"),
            ("dataset", "string", "What was sent: subscriber_state, campaign_triggers, audience_changes, ..."),
            ("identifier", "string", "Subscriber identifier sent: pseudonym or msisdn"),
            ("rows", "long", "Rows delivered"),
            ("location", "string", "Folder or table written"),
            ("checksum", "string", "SHA-256 of the delivered file, null for tables"),
            ("status", "string", "delivered (a consumer whose delivery failed fails the stage: no row)"),
        ),
    ),
)

TABLES: dict[str, TableSpec] = {spec.name: spec for spec in _SPECS}


def spec_of(table: str) -> TableSpec:
    try:
        return TABLES[table]
    except KeyError:
        raise KeyError(f"unknown table {table!r}; known: {', '.join(TABLES)}") from None


def schema_of(table: str) -> T.StructType:
    return spec_of(table).schema


def tables_written_by(stage: str) -> list[str]:
    """The tables a stage writes, in dictionary order; `pipeline_runs` for every stage (each
    records its run there)."""
    return [t.name for t in _SPECS if stage in (t.written_by, *t.also_written_by) or t.name == PIPELINE_RUNS]
