from pathlib import Path

from setuptools import find_packages, setup

setup(
    name="telco-gamification",
    version="0.1.0",
    description="Nightly Spark jobs that turn telecom subscriber activity into behavior scores, "
    "missions, badges, loyalty points and campaign triggers.",
    long_description=Path(__file__).with_name("README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["jobs", "jobs.*"]),
    include_package_data=True,
    install_requires=[
        "pyspark>=4.0",
        "delta-spark>=4.0",
        "deltalake>=1.4",
        "pyarrow>=18",
        "numpy>=1.26",
        "pyyaml>=6.0",
    ],
    extras_require={
        "airflow": [
            "apache-airflow>=3.0",
            "apache-airflow-providers-apache-spark>=6.0",
        ],
        "quality": ["great-expectations>=1.0"],
        "dev": ["pytest>=8", "chispa>=0.10", "polars>=1.0", "ruff>=0.6", "duckdb>=1.1"],
    },
    entry_points={"console_scripts": ["gamify = jobs.cli:main"]},
)
