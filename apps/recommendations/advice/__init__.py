"""The kinds of advice: each module computes one family of findings over a window.

Every module reads the ledger only through :mod:`apps.events.usage` and the analytics
read models (the target margin, revenue the events do not carry) and returns
:class:`~.common.Finding` objects; :mod:`apps.recommendations.services` stores them.
"""
