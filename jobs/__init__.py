"""telco-gamification: nightly Spark jobs that turn subscriber activity into scores, missions and rewards."""

__version__ = "0.1.0"
