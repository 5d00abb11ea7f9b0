#!/usr/bin/python3
"""test_pacing.py - 100 messages for one mailbox whose limit is 5 per 2 s,
run by 10 concurrent transports (as Postfix would with a process limit of
10): all delivered, no 2-second window at the simulator holds more than 5,
never more than the session limit (3) at once.  The simulator answers any
excess with a 4xx, so an overrun would also show as a deferral.  How close
the run comes to the ideal 40 s is a measurement, not a test: bench/pacing.py.
"""
import concurrent.futures
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, ROUTES  # noqa: E402


class Pacing(unittest.TestCase):
    def test_hundred_messages(self):
        h = Harness(rate="5/2s", pacing_wait=120)
        try:
            h.sim.control("config", {"rate": {"count": 5, "window": 2}, "throttle": "4xx"})
            t0 = time.time()
            with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
                results = list(pool.map(
                    lambda i: h.run(["r%d@example.net" % i], route=ROUTES["smtp-auth"]), range(100)))
            elapsed = time.time() - t0
            bad = [r for r in results if r.status != 0]
            self.assertEqual(bad, [], "every message delivered at the first attempt")
            state = h.sim.state()
            recs = state["records"]
            self.assertEqual(len(recs), 100)
            times = sorted(r["received"] for r in recs)
            worst = max(sum(1 for u in times[i:] if u < t + 2.0) for i, t in enumerate(times))
            self.assertLessEqual(worst, 5, "no 2-second window holds more than 5")
            self.assertLessEqual(state["stats"]["max_sessions"]["scanner@contoso.com"], 3)
            self.assertEqual(state["refused"], [])
            ideal = 40.0
            print("\n100 messages in %.1f s (ideal %.0f s, ratio %.2f; bench/pacing.py measures "
                  "it); busiest 2 s window: %d; most sessions at once: %d"
                  % (elapsed, ideal, elapsed / ideal, worst,
                     state["stats"]["max_sessions"]["scanner@contoso.com"]))
        finally:
            h.stop()

    def test_delivery_longer_than_the_window(self):
        """A message whose transfer outlasts the window keeps its place: the
        simulator stalls one end of data for 3 s in a 2 s window; the others
        wait for it instead of starting when its admission leaves the window."""
        h = Harness(rate="2/2s", pacing_wait=120)
        try:
            h.sim.control("config", {"rate": {"count": 2, "window": 2}, "throttle": "4xx"})
            h.sim.control("fault", {"step": "eom", "action": "stall", "seconds": 3})
            with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
                results = list(pool.map(
                    lambda i: h.run(["s%d@example.net" % i], route=ROUTES["smtp-auth"]), range(6)))
            bad = [r for r in results if r.status != 0]
            self.assertEqual(bad, [], "every message delivered at the first attempt")
            state = h.sim.state()
            self.assertEqual(state["refused"], [])
            times = sorted(r["accepted"] for r in state["records"])
            self.assertEqual(len(times), 6)
            worst = max(sum(1 for u in times[i:] if u < t + 2.0) for i, t in enumerate(times))
            print("\n6 messages, one stalled 3 s in a 2 s window: busiest window %d" % worst)
            self.assertLessEqual(worst, 2, "no 2-second window holds more than 2")
        finally:
            h.stop()

    def test_recipients_longer_than_the_window(self):
        """Recipients in flight keep their place too: 4 recipients per 2 s,
        messages of 2, one end of data stalled 3 s.  Counted from their
        admission, the stalled message's recipients left our window while
        the simulator had yet to count them, and it refused the next
        message with 554 5.2.0 (a soak in LMTP mode found it); counted from
        when they went, no 2-second window at the simulator holds more
        than 4 and nothing is refused."""
        h = Harness(rate="100/60s", recipients="4/2s", pacing_wait=120)
        try:
            h.sim.control("config", {"recipient_quota": {"count": 4, "window": 2}, "throttle": "4xx"})
            h.sim.control("fault", {"step": "eom", "action": "stall", "seconds": 3})
            with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
                results = list(pool.map(
                    lambda i: h.run(["q%da@example.net" % i, "q%db@example.net" % i],
                                    route=ROUTES["smtp-auth"]), range(6)))
            bad = [r for r in results if r.status != 0]
            self.assertEqual(bad, [], "every message delivered at the first attempt")
            state = h.sim.state()
            self.assertEqual(state["refused"], [])
            recs = sorted((r["accepted"], len(r["rcpt_to"])) for r in state["records"])
            self.assertEqual(len(recs), 6)
            worst = max(sum(n for u, n in recs[i:] if u < t + 2.0) for i, (t, _) in enumerate(recs))
            print("\n6 messages of 2 recipients, one stalled 3 s, 4 recipients per 2 s: "
                  "busiest window %d" % worst)
            self.assertLessEqual(worst, 4, "no 2-second window holds more than 4 recipients")
        finally:
            h.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
