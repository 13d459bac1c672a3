"""Pseudonymisation of subscriber identifiers.

An MSISDN is normalised to E.164 digits and replaced by HMAC-SHA256(key, digits), hex encoded.
The Spark expression and the pure-Python reference give the same value, so tooling outside
Spark (the sample-data truth file, support look-ups) can map a number to its subscriber_id.
"""

from __future__ import annotations

import hashlib
import hmac
import re

from pyspark.sql import Column
from pyspark.sql import functions as F

_BLOCK = 64  # SHA-256 block size in bytes
_DIGITS = re.compile(r"\D")


def normalise_msisdn_py(raw: str, country_code: str) -> str:
    """E.164 digits without '+': '+33 6 12..' / '0033612..' / '0612..' -> '33612..'."""
    digits = _DIGITS.sub("", raw)
    if digits.startswith("00"):
        return digits[2:]
    if digits.startswith("0"):
        return country_code + digits[1:]
    return digits


def pseudonymise_py(msisdn: str, key: str, country_code: str) -> str:
    digits = normalise_msisdn_py(msisdn, country_code)
    return hmac.new(key.encode(), digits.encode(), hashlib.sha256).hexdigest()


def normalise_msisdn(col: Column, country_code: str) -> Column:
    digits = F.regexp_replace(col, r"\D", "")
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


def pseudonymise(col: Column, key: str, country_code: str) -> Column:
    """HMAC-SHA256 of the normalised MSISDN as a built-in Spark expression (null stays null)."""
    if not key:
        raise ValueError("pseudonymisation key is empty: set GAMIFY_PSEUDONYMISATION_KEY")
    inner_pad, outer_pad = _padded_keys(key)
    message = normalise_msisdn(col, country_code).cast("binary")
    inner = F.unhex(F.sha2(F.concat(F.lit(inner_pad), message), 256))
    return F.sha2(F.concat(F.lit(outer_pad), inner), 256)


def mask_digit_runs(col: Column) -> Column:
    """Blank out anything that looks like a phone number inside free text (raw rejected lines)."""
    return F.regexp_replace(col, r"\+?\d[\d ]{6,}\d", "<msisdn>")
