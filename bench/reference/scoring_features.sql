-- Behavior features for one scoring day, after conf/scoring.yaml and jobs/scoring/.
-- Grain: one row per subscriber of the newest CRM snapshot within the lookback, with every
-- feature. Windows end on $ds; "observed days" are the window capped by the history available
-- and the subscriber's tenure (at least 1).
-- Parameters: $ds, $lookback (ingest.subscriber_lookback_days), $ml_max_age (ml.max_age_days).
-- Tables: daily_activity, subscriber_profile, ml_predictions.
with snapshot as (
    select max(snapshot_date) as day
    from subscriber_profile
    where snapshot_date between $ds - $lookback and $ds
),

earlier_snapshot as (  -- the plan 90 days ago
    select max(snapshot_date) as day
    from subscriber_profile
    where snapshot_date between $ds - 90 - $lookback and $ds - 90
),

subscribers as (
    select
        p.subscriber_id,
        p.payment_type,
        p.plan_code,
        e.plan_code as plan_code_90d_ago,
        $ds - p.activation_date as tenure
    from subscriber_profile p
    left join subscriber_profile e
        on e.subscriber_id = p.subscriber_id and e.snapshot_date = (select day from earlier_snapshot)
    where p.snapshot_date = (select day from snapshot)
),

history as (  -- days of daily_activity up to $ds, capped by the longest window (90)
    select least(90, $ds - min(activity_date) + 1) as days
    from daily_activity
    where activity_date <= $ds
),

activity as (
    select *, $ds - activity_date as offset_days
    from daily_activity
    where activity_date between $ds - 89 and $ds
),

windows as (
    select
        subscriber_id,
        count(*) filter (where offset_days < 7 and active > 0) as active_days_7,
        count(*) filter (where offset_days < 30 and active > 0) as active_days_30,
        count(*) filter (where offset_days < 90 and active > 0) as active_days_90,
        min(offset_days) filter (where active > 0) as days_since_active,
        count(*) filter (where offset_days < 30 and used_voice > 0) as voice_days_30,
        count(*) filter (where offset_days < 30 and used_sms > 0) as sms_days_30,
        count(*) filter (where offset_days < 30 and used_data > 0) as data_days_30,
        count(*) filter (where offset_days < 30 and used_digital > 0) as digital_days_30,
        sum(usage_events) filter (where offset_days < 7) as usage_events_7,
        sum(usage_events) filter (where offset_days < 30) as usage_events_30,
        sum(voice_minutes) filter (where offset_days < 30) as voice_minutes_30,
        sum(data_mb) filter (where offset_days < 30) as data_mb_30,
        sum(usage_events) filter (where offset_days < 7) as usage_sum_7,
        sum(usage_events) filter (where offset_days < 30) as usage_sum_30,
        count(*) filter (where active > 0) as active_days_any_90,
        sum(recharge_amount) filter (where offset_days < 30) as recharge_amount_30,
        sum(bill_amount) filter (where offset_days < 30) as bill_amount_30,
        sum(recharge_amount) as recharge_amount_90,
        sum(bill_amount) as bill_amount_90,
        count(distinct floor(offset_days / 7)) filter (where offset_days < 56 and recharge_count > 0) as recharge_weeks_8,
        min(offset_days) filter (where recharge_count > 0) as days_since_recharge,
        sum(payment_count) as payments_90,
        sum(on_time_payments) as on_time_payments_90,
        sum(late_payments) as late_payments_90,
        sum(failed_payments) as failed_payments_90,
        sum(digital_payments) as digital_payments_90,
        sum(recharge_count) as recharges_90,
        sum(app_logins) filter (where offset_days < 30) as app_logins_30,
        sum(digital_actions) filter (where offset_days < 30) as digital_actions_30,
        sum(self_service_actions) filter (where offset_days < 30) as self_service_30,
        sum(care_contacts) filter (where offset_days < 30) as care_contacts_30,
        sum(complaints) filter (where offset_days < 30) as complaints_30,
        sum(call_attempts) filter (where offset_days < 30) as call_attempts_30,
        sum(dropped_calls) filter (where offset_days < 30) as dropped_calls_30,
        sum(throughput_kbps_sum) filter (where offset_days < 30) as throughput_sum_30,
        sum(throughput_samples) filter (where offset_days < 30) as throughput_samples_30,
        arg_max(arpu, activity_date) filter (where offset_days < 62 and arpu is not null) as dwh_arpu
    from activity
    group by subscriber_id
),

predictions as (  -- the newest prediction per subscriber at most $ml_max_age days old
    select subscriber_id, churn_probability, risk_score
    from ml_predictions
    where ds between $ds - $ml_max_age and $ds
      and loaded_ds <= $ds
    qualify row_number() over (partition by subscriber_id order by ds desc, loaded_ds desc, model_name desc) = 1
),

observed as (  -- observed days per window length
    select
        s.*,
        greatest(least(7, h.days, coalesce(s.tenure + 1, 7)), 1)::double as observed_7,
        greatest(least(30, h.days, coalesce(s.tenure + 1, 30)), 1)::double as observed_30,
        greatest(least(90, h.days, coalesce(s.tenure + 1, 90)), 1)::double as observed_90
    from subscribers s
    cross join history h
),

base as (
    select
        o.subscriber_id,
        coalesce(w.active_days_7, 0)::double as active_days_7,
        coalesce(w.active_days_30, 0)::double as active_days_30,
        coalesce(w.active_days_90, 0)::double as active_days_90,
        coalesce(w.days_since_active::double, o.observed_90) as days_since_active,
        coalesce(w.voice_days_30, 0)::double as voice_days_30,
        coalesce(w.sms_days_30, 0)::double as sms_days_30,
        coalesce(w.data_days_30, 0)::double as data_days_30,
        coalesce(w.digital_days_30, 0)::double as digital_days_30,
        coalesce(w.usage_events_7, 0)::double as usage_events_7,
        coalesce(w.usage_events_30, 0)::double as usage_events_30,
        coalesce(w.voice_minutes_30, 0)::double as voice_minutes_30,
        coalesce(w.data_mb_30, 0)::double as data_mb_30,
        coalesce(w.usage_sum_7, 0) / o.observed_7 as usage_avg_7,
        coalesce(w.usage_sum_30, 0) / o.observed_30 as usage_avg_30,
        coalesce(w.active_days_any_90, 0) / o.observed_90 as activity_consistency,
        coalesce(w.recharge_amount_30, 0)::double as recharge_amount_30,
        coalesce(w.bill_amount_30, 0)::double as bill_amount_30,
        coalesce(w.recharge_amount_30, 0) / o.observed_30 as recharge_avg_30,
        coalesce(w.bill_amount_30, 0) / o.observed_30 as bill_avg_30,
        coalesce(w.recharge_amount_90, 0) / o.observed_90 as recharge_avg_90,
        coalesce(w.bill_amount_90, 0) / o.observed_90 as bill_avg_90,
        coalesce(w.recharge_weeks_8, 0)::double as recharge_weeks_8,
        coalesce(w.days_since_recharge::double, o.observed_90) as days_since_recharge,
        coalesce(w.payments_90, 0)::double as payments_90,
        coalesce(w.on_time_payments_90, 0)::double as on_time_payments_90,
        coalesce(w.late_payments_90, 0)::double as late_payments_90,
        coalesce(w.failed_payments_90, 0)::double as failed_payments_90,
        coalesce(w.digital_payments_90, 0)::double as digital_payments_90,
        coalesce(w.recharges_90, 0)::double as recharges_90,
        coalesce(w.app_logins_30, 0)::double as app_logins_30,
        coalesce(w.digital_actions_30, 0)::double as digital_actions_30,
        coalesce(w.self_service_30, 0)::double as self_service_30,
        coalesce(w.care_contacts_30, 0)::double as care_contacts_30,
        coalesce(w.complaints_30, 0)::double as complaints_30,
        coalesce(w.call_attempts_30, 0)::double as call_attempts_30,
        coalesce(w.dropped_calls_30, 0)::double as dropped_calls_30,
        coalesce(w.throughput_sum_30, 0)::double as throughput_sum_30,
        coalesce(w.throughput_samples_30, 0)::double as throughput_samples_30,
        w.dwh_arpu::double as dwh_arpu,
        case when o.tenure is not null then greatest(o.tenure, 0)::double end as tenure_days,
        case when o.payment_type = 'POSTPAID' then 1.0 else 0.0 end as is_postpaid,
        case when o.plan_code_90d_ago is not null and o.plan_code <> o.plan_code_90d_ago then 1.0 else 0.0 end as plan_changed_90d,
        p.churn_probability::double as churn_probability,
        p.risk_score::double as ml_risk_score
    from observed o
    left join windows w using (subscriber_id)
    left join predictions p using (subscriber_id)
),

final as (  -- expressions over the features above; a division by zero gives null
    select
        *,
        (case when voice_days_30 > 0 then 1.0 else 0.0 end + case when sms_days_30 > 0 then 1.0 else 0.0 end
         + case when data_days_30 > 0 then 1.0 else 0.0 end + case when digital_days_30 > 0 then 1.0 else 0.0 end) as services_30,
        recharge_amount_30 + bill_amount_30 as spend_30,
        (recharge_avg_30 + bill_avg_30) / nullif(recharge_avg_90 + bill_avg_90, 0) as spend_trend,
        usage_avg_7 / nullif(usage_avg_30, 0) as usage_trend,
        days_since_recharge * (1 - is_postpaid) as prepaid_recharge_gap,
        on_time_payments_90 / nullif(payments_90, 0) as on_time_ratio_90,
        dropped_calls_30 / nullif(call_attempts_30, 0) as dropped_call_rate_30,
        throughput_sum_30 / nullif(throughput_samples_30, 0) as avg_throughput_30,
        digital_actions_30 / nullif(digital_actions_30 + care_contacts_30, 0) as digital_share_30,
        digital_payments_90 / nullif(payments_90 + recharges_90, 0) as digital_payment_share_90
    from base
)

select * from final
