#!/usr/bin/python3
"""test_trust.py - the ways around the milter, through a real Postfix.

Mail can reach m365-transport without passing m365-milter: local sendmail
when non_smtpd_milters is unset, a second smtpd listener without milters,
the milter down with milter_default_action = accept, and postsuper -r
(requeued mail keeps the route its old queue id was signed for).  On each
path a route header written by the sender is never believed: the policy
decides again from what pipe(8) passes (the client address, the SASL
login, the envelope, the headers) and Postfix logs that it did.  The
simulator must record nothing the policy would not have sent.

tests/e2e/lmtp.sh runs it again with lmtp(8) and the LMTP service
(M365_E2E_MODE=lmtp), where XFORWARD carries the client; Postfix's log
lines differ between the two, which bounced() and sent_by_policy() say.
"""
import os
import re
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gateway import Gateway  # noqa: E402

BUILD = os.environ.get("top_builddir", ".")
G = None

# What an attacker writes: SMTP AUTH as erp@'s mailbox, or relay through
# the certificate connector, whatever the gateway would decide.
AS_ERP = ("v=2; mode=smtp-auth; tenant=contoso; domain=contoso.com; submitter=erp; "
          "mailbox=erp@contoso.com")
AS_RELAY = "v=2; mode=relay; tenant=contoso; domain=contoso.com; submitter=x; connector=onprem"
# The unsigned form earlier versions believed.
AS_RELAY_V1 = "v=1; mode=relay; tenant=contoso; domain=contoso.com; submitter=x; connector=onprem"


def setUpModule():
    global G
    G = Gateway(BUILD, bypass=True)


def bounced(rcpt, dsn, text):
    """Postfix's line for a recipient the transport refused: pipe(8) logs
    our line, lmtp(8) the reply it was given with its code."""
    if G.lmtp:
        return r"to=<%s>.*dsn=%s, status=bounced \(host \S+ said: 5\d\d %s %s" % (
            re.escape(rcpt), re.escape(dsn), re.escape(dsn), text)
    return r"to=<%s>.*dsn=%s, status=bounced \(%s" % (re.escape(rcpt), re.escape(dsn), text)


def sent_by_policy(why):
    """Postfix's line for mail the policy routed, the note first (pipe(8)
    keeps about 100 bytes of our line; lmtp(8) logs our reply)."""
    if G.lmtp:
        return r"status=sent \(250 2\.0\.0 routed by the policy \(%s\): 250 2\.0\.0 OK <" % why
    return r"status=sent \(delivered via m365 service \(routed by the policy \(%s\): 250 2\.0\.0 OK <" % why


def tearDownModule():
    G.stop()


class Bypass(unittest.TestCase):
    def setUp(self):
        if not G.queue_empty():
            G.flush()
            self.assertTrue(G.wait(G.queue_empty, 60), G.queue())
        G.sim.control("reset")

    def sent_to(self, rcpt):
        return [r for r in G.sim.records() if rcpt in r["rcpt_to"]]

    def log_for(self, qid):
        return "\n".join(line for line in G.maillog().splitlines() if qid in line)

    def wait_done(self, what):
        self.assertTrue(G.wait(G.queue_empty, 60), "%s: still queued:\n%s\n%s" %
                        (what, G.queue(), G.maillog()[-3000:]))

    def queued_as(self, swaks_out):
        m = re.search(r"queued as ([0-9A-Za-z]+)", swaks_out)
        self.assertIsNotNone(m, swaks_out)
        return m.group(1)

    def test_local_sendmail_without_non_smtpd_milters(self):
        G.postconf("non_smtpd_milters =")
        try:
            msg = ("X-M365Relay-Route: %s\nFrom: ceo@contoso.com\nTo: partner@example.net\n"
                   "Subject: forged route\n\nbody\n" % AS_ERP)
            r = G.sendmail("ceo@contoso.com", ["partner@example.net"], msg)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.wait_done("local mail")
            recs = self.sent_to("partner@example.net")
            self.assertEqual(len(recs), 1, G.maillog()[-2000:])
            # The local submitter may send as @contoso.com outside, through
            # the connector: what the policy says, not erp@'s mailbox.
            self.assertEqual((recs[0]["role"], recs[0]["auth_user"], recs[0]["connector"]),
                             ("mx", None, "onprem"))
            self.assertNotIn("X-M365Relay-Route", recs[0]["headers"])
            self.assertRegex(G.maillog(), sent_by_policy(r"route not signed"))
        finally:
            G.postconf("non_smtpd_milters = inet:127.0.0.1:%d" % G.milter_port)

    def test_second_listener_without_milters(self):
        for route in (AS_RELAY_V1, AS_RELAY):
            out = G.swaks("10.20.30.40", "--from", "ceo@contoso.com", "--to", "partner@example.net",
                          "--header", "From: ceo@contoso.com", "--header", "X-M365Relay-Route: " + route,
                          port=G.bypass_port)
            qid = self.queued_as(out)
            self.wait_done("second listener")
            self.assertEqual(self.sent_to("partner@example.net"), [], "nothing went out as the CEO")
            self.assertRegex(self.log_for(qid), bounced("partner@example.net", "5.7.1",
                                                        r"Client \[10\.20\.30\.40\] is not allowed to send "
                                                        r"through this gateway"))

    def test_milter_down_with_default_action_accept(self):
        G.postconf("milter_default_action = accept")
        G.stop_milter()
        try:
            out = G.swaks("192.168.10.7", "--from", "scanner@contoso.com", "--to", "partner@example.net",
                          "--header", "From: ceo@contoso.com", "--header", "X-M365Relay-Route: " + AS_RELAY)
            qid = self.queued_as(out)
            self.wait_done("milter down")
            self.assertEqual(self.sent_to("partner@example.net"), [], "nothing went out as the CEO")
            self.assertRegex(self.log_for(qid), bounced("partner@example.net", "5.7.60",
                                                        r"SMTP; Client does not have permissions to send as "
                                                        r"this sender"))
            # The scanner's own mail still goes, decided by the policy.
            out = G.swaks("192.168.10.7", "--from", "scanner@printer.local", "--to", "alice@contoso.com",
                          "--header", "From: Scanner <scanner@printer.local>")
            qid = self.queued_as(out)
            self.wait_done("milter down, legitimate mail")
            recs = self.sent_to("alice@contoso.com")
            self.assertEqual(len(recs), 1)
            self.assertEqual(recs[0]["mail_from"], "scanner@contoso.com")
            self.assertEqual(recs[0]["headers"]["From"], ["Scanner <scanner@contoso.com>"])
            self.assertIn("routed by the policy (no route header)", self.log_for(qid))
        finally:
            G.postconf("milter_default_action = tempfail")
            G.start_milter()

    def test_postsuper_requeue(self):
        # Mail signed for its queue id, held, then requeued under a new id.
        G.postconf("defer_transports = %s" % ("lmtp" if G.lmtp else "m365"))
        try:
            out = G.swaks("192.168.10.7", "--from", "scanner@contoso.com", "--to", "alice@contoso.com",
                          "--header", "From: scanner@contoso.com")
            old = self.queued_as(out)
            self.assertTrue(G.wait(lambda: old in G.queue(), 30), G.queue())
            r = G.postsuper("-r", "ALL")
            self.assertEqual(r.returncode, 0, r.stderr)
            G.kick_pickup()
            self.assertTrue(G.wait(lambda: old not in G.queue() and "Mail queue is empty" not in G.queue(), 30),
                            G.queue())
        finally:
            G.postconf("defer_transports =")
        G.flush()
        self.wait_done("requeued mail")
        recs = self.sent_to("alice@contoso.com")
        self.assertEqual(len(recs), 1, "delivered once")
        self.assertEqual(recs[0]["role"], "mx")
        if G.lmtp:
            # Requeued mail comes back through pickup as local mail: no
            # XFORWARD, so its key is the topmost Received header's id,
            # which postsuper -r leaves as the original queue id - the one
            # the route was signed for.  The route the milter decided for
            # this very message holds; a header a sender wrote never does
            # (pickup's own Received is always topmost for new local mail).
            m = re.search(r"postfix/pickup\[\d+\]: ([0-9A-Za-z]+): .*orig_id=%s" % old, G.maillog())
            self.assertIsNotNone(m, G.maillog()[-3000:])
            self.assertRegex(self.log_for(m.group(1)), r"postfix/lmtp\[\d+\]: %s: to=<alice@contoso\.com>, "
                                                       r".*status=sent \(250 2\.0\.0 OK <" % m.group(1))
            return
        new = [line for line in G.maillog().splitlines()
               if "routed by the policy (route signed for another queue id)" in line]
        self.assertEqual(len(new), 1, G.maillog()[-3000:])
        self.assertNotIn(old, new[0], "delivered under its new queue id")


if __name__ == "__main__":
    unittest.main(verbosity=2)
