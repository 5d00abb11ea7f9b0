#!/usr/bin/python3
"""test_transport.py - m365-transport driven as pipe(8) drives it (argv,
stdin, exit status, first output line) against the Microsoft 365 simulator.

Modes, Appendix A replies -> exit codes, faults and retries with the
journal, a mixed outcome with its report.  (Pacing: test_pacing.py;
OAuth: test_oauth.py; a real Postfix: postfix.sh.)
"""
import os
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, ROUTES  # noqa: E402

H = None


def setUpModule():
    global H
    H = Harness(timeout=2)


def tearDownModule():
    H.stop()


class Base(unittest.TestCase):
    def setUp(self):
        H.sim.control("reset")
        H.sim.control("config", {"basic_auth": "allowed", "smtp_auth_disabled": False, "send_as_mode": "submission",
                                 "concurrency": 3, "recipient_quota": {"count": 10000, "window": 86400},
                                 "reject_direct_send": False, "rcpt_replies": {}, "max_size": 157286400,
                                 "connectors": [{"name": "onprem", "type": "certificate",
                                                 "tls_sender_certificate_name": "relay.contoso.com"}]})

    def deliver(self, rcpts, mode="smtp-auth", sender="scanner@contoso.com", **kw):
        return H.run(rcpts, sender=sender, route=ROUTES[mode], **kw)

    def assertExit(self, r, status, prefix):
        self.assertEqual(r.status, status, r)
        self.assertTrue(r.first_line.startswith(prefix), r)


class Modes(Base):
    def test_smtp_auth_basic(self):
        r = self.deliver(["a@example.net"])
        self.assertExit(r, 0, "2.0.0")
        rec = H.records()[-1]
        self.assertEqual((rec["role"], rec["auth_user"], rec["auth_mech"]), ("smtp", "scanner@contoso.com", "LOGIN"))
        self.assertIn(rec["tls_version"], ("TLSv1.2", "TLSv1.3"))
        self.assertIn("Basic authentication, which Microsoft turns off by default at the end of 2026", r.log)

    def test_smtp_auth_oauth(self):
        r = self.deliver(["a@example.net"], mode="oauth", sender="billing@contoso.com")
        self.assertExit(r, 0, "2.0.0")
        rec = H.records()[-1]
        self.assertEqual((rec["auth_user"], rec["auth_mech"], rec["app_id"]), ("erp@contoso.com", "XOAUTH2", "cid"))

    def test_direct_send(self):
        r = self.deliver(["alice@contoso.com", "bob@fabrikam.com"], mode="direct-send")
        self.assertExit(r, 0, "2.0.0")
        rec = H.records()[-1]
        self.assertEqual((rec["role"], rec["auth_user"], rec["connector"]), ("mx", None, None))
        self.assertEqual(rec["rcpt_to"], ["alice@contoso.com", "bob@fabrikam.com"])

    def test_relay_certificate(self):
        r = self.deliver(["a@example.net"], mode="relay")
        self.assertExit(r, 0, "2.0.0")
        rec = H.records()[-1]
        self.assertEqual(rec["connector"], "onprem")
        self.assertEqual(rec["client_cert_subject"], "CN=relay.contoso.com,O=Contoso")

    def test_relay_ip(self):
        H.sim.control("config", {"connectors": [{"name": "byip", "type": "ip", "sender_ips": ["127.0.0.1/32"]}]})
        r = self.deliver(["a@example.net"], mode="relay-ip")
        self.assertExit(r, 0, "2.0.0")
        rec = H.records()[-1]
        self.assertEqual((rec["connector"], rec["client_cert_subject"]), ("byip", None))

    def test_wire_form(self):
        body = ".leading dot\nline\r\n..two dots\n8bit: \xe9t\xe9\n"
        msg = H.message(route=ROUTES["smtp-auth"], body=body)
        r = H.run(["a@example.net"], sender="scanner@contoso.com", msg=msg)
        self.assertExit(r, 0, "2.0.0")
        rec = H.records()[-1]
        self.assertNotIn("X-M365Relay-Route", rec["headers"], "the route header is removed before sending")
        import hashlib
        sent = msg.split("\n\n", 1)
        expect = (sent[0].split("\n", 1)[1] + "\n\n" + sent[1]).replace("\r\n", "\n").replace("\n", "\r\n")
        self.assertEqual(rec["body_sha256"], hashlib.sha256(expect.encode()).hexdigest(),
                         "CRLF line ends, dot-stuffing undone by the server, 8-bit intact")

    def test_size_refused_before_sending(self):
        H.sim.control("config", {"max_size": 2000})
        msg = H.message(route=ROUTES["smtp-auth"], body="x" * 5000 + "\n")
        r = H.run(["a@example.net"], sender="scanner@contoso.com", msg=msg)
        self.assertExit(r, 69, "5.3.4 message of")
        self.assertEqual(H.records(), [])

    def test_no_route_without_submitter_defers(self):
        r = H.run(["a@example.net"], sender="scanner@contoso.com")
        self.assertExit(r, 75, "4.7.1 no X-M365Relay-Route header")

    def test_malformed_route_defers(self):
        r = H.run(["a@example.net"], sender="scanner@contoso.com", route="v=1; mode=teleport")
        self.assertExit(r, 75, "4.3.5 malformed X-M365Relay-Route header")


class Replies(Base):
    """Each reply of the reference's Appendix A -> exit status and first line."""

    def test_smtp_auth_disabled(self):
        H.sim.control("config", {"smtp_auth_disabled": True})
        r = self.deliver(["a@example.net"])
        self.assertExit(r, 75, "4.7.139 localhost said: 535 5.7.139 Authentication unsuccessful, "
                               "SmtpClientAuthentication is disabled for the Tenant.")
        self.assertIn("hint: SMTP AUTH is disabled for the tenant or the mailbox: Set-CASMailbox", r.log)

    def test_basic_disabled(self):
        H.sim.control("config", {"basic_auth": "disabled"})
        r = self.deliver(["a@example.net"])
        self.assertExit(r, 75, "4.7.139 localhost said: 535 5.7.139 Authentication unsuccessful, basic authentication is disabled.")

    def test_basic_retired(self):
        H.sim.control("config", {"basic_auth": "retired"})
        r = self.deliver(["a@example.net"])
        self.assertExit(r, 75, "4.7.30 localhost said: 550 5.7.30 Basic authentication is not supported for Client Submission.")
        self.assertIn("give the mailbox an app (OAuth)", r.log)

    def test_send_as_denied(self):
        r = self.deliver(["a@example.net"], frm="ceo@contoso.com")
        self.assertExit(r, 75, "4.2.252 localhost said: 554 5.2.252 SendAsDenied; scanner@contoso.com not allowed to send as ceo@contoso.com")
        self.assertIn("Add-RecipientPermission", r.log)

    def test_send_as_legacy(self):
        H.sim.control("config", {"send_as_mode": "legacy"})
        r = self.deliver(["a@example.net"], sender="ceo@contoso.com")
        self.assertExit(r, 75, "4.7.60 localhost said: 550 5.7.60 SMTP; Client does not have permissions to send as this sender")

    def test_thread_limit(self):
        H.sim.control("config", {"concurrency": 0})
        r = self.deliver(["a@example.net"])
        self.assertExit(r, 75, "4.3.2 localhost said: 432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded")

    def test_quota(self):
        H.sim.control("config", {"recipient_quota": {"count": 1, "window": 86400}})
        r = self.deliver(["a@example.net", "b@example.net"])
        self.assertExit(r, 75, "4.2.0 localhost said: 554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException")

    def test_relay_denied(self):
        r = self.deliver(["x@gmail.com"], mode="direct-send")
        self.assertExit(r, 75, "4.7.64 localhost said: 550 5.7.64 TenantAttribution; Relay Access Denied")

    def test_reject_direct_send(self):
        H.sim.control("config", {"reject_direct_send": True})
        r = self.deliver(["alice@contoso.com"], mode="direct-send")
        self.assertExit(r, 75, "4.7.68 localhost said: 550 5.7.68 TenantInboundAttribution; Direct Send not allowed")

    def test_transient(self):
        H.sim.control("fault", {"step": "mail", "action": "reply"})
        r = self.deliver(["a@example.net"])
        self.assertExit(r, 75, "4.7.0 localhost said: 451 4.7.0 Temporary server error. Please try again later. PRX4")

    def test_recipient_refused_bounces(self):
        H.sim.control("config", {"rcpt_replies": {"gone@example.net": {"reply": "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found", "count": -1}}})
        r = self.deliver(["gone@example.net"])
        self.assertExit(r, 69, "5.1.10 localhost said: 550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found")

    def test_bad_password(self):
        H.files["scanner.pw"] = "wrong\n"
        with open(os.path.join(H.work, "scanner.pw"), "w") as f:
            f.write("wrong\n")
        try:
            r = self.deliver(["a@example.net"])
            self.assertExit(r, 75, "4.7.139 localhost said: 535 5.7.139 Authentication unsuccessful, the user credentials were incorrect.")
        finally:
            with open(os.path.join(H.work, "scanner.pw"), "w") as f:
                f.write("pw\n")

    def test_unreachable(self):
        H.configure(timeout=2)
        conf = open(H.conf).read()
        with open(H.conf, "w") as f:
            f.write(conf.replace("smtp_port = %d" % H.sim.ports["smtp"], "smtp_port = 1"))
        try:
            r = self.deliver(["a@example.net"])
            self.assertExit(r, 75, "4.4.2 cannot connect to localhost port 1")
        finally:
            with open(H.conf, "w") as f:
                f.write(conf)


class Faults(Base):
    def test_drop_after_rcpt_then_retry(self):
        H.sim.control("fault", {"step": "after_rcpt", "action": "drop"})
        r = self.deliver(["a@example.net"], qid="QDROPRCPT")
        self.assertExit(r, 75, "4.4.2")
        self.assertEqual(H.records(), [])
        r = self.deliver(["a@example.net"], qid="QDROPRCPT")
        self.assertExit(r, 0, "2.0.0")
        self.assertEqual(len(H.records()), 1, "delivered exactly once")

    def test_drop_after_data_may_duplicate(self):
        # The message reached Microsoft but the reply was lost: the retry
        # cannot know, and sends again (RFC 5321 section 6.1 accepts this).
        H.sim.control("fault", {"step": "after_data", "action": "drop"})
        r = self.deliver(["a@example.net"], qid="QDROPDATA")
        self.assertExit(r, 75, "4.4.2")
        r = self.deliver(["a@example.net"], qid="QDROPDATA")
        self.assertExit(r, 0, "2.0.0")
        recs = H.records()
        self.assertEqual(len(recs), 2)
        self.assertTrue(recs[0]["reply_dropped"])

    def test_stall_past_timeout(self):
        H.sim.control("fault", {"step": "rcpt", "action": "stall", "seconds": 4})
        t0 = time.time()
        r = self.deliver(["a@example.net"], qid="QSTALL")
        self.assertExit(r, 75, "4.4.2 timeout reading from localhost")
        self.assertLess(time.time() - t0, 4, "gave up at the 2 s timeout")
        time.sleep(4)
        r = self.deliver(["a@example.net"], qid="QSTALL")
        self.assertExit(r, 0, "2.0.0")
        self.assertEqual(len(H.records()), 1)

    def test_transient_4xx_then_retry(self):
        H.sim.control("fault", {"step": "eom", "action": "reply", "reply": "451 4.7.0 Temporary server error. Please try again later. PRX4"})
        r = self.deliver(["a@example.net", "b@example.net"], qid="QTEMP")
        self.assertExit(r, 75, "4.7.0")
        r = self.deliver(["a@example.net", "b@example.net"], qid="QTEMP")
        self.assertExit(r, 0, "2.0.0")
        self.assertEqual([rec["rcpt_to"] for rec in H.records()], [["a@example.net", "b@example.net"]])


class MixedOutcome(Base):
    def test_one_5xx_one_4xx_one_ok(self):
        H.sim.control("config", {"rcpt_replies": {
            "gone@example.net": {"reply": "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found", "count": -1},
            "later@example.net": {"reply": "451 4.4.4 Temporary server error. Please try again later ATTR1", "count": 1}}})
        rcpts = ["ok@example.net", "gone@example.net", "later@example.net"]
        r = self.deliver(rcpts, qid="QMIXED")
        self.assertExit(r, 75, "4.4.4 localhost said: 451 4.4.4")
        self.assertEqual([rec["rcpt_to"] for rec in H.records()], [["ok@example.net"]])
        self.assertEqual(H.dsns(), [], "no report while a recipient is still pending")
        # The retry: ok@ is not sent again, gone@ is not retried, later@ goes.
        r = self.deliver(rcpts, qid="QMIXED")
        self.assertExit(r, 0, "2.0.0 delivered to 2 recipient(s), 1 refused (reported)")
        self.assertIn("to=<ok@example.net> already accepted in an earlier attempt: skipped", r.log)
        self.assertEqual([rec["rcpt_to"] for rec in H.records()], [["ok@example.net"], ["later@example.net"]])
        dsns = H.dsns()
        self.assertEqual(len(dsns), 1)
        args, msg = dsns[0]
        self.assertEqual(args, "-i -f  -- scanner@contoso.com")
        self.assertIn("Final-Recipient: rfc822; gone@example.net", msg)
        self.assertIn("Status: 5.1.10", msg)
        self.assertIn("550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found", msg)
        self.assertNotIn("ok@example.net>:", msg)
        self.assertNotIn("later@example.net", msg.split("Content-Type: text/rfc822-headers")[0])
        # Finished: the journal entry is gone, a re-run would send again.
        self.assertEqual(len(H.records()), 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
