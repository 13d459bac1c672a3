"""Analyst access to the lakehouse: the views of sql/, `gamify sql`, and the nightly report."""
