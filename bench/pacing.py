#!/usr/bin/python3
"""pacing.py - how close paced delivery comes to the limit it keeps.

100 messages for one mailbox, 10 transports at once (as Postfix with a
process limit of 10), against the simulator:
  baseline  no limit at the simulator or in the gateway: what the machine
            delivers per second, measured in the same run;
  paced     the mailbox limited to 5 messages per 2 s (ideally 38 s: the
            last batch of 5 may start 38 s after the first),
            the simulator answering any overrun with a 4xx.
Reports both wall times, the paced run's ratio to the ideal and the
paced run's count checks (every message sent once, no 2 s window over 5).
Not a test: numbers only (tests/transport/test_pacing.py asserts the
counts).  Run as root from a build directory:
    /usr/bin/python3 ../../bench/pacing.py [BUILD]
"""
import concurrent.futures
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "transport"))
if len(sys.argv) > 1:
    os.environ["top_builddir"] = os.path.abspath(sys.argv[1])
from harness import Harness, ROUTES  # noqa: E402

N = 100


def run(rate, sim_rate):
    h = Harness(rate=rate, pacing_wait=120)
    try:
        h.sim.control("config", {"rate": sim_rate, "throttle": "4xx"})
        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
            results = list(pool.map(
                lambda i: h.run(["r%d@example.net" % i], route=ROUTES["smtp-auth"]), range(N)))
        elapsed = time.time() - t0
        recs = h.sim.state()["records"]
        times = sorted(r["received"] for r in recs)
        worst = max((sum(1 for u in times[i:] if u < t + 2.0) for i, t in enumerate(times)), default=0)
        return elapsed, sum(r.status == 0 for r in results), len(recs), worst
    finally:
        h.stop()


def main():
    base = run("10000/2s", {"count": 10000, "window": 2})
    paced = run("5/2s", {"count": 5, "window": 2})
    ideal = (N / 5 - 1) * 2.0  # the 20th batch of 5 may start 38 s after the first
    print("pacing: %d messages, 10 transports at once" % N)
    print("  baseline (no limit): %6.1f s, %d sent, %d received" % base[:3])
    print("  paced (5 per 2 s):   %6.1f s, %d sent, %d received, busiest 2 s window %d"
          % paced)
    print("  paced / ideal %.0f s: %.2f;  paced - baseline: %.1f s"
          % (ideal, paced[0] / ideal, paced[0] - base[0]))
    return 0 if paced[1] == N and paced[2] == N and paced[3] <= 5 else 1


if __name__ == "__main__":
    sys.exit(main())
