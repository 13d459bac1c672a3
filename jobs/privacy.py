"""Pseudonymisation of subscriber identifiers, and masking of phone numbers in free text.

An MSISDN is normalised to E.164 digits and replaced by HMAC-SHA256(key, digits), hex encoded.
The Spark expression and the pure-Python reference give the same value, so tooling outside
Spark (the sample-data truth file, support look-ups) can map a number to its subscriber_id.

The key never enters a Spark expression: its HMAC pads are joined in as data from a one-row
broadcast relation (`with_hmac_key`), so query plans, `explain()`, the Spark UI and event logs
only ever show column names. Frames drop the pads (`without_hmac_key`) before they are persisted
or shuffled.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.frames import local_frame

_BLOCK = 64  # SHA-256 block size in bytes
INNER_PAD, OUTER_PAD = "_hmac_inner_pad", "_hmac_outer_pad"

# Decimal digits of other scripts some extracts carry (Arabic-Indic, extended Arabic-Indic,
# Devanagari, fullwidth), mapped to ASCII the same way in Python and in Spark.
_OTHER_DIGITS = "٠١٢٣٤٥٦٧٨٩۰۱۲۳۴۵۶۷۸۹०१२३४५६७८९０１２３４５６７８９"
_ASCII_DIGITS = "0123456789" * 4
_TO_ASCII = str.maketrans(_OTHER_DIGITS, _ASCII_DIGITS)
_NOT_DIGIT = re.compile(r"[^0-9]")
# Spaces, written out: Python's \s takes every Unicode space and Java's only ASCII ones, so the
# two normalisations would part on a no-break space (spreadsheet exports carry them).
_SPACE = r"[ \t\n\r\f\x0B\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"
_INTERNATIONAL = rf"^{_SPACE}*(\+|00)"
_TRUNK_ZERO = rf"\({_SPACE}*0{_SPACE}*\)"  # '+44 (0) 20 ...': the national trunk digit, dropped after a country code

# A phone number inside free text: 8 to 15 digits, optionally led by '+' or '00', separated by
# at most three of space - . / ( ) between digits; not glued to a letter or digit, and not an
# ISO date (2025-03-01), so dates in a rejected line stay readable.
MSISDN_IN_TEXT = r"(?<![0-9A-Za-z])(?!\d{4}-\d\d-\d\d(?![0-9]))\+?(?:\d[ ./()\-]{0,3}){7,14}\d(?![0-9])"
_MSISDN_IN_TEXT = re.compile(MSISDN_IN_TEXT, re.ASCII)
MASK = "<msisdn>"


def normalise_msisdn_py(raw: str | None, country_code: str) -> str | None:
    """E.164 digits without '+': '+33 6 12..' / '0033612..' / '0612..' / '+33 (0)6 12..' ->
    '33612..'; None when there is no digit at all."""
    if raw is None:
        return None
    text = raw.translate(_TO_ASCII)
    if re.match(_INTERNATIONAL, text):
        text = re.sub(_TRUNK_ZERO, "", text)
    digits = _NOT_DIGIT.sub("", text)
    if not digits:
        return None
    if digits.startswith("00"):
        return digits[2:]
    if digits.startswith("0"):
        return country_code + digits[1:]
    return digits


def pseudonymise_py(msisdn: str | None, key: str, country_code: str) -> str | None:
    digits = normalise_msisdn_py(msisdn, country_code)
    if digits is None:
        return None
    return hmac.new(key.encode(), digits.encode(), hashlib.sha256).hexdigest()


def normalise_msisdn(col: Column, country_code: str) -> Column:
    """Spark twin of `normalise_msisdn_py` (null when there is no digit)."""
    text = F.translate(col, _OTHER_DIGITS, _ASCII_DIGITS)
    text = F.when(text.rlike(_INTERNATIONAL), F.regexp_replace(text, _TRUNK_ZERO, "")).otherwise(text)
    digits = F.regexp_replace(text, r"[^0-9]", "")
    return (
        F.when(digits == "", F.lit(None))
        .when(digits.startswith("00"), F.substring(digits, 3, 32))
        .when(digits.startswith("0"), F.concat(F.lit(country_code), F.substring(digits, 2, 32)))
        .otherwise(digits)
    )


def _padded_keys(key: str) -> tuple[bytes, bytes]:
    k = key.encode()
    if len(k) > _BLOCK:
        k = hashlib.sha256(k).digest()
    k = k.ljust(_BLOCK, b"\0")
    return bytes(b ^ 0x36 for b in k), bytes(b ^ 0x5C for b in k)


def with_hmac_key(df: DataFrame, key: str) -> DataFrame:
    """`df` with the key's HMAC pads as two columns, cross-joined from a one-row broadcast
    relation: the pads travel as data, never as literals of an expression."""
    if not key:
        raise ValueError("pseudonymisation key is empty: set GAMIFY_PSEUDONYMISATION_KEY")
    pads = local_frame(df.sparkSession, [_padded_keys(key)], f"{INNER_PAD} binary, {OUTER_PAD} binary")
    return df.crossJoin(F.broadcast(pads))


def without_hmac_key(df: DataFrame) -> DataFrame:
    return df.drop(INNER_PAD, OUTER_PAD)


def pseudonymise(col: Column, country_code: str) -> Column:
    """HMAC-SHA256 of the normalised MSISDN as a built-in Spark expression (null stays null);
    reads the pads `with_hmac_key` added to the frame."""
    message = normalise_msisdn(col, country_code).cast("binary")
    inner = F.unhex(F.sha2(F.concat(F.col(INNER_PAD), message), 256))
    return F.sha2(F.concat(F.col(OUTER_PAD), inner), 256)


def mask_digit_runs(col: Column) -> Column:
    """Blank out anything that looks like a phone number inside free text (raw rejected lines)."""
    return F.regexp_replace(col, MSISDN_IN_TEXT, MASK)


def mask_phone_numbers(text: Column) -> Column:
    """Free text (a raw line, a raw value) with its phone numbers masked: digits of other scripts
    and Unicode spaces (no-break, narrow, tabs) made plain first, so '٠٦١٢...' or '06 12 34...'
    written with no-break spaces is masked like '06 12 34...'."""
    plain = F.translate(F.regexp_replace(text, r"[\p{Z}\t\x0B\f]", " "), _OTHER_DIGITS, _ASCII_DIGITS)
    return mask_digit_runs(plain)


def mask_text(text: str) -> str:
    """Python twin of `mask_digit_runs`, for messages (errors, logs, pipeline_runs)."""
    return _MSISDN_IN_TEXT.sub(MASK, text)
