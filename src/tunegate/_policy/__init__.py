"""Sans-IO policies: pure functions and small state machines over ``(state, now, outcome)``.

Nothing in this package sleeps, reads a clock, or touches the network or Redis; the drivers
in ``tunegate.ratelimit``, ``tunegate.breaker``, ``tunegate.retry`` and ``tunegate.cache`` do
that, once for threads and once for asyncio, around the same decisions.
"""
