#!/usr/bin/python3
"""test_transport.py - m365-transport driven as pipe(8) drives it (argv,
stdin, exit status, first output line) against the Microsoft 365 simulator.
With M365_TRANSPORT_MODE=lmtp (transport-lmtp.sh) every delivery goes
through m365-transport -L instead, spoken to as lmtp(8) does (harness.py
run_lmtp); where the two modes differ by design - pipe(8)'s command line,
its one exit status for all recipients, the transport's own report - a
test says what it expects of each, or runs in pipe(8) mode only, saying
why.

Modes, Appendix A replies -> exit codes, faults and retries with the
journal, a mixed outcome with its report.  (Pacing: test_pacing.py;
OAuth: test_oauth.py; a real Postfix: postfix.sh.)
"""
import os
import pwd
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import MODE, Harness, ROUTES, sign_route  # noqa: E402
from lmdbctl import Lmdb  # noqa: E402
from sandbox import USER, wait_for  # noqa: E402

H = None



def setUpModule():
    global H
    H = Harness(timeout=2)


def tearDownModule():
    H.stop()


class Base(unittest.TestCase):
    def setUp(self):
        H.reset()
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

    def assertRetryFinished(self, r, n, skipped, left, note=""):
        """The retry of a message some of whose recipients were settled:
        pipe(8) gives it all n again and the journal skips the accepted
        one (the transport's summary line); Postfix gives the LMTP service
        only those left."""
        if MODE == "lmtp":
            self.assertExit(r, 0, "250 2.0.0 OK")
            self.assertEqual(sorted(r.replies), sorted(left), r)
        else:
            self.assertExit(r, 0, "2.0.0 delivered to %d recipient(s)%s" % (n, note))
            self.assertIn("to=<%s> already accepted in an earlier attempt: skipped" % skipped, r.log)


class Modes(Base):
    def test_smtp_auth_basic(self):
        r = self.deliver(["a@example.net"])
        self.assertExit(r, 0, "250 2.0.0 OK")
        rec = H.records()[-1]
        self.assertEqual((rec["role"], rec["auth_user"], rec["auth_mech"]), ("smtp", "scanner@contoso.com", "LOGIN"))
        self.assertIn(rec["tls_version"], ("TLSv1.2", "TLSv1.3"))
        self.assertIn("Basic authentication, which Microsoft turns off by default at the end of 2026", r.log)

    def test_smtp_auth_oauth(self):
        r = self.deliver(["a@example.net"], mode="oauth", sender="billing@contoso.com")
        self.assertExit(r, 0, "250 2.0.0 OK")
        rec = H.records()[-1]
        self.assertEqual((rec["auth_user"], rec["auth_mech"], rec["app_id"]), ("erp@contoso.com", "XOAUTH2", "cid"))

    def test_direct_send(self):
        r = self.deliver(["alice@contoso.com", "bob@fabrikam.com"], mode="direct-send")
        self.assertExit(r, 0, "250 2.0.0 OK")
        rec = H.records()[-1]
        self.assertEqual((rec["role"], rec["auth_user"], rec["connector"]), ("mx", None, None))
        self.assertEqual(rec["rcpt_to"], ["alice@contoso.com", "bob@fabrikam.com"])

    def test_relay_certificate(self):
        r = self.deliver(["a@example.net"], mode="relay")
        self.assertExit(r, 0, "250 2.0.0 OK")
        rec = H.records()[-1]
        self.assertEqual(rec["connector"], "onprem")
        self.assertEqual(rec["client_cert_subject"], "CN=relay.contoso.com,O=Contoso")

    def test_relay_ip(self):
        H.sim.control("config", {"connectors": [{"name": "byip", "type": "ip", "sender_ips": ["127.0.0.1/32"]}]})
        r = self.deliver(["a@example.net"], mode="relay-ip")
        self.assertExit(r, 0, "250 2.0.0 OK")
        rec = H.records()[-1]
        self.assertEqual((rec["connector"], rec["client_cert_subject"]), ("byip", None))

    def test_wire_form(self):
        body = ".leading dot\nline\r\n..two dots\n8bit: \xe9t\xe9\n"
        msg = H.message(body=body)
        r = H.run(["a@example.net"], sender="scanner@contoso.com", msg=msg, route=ROUTES["smtp-auth"])
        self.assertExit(r, 0, "250 2.0.0 OK")
        rec = H.records()[-1]
        self.assertNotIn("X-M365Relay-Route", rec["headers"], "the route header is removed before sending")
        import hashlib
        sent = msg.split("\n\n", 1)
        expect = (sent[0] + "\n\n" + sent[1]).replace("\r\n", "\n").replace("\n", "\r\n")
        self.assertEqual(rec["body_sha256"], hashlib.sha256(expect.encode()).hexdigest(),
                         "CRLF line ends, dot-stuffing undone by the server, 8-bit intact")

    def test_mbox_from_line_is_not_sent(self):
        # A pipe(8) F flag or a Sendmail mailer without F=n puts an mbox
        # "From " line first; once passed to Microsoft as a header line.
        qid = H.new_qid()
        msg = H.message(body="body\n")
        raw = "From scanner@contoso.com Wed Dec  2 05:00:00 2026\nX-M365Relay-Route: %s\n%s" % (
            sign_route(ROUTES["smtp-auth"], qid, "scanner@contoso.com"), msg)
        r = H.run(["a@example.net"], sender="scanner@contoso.com", msg=raw, qid=qid)
        self.assertExit(r, 0, "250 2.0.0 OK")
        self.assertNotIn("route not trusted", r.log)
        rec = H.records()[-1]
        import hashlib
        self.assertEqual(rec["body_sha256"], hashlib.sha256(msg.replace("\n", "\r\n").encode()).hexdigest(),
                         "the message as sent starts with its first header field")
        self.assertEqual(rec["headers"]["Subject"], ["test"])

    def test_size_refused_before_sending(self):
        H.sim.control("config", {"max_size": 2000})
        msg = H.message(body="x" * 5000 + "\n")
        r = H.run(["a@example.net"], sender="scanner@contoso.com", msg=msg, route=ROUTES["smtp-auth"])
        self.assertExit(r, 69, "5.3.4 message of")
        self.assertEqual(H.records(), [])

    @unittest.skipIf(MODE == "lmtp", "pipe(8) only: the hint is about its -a argument; LMTP without ADDR is local mail (test_lmtp)")
    def test_no_route_and_no_client_address_defers(self):
        # Without -a, local mail and mail from an unknown client look alike.
        r = H.run(["a@example.net"], sender="scanner@contoso.com")
        self.assertExit(r, 75, "4.3.5 not sent: no X-M365Relay-Route header")
        self.assertIn("add -a ${client_address}", r.first_line)
        self.assertEqual(H.records(), [])

    def test_malformed_route_is_not_trusted(self):
        r = H.run(["a@example.net"], sender="scanner@contoso.com", raw_route="v=1; mode=teleport",
                  client="203.0.113.9")
        self.assertExit(r, 69, "5.7.1 Client [203.0.113.9] is not allowed")
        self.assertIn("route not trusted: malformed X-M365Relay-Route header (unknown route version)", r.log)
        self.assertEqual(H.records(), [])


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


class StoreFull(Base):
    def test_map_full_at_delivery_loses_nothing(self):
        # The LMDB map full while a message is delivered (the soak's
        # map-full fault): the journal cannot record the recipient, which
        # the log says with its consequence, and the mail goes all the
        # same; nothing of this queue id is left in the journal.  (A drop
        # that fails after a successful write is said too, "journal: entry
        # kept"; the soak's accounting fails on any entry left without it.)
        H.run(["warm@contoso.com"], route=ROUTES["direct-send"])  # the store exists
        path = os.path.join(H.state, "journal.mdb")
        db = Lmdb(path)
        try:
            db.fill()
            r = H.run(["alice@contoso.com"], route=ROUTES["direct-send"])
        finally:
            db.unfill()
            db.close()
        self.assertExit(r, 0, "")
        self.assertEqual(H.records()[-1]["rcpt_to"], ["alice@contoso.com"])
        self.assertIn("%s: journal: LMDB journal write: MDB_MAP_FULL" % r.qid, r.log)
        self.assertIn("store full: raise store { size }", r.log)
        db = Lmdb(path)
        try:
            self.assertEqual([k for k in db.keys(b"j:") if r.qid.encode() in k], [])
        finally:
            db.close()


class Faults(Base):
    def test_drop_after_rcpt_then_retry(self):
        H.sim.control("fault", {"step": "after_rcpt", "action": "drop"})
        r = self.deliver(["a@example.net"], qid="QDROPRCPT")
        self.assertExit(r, 75, "4.4.2")
        self.assertEqual(H.records(), [])
        r = self.deliver(["a@example.net"], qid="QDROPRCPT")
        self.assertExit(r, 0, "250 2.0.0 OK")
        self.assertEqual(len(H.records()), 1, "delivered exactly once")

    def test_drop_after_data_may_duplicate(self):
        # The message reached Microsoft but the reply was lost: the retry
        # cannot know, and sends again (RFC 5321 section 6.1 accepts this).
        H.sim.control("fault", {"step": "after_data", "action": "drop"})
        r = self.deliver(["a@example.net"], qid="QDROPDATA")
        self.assertExit(r, 75, "4.4.2")
        r = self.deliver(["a@example.net"], qid="QDROPDATA")
        self.assertExit(r, 0, "250 2.0.0 OK")
        recs = H.records()
        self.assertEqual(len(recs), 2)
        self.assertTrue(recs[0]["reply_dropped"])

    def test_stall_past_timeout(self):
        H.sim.control("fault", {"step": "rcpt", "action": "stall", "seconds": 4})
        t0 = time.time()
        r = self.deliver(["a@example.net"], qid="QSTALL")
        self.assertExit(r, 75, "4.4.2 timeout reading from localhost")
        self.assertLess(time.time() - t0, 4, "gave up at the 2 s timeout")
        # The simulator ends a stall when the client hangs up: the session
        # the transport gave up on is gone before the 4 s are over.
        wait_for(lambda: H.sim.state()["stats"]["open_sessions"].get("scanner@contoso.com", 0) == 0, 10,
                 "the simulator to end the stalled session", lambda: repr(H.sim.state()["stats"]))
        r = self.deliver(["a@example.net"], qid="QSTALL")
        self.assertExit(r, 0, "250 2.0.0 OK")
        self.assertEqual(len(H.records()), 1)

    def test_transient_4xx_then_retry(self):
        H.sim.control("fault", {"step": "eom", "action": "reply", "reply": "451 4.7.0 Temporary server error. Please try again later. PRX4"})
        r = self.deliver(["a@example.net", "b@example.net"], qid="QTEMP")
        self.assertExit(r, 75, "4.7.0")
        r = self.deliver(["a@example.net", "b@example.net"], qid="QTEMP")
        self.assertExit(r, 0, "250 2.0.0 OK")
        self.assertEqual([rec["rcpt_to"] for rec in H.records()], [["a@example.net", "b@example.net"]])


class MixedOutcome(Base):
    def test_queue_id_given_again_to_another_message(self):
        """Postfix's short queue ids are an inode number and microseconds,
        so one comes back for another message.  The journal is keyed by the
        queue id and the message's fingerprint: an entry left by one
        message (its other recipient still to retry) never makes another
        message with that queue id skip a recipient as "already accepted"
        - which would be mail reported sent and never sent."""
        H.sim.control("config", {"rcpt_replies": {
            "later@example.net": {"reply": "451 4.4.4 Temporary server error. Please try again later ATTR1",
                                  "count": 1}}})
        r = self.deliver(["ok@example.net", "later@example.net"], qid="QAGAIN")
        self.assertExit(r, 75, "4.4.4")
        other = H.message(frm="scanner@contoso.com", to="ok@example.net", subject="another message")
        r = self.deliver(["ok@example.net"], qid="QAGAIN", msg=other)
        self.assertExit(r, 0, "250 2.0.0 OK")
        self.assertNotIn("already accepted", r.log)
        self.assertEqual([rec["rcpt_to"] for rec in H.records()], [["ok@example.net"], ["ok@example.net"]])
        # The first message's retry still finds its own entry.
        r = self.deliver(["ok@example.net", "later@example.net"], qid="QAGAIN")
        self.assertRetryFinished(r, 2, "ok@example.net", ["later@example.net"])
        self.assertEqual([rec["rcpt_to"] for rec in H.records()],
                         [["ok@example.net"], ["ok@example.net"], ["later@example.net"]])

    def test_split_deliveries_of_one_queue_file(self):
        """Postfix splits a queue file with many recipients into deliveries
        (the destination recipient limit) that may run at once.  One that
        finishes forgets its own recipients' journal entries only: the
        other, deferred with one recipient accepted, still finds that one
        on its retry and does not send to it again."""
        H.sim.control("config", {"rcpt_replies": {
            "later@example.net": {"reply": "451 4.4.4 Temporary server error. Please try again later ATTR1",
                                  "count": 1}}})
        msg = H.message(frm="scanner@contoso.com", to="ok@example.net, b@example.net, later@example.net")
        r = self.deliver(["ok@example.net", "later@example.net"], qid="QSPLIT", msg=msg)
        self.assertExit(r, 75, "4.4.4")
        r = self.deliver(["b@example.net"], qid="QSPLIT", msg=msg)
        self.assertExit(r, 0, "250 2.0.0 OK")
        r = self.deliver(["ok@example.net", "later@example.net"], qid="QSPLIT", msg=msg)
        self.assertRetryFinished(r, 2, "ok@example.net", ["later@example.net"])
        self.assertEqual([rec["rcpt_to"] for rec in H.records()],
                         [["ok@example.net"], ["b@example.net"], ["later@example.net"]])

    @unittest.skipIf(MODE == "lmtp", "pipe(8) only: its F flag writes the From line")
    def test_mbox_from_line_differs_on_retry(self):
        """pipe(8) with flag F puts an mbox "From " line first, with the time
        of the attempt: the journal's key leaves it out, so the retry still
        finds what was accepted."""
        H.sim.control("config", {"rcpt_replies": {
            "later@example.net": {"reply": "451 4.4.4 Temporary server error. Please try again later ATTR1",
                                  "count": 1}}})
        route = "X-M365Relay-Route: %s\n" % sign_route(ROUTES["smtp-auth"], "QFROMLINE", "scanner@contoso.com")
        body = route + H.message(frm="scanner@contoso.com", to="ok@example.net, later@example.net")
        r = self.deliver(["ok@example.net", "later@example.net"], qid="QFROMLINE",
                         msg="From scanner@contoso.com  Thu Dec  3 04:00:00 2026\n" + body)
        self.assertExit(r, 75, "4.4.4")
        r = self.deliver(["ok@example.net", "later@example.net"], qid="QFROMLINE",
                         msg="From scanner@contoso.com  Thu Dec  3 04:10:00 2026\n" + body)
        self.assertExit(r, 0, "2.0.0 delivered to 2 recipient(s)")
        self.assertIn("to=<ok@example.net> already accepted in an earlier attempt: skipped", r.log)
        self.assertEqual([rec["rcpt_to"] for rec in H.records()], [["ok@example.net"], ["later@example.net"]])

    def test_one_5xx_one_4xx_one_ok(self):
        H.sim.control("config", {"rcpt_replies": {
            "gone@example.net": {"reply": "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found", "count": -1},
            "later@example.net": {"reply": "451 4.4.4 Temporary server error. Please try again later ATTR1", "count": 1}}})
        rcpts = ["ok@example.net", "gone@example.net", "later@example.net"]
        r = self.deliver(rcpts, qid="QMIXED")
        self.assertExit(r, 75, "4.4.4 localhost said: 451 4.4.4")
        self.assertEqual([rec["rcpt_to"] for rec in H.records()], [["ok@example.net"]])
        self.assertEqual(H.dsns(), [], "no report while a recipient is still pending")
        if MODE == "lmtp":
            # Each recipient its reply: Postfix bounces gone@ with
            # Microsoft's words and writes the report itself.
            self.assertEqual(r.replies["ok@example.net"][0], 250, r.replies)
            self.assertEqual(r.replies["gone@example.net"][0], 550, r.replies)
            self.assertIn("550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found",
                          r.replies["gone@example.net"][1])
        # The retry: ok@ is not sent again, gone@ is not retried, later@ goes.
        r = self.deliver(rcpts, qid="QMIXED")
        self.assertRetryFinished(r, 2, "ok@example.net", ["later@example.net"], ", 1 refused (reported)")
        self.assertEqual([rec["rcpt_to"] for rec in H.records()], [["ok@example.net"], ["later@example.net"]])
        if MODE == "lmtp":
            self.assertEqual(H.dsns(), [], "the report is Postfix's")
            return
        dsns = H.dsns()
        self.assertEqual(len(dsns), 1)
        args, msg = dsns[0]
        self.assertEqual(args, "-i -f  -- scanner@contoso.com")
        self.assertIn("Final-Recipient: rfc822; gone@example.net", msg)
        self.assertIn("Status: 5.1.10", msg)
        self.assertIn("550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found", msg)
        self.assertNotIn("ok@example.net>:", msg)
        # The original headers are there, the route header is not (it names
        # the gateway's submitters and connectors).
        self.assertIn("Subject: test", msg.split("text/rfc822-headers")[1])
        self.assertNotIn("X-M365Relay-Route", msg)
        self.assertNotIn("later@example.net", msg.split("Content-Type: text/rfc822-headers")[0])
        # Finished: the journal entry is gone, a re-run would send again.
        self.assertEqual(len(H.records()), 2)


def forge(fields, qid, sender):
    """A route as an attacker writes it: the right shape, a made-up mac."""
    good = sign_route(fields, qid, sender)
    return good[:-64] + ("0" if good[-64] != "0" else "1") + good[-63:]


class Trust(Base):
    """Only a route that m365-milter signed for this queue id and sender
    picks the mode, the mailbox and the connector.  Anything else is decided
    again by the policy, from what pipe(8) gives (client address, SASL login,
    envelope, headers), and its verdict is applied in full."""

    CEO_RELAY = "mode=relay; tenant=contoso; domain=contoso.com; submitter=lan; connector=onprem"

    def assertNothingSent(self):
        self.assertEqual(H.records(), [], "the simulator received nothing")

    def test_forged_route_from_a_stranger_bounces(self):
        # Relay through the certificate connector as the CEO to the outside:
        # a stranger's message written with a route of its own.
        for how, raw in (("not signed", "v=2; " + self.CEO_RELAY),
                         ("signature does not verify", forge(self.CEO_RELAY, "QFORGE1", "ceo@contoso.com")),
                         ("signed with a key route_key_file does not hold",
                          sign_route(self.CEO_RELAY, "QFORGE1", "ceo@contoso.com",
                                     key="an-attackers-key-0123456789abcdef0123456789"))):
            r = H.run(["partner@example.net"], sender="ceo@contoso.com", frm="ceo@contoso.com",
                      raw_route=raw, qid="QFORGE1", client="203.0.113.9")
            self.assertExit(r, 69, "5.7.1 Client [203.0.113.9] is not allowed to send through this gateway")
            self.assertIn("route not trusted: X-M365Relay-Route header " if how != "not signed" else
                          "route not trusted: X-M365Relay-Route header not signed", r.log)
            self.assertIn(how, r.log)
            self.assertEqual(r.log.count("route not trusted"), 1, "logged once per message")
        self.assertNothingSent()

    def test_forged_route_from_a_known_client_gets_its_own_rights(self):
        # The LAN submitter may send as @contoso.com but not through another
        # mailbox's credentials: the policy, not the header, picks the mode.
        forged = sign_route(ROUTES["oauth"], "QFORGE2", "scanner@contoso.com",
                            key="an-attackers-key-0123456789abcdef0123456789")
        r = H.run(["alice@contoso.com"], sender="scanner@contoso.com", raw_route=forged, qid="QFORGE2",
                  client="192.168.10.7")
        self.assertExit(r, 0, "routed by the policy (")
        rec = H.records()[-1]
        self.assertEqual((rec["role"], rec["auth_user"]), ("mx", None), "Direct Send, not erp@'s mailbox")

    def test_route_of_another_queue_id(self):
        # postsuper -r gives the message a new queue id: the old route is
        # genuine but no longer for this message.
        old = sign_route(ROUTES["relay"], "QOLD1", "ceo@contoso.com")
        r = H.run(["partner@example.net"], sender="ceo@contoso.com", frm="ceo@contoso.com",
                  raw_route=old, qid="QNEW1", client="203.0.113.9")
        self.assertExit(r, 69, "5.7.1")
        self.assertIn("signed for another queue id (requeued, or re-injected by a content filter) QOLD1", r.log)
        self.assertNothingSent()

    def test_sender_changed_after_signing(self):
        good = sign_route(ROUTES["relay"], "QSND1", "scanner@contoso.com")
        r = H.run(["partner@example.net"], sender="ceo@contoso.com", frm="ceo@contoso.com",
                  raw_route=good, qid="QSND1", client="203.0.113.9")
        self.assertExit(r, 69, "5.7.1")
        self.assertIn("signature does not verify", r.log)
        self.assertNothingSent()

    def test_two_route_headers(self):
        good = sign_route(ROUTES["relay"], "QTWO1", "scanner@contoso.com")
        msg = "X-M365Relay-Route: %s\n%s" % (good, H.message(route=good, frm="scanner@contoso.com"))
        r = H.run(["partner@example.net"], sender="scanner@contoso.com", msg=msg, qid="QTWO1",
                  client="203.0.113.9")
        self.assertExit(r, 69, "5.7.1")
        self.assertIn("route not trusted: 2 X-M365Relay-Route headers", r.log)
        self.assertNothingSent()

    def test_send_as_refused_by_the_policy(self):
        r = H.run(["alice@contoso.com"], sender="scanner@contoso.com", frm="ceo@fabrikam.com",
                  raw_route="v=2; " + ROUTES["relay"], client="192.168.10.7")
        self.assertExit(r, 69, "5.7.60 SMTP; Client does not have permissions to send as this sender")
        self.assertNothingSent()

    def test_policy_verdict_applied_in_full(self):
        # No route: the policy rewrites the envelope sender and the From,
        # adds Reply-To, removes the Sender, and the message goes so.
        msg = ("From: \"Scanner 3F\" <scan@printer.local>\nSender: op@printer.local\n"
               "To: alice@contoso.com\nSubject: scan\n\nbody\n")
        r = H.run(["alice@contoso.com"], sender="scan@printer.local", msg=msg, client="192.168.10.7")
        self.assertExit(r, 0, "routed by the policy (")
        rec = H.records()[-1]
        self.assertEqual(rec["mail_from"], "scanner@contoso.com")
        self.assertEqual(rec["headers"]["From"], ["Scanner 3F <scanner@contoso.com>"])
        self.assertEqual(rec["headers"]["Reply-To"], ["Scanner 3F <scan@printer.local>"])
        self.assertNotIn("Sender", rec["headers"])
        self.assertNotIn("X-M365Relay-Route", rec["headers"])
        self.assertIn("route not trusted: no X-M365Relay-Route header", r.log)

    def test_unverified_route_defer(self):
        H.configure(extra_transport="unverified_route = defer")
        try:
            r = H.run(["alice@contoso.com"], sender="scanner@contoso.com", client="192.168.10.7",
                      raw_route="v=2; " + ROUTES["direct-send"])
            self.assertExit(r, 75, "4.7.0 not sent: X-M365Relay-Route header not signed")
            self.assertIn("unverified_route = defer", r.first_line)
            # The policy did not route it: no "routed by the policy" note.
            self.assertNotIn("routed by the policy", r.first_line)
            self.assertNothingSent()
        finally:
            H.configure(extra_transport="")

    def test_local_mail_is_the_local_submitters(self):
        r = H.run(["alice@contoso.com"], sender="root@contoso.com", client="")
        self.assertExit(r, 69, "5.7.1 Client [unknown] is not allowed")
        H.configure(extra_transport='local_submitter = "lan"')
        try:
            r = H.run(["alice@contoso.com"], sender="scanner@contoso.com", client="")
            self.assertExit(r, 0, "routed by the policy (")
            # ... but not mail from the network that bypassed the milter.
            r = H.run(["alice@contoso.com"], sender="scanner@contoso.com", client="203.0.113.9")
            self.assertExit(r, 69, "5.7.1")
        finally:
            H.configure(extra_transport="")
        self.assertEqual(len(H.records()), 1)


class Addresses(Base):
    """Every argv address is parsed; the canonical form is what is sent."""

    @unittest.skipIf(MODE == "lmtp", "pipe(8) only: a CR LF cannot be in an LMTP command (test_lmtp: bad commands)")
    def test_crlf_in_a_recipient(self):
        r = self.deliver(["a@example.net\r\nRCPT TO:<evil@example.org>"])
        self.assertExit(r, 75, "4.1.3 recipient address \"a@example.net??RCPT TO:<evil@example.org>\" is not valid")
        self.assertEqual(H.records(), [])

    @unittest.skipIf(MODE == "lmtp", "pipe(8) only: after the path LMTP has parameters, not an address")
    def test_parameter_after_a_recipient(self):
        r = self.deliver(["a@example.net> NOTIFY=SUCCESS"])
        self.assertExit(r, 75, "4.1.3 recipient address")
        self.assertEqual(H.records(), [])

    @unittest.skipIf(MODE == "lmtp", "pipe(8) only: a CR LF cannot be in an LMTP command (test_lmtp: bad commands)")
    def test_crlf_in_the_sender(self):
        r = self.deliver(["a@example.net"], sender="scanner@contoso.com\r\nRSET")
        self.assertExit(r, 75, "4.1.7 sender address")
        self.assertEqual(H.records(), [])

    def test_long_sender(self):
        r = self.deliver(["a@example.net"], sender="s" * 1200 + "@contoso.com")
        self.assertExit(r, 75, "4.1.7 sender address")

    def test_fifty_long_recipients(self):
        # 50 addresses of 320 bytes (the longest local part and domain) were
        # once a heap overflow in the pipelined envelope; they are longer
        # than a path may be (RFC 5321 4.5.3.1.3) and are refused here.
        dom = ".".join(["d" * 63] * 3) + "." + "e" * 61
        long = ["%s%02d@%s" % ("l" * 62, i, dom) for i in range(50)]
        r = self.deliver(long)
        self.assertExit(r, 75, "4.1.3 recipient address")
        # 50 of the longest valid path go out in one pipelined write.
        dom = ".".join(["d" * 63] * 2) + "." + "e" * 61
        ok = ["%s%02d@%s" % ("l" * 62, i, dom) for i in range(50)]
        self.assertEqual(len("<%s>" % ok[0]), 256)
        r = self.deliver(ok)
        self.assertExit(r, 0, "250 2.0.0 OK <")
        self.assertEqual(H.records()[-1]["rcpt_to"], ok)

    def test_more_recipients_than_the_mailbox_takes(self):
        # Postfix splits deliveries (50 by default); a larger one waits for
        # the configuration to be fixed rather than exceed Microsoft's limit.
        r = self.deliver(["r%03d@example.net" % i for i in range(501)])
        self.assertExit(r, 75, "4.5.3 501 recipients in one delivery, more than scanner@contoso.com "
                               "takes in one message (500)")
        self.assertEqual(H.records(), [])

    def test_quoted_local_part_canonical(self):
        r = self.deliver(['"a.b"@example.net', '"john doe"@example.net'])
        self.assertExit(r, 0, "250 2.0.0 OK")
        self.assertEqual(H.records()[-1]["rcpt_to"], ["a.b@example.net", '"john doe"@example.net'])


class LogFile(Base):
    def test_log_file(self):
        # For hosts without syslog: time-stamped lines appended to log_file.
        path = os.path.join(H.work, "transport.log")
        H.configure(extra_top='log_file = "%s"' % path)
        try:
            r = H.run(["a@example.net"], route=ROUTES["smtp-auth"], stderr_log=False, qid="QLOGFILE")
            self.assertExit(r, 0, "250 2.0.0 OK")
            self.assertEqual(r.log, "", "nothing on stderr: it all went to the file")
            with open(path) as f:
                text = f.read()
            self.assertRegex(text, r"(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z m365-transport\[\d+\]: "
                                   r"QLOGFILE: to=<a@example\.net> relay=localhost.* status=sent \(250 2\.0\.0 OK")
            self.assertEqual(oct(os.stat(path).st_mode & 0o777), "0o600")
        finally:
            H.configure(extra_top="")


class TlsSessions(Base):
    IP_CONNECTOR = {"connectors": [{"name": "byip", "type": "ip", "sender_ips": ["127.0.0.1/32"]}]}

    def test_unverified_session_is_never_resumed_where_verification_is_required(self):
        # The MX endpoint's certificate is not trusted (ca_file is a CA that
        # did not issue it).  Opportunistic Direct Send goes anyway; relay,
        # which verifies, must not ride on that session.
        H.sim.control("config", self.IP_CONNECTOR)
        H.configure(ca_file=os.path.join(H.certs, "other.pem"),
                    extra_transport="direct_send_tls = opportunistic")
        try:
            r = self.deliver(["alice@contoso.com"], mode="direct-send")
            self.assertExit(r, 0, "250 2.0.0 OK")
            self.assertIn("certificate not verified (direct_send_tls = opportunistic)", r.log)
            r = self.deliver(["alice@contoso.com"], mode="relay-ip")
            self.assertExit(r, 75, "4.4.2 TLS: certificate of localhost not trusted")
            self.assertEqual(len(H.records()), 1, "relay sent nothing")
        finally:
            H.configure(ca_file=os.path.join(H.certs, "ca.pem"), extra_transport="")

    def test_verified_session_is_resumed(self):
        H.sim.control("config", self.IP_CONNECTOR)
        r = self.deliver(["alice@contoso.com"], mode="relay-ip")
        self.assertExit(r, 0, "250 2.0.0 OK")
        r = self.deliver(["alice@contoso.com"], mode="relay-ip")
        self.assertExit(r, 0, "250 2.0.0 OK")
        self.assertIn(" resumed status=sent", r.log)


    # The CA and the client certificate are read when the handshake needs
    # them (net.h); one that cannot be used still defers with its own
    # message, and sends nothing.
    def full_handshake(self):
        for f in os.listdir(H.state):
            if f.startswith("tls-") and f.endswith(".session"):
                os.unlink(os.path.join(H.state, f))

    def test_client_key_not_matching_the_certificate(self):
        key = os.path.join(H.work, "relay.key")
        with open(key) as f:
            good = f.read()
        try:
            with open(os.path.join(H.work, "app2.key")) as f, open(key, "w") as out:
                out.write(f.read())
            self.full_handshake()
            r = self.deliver(["a@example.net"], mode="relay")
            self.assertExit(r, 75, "4.4.2 TLS: key %s: " % key)
            self.assertIn("key values mismatch", r.first_line)
            self.assertEqual(H.records(), [], "nothing sent")
        finally:
            with open(key, "w") as out:
                out.write(good)
            os.chown(key, pwd.getpwnam(USER).pw_uid, -1)
            os.chmod(key, 0o600)
        r = self.deliver(["a@example.net"], mode="relay")
        self.assertExit(r, 0, "250 2.0.0 OK")
        self.assertEqual(H.records()[-1]["client_cert_subject"], "CN=relay.contoso.com,O=Contoso")

    def test_ca_file_that_holds_no_certificate(self):
        bad = os.path.join(H.work, "garbage-ca.pem")
        with open(bad, "w") as f:
            f.write("not a certificate\n")
        os.chmod(bad, 0o644)
        H.sim.control("config", self.IP_CONNECTOR)
        H.configure(ca_file=bad)
        try:
            r = self.deliver(["alice@contoso.com"], mode="relay-ip")
            self.assertExit(r, 75, "4.4.2 TLS: CA %s: " % bad)
            self.assertEqual(H.records(), [], "nothing sent")
        finally:
            H.configure(ca_file=os.path.join(H.certs, "ca.pem"))

    def test_resumed_session_reads_neither_ca_nor_certificate(self):
        # A resumed handshake verifies no chain and sends no certificate:
        # with the CA file and the key unusable, a cached session still
        # goes, and the first full handshake after it fails on them.
        key = os.path.join(H.work, "relay.key")
        with open(key) as f:
            good = f.read()
        ca = os.path.join(H.work, "resume-ca.pem")
        shutil.copy(os.path.join(H.certs, "ca.pem"), ca)
        os.chmod(ca, 0o644)
        H.configure(ca_file=ca)
        try:
            self.full_handshake()
            r = self.deliver(["a@example.net"], mode="relay")
            self.assertExit(r, 0, "250 2.0.0 OK")
            # Both still there (the configuration names them), neither usable.
            with open(os.path.join(H.work, "app2.key")) as f, open(key, "w") as out:
                out.write(f.read())
            with open(ca, "w") as f:
                f.write("not a certificate\n")
            r = self.deliver(["a@example.net"], mode="relay")
            self.assertExit(r, 0, "250 2.0.0 OK")
            self.assertIn(" resumed status=sent", r.log)
            self.assertEqual(H.records()[-1]["client_cert_subject"], "CN=relay.contoso.com,O=Contoso",
                             "the session carries the certificate it was made with")
            self.full_handshake()
            r = self.deliver(["a@example.net"], mode="relay")
            self.assertExit(r, 75, "4.4.2 TLS: CA %s: " % ca)
            self.assertEqual(len(H.records()), 2, "the last sent nothing")
        finally:
            with open(key, "w") as out:
                out.write(good)
            H.configure(ca_file=os.path.join(H.certs, "ca.pem"))


class Protocol(Base):
    def test_reply_out_of_step_is_never_delivered(self):
        # An extra reply after MAIL: every reply after it belongs to the
        # command before; the DATA reply is not 354, so nothing is sent.
        H.sim.control("fault", {"step": "mail", "action": "extra"})
        r = self.deliver(["a@example.net"], qid="QSTEP")
        self.assertExit(r, 75, "4.4.2 localhost answered DATA with 250: replies out of step")
        self.assertEqual(H.records(), [])
        r = self.deliver(["a@example.net"], qid="QSTEP")
        self.assertExit(r, 0, "250 2.0.0 OK")
        self.assertEqual(len(H.records()), 1)

    def test_a_3xx_final_reply_is_not_delivered(self):
        H.sim.control("fault", {"step": "eom", "action": "reply", "reply": "354 go on"})
        r = self.deliver(["a@example.net"], qid="Q3XX")
        self.assertExit(r, 75, "4.4.2 localhost answered the final dot with 354")


class SystemStore(Base):
    """No ca_file: the system's CAs.  A hashed directory (c_rehash,
    update-ca-certificates) is read one issuer at a time instead of
    OpenSSL's default bundle parsed whole per delivery (lib/net/net.c
    system_store); a directory that is not hashed falls back to the
    defaults."""

    def setUp(self):
        super().setUp()
        import glob
        import shutil
        import subprocess
        import tempfile
        with open(H.conf) as f:
            text = f.read()
        self.addCleanup(H.configure)
        with open(H.conf, "w") as f:
            f.write("\n".join(l for l in text.split("\n") if not l.strip().startswith("ca_file")))
        self.dirs = tempfile.mkdtemp(prefix="m365-castore.")
        self.addCleanup(shutil.rmtree, self.dirs)
        os.chmod(self.dirs, 0o755)
        for name, with_ca, hashed in (("hashed", True, True), ("plain", True, False), ("other", False, True)):
            d = os.path.join(self.dirs, name)
            os.mkdir(d)
            if with_ca:
                shutil.copy(os.path.join(H.certs, "ca.pem"), os.path.join(d, "sim-ca.pem"))
            else:  # some other CA: the simulator's certificate is not trusted
                shutil.copy(os.path.join(H.certs, "relay.pem"), os.path.join(d, "other.pem"))
            if hashed:
                subprocess.run(["openssl", "rehash", d], check=True)
        self.ca = os.path.join(self.dirs, "plain", "sim-ca.pem")
        self.fresh = lambda: [os.unlink(p) for p in glob.glob(os.path.join(H.state, "tls-*.session"))]

    def test_hashed_directory(self):
        self.fresh()
        r = self.deliver(["a@example.net"], mode="relay",
                         extra_env={"SSL_CERT_DIR": os.path.join(self.dirs, "hashed")})
        self.assertExit(r, 0, "250 2.0.0 OK")
        # the directory decides: without the simulator's CA in it, refused
        self.fresh()
        r = self.deliver(["a@example.net"], mode="relay",
                         extra_env={"SSL_CERT_DIR": os.path.join(self.dirs, "other")})
        self.assertEqual(r.status, 75, r)
        self.assertIn("certificate of localhost not trusted", r.first_line)

    def test_plain_directory_falls_back(self):
        self.fresh()
        r = self.deliver(["a@example.net"], mode="relay",
                         extra_env={"SSL_CERT_DIR": os.path.join(self.dirs, "plain"), "SSL_CERT_FILE": self.ca})
        self.assertExit(r, 0, "250 2.0.0 OK")


if __name__ == "__main__":
    unittest.main(verbosity=2)
