-- daily_activity for one day, after conf/metrics.yaml and jobs/metrics.py.
-- Grain: one row per subscriber with at least one event on $ds. Every daily metric is summed
-- (0 when no event counted) except arpu and tenure_months (largest value of the day, null when
-- none); the derived flags are 1.0 or 0.0.
-- Parameters: $ds. Tables: events.
with day_events as (
    select
        subscriber_id,
        event_type,
        event_subtype,
        channel,
        quantity,
        cast(amount as double) as amount,
        attributes['roaming'] as attr_roaming
    from events
    where event_date = $ds
      and ingest_date <= $ds
),

metrics as (
    select
        subscriber_id,
        coalesce(sum(quantity) filter (where event_type = 'cdr' and event_subtype in ('voice_out', 'voice_in')), 0) as voice_minutes,
        count(*) filter (where event_type = 'cdr' and event_subtype = 'voice_out') as voice_calls_out,
        count(*) filter (where event_type = 'cdr' and event_subtype in ('sms_out', 'sms_in')) as sms_count,
        coalesce(sum(quantity) filter (where event_type = 'cdr' and event_subtype = 'data_session'), 0) as data_mb,
        count(*) filter (where event_type = 'cdr' and event_subtype = 'data_session') as data_sessions,
        count(*) filter (where event_type = 'cdr' and attr_roaming = 'Y') as roaming_events,
        count(*) filter (where event_type = 'cdr') as usage_events,
        count(*) filter (where event_type = 'billing' and event_subtype = 'recharge') as recharge_count,
        coalesce(sum(amount) filter (where event_type = 'billing' and event_subtype = 'recharge'), 0) as recharge_amount,
        count(*) filter (where event_type = 'billing' and event_subtype = 'recharge_failed') as recharge_failed,
        count(*) filter (where event_type = 'billing' and event_subtype = 'payment') as payment_count,
        coalesce(sum(amount) filter (where event_type = 'billing' and event_subtype = 'payment'), 0) as payment_amount,
        count(*) filter (where event_type = 'billing' and event_subtype = 'payment' and (quantity is null or quantity <= 0)) as on_time_payments,
        count(*) filter (where event_type = 'billing' and event_subtype = 'payment' and quantity > 0) as late_payments,
        count(*) filter (where event_type = 'billing' and event_subtype in ('payment_failed', 'recharge_failed')) as failed_payments,
        count(*) filter (where event_type = 'billing' and event_subtype in ('payment', 'recharge') and channel in ('app', 'web', 'ussd')) as digital_payments,
        coalesce(sum(amount) filter (where event_type = 'billing' and event_subtype = 'bill'), 0) as bill_amount,
        count(*) filter (where event_type = 'app' and event_subtype = 'login') as app_logins,
        count(*) filter (where event_type = 'app') as digital_actions,
        count(*) filter (where event_type = 'app' and event_subtype in ('view_balance', 'buy_bundle', 'recharge', 'pay_bill', 'activate_offer', 'profile_update')) as self_service_actions,
        count(*) filter (where event_type = 'app' and event_subtype = 'buy_bundle') as bundle_purchases,
        count(*) filter (where event_type = 'care') as care_contacts,
        count(*) filter (where event_type = 'care' and channel = 'call_centre') as call_centre_contacts,
        count(*) filter (where event_type = 'care' and event_subtype = 'complaint') as complaints,
        coalesce(sum(quantity) filter (where event_type = 'network' and event_subtype = 'call_attempts'), 0) as call_attempts,
        coalesce(sum(quantity) filter (where event_type = 'network' and event_subtype = 'dropped_calls'), 0) as dropped_calls,
        coalesce(sum(quantity) filter (where event_type = 'network' and event_subtype = 'throughput'), 0) as throughput_kbps_sum,
        count(*) filter (where event_type = 'network' and event_subtype = 'throughput') as throughput_samples,
        count(*) filter (where event_type = 'partner') as partner_events,
        max(amount) filter (where event_type = 'dwh' and event_subtype = 'monthly_arpu') as arpu,
        max(quantity) filter (where event_type = 'dwh' and event_subtype = 'monthly_arpu') as tenure_months
    from day_events
    group by subscriber_id
),

final as (
    select
        subscriber_id,
        columns(* exclude (subscriber_id))::double,
        case when usage_events + digital_actions + recharge_count + payment_count > 0 then 1.0 else 0.0 end as active,
        case when voice_minutes > 0 then 1.0 else 0.0 end as used_voice,
        case when sms_count > 0 then 1.0 else 0.0 end as used_sms,
        case when data_mb > 0 then 1.0 else 0.0 end as used_data,
        case when digital_actions > 0 then 1.0 else 0.0 end as used_digital
    from metrics
)

select * from final
