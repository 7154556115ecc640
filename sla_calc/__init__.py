"""Pure SLA mathematics: intervals in, figures out; no I/O and no clock."""
