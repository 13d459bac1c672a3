"""What the jobs read without Spark (the extracts' files while screening them, the lakehouse's
tables, Delta data files for the run report) on an S3 object store, addressed as Spark and
delta-rs address it: s3a://. A local S3 endpoint (moto's server) stands in for the store."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
from deltalake import write_deltalake
from moto.server import ThreadedMotoServer

from jobs.lakehouse import Lakehouse
from jobs.run_log import TableLocation
from jobs.sources import Source, hidden_file, list_extract_files, screen_text_file, text_lines
from jobs.storage import filesystem
from tests.integration.bad_input import corpus

pytestmark = pytest.mark.integration

BUCKET = "operator-lake"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test-key", "AWS_SECRET_ACCESS_KEY": "test-secret", "AWS_REGION": "eu-west-1"}


@pytest.fixture(scope="module")
def store():
    """A local S3 endpoint with one bucket: (the storage options naming it, a filesystem on it)."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    options = {**CREDENTIALS, "AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ALLOW_HTTP": "true"}
    fs = pafs.S3FileSystem(
        access_key="test-key",
        secret_key="test-secret",
        region="eu-west-1",
        endpoint_override=options["AWS_ENDPOINT_URL"],
        scheme="http",
        allow_bucket_creation=True,
    )
    fs.create_dir(BUCKET)
    yield options, fs
    server.stop()


def _put(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    with fs.open_output_stream(f"{BUCKET}/{path}") as stream:
        stream.write(data)


def test_the_lakehouse_lists_its_tables_and_reads_their_files_on_an_s3a_root(spark, store):
    options, fs = store
    days = pa.table({"id": [1, 2, 3], "day": ["2025-03-01", "2025-03-01", "2025-03-02"]})
    for table in ("events", "pipeline_runs"):
        write_deltalake(f"s3a://{BUCKET}/lake/{table}", days, partition_by=["day"], storage_options=options)
    _put(fs, "lake/_data_docs/index.html", b"<html></html>")  # a folder that is no table

    lakehouse = Lakehouse(spark, f"s3a://{BUCKET}/lake/", storage_options=options)
    assert lakehouse.tables() == ["events", "pipeline_runs"]
    assert lakehouse.partition_rows("events", "day") == {"2025-03-01": 2, "2025-03-02": 1}

    location = TableLocation(f"s3a://{BUCKET}/lake/events", options)
    rows = [row for f in location.files() for row in location.read(f["path"], ["id"])]
    assert sorted(r["id"] for r in rows) == [1, 2, 3]


def test_an_extract_on_s3a_is_listed_and_screened_with_the_environment_s_credentials(store, monkeypatch):
    options, fs = store
    for key, value in options.items():  # as a cluster's nodes get them (variables, a role)
        monkeypatch.setenv(key, value)
    day = f"raw/calls/{corpus.DS.isoformat()}"
    rows = [corpus._row(f"G{i}", m) for i, m in enumerate(corpus.FORMATS[:3])]
    _put(fs, f"{day}/a.csv", corpus._csv([corpus.HEADER, *rows]))
    _put(fs, f"{day}/b.csv", corpus._csv([corpus.HEADER, rows[0].replace("CELL1", "Sèvres")], encoding="latin-1"))
    _put(fs, f"{day}/_c.csv", corpus._csv([corpus.HEADER, *rows]))
    _put(fs, f"{day}/notes.txt", b"not part of the extract")
    source = Source.from_config(corpus.CSV_SOURCE, "tests/calls.yaml")

    files = list_extract_files(f"s3a://{BUCKET}/{day}/*.csv")
    assert files == [f"s3a://{BUCKET}/{day}/{name}" for name in ("_c.csv", "a.csv", "b.csv")]
    hidden, good, bad = files
    assert screen_text_file(good, source) is None
    assert text_lines(good) == 4
    problem = screen_text_file(bad, source)
    assert (problem.reason, problem.lines) == ("encoding_error", 2)
    assert (hidden_file(hidden, source).reason, hidden_file(hidden, source).lines) == ("hidden_file", 4)


def test_s3a_and_local_locations_map_to_pyarrow_filesystems(store, tmp_path):
    options, _ = store
    fs, path = filesystem(f"s3a://{BUCKET}/lake/events", options)
    assert (fs.type_name, path) == ("s3", f"{BUCKET}/lake/events")
    assert (
        filesystem(f"s3n://{BUCKET}/x", {"aws_access_key_id": "k", "aws_secret_access_key": "s"})[0].type_name == "s3"
    )
    fs, path = filesystem(str(tmp_path / "raw" / ".." / "lake"))
    assert (fs.type_name, path) == ("local", str(tmp_path / "lake"))
    assert filesystem((tmp_path / "lake").as_uri())[1] == str(tmp_path / "lake")
