-- CDR ingest normalisation for one run date, after conf/sources/cdr.yaml and jobs/ingest.py.
-- Grain: one row per raw line of the day's CDR files (header lines excluded): either one
-- normalised event (reject_reason null) or the line's quarantine reason.
--
-- Parameters: $files (the CDR files Spark read), $delim (a byte absent from the data, so each
-- line is one value), $ds, $earliest ($ds - ingest.max_lateness_days), $known_from ($ds -
-- ingest.subscriber_lookback_days), $country_code, $inner_pad / $outer_pad (the HMAC pads of
-- the pseudonymisation key, as blobs). Tables: subscriber_profile, events (earlier runs).
-- Lines are split on '|' without quote handling (mediation files carry no quotes).
with lines as (
    select filename as source_file, line, string_split(line, '|') as token
    from read_csv($files, columns = {'line': 'VARCHAR'}, delim = $delim, quote = '', escape = '',
                  header = true, auto_detect = false, filename = true)
    where line is not null and line <> ''
),

raw as (  -- contract columns as delivered; '' reads as null, as in Spark's CSV reader
    select
        source_file,
        line,
        len(token) <> 10 as malformed,
        nullif(token[1], '') as record_id,
        nullif(token[2], '') as msisdn,
        nullif(token[3], '') as record_type,
        nullif(token[4], '') as start_time,
        nullif(token[5], '') as raw_duration_s,
        nullif(token[6], '') as raw_bytes_up,
        nullif(token[7], '') as raw_bytes_down,
        nullif(token[8], '') as cell_id,
        nullif(token[9], '') as roaming_flag,
        nullif(token[10], '') as other_party
    from lines
),

typed as (
    select
        *,
        case when regexp_full_match(trim(raw_duration_s), '[+-]?[0-9]{1,18}') then try_cast(trim(raw_duration_s) as bigint) end as duration_s,
        case when regexp_full_match(trim(raw_bytes_up), '[+-]?[0-9]{1,18}') then try_cast(trim(raw_bytes_up) as bigint) end as bytes_up,
        case when regexp_full_match(trim(raw_bytes_down), '[+-]?[0-9]{1,18}') then try_cast(trim(raw_bytes_down) as bigint) end as bytes_down,
        -- yyyyMMddHHmmss in operator-local time: the local calendar day is the event date
        case when regexp_full_match(start_time, '[0-9]{14}') then try_strptime(start_time, '%Y%m%d%H%M%S') end as local_start,
        e164(msisdn, $country_code) as e164
    from raw
),

normalised as (
    select *, cast(local_start as date) as event_date
    from typed
),

keyed as (
    select
        *,
        coalesce(length(e164) between 8 and 15, false) as msisdn_ok,
        -- HMAC-SHA256(key, E.164 digits) from the key's inner and outer pads
        pseudonym(e164, $inner_pad, $outer_pad) as subscriber_id,
        sha256('cdr|' || coalesce(record_id, '')) as record_key
    from normalised
),

checked as (  -- the first failing check wins, in the order of jobs/ingest.py
    select
        *,
        case
            when malformed then 'malformed_record'
            when record_id is null or trim(record_id) = '' then 'missing_field'
            when msisdn is null or trim(msisdn) = '' then 'missing_field'
            when record_type is null or trim(record_type) = '' then 'missing_field'
            when start_time is null or trim(start_time) = '' then 'missing_field'
            when raw_duration_s is null or trim(raw_duration_s) = '' then 'missing_field'
            when duration_s is null then 'invalid_type'
            when raw_bytes_up is null or trim(raw_bytes_up) = '' then 'missing_field'
            when bytes_up is null then 'invalid_type'
            when raw_bytes_down is null or trim(raw_bytes_down) = '' then 'missing_field'
            when bytes_down is null then 'invalid_type'
            when cell_id is null or trim(cell_id) = '' then 'missing_field'
            when roaming_flag is null or trim(roaming_flag) = '' then 'missing_field'
            when not msisdn_ok then 'invalid_msisdn'
            when local_start is null then 'invalid_timestamp'
            when not coalesce(duration_s >= 0, false) then 'negative_duration'
            when not coalesce(bytes_up >= 0 and bytes_down >= 0, false) then 'negative_volume'
            when not coalesce(record_type in ('MOC', 'MTC', 'SMSMO', 'SMSMT', 'GPRS'), false) then 'unknown_record_type'
            when event_date > $ds then 'future_event'
            when event_date < $earliest then 'too_late'
            when not coalesce(record_type in ('MOC', 'MTC', 'SMSMO', 'SMSMT', 'GPRS'), false) then 'unmapped_record'
        end as row_reason
    from keyed
),

known as (  -- subscribers of the newest CRM snapshot within the lookback
    select distinct subscriber_id
    from subscriber_profile
    where snapshot_date = (
        select max(snapshot_date) from subscriber_profile where snapshot_date between $known_from and $ds
    )
),

with_known as (
    select
        checked.*,
        case
            when row_reason is null and known.subscriber_id is null then 'unknown_subscriber'
            else row_reason
        end as reason
    from checked
    left join known using (subscriber_id)
),

ranked as (  -- copies of one record in the extract: the first (by raw text, then file) is kept
    select
        *,
        row_number() over (
            partition by record_key, reason is null
            order by concat_ws(chr(1), record_id, msisdn, record_type, start_time, raw_duration_s, raw_bytes_up,
                               raw_bytes_down, cell_id, roaming_flag, other_party), source_file
        ) as copy_rank
    from with_known
),

in_batch as (
    select * replace (case when reason is null and copy_rank > 1 then 'duplicate' else reason end as reason)
    from ranked
),

prior_keys as (  -- records an earlier run already wrote on the late event dates of this extract
    select distinct record_key
    from events
    where source = 'cdr'
      and ingest_date < $ds
      and event_date in (select distinct event_date from in_batch where reason is null and event_date < $ds)
),

classified as (
    select
        in_batch.* replace (
            case when in_batch.reason is null and prior_keys.record_key is not null then 'duplicate' else in_batch.reason end as reason
        )
    from in_batch
    left join prior_keys using (record_key)
),

accepted as (
    select
        *,
        map_from_entries(list_filter(
            [('cell_id', cell_id),
             ('counterpart_id', pseudonym(e164(other_party, $country_code), $inner_pad, $outer_pad)),
             ('roaming', roaming_flag)],
            lambda entry: entry[2] is not null)) as attributes
    from classified
    where reason is null
),

events as (  -- one event per matching mapping of conf/sources/cdr.yaml
    select record_key, subscriber_id, 'cdr/record_type' as mapping_id, 'cdr' as event_type,
           case record_type when 'MOC' then 'voice_out' when 'MTC' then 'voice_in' end as event_subtype,
           duration_s / 60.0 as quantity, 'minutes' as unit, 'network' as channel, event_date, attributes
    from accepted
    where record_type in ('MOC', 'MTC')
    union all
    select record_key, subscriber_id, 'cdr/record_type', 'cdr',
           case record_type when 'SMSMO' then 'sms_out' when 'SMSMT' then 'sms_in' end,
           1.0, 'sms', 'network', event_date, attributes
    from accepted
    where record_type in ('SMSMO', 'SMSMT')
    union all
    select record_key, subscriber_id, 'cdr/data_session', 'cdr', 'data_session',
           (bytes_up + bytes_down) / 1048576.0, 'MB', 'network', event_date, attributes
    from accepted
    where record_type = 'GPRS'
),

final as (
    select sha256(record_key || '|' || mapping_id) as event_id, subscriber_id, event_type, event_subtype,
           quantity, unit, channel, attributes, event_date, null as reject_reason
    from events
    union all
    select null, case when msisdn_ok then subscriber_id end, null, null, null, null, null, null, null, reason
    from classified
    where reason is not null
)

select * from final
