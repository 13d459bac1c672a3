"""Files read or written without Spark (extract screening, export folders, Delta log files,
the lakehouse's listing) through pyarrow, at every root Spark and delta-rs take: local paths,
file: URIs and object stores. Hadoop's s3a:// (and s3n://), which pyarrow does not know, names
the same bucket as s3://."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow.fs as pafs

__all__ = ["filesystem"]

HADOOP_SCHEMES = {"s3a": "s3", "s3n": "s3"}
# delta-rs's storage options for S3 (any case) that the pyarrow filesystem takes too
S3_OPTIONS = {
    "AWS_ACCESS_KEY_ID": "access_key",
    "AWS_SECRET_ACCESS_KEY": "secret_key",
    "AWS_SESSION_TOKEN": "session_token",
    "AWS_REGION": "region",
    "AWS_ENDPOINT_URL": "endpoint_override",
}


def filesystem(uri: str, options: Mapping[str, str] | None = None) -> tuple[pafs.FileSystem, str]:
    """pyarrow's filesystem and its path for a local path or a URI.

    An S3 location's credentials, region and endpoint come from `options` when they name any
    (the lakehouse's `storage_options`, as delta-rs reads them), else from the environment as
    every AWS SDK finds them (variables such as AWS_ENDPOINT_URL, a profile, an instance role).
    """
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return pafs.LocalFileSystem(), str(Path(uri).resolve())
    scheme = HADOOP_SCHEMES.get(scheme.lower(), scheme.lower())
    given = {k.upper(): str(v) for k, v in (options or {}).items() if k.upper() in S3_OPTIONS}
    if scheme == "s3" and given:
        return _s3(given), rest
    return pafs.FileSystem.from_uri(f"{scheme}://{rest}")


def _s3(options: Mapping[str, str]) -> pafs.S3FileSystem:
    kwargs = {S3_OPTIONS[key]: value for key, value in options.items()}
    endpoint = kwargs.get("endpoint_override")
    if endpoint and "://" in endpoint:
        kwargs["scheme"] = urlsplit(endpoint).scheme
    return pafs.S3FileSystem(**kwargs)
