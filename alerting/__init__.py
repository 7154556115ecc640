"""Notices to staff and citizens: events → templated notices → a persistent outbox → channels."""
