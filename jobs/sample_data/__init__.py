"""Deterministic sample data: raw daily extracts of a fictional mobile operator.

Layout under the output directory (ds = YYYY-MM-DD, local day of the operator):

    cdr/{ds}/cdr_{yyyymmdd}_{HH}.csv             switch CDRs, '|' delimited, one file per local hour
    billing/{ds}/billing_{yyyymmdd}.parquet      recharges, bills and payments
    crm_subscribers/{ds}/subscribers_{yyyymmdd}.csv
    crm_interactions/{ds}/interactions_{yyyymmdd}.csv
    app/{ds}/app_events_{yyyymmdd}.jsonl         self-care app/web/USSD events
    network/{ds}/qoe_{yyyymmdd}.parquet          per subscriber and cell quality of experience
    dwh/{ds}/monthly_kpis_{yyyymm}.parquet       previous month's KPIs, on the 1st of a month only
    xiva/{ds}/xiva_{yyyymmdd}.json               partner events, JSON lines
    ml_predictions/{ds}/predictions_{yyyymmdd}.csv   the data-science team's churn and next-best-offer predictions
    operator_mapping/msisdn_mapping.csv          subscriber_id, msisdn: the operator-held extract exports re-identify with
    _truth/personas.csv                          msisdn, subscriber_id, persona (never read by the pipeline)
    _manifest.json                               parameters, rows and injected defects per source and day

Usage: ``python -m jobs.sample_data --subscribers 10000 --days 7 --start 2025-03-01 --seed 42 --out data/raw``
"""

from __future__ import annotations

from jobs.sample_data.generator import DEMO_KEY, generate, main

__all__ = ["DEMO_KEY", "generate", "main"]
