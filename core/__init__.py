"""Didban's shared vocabulary: the model, the configuration, time formatting and tracking codes.

Every part (probes, collector, store, sla_calc, alerting, dashboards) and the
composition root (``didban``) may import it; it imports none of them.
"""
