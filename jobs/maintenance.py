"""Table maintenance: compaction (optionally Z-ordered), VACUUM and log checkpoints.

Runs weekly from its own DAG (or after every nightly run) and from `gamify maintain`. Compaction
never changes what a rerun replaces: writes replace rows by predicate (`replaceWhere`), and Delta
rewrites whichever files hold them, compacted or not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from jobs.config import Config, ConfigError
from jobs.lakehouse import Lakehouse, MaintenanceResult

# Delta's own guard: files removed less than 7 days ago may still be read by a long query or
# a time-travel read, so a shorter retention must be chosen on purpose.
SAFE_RETENTION_HOURS = 168


@dataclass(frozen=True)
class MaintenanceSettings:
    schedule: str | None = "0 6 * * 0"
    after_nightly: bool = False
    vacuum_retention_hours: float = SAFE_RETENTION_HOURS
    optimize: bool = True
    zorder_by: Mapping[str, Sequence[str]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, config: Config) -> MaintenanceSettings:
        raw: Mapping[str, Any] = config.get("lakehouse.maintenance") or {}
        where = config.file_of("lakehouse.maintenance")
        retention = raw.get("vacuum_retention_hours", SAFE_RETENTION_HOURS)
        if not isinstance(retention, int | float) or retention < 0:
            raise ConfigError(where, "lakehouse.maintenance.vacuum_retention_hours", "must be a number of hours >= 0")
        zorder = raw.get("zorder_by") or {}
        if not isinstance(zorder, Mapping) or not all(isinstance(v, list) for v in zorder.values()):
            raise ConfigError(where, "lakehouse.maintenance.zorder_by", "must map a table to a list of columns")
        return cls(
            schedule=raw.get("schedule", cls.schedule),
            after_nightly=bool(raw.get("after_nightly", False)),
            vacuum_retention_hours=float(retention),
            optimize=bool(raw.get("optimize", True)),
            zorder_by={str(k): tuple(v) for k, v in zorder.items()},
        )


def maintain(
    lakehouse: Lakehouse,
    settings: MaintenanceSettings,
    tables: Sequence[str] | None = None,
    retention_hours: float | None = None,
) -> list[MaintenanceResult]:
    """Maintain `tables` (default: every table under the root), one after the other."""
    present = lakehouse.tables()
    unknown = sorted(set(tables or ()) - set(present))
    if unknown:
        raise ConfigError("--tables", "-", f"no such table(s) {unknown}; tables: {present}")
    hours = settings.vacuum_retention_hours if retention_hours is None else retention_hours
    return [
        lakehouse.maintain(
            table,
            retention_hours=hours,
            zorder_by=settings.zorder_by.get(table, ()),
            optimize=settings.optimize,
        )
        for table in (tables or present)
    ]
