#!/usr/bin/python3
"""test_lmtp.py - m365-transport -L, the delivery service for Postfix's
lmtp(8), spoken to directly on its standard input and output (as spawn(8)
connects them) against the simulator: per-recipient replies (one refused
by Microsoft, one delivered), several messages in one session, the queue id
from XFORWARD IDENT (none: deferred with the fix), the client from
XFORWARD ADDR for a route that does not verify, pipelined commands, bad
commands and addresses.  Postfix in front of it is tests/e2e's.
"""
import os
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, ROUTES, SIM_MAILBOXES, TRANSPORT, sign_route  # noqa: E402
from lmdbctl import Lmdb  # noqa: E402

H = None


def setUpModule():
    global H
    H = Harness()


def tearDownModule():
    H.stop()


class Lmtp:
    """One m365-transport -L process and a line-oriented client."""

    def __init__(self):
        def drop():
            os.setgid(H.gid)
            os.setuid(H.uid)
        self.p = subprocess.Popen([TRANSPORT, "-l", "-L", "-c", H.conf], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=drop)
        self.greeting = self.reply()

    def send(self, *lines):
        self.p.stdin.write(b"".join(l.encode() + b"\r\n" for l in lines))
        self.p.stdin.flush()

    def reply(self):
        """One reply (all its lines), as (code, [texts])."""
        texts = []
        while True:
            line = self.p.stdout.readline().decode()
            if not line:
                return (0, texts)
            texts.append(line[4:].rstrip("\r\n"))
            if line[3] == " ":
                return (int(line[:3]), texts)

    def replies(self, n):
        return [self.reply() for _ in range(n)]

    def data(self, msg):
        body = "".join(("." + l if l.startswith(".") else l) + "\r\n" for l in msg.split("\n")[:-1])
        self.p.stdin.write(body.encode() + b".\r\n")
        self.p.stdin.flush()

    def close(self):
        self.send("QUIT")
        r = self.reply()
        out, err = self.p.communicate(timeout=30)
        self.log = err.decode()
        return r


class LmtpBase(unittest.TestCase):
    def setUp(self):
        H.sim.control("reset")

    def session(self):
        s = Lmtp()
        self.assertEqual(s.greeting[0], 220, s.greeting)
        s.send("LHLO gw.test")
        code, lines = s.reply()
        self.assertEqual(code, 250)
        self.assertIn("PIPELINING", lines)
        self.assertTrue(any(l.startswith("XFORWARD ") and "IDENT" in l for l in lines), lines)
        return s

    def message(self, s, qid, rcpts, route="relay", sender="scanner@contoso.com", xforward=True):
        fields = ROUTES.get(route, route)
        msg = H.message(route=sign_route(fields, qid, sender) if route else None, frm=sender,
                        to=", ".join(rcpts), body="line one\n.starts with a dot\n")
        if xforward:
            s.send("XFORWARD IDENT=%s ADDR=192.168.10.7 SOURCE=REMOTE" % qid)
            self.assertEqual(s.reply()[0], 250)
        s.send("MAIL FROM:<%s>" % sender, *["RCPT TO:<%s>" % r for r in rcpts], "DATA")
        first = s.replies(1 + len(rcpts))
        self.assertEqual([c for c, _ in first], [250] * (1 + len(rcpts)), first)
        self.assertEqual(s.reply()[0], 354)
        s.data(msg)
        return s.replies(len(rcpts))


class LmtpTest(LmtpBase):
    def test_each_recipient_its_reply(self):
        # One recipient refused by Microsoft, one delivered: two replies,
        # the refusal with Microsoft's text, so Postfix bounces only it.
        H.sim.control("config", {"rcpt_replies": {"gone@example.net": {
            "reply": "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found", "count": -1}}})
        s = self.session()
        r = self.message(s, H.new_qid(), ["alice@contoso.com", "gone@example.net"])
        self.assertEqual(s.close()[0], 221)
        self.assertEqual(r[0][0], 250, r)
        self.assertEqual(r[1][0], 550, r)
        self.assertIn("550 5.1.10 RESOLVER.ADR.RecipientNotFound", r[1][1][0])
        recs = H.records()
        self.assertEqual(len(recs), 1)
        self.assertEqual(recs[-1]["rcpt_to"], ["alice@contoso.com"])
        # dot-stuffing undone on the way in, done again on the way out: once
        self.assertIn("\r\n.starts with a dot\r\n", recs[-1]["text"])

    def test_replies_lost_no_second_copy(self):
        # Postfix gives up waiting (lmtp_data_done_timeout) and hangs up
        # before the replies: the journal, kept until the replies are out,
        # stops its retry from sending the message again.
        qid = H.new_qid()
        msg = H.message(route=sign_route(ROUTES["relay"], qid, "scanner@contoso.com"), to="alice@contoso.com")
        s = self.session()
        s.send("XFORWARD IDENT=%s ADDR=192.168.10.7" % qid, "MAIL FROM:<scanner@contoso.com>",
               "RCPT TO:<alice@contoso.com>", "DATA")
        self.assertEqual([c for c, _ in s.replies(4)], [250, 250, 250, 354])
        s.p.stdout.close()  # nobody reads the replies any more
        s.data(msg)
        s.p.stdin.close()
        s.p.wait(timeout=60)
        self.assertEqual(len(H.records()), 1)
        s = self.session()
        s.send("XFORWARD IDENT=%s ADDR=192.168.10.7" % qid, "MAIL FROM:<scanner@contoso.com>",
               "RCPT TO:<alice@contoso.com>", "DATA")
        self.assertEqual([c for c, _ in s.replies(4)], [250, 250, 250, 354])
        s.data(msg)
        r = s.reply()
        s.close()
        self.assertEqual(r[0], 250, (r, s.log))
        self.assertIn("accepted in an earlier attempt", r[1][0])
        self.assertEqual(len(H.records()), 1, "sent once")

    def test_many_messages_one_session(self):
        # lmtp(8) reuses the connection: one process, one configuration,
        # message after message (and a RSET between two of them).
        s = self.session()
        for i in range(3):
            r = self.message(s, H.new_qid(), ["alice@contoso.com"])
            self.assertEqual(r[0][0], 250, r)
            if i == 1:
                s.send("RSET")
                self.assertEqual(s.reply()[0], 250)
        s.close()
        self.assertEqual(len(H.records()), 3)

    def journal_keys(self, qids):
        db = Lmdb(os.path.join(H.state, "journal.mdb"))
        try:
            return [k for k in db.keys(b"j:") if any(q.encode() in k for q in qids)]
        finally:
            db.close()

    def test_finished_entries_dropped_in_a_batch(self):
        # Each delivered message's journal entries go once Postfix has the
        # replies, several queue files in one write: within a second of
        # the first while the session idles, and at the latest when it ends.
        s = self.session()
        qids = [H.new_qid() for _ in range(3)]
        for q in qids:
            r = self.message(s, q, ["alice@contoso.com"])
            self.assertEqual(r[0][0], 250, r)
        gone_at = None
        t0 = time.time()
        while time.time() - t0 < 5:
            if not self.journal_keys(qids):
                gone_at = time.time() - t0
                break
            time.sleep(0.1)
        self.assertIsNotNone(gone_at, "journal entries of finished messages still there after 5 s")
        last = H.new_qid()
        r = self.message(s, last, ["alice@contoso.com"])
        self.assertEqual(r[0][0], 250, r)
        s.close()
        self.assertEqual(self.journal_keys([last]), [], "dropped when the session ended")
        self.assertEqual(len(H.records()), 4)

    def test_local_mail_without_xforward(self):
        # Postfix sends no XFORWARD for local mail (sendmail(1), its own
        # bounces): the queue id is the one in the topmost Received header,
        # which the route is signed for - the route verifies.
        s = self.session()
        qid = "4Fh3kB0x1Kz9"
        msg = ("Received: by relay.contoso.test (Postfix, from userid 0)\n\tid %s; Wed,  2 Dec 2026 "
               "16:00:00 +0000 (UTC)\n" % qid + H.message(route=sign_route(ROUTES["relay"], qid,
                                                                          "scanner@contoso.com")))
        s.send("MAIL FROM:<scanner@contoso.com>", "RCPT TO:<alice@contoso.com>", "DATA")
        self.assertEqual([c for c, _ in s.replies(3)], [250, 250, 354])
        s.data(msg)
        r = s.reply()
        # Without a Received header (a bounce): a digest of the message is
        # the journal's key, and the policy decides, as for pipe(8)'s local
        # mail (an empty -a); this harness names no local_submitter, so
        # the policy refuses it, as it would there.
        s.send("MAIL FROM:<>", "RCPT TO:<alice@contoso.com>", "DATA")
        self.assertEqual([c for c, _ in s.replies(3)], [250, 250, 354])
        s.data("From: MAILER-DAEMON@relay.contoso.test\nTo: alice@contoso.com\nSubject: bounce\n\nx\n")
        r2 = s.reply()
        s.close()
        self.assertEqual(r[0], 250, (r, s.log))
        self.assertIn("%s: local mail (no client address from Postfix)" % qid, s.log)
        self.assertNotIn("%s: route not trusted" % qid, s.log)
        self.assertEqual(r2[0], 550, (r2, s.log))
        self.assertIn("5.7.1 Client [unknown] is not allowed", r2[1][0])
        self.assertRegex(s.log, r"[0-9A-F]{24}: route not trusted: no X-M365Relay-Route header")
        self.assertEqual(len(H.records()), 1)

    def test_bounce_xforward_without_ident(self):
        # Postfix's own bounces come with XFORWARD but neither IDENT nor a
        # client (ADDR=[UNAVAILABLE]): local mail, keyed by its digest.
        s = self.session()
        s.send("XFORWARD NAME=[UNAVAILABLE] ADDR=[UNAVAILABLE] PROTO=[UNAVAILABLE]",
               "MAIL FROM:<>", "RCPT TO:<alice@contoso.com>", "DATA")
        self.assertEqual([c for c, _ in s.replies(4)], [250, 250, 250, 354])
        s.data("From: MAILER-DAEMON@relay.contoso.test\nTo: alice@contoso.com\nSubject: bounce 2\n\nx\n")
        r = s.reply()
        s.send("XFORWARD IDENT=bad/id", "MAIL FROM:<scanner@contoso.com>", "RCPT TO:<alice@contoso.com>",
               "DATA")
        self.assertEqual([c for c, _ in s.replies(4)], [250, 250, 250, 354])
        s.data(H.message())
        r2 = s.reply()
        # A client address we cannot read is still a client, never local.
        qid = H.new_qid()
        s.send("XFORWARD IDENT=%s ADDR=fe80::1%%25eth0" % qid, "MAIL FROM:<scanner@contoso.com>",
               "RCPT TO:<alice@contoso.com>", "DATA")
        self.assertEqual([c for c, _ in s.replies(4)], [250, 250, 250, 354])
        s.data(H.message())
        r3 = s.reply()
        s.close()
        self.assertNotIn("%s: local mail" % qid, s.log)
        self.assertNotEqual(r3[0], 250, (r3, s.log))
        self.assertRegex(s.log, r"[0-9A-F]{24}: local mail \(no client address from Postfix\)")
        self.assertEqual(r[0], 550, (r, s.log))  # no local_submitter in this harness
        self.assertEqual(r2[0], 451)
        self.assertIn("XFORWARD IDENT is not a Postfix queue id", r2[1][0])
        self.assertEqual(H.records(), [])

    def test_temporary_failure_defers_each(self):
        H.sim.control("fault", {"step": "mail", "action": "reply"})
        s = self.session()
        r = self.message(s, H.new_qid(), ["alice@contoso.com", "bob@contoso.com"])
        s.close()
        self.assertEqual([c for c, _ in r], [451, 451], r)
        self.assertIn("4.7.0 localhost said: 451 4.7.0 Temporary server error", r[0][1][0])

    def test_unsigned_route_decided_with_xforward_addr(self):
        # No route header: the policy decides from XFORWARD ADDR, as from
        # pipe(8)'s -a; 192.168.10.7 is the scanners' submitter.
        s = self.session()
        r = self.message(s, H.new_qid(), ["alice@contoso.com"], route=None)
        s.close()
        self.assertEqual(r[0][0], 250, (r, s.log))
        self.assertIn("route not trusted: no X-M365Relay-Route header", s.log)
        self.assertIn("decided by the policy: client=[192.168.10.7] submitter=lan", s.log)

    def test_pipelined_and_bad_input(self):
        s = self.session()
        qid = H.new_qid()
        msg = H.message(route=sign_route(ROUTES["relay"], qid, "scanner@contoso.com"), to="alice@contoso.com")
        # All at once, as lmtp(8) pipelines them.
        s.send("XFORWARD IDENT=%s ADDR=192.168.10.7" % qid, "MAIL FROM:<scanner@contoso.com>",
               "RCPT TO:<alice@contoso.com>", "RCPT TO:<bad address@@x>", "RCPT TO:alice@contoso.com",
               "DATA")
        r = s.replies(6)
        # an address our parser refuses defers (451 4.1.3), as with pipe(8)
        self.assertEqual([c for c, _ in r], [250, 250, 250, 451, 501, 354], r)
        s.data(msg)
        self.assertEqual(s.reply()[0], 250)
        s.send("DATA", "MAIL FROM:<a@b>", "MAIL FROM:<a@b>", "HELO x", "XFORWARD IDENT", "X" * 5000)
        r = s.replies(6)
        self.assertEqual([c for c, _ in r], [503, 250, 503, 500, 503, 500], r)
        self.assertEqual(s.close()[0], 221)
        self.assertEqual(len(H.records()), 1)


PRINTER = "mode=smtp-auth; tenant=contoso; domain=contoso.com; submitter=lan; mailbox=printer@contoso.com"
# The mailboxes of the session tests and a sender each may use.
THREE = [("smtp-auth", "noreply@contoso.com", "scanner@contoso.com"),
         ("oauth", "billing@contoso.com", "erp@contoso.com"),
         (PRINTER, "printer@contoso.com", "printer@contoso.com")]


class KeptSessionTest(LmtpBase):
    """The service keeps its sessions to Microsoft 365 across messages
    (transport/pool.h): RSET between messages, a new session when the kept
    one does not answer 250, closed when idle, never more sessions per
    mailbox than its limit across every process."""

    def setUp(self):
        super().setUp()
        mbs = dict(SIM_MAILBOXES, **{"printer@contoso.com": {"password": "pw"}})
        H.sim.control("config", {"mailboxes": mbs})
        H.configure(extra_transport="session_idle = 1", extra_sections=(
            'mailbox "printer@contoso.com" { password_file = "%s/scanner.pw" messages = "1000/60s" }'
            % H.work))
        self.addCleanup(H.configure, extra_transport="", extra_sections="")
        self.addCleanup(H.sim.control, "config", {"mailboxes": SIM_MAILBOXES})

    def stats(self):
        return H.sim.state()["stats"]

    def test_kept_across_messages(self):
        # Three messages through each of a mailbox (SMTP AUTH, OAuth) and
        # a connector (relay): one connection each, four reuses.
        before = self.stats()["connections"]
        s = self.session()
        for _ in range(3):
            for route, sender in (("oauth", "billing@contoso.com"), ("relay", "scanner@contoso.com")):
                r = self.message(s, H.new_qid(), ["alice@contoso.com"], route=route, sender=sender)
                self.assertEqual(r[0][0], 250, (r, route))
        s.close()
        self.assertEqual(self.stats()["connections"] - before, 2, s.log)
        self.assertEqual(len(H.records()), 6)
        self.assertIn("sessions to Microsoft 365 reused 4 time(s)", s.log)
        self.assertEqual(self.stats()["max_sessions"], {"erp@contoso.com": 1})
        # QUIT at the end: the simulator saw the session close
        self.wait_closed("erp@contoso.com")

    def wait_closed(self, mailbox):
        for _ in range(50):
            if self.stats()["open_sessions"].get(mailbox, 0) == 0:
                return
            time.sleep(0.1)
        self.fail("%s's session still open at the simulator" % mailbox)

    def test_kept_session_refused_or_dropped(self):
        # The kept session answers RSET with 421, then closes; next time it
        # is simply gone: each time a new session, nothing lost or doubled.
        before = self.stats()["connections"]
        s = self.session()
        r1 = self.message(s, H.new_qid(), ["alice@contoso.com"], route="smtp-auth", sender="noreply@contoso.com")
        H.sim.control("fault", {"role": "smtp", "step": "rset", "action": "reply",
                                 "reply": "421 4.3.2 Service not available, closing transmission channel"})
        r2 = self.message(s, H.new_qid(), ["alice@contoso.com"], route="smtp-auth", sender="noreply@contoso.com")
        H.sim.control("fault", {"role": "smtp", "step": "rset", "action": "drop"})
        r3 = self.message(s, H.new_qid(), ["alice@contoso.com"], route="smtp-auth", sender="noreply@contoso.com")
        s.close()
        self.assertEqual([r[0][0] for r in (r1, r2, r3)], [250, 250, 250], s.log)
        self.assertEqual(len(H.records()), 3)
        self.assertEqual(self.stats()["connections"] - before, 3)
        self.assertEqual(len(H.sim.state()["faults_fired"]), 2)
        self.assertIn("not reusable (421 4.3.2 Service not available", s.log)
        self.assertEqual(s.log.count("not reusable"), 2, s.log)
        self.assertLessEqual(self.stats()["max_sessions"]["scanner@contoso.com"], 1)

    def test_idle_session_closed(self):
        # session_idle = 1: the session closes while the service waits for
        # Postfix's next command, and its slot goes back with it.
        s = self.session()
        r1 = self.message(s, H.new_qid(), ["alice@contoso.com"], route="smtp-auth", sender="noreply@contoso.com")
        self.assertEqual(self.stats()["open_sessions"].get("scanner@contoso.com"), 1)
        time.sleep(1.5)
        self.wait_closed("scanner@contoso.com")
        r2 = self.message(s, H.new_qid(), ["alice@contoso.com"], route="smtp-auth", sender="noreply@contoso.com")
        s.close()
        self.assertEqual([r1[0][0], r2[0][0]], [250, 250], s.log)
        self.assertNotIn("reused", s.log)
        self.assertEqual(self.stats()["max_sessions"]["scanner@contoso.com"], 1)

    def test_nothing_kept_no_slot_held(self):
        # session_idle = 0: each session ends with its message, and its
        # slot with it.  Four services stay connected after a message
        # each to a mailbox of 3 sessions: a slot still held would make
        # the fourth wait out pacing_wait (2 s here) and defer.
        H.configure(extra_transport="session_idle = 0", pacing_wait=2, extra_sections=(
            'mailbox "printer@contoso.com" { password_file = "%s/scanner.pw" messages = "1000/60s" }'
            % H.work))
        self.addCleanup(H.configure, pacing_wait=120)
        open_ones, replies = [], []
        for _ in range(4):
            s = self.session()
            open_ones.append(s)
            replies.append(self.message(s, H.new_qid(), ["alice@contoso.com"], route=PRINTER,
                                        sender="printer@contoso.com")[0])
        for s in open_ones:
            s.close()
        self.assertEqual([r[0] for r in replies], [250] * 4, replies)
        self.assertEqual(self.stats()["max_sessions"]["printer@contoso.com"], 1)

    def test_three_mailboxes_never_a_fourth_session(self):
        # Nine services at once (lmtp(8) opens as many connections as its
        # concurrency), each sending to the three mailboxes in turn and
        # keeping what it opened: every mailbox reaches its 3 sessions
        # and never a 4th (the simulator would answer 432 4.3.2).
        results, logs = [], []
        barrier = threading.Barrier(9)

        def service(i):
            s = self.session()
            barrier.wait()
            for j in range(3):
                route, sender, _ = THREE[(i + j) % 3]
                r = self.message(s, H.new_qid(), ["alice@contoso.com"], route=route, sender=sender)
                results.append(r[0][0])
            s.close()
            logs.append(s.log)

        threads = [threading.Thread(target=service, args=(i,)) for i in range(9)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        self.assertEqual(results, [250] * 27, "\n".join(logs))
        self.assertEqual(len(H.records()), 27)
        peak = self.stats()["max_sessions"]
        self.assertEqual(sorted(peak), [m for _, _, m in sorted(THREE, key=lambda t: t[2])])
        self.assertLessEqual(max(peak.values()), 3, peak)
        self.assertEqual(max(peak.values()), 3, "the limit was never reached: %s" % peak)
        self.assertFalse([r for r in H.sim.state()["refused"] if "4.3.2" in str(r)])


if __name__ == "__main__":
    unittest.main()
