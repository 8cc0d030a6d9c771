"""One process of figure 6: acquire from a shared Redis bucket until the end time, and print
the wall time of every grant (when the request would leave) as JSON.

``python _limiter_worker.py KIND REDIS_URL RATE CAPACITY`` with KIND ``tunegate``
(``RateLimiter(redis)``, blocking ``acquire``) or ``pyrate`` (pyrate-limiter's
``RedisBucket``, blocking ``try_acquire``). Once set up it prints ``ready`` and reads
"START END" (``time.time()`` values shared by every worker) from stdin, so all start
together however long each took to import.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    kind, url = sys.argv[1], sys.argv[2]
    rate, capacity = float(sys.argv[3]), int(sys.argv[4])
    import redis

    grants: list[float] = []
    if kind == "tunegate":
        from tunegate import RateLimiter

        limiter = RateLimiter(url)
        limiter.configure_provider("bench6", rate, capacity)

        def acquire() -> None:
            limiter.acquire("bench6", timeout=max(0.0, end - time.time()) + 1.0)

        limiter.buckets["bench6"].stats()  # connected before "ready"

    else:
        from pyrate_limiter import Duration, Limiter, Rate, RedisBucket

        client = redis.Redis.from_url(url)
        # pyrate's Rate is "limit per interval": rate/s as a sliding 1 s log.
        bucket = RedisBucket.init([Rate(round(rate), Duration.SECOND)], client, "bench6-pyrate")
        pyrate = Limiter(bucket)

        def acquire() -> None:
            pyrate.try_acquire("bench6", blocking=True)

    print("ready", flush=True)
    start, end = (float(x) for x in sys.stdin.readline().split())
    while time.time() < start:
        time.sleep(min(0.01, max(0.0, start - time.time())))
    while True:
        try:
            acquire()
        except Exception as exc:  # a refusal past END ends the loop; any other error is told
            if time.time() < end:
                print(f"limiter worker: {exc!r}", file=sys.stderr)
            break
        now = time.time()
        if now >= end:
            break
        grants.append(now)
    print(json.dumps(grants))


if __name__ == "__main__":
    main()
