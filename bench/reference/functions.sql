-- Helpers shared by the reference queries (DuckDB macros, created once per connection).

-- An MSISDN as E.164 digits, as jobs/privacy.py normalises it: digits of other scripts to ASCII,
-- '(0)' dropped after an international prefix, non-digits removed, a '00' prefix stripped and a
-- national leading '0' replaced by the country code; null when no digit is left.
create or replace temp macro ascii_digits(raw) as
    translate(raw, '٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹०१२३४५६७८९０１２３４５６７８９',
              '0123456789012345678901234567890123456789');

create or replace temp macro msisdn_digits(raw) as
    regexp_replace(
        case
            when regexp_matches(ascii_digits(raw), '^[ \t]*(\+|00)')
                then regexp_replace(ascii_digits(raw), '\(\s*0\s*\)', '', 'g')
            else ascii_digits(raw)
        end,
        '[^0-9]', '', 'g');

create or replace temp macro e164(raw, country_code) as
    case
        when msisdn_digits(raw) = '' then null
        when starts_with(msisdn_digits(raw), '00') then substr(msisdn_digits(raw), 3, 32)
        when starts_with(msisdn_digits(raw), '0') then country_code || substr(msisdn_digits(raw), 2, 32)
        else msisdn_digits(raw)
    end;

-- HMAC-SHA256 (hex) of a text, from the key's inner and outer pads: the subscriber pseudonym.
create or replace temp macro pseudonym(digits, inner_pad, outer_pad) as
    sha256(outer_pad || unhex(sha256(inner_pad || encode(digits))));

-- Capped linear scale of x from [low, high] to [0, 1] (null stays null).
create or replace temp macro minmax(x, low, high) as
    least(greatest((x - low) / (high - low), 0.0), 1.0);

-- Percentile rank of v among 99 cut points: the share of cuts below v, ties counted half.
create or replace temp macro percentile_rank(v, cuts) as
    case
        when v is not null and cuts is not null
            then (len(list_filter(cuts, lambda q: q < v)) + len(list_filter(cuts, lambda q: q <= v)))
                 / (2.0 * len(cuts))
    end;

-- A component's value: the fill of its missing policy when the feature is null (zero 0,
-- neutral 0.5, exclude 0) or when it cannot be normalised.
create or replace temp macro component(raw, normalized, filled) as
    case when raw is null then filled else coalesce(normalized, filled) end;
