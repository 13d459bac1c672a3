"""`python -m jobs.sample_data`: see jobs.sample_data.generator.main."""

from __future__ import annotations

from jobs.sample_data.generator import main

raise SystemExit(main())
