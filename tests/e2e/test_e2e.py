#!/usr/bin/python3
"""test_e2e.py - the whole gateway end to end: a real Postfix on loopback
(its own directories), m365-milter and m365-transport from the build, the
Microsoft 365 simulator, swaks as the devices.  The seven scenarios of the
[e2e] issue, plus a 432 4.3.2 deferral and a queue run for [transport].
Run as is, Postfix delivers with pipe(8); tests/e2e/lmtp.sh runs it with
lmtp(8) to m365-transport -L (M365_E2E_MODE=lmtp).
"""
import concurrent.futures
import os
import re
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway import Gateway  # noqa: E402
from sandbox import wait_for  # noqa: E402 (gateway put tests/lib on the path)

BUILD = os.environ.get("top_builddir", ".")
G = None


def setUpModule():
    global G
    G = Gateway(BUILD, erp_rate="10/2s")


def tearDownModule():
    G.stop()


class EndToEnd(unittest.TestCase):
    def setUp(self):
        # Nothing left over from an earlier test.
        if not G.queue_empty():
            G.flush()
            self.assertTrue(G.wait(G.queue_empty, 60), G.queue())
        G.sim.control("reset")
        G.sim.control("config", {"rate": {"count": 30, "window": 60}, "throttle": "4xx", "rcpt_replies": {}})

    def delivered(self, n, seconds=30):
        ok = G.wait(lambda: len(G.sim.records()) >= n, seconds)
        self.assertTrue(ok, "expected %d message(s) at the simulator; queue:\n%s\nlog:\n%s" %
                        (n, G.queue(), G.maillog()[-3000:]))
        return G.sim.records()

    def test_1_scanner_direct_send(self):
        out = G.swaks("192.168.10.7", "--from", "scanner@printer.local", "--to", "alice@contoso.com",
                      "--header", 'From: "Scanner 3F" <scanner@printer.local>', "--header", "Subject: scan")
        self.assertIn("250 2.0.0 Ok: queued", out)
        rec = self.delivered(1)[0]
        self.assertEqual(rec["role"], "mx", "Direct Send goes to the MX endpoint")
        self.assertEqual(rec["mail_from"], "scanner@contoso.com")
        self.assertEqual(rec["headers"]["From"], ["Scanner 3F <scanner@contoso.com>"])
        self.assertEqual(rec["headers"]["Reply-To"], ["Scanner 3F <scanner@printer.local>"])
        self.assertNotIn("X-M365Relay-Route", rec["headers"], "the transport removed the route header")

    def test_2_sasl_app_smtp_auth_xoauth2(self):
        out = G.swaks("203.0.113.50", "--auth", "LOGIN", "--auth-user", "erp", "--auth-password", "erp-password",
                      "--from", "billing@contoso.com", "--to", "customer@example.net",
                      "--header", "From: Billing <billing@contoso.com>")
        self.assertIn("250 2.0.0 Ok: queued", out)
        rec = self.delivered(1)[0]
        self.assertEqual((rec["role"], rec["auth_user"], rec["auth_mech"]), ("smtp", "erp@contoso.com", "XOAUTH2"))
        self.assertEqual(rec["rcpt_to"], ["customer@example.net"])

    def test_3_relay_certificate_connector(self):
        out = G.swaks("192.168.10.7", "--from", "scanner@contoso.com", "--to", "partner@example.org",
                      "--header", "From: scanner@contoso.com")
        self.assertIn("250 2.0.0 Ok: queued", out)
        rec = self.delivered(1)[0]
        self.assertEqual((rec["role"], rec["connector"]), ("mx", "onprem"))
        self.assertEqual(rec["client_cert_subject"], "CN=relay.contoso.com,O=Contoso")

    def test_4_send_as_denied(self):
        def rejects():
            return len(re.findall(r"milter-reject: END-OF-MESSAGE .*5\.7\.60", G.maillog()))
        before = rejects()
        out = G.swaks("192.168.10.7", "--from", "scanner@contoso.com", "--to", "alice@contoso.com",
                      "--header", "From: ceo@contoso.com")
        self.assertIn("550 5.7.60 SMTP; Client does not have permissions to send as this sender", out)
        # smtpd logs the refusal once cleanup has dropped the message (had it
        # been queued, it would stay queued until delivered, and be recorded).
        wait_for(lambda: rejects() > before, 10, "Postfix to log the milter's 5.7.60",
                 lambda: G.maillog()[-2000:])
        self.assertTrue(G.queue_empty(), G.queue())
        self.assertEqual(G.sim.records(), [])

    def test_5_burst_paced(self):
        # 100 messages from erp@ whose limit is scaled to 10 per 2 s; the
        # simulator answers any excess with a 4xx, which would show as a deferral.
        G.sim.control("config", {"rate": {"count": 10, "window": 2}, "throttle": "4xx"})

        def one(i):
            return G.swaks("203.0.113.50", "--auth", "LOGIN", "--auth-user", "erp", "--auth-password",
                           "erp-password", "--from", "billing@contoso.com", "--to", "c%d@example.net" % i,
                           "--header", "From: billing@contoso.com", "--header", "Subject: burst %d" % i)
        t0 = time.time()
        with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
            outs = list(pool.map(one, range(100)))
        self.assertEqual(sum("250 2.0.0 Ok: queued" in o for o in outs), 100)
        recs = self.delivered(100, seconds=120)
        self.assertEqual(len(recs), 100)
        times = sorted(r["received"] for r in recs)
        worst = max(sum(1 for u in times[i:] if u < t + 2.0) for i, t in enumerate(times))
        self.assertLessEqual(worst, 10, "the limit was never exceeded at the simulator")
        self.assertEqual([r for r in G.sim.refused() if r["stage"] == "eom"], [])
        self.assertLessEqual(G.sim.state()["stats"]["max_sessions"]["erp@contoso.com"], 3)
        print("\n100 messages through Postfix in %.1f s; busiest 2 s window: %d" % (time.time() - t0, worst))

    def test_6_432_deferred_then_delivered_once(self):
        G.sim.control("fault", {"role": "smtp", "step": "eom", "action": "reply",
                                "reply": "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded [Hostname=SIM]"})
        out = G.swaks("203.0.113.50", "--auth", "LOGIN", "--auth-user", "erp", "--auth-password", "erp-password",
                      "--from", "billing@contoso.com", "--to", "customer@example.net",
                      "--header", "From: billing@contoso.com", "--header", "Subject: deferred once")
        self.assertIn("250 2.0.0 Ok: queued", out)
        self.assertTrue(G.wait(lambda: "status=deferred" in G.maillog() and "4.3.2" in G.maillog()),
                        G.maillog()[-2000:])
        self.assertIn("customer@example.net", G.queue(), "left in Postfix's queue")
        self.assertEqual(G.sim.records(), [])
        G.flush()
        recs = self.delivered(1)
        # Once it has left the queue nothing can send it again.
        self.assertTrue(G.wait(G.queue_empty), G.queue())
        self.assertEqual(len(G.sim.records()), 1, "delivered exactly once")
        self.assertEqual(recs[0]["headers"]["Subject"], ["deferred once"])

    def test_7_permanent_refusal_bounces_to_sender(self):
        G.sim.control("config", {"rcpt_replies": {"gone@example.net": {
            "reply": "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
            "count": -1}}})
        out = G.swaks("203.0.113.50", "--auth", "LOGIN", "--auth-user", "erp", "--auth-password", "erp-password",
                      "--from", "billing@contoso.com", "--to", "gone@example.net",
                      "--header", "From: billing@contoso.com", "--header", "Subject: to nobody")
        self.assertIn("250 2.0.0 Ok: queued", out)
        # Postfix bounces it; the bounce goes to billing@contoso.com, itself
        # through the gateway (Direct Send to an internal mailbox).
        recs = self.delivered(1, seconds=40)
        bounce = recs[0]
        self.assertEqual(bounce["rcpt_to"], ["billing@contoso.com"])
        self.assertEqual(bounce["mail_from"], "")
        self.assertIn("Undelivered Mail Returned to Sender", bounce["headers"]["Subject"][0])
        # pipe(8): Postfix takes the status from our first output line, the
        # text after it.  lmtp(8): our reply for this recipient.
        if G.lmtp:
            pat = (r"to=<gone@example\.net>, relay=[^ ]*private/m365lmtp\], .*dsn=5\.1\.10, "
                   r"status=bounced \(host [^ ]* said: 550 5\.1\.10 localhost said: 550 5\.1\.10 "
                   r"RESOLVER\.ADR\.RecipientNotFound")
        else:
            pat = (r"to=<gone@example\.net>, relay=m365, .*dsn=5\.1\.10, status=bounced "
                   r"\(localhost said: 550 5\.1\.10 RESOLVER\.ADR\.RecipientNotFound")
        self.assertTrue(re.search(pat, G.maillog()), G.maillog()[-2000:])
        text = re.sub(r"\s+", " ", bounce["text"])      # Postfix folds long lines
        self.assertIn("localhost said: 550 5.1.10 RESOLVER.ADR.RecipientNotFound; "
                      "Recipient not found by SMTP address lookup", text,
                      "the bounce carries Microsoft's code and text")
        self.assertIn("Status: 5.1.10", text)
        self.assertIn("gone@example.net", bounce["text"])


    def test_8_thousand_recipients(self):
        # A device's message to 1,000 recipients through Postfix with its
        # default error limits: every recipient accepted at SMTP (no 452 past
        # Microsoft's 500), Postfix splits the delivery into 50s, each
        # recipient gets exactly one copy.
        rcpts = ["r%04d@example.net" % i for i in range(1000)]
        out = G.swaks("203.0.113.50", "--auth", "LOGIN", "--auth-user", "erp", "--auth-password",
                      "erp-password", "--from", "billing@contoso.com", "--to", ",".join(rcpts),
                      "--header", "From: billing@contoso.com", "--header", "Subject: newsletter")
        self.assertIn("250 2.0.0 Ok: queued", out[-2000:])
        self.assertEqual(out.count("<-  250 2.1.5 Ok"), 1000, "every RCPT accepted (no 452 4.5.3)")
        self.assertTrue(G.wait(lambda: sum(len(r["rcpt_to"]) for r in G.sim.records()) >= 1000, 120),
                        "%d recipients at the simulator; queue:\n%s" %
                        (sum(len(r["rcpt_to"]) for r in G.sim.records()), G.queue()))
        self.assertTrue(G.wait(G.queue_empty, 60), G.queue())
        recs = G.sim.records()
        got = [a for r in recs for a in r["rcpt_to"]]
        self.assertEqual(sorted(got), rcpts, "each recipient exactly once")
        self.assertTrue(all(len(r["rcpt_to"]) <= 50 for r in recs), [len(r["rcpt_to"]) for r in recs])
        self.assertEqual({r["auth_user"] for r in recs}, {"erp@contoso.com"})

    def test_9_postfix_logs_microsofts_reply(self):
        # What an administrator greps: Postfix's line carries Microsoft's
        # own 250 reply (its message id and host), as smtp(8)'s would.
        out = G.swaks("192.168.10.7", "--from", "scanner@contoso.com", "--to", "alice@contoso.com",
                      "--header", "From: scanner@contoso.com")
        qid = re.search(r"queued as ([0-9A-Za-z]+)", out).group(1)
        self.delivered(1)
        self.assertTrue(G.wait(G.queue_empty, 30), G.queue())
        line = [l for l in G.maillog().splitlines() if qid in l and "status=sent" in l]
        self.assertEqual(len(line), 1, G.maillog()[-2000:])
        # (pipe(8) keeps about the first 100 bytes of it; lmtp(8) gives our
        # reply for the recipient, which is Microsoft's.)
        if G.lmtp:
            self.assertRegex(line[0], r"status=sent \(250 2\.0\.0 OK <[0-9a-f]+@[a-z0-9.]+> \[Hostname=")
        else:
            self.assertRegex(line[0], r"status=sent \(delivered via m365 service \(250 2\.0\.0 OK "
                                      r"<[0-9a-f]+@[a-z0-9.]+> \[Hostname=")


if __name__ == "__main__":
    unittest.main(verbosity=2)
