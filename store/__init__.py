"""The system of record behind one contract (``store.contract``): SQLite embedded, PostgreSQL shared.

Parts import ``store.contract`` only; the composition root builds a ``store.backend.Backend`` and hands
out the objects it opens.
"""
