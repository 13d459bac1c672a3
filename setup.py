import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

RESOURCES = ("conf", "templates", "sql")  # shipped inside the package as jobs/_resources/<name>


class BuildWithResources(build_py):
    """A regular (non-editable) install carries the configuration, templates and queries, so
    the installed `gamify` finds them without a checkout."""

    def run(self) -> None:
        super().run()
        root = Path(__file__).resolve().parent
        for name in RESOURCES:
            target = Path(self.build_lib) / "jobs" / "_resources" / name
            shutil.copytree(root / name, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))


setup(
    name="telco-gamification",
    version="0.1.0",
    description="Nightly Spark jobs that turn telecom subscriber activity into behavior scores, "
    "missions, badges, loyalty points and campaign triggers.",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["jobs", "jobs.*"]),
    include_package_data=True,
    install_requires=[
        "pyspark>=4.0",
        "delta-spark>=4.0",
        "deltalake>=1.4",
        "pyarrow>=18",
        "numpy>=1.26",
        "pyyaml>=6.0",
        "jsonschema>=4.18",  # the definitions' spec schemas (jobs.definitions)
        "great-expectations>=1.0",  # the quality stage runs by default
    ],
    extras_require={
        "airflow": [
            "apache-airflow>=3.0",
            "apache-airflow-providers-apache-spark>=6.0",
            # Airflow's metadata on PostgreSQL (sync and async drivers), as in production
            "psycopg2-binary>=2.9",
            "asyncpg>=0.29",
        ],
        "quality": [],  # kept so existing `.[quality]` installs still resolve
        # pytest 9.2 ignores pytest-xdist's groups (pytest-xdist#1386): shared fixtures would be built per worker
        "dev": [
            *["pytest>=8,<9.2", "pytest-xdist>=3.6", "chispa>=0.10", "polars>=1.0", "ruff>=0.6", "duckdb>=1.1"],
            # a local S3 endpoint for the object-store tests (moto's server runs on Flask)
            *["moto[s3]>=5.0", "flask>=3.0", "flask-cors>=4.0"],
        ],
    },
    entry_points={"console_scripts": ["gamify = jobs.cli:main"]},
    cmdclass={"build_py": BuildWithResources},
)
