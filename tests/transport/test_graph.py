#!/usr/bin/python3
"""test_graph.py - modes graph and hve against the simulator's Graph and HVE
roles: Graph's answers mapped to pipe(8) exit codes and first lines, the
Retry-After shared by two transports of one mailbox, exactly the envelope's
recipients reached, one token for fifty deliveries, the size rule; HVE with
XOAUTH2 and with Basic, and its 501 5.5.124.
"""
import concurrent.futures
import email
import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import MODE, TOP_BUILDDIR, Harness, ROUTES  # noqa: E402

H = None

HVE_SECTIONS = """
mailbox "news@contoso.com" {{ app = "secret-app" hve = yes }}
mailbox "alerts@contoso.com" {{ password_file = "{work}/scanner.pw" hve = yes }}
mailbox "ghost@contoso.com" {{ app = "secret-app" hve = yes }}
"""

HVE_ACCOUNTS = {"news@contoso.com": {"password": "pw", "apps": ["cid"]},
       "alerts@contoso.com": {"password": "pw"}}


def hve_route(mailbox):
    return "mode=hve; tenant=contoso; domain=contoso.com; submitter=lan; mailbox=%s" % mailbox


def setUpModule():
    global H
    H = Harness(sim_extra={"hve_accounts": HVE_ACCOUNTS})
    H.configure(extra_sections=HVE_SECTIONS.format(work=H.work))


def tearDownModule():
    H.stop()


def stats():
    return H.sim.state()["stats"]


def clear_cache():
    d = os.path.join(H.state, "tokens")
    for f in os.listdir(d) if os.path.isdir(d) else []:
        os.unlink(os.path.join(d, f))


def graph_records():
    return [r for r in H.records() if r.get("role") == "graph"]


def graph_token_requests():
    return stats().get("token_requests_by_scope", {}).get("https://graph.microsoft.com/.default", 0)


class Graph(unittest.TestCase):
    def setUp(self):
        H.reset()
        H.sim.control("config", {"hve_accounts": HVE_ACCOUNTS, "graph_delay": 0})
        H.configure(extra_transport="")
        clear_cache()

    def send(self, rcpts=("alice@contoso.com",), **kw):
        kw.setdefault("sender", "billing@contoso.com")
        return H.run(list(rcpts), route=ROUTES["graph"], **kw)

    def fault(self, status, **extra):
        f = {"role": "graph", "step": "request", "action": "status", "status": status}
        f.update(extra)
        H.sim.control("fault", f)

    def test_202_delivered(self):
        r = self.send(["alice@contoso.com", "bob@example.net"])
        self.assertEqual(r.status, 0, r)
        # As for SMTP, the line Postfix logs is Microsoft's answer
        self.assertRegex(r.first_line, r"^250 2\.0\.0 Accepted by Microsoft Graph \(request-id "
                                       r"[0-9a-f-]{36}\)$")
        self.assertRegex(r.log, r"Graph sendMail as erp@contoso.com: HTTP 202 request-id=[0-9a-f-]{36} "
                                r"client-request-id=[0-9a-f-]{36}")
        rec = graph_records()
        self.assertEqual(len(rec), 1)
        self.assertEqual(rec[0]["mailbox"], "erp@contoso.com")
        self.assertEqual(sorted(rec[0]["rcpt_to"]), ["alice@contoso.com", "bob@example.net"])
        # the route header never leaves, the MIME is the message
        self.assertNotIn("X-M365Relay-Route", rec[0]["raw_mime"])
        self.assertIn("Subject: test", rec[0]["raw_mime"])
        # Graph's request id is ours to grep: the log names the one Graph recorded
        self.assertIn("client-request-id=%s" % rec[0]["client_request_id"], r.log)
        self.assertIn("to=<bob@example.net> relay=localhost[127.0.0.1]:%d mode=graph "
                      "mailbox=erp@contoso.com tls=https status=sent" % H.sim.ports["graph"], r.log)

    def test_replies_mapped(self):
        # (fault status, body code, exit, first-line start, what the log must hint)
        cases = [
            (429, "ApplicationThrottled", 75, "4.7.500 localhost said: 451 4.7.500 HTTP 429 ApplicationThrottled",
             "waits out Retry-After"),
            (503, "ServiceUnavailable", 75, "4.7.500 localhost said: 451 4.7.500 HTTP 503", "Graph is busy"),
            (504, None, 75, "4.7.500 localhost said: 451 4.7.500 HTTP 504", "Graph is busy"),
            (400, "ErrorMimeContentInvalidBase64String", 69,
             "5.6.0 localhost said: 554 5.6.0 HTTP 400 ErrorMimeContentInvalidBase64String: x", None),
            (400, "ErrorMessageSizeExceeded", 69,
             "5.3.4 localhost said: 552 5.3.4 HTTP 400 ErrorMessageSizeExceeded: x", None),
            (413, None, 69, "5.3.4 localhost said: 552 5.3.4 HTTP 413", None),
            (401, "InvalidAuthenticationToken", 75, "4.7.8 localhost said: 451 4.7.8 HTTP 401", "Mail.Send"),
            (403, "ErrorAccessDenied", 75, "4.7.8 localhost said: 451 4.7.8 HTTP 403 ErrorAccessDenied",
             "application access policy"),
            (404, "ErrorInvalidUser", 75, "4.3.5 localhost said: 451 4.3.5 HTTP 404 ErrorInvalidUser",
             "does not know this mailbox"),
            (500, "InternalServerError", 75, "4.4.0 localhost said: 451 4.4.0 HTTP 500", None),
        ]
        for status, code, exit_code, first, hint in cases:
            with self.subTest(status=status, code=code):
                H.sim.control("reset")
                extra = {"retry_after": "1"} if status == 429 else {}
                if code is not None:
                    extra["body"] = {"error": {"code": code, "message": "x"}}
                # a 401 is tried twice (a cached token may be stale): fail both
                self.fault(status, count=2, **extra)
                r = self.send()
                self.assertEqual(r.status, exit_code, r)
                self.assertTrue(r.first_line.startswith(first), r)
                if hint:
                    self.assertIn("hint: ", r.log)
                    self.assertIn(hint, r.log)
                self.assertEqual(graph_records(), [])

    def test_401_retried_with_a_new_token(self):
        self.assertEqual(self.send().status, 0)  # a token in the cache
        before = graph_token_requests()
        self.fault(401, body={"error": {"code": "InvalidAuthenticationToken", "message": "expired"}})
        r = self.send()
        self.assertEqual(r.status, 0, r)
        self.assertEqual(graph_token_requests(), before + 1)
        self.assertEqual(len(graph_records()), 2)

    def test_real_refusals(self):
        # The simulator's own checks, not scripted faults: an app without
        # access to the mailbox, and Send As.
        H.sim.control("config", {"mailboxes": dict(H.sim.config["mailboxes"], **{
            "erp@contoso.com": {"send_as": ["billing@contoso.com"], "apps": ["cid"],
                                "graph_access_denied": True}})})
        r = self.send()
        self.assertEqual(r.status, 75, r)
        self.assertIn("HTTP 403 ErrorAccessDenied", r.first_line)
        H.sim.control("config", {"mailboxes": H.sim.config["mailboxes"]})
        r = self.send(frm="ceo@contoso.com")
        self.assertEqual(r.status, 75, r)
        self.assertIn("4.7.60 localhost said: 451 4.7.60 HTTP 403 ErrorSendAsDenied", r.first_line)
        self.assertIn("Add-RecipientPermission", r.log)

    def sent_in_window(self):
        p = subprocess.run([os.path.join(TOP_BUILDDIR, "cli", "m365ctl"), "-c", H.conf, "status", "--json",
                            "erp@contoso.com"], capture_output=True, text=True,
                           preexec_fn=lambda: (os.setgid(H.gid), os.setuid(H.uid)))
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)[0]["messages"]["sent"]

    def test_no_token_gives_the_window_back(self):
        # Graph never asked (the token endpoint down): the deferral does not
        # count a message in the mailbox's window; one that was asked does.
        before = self.sent_in_window()
        H.sim.control("fault", {"role": "token", "step": "request", "action": "status", "status": 503})
        r = self.send()
        self.assertEqual(r.status, 75, r)
        self.assertTrue(r.first_line.startswith("4.4.1 OAuth token for app secret-app"), r)
        self.assertEqual(self.sent_in_window(), before)
        self.assertEqual(self.send().status, 0)
        self.assertEqual(self.sent_in_window(), before + 1)

    def test_network_failure_defers(self):
        H.sim.control("fault", {"role": "graph", "step": "request", "action": "drop"})
        r = self.send()
        self.assertEqual(r.status, 75, r)
        self.assertRegex(r.first_line, r"^4\.4\.2 .*\(during sendMail\)")

    def test_lost_after_accept_defers(self):
        # Graph took the message and the answer was lost: the delivery
        # defers (never "sent" without an answer), and the retry sends it
        # again - a duplicate, as after the final dot in SMTP (RFC 5321
        # 6.1 prefers that to losing it).  The man page says so.
        H.sim.control("fault", {"role": "graph", "step": "after_accept", "action": "drop"})
        qid = H.new_qid()
        r = self.send(qid=qid)
        self.assertEqual(r.status, 75, r)
        self.assertRegex(r.first_line, r"^4\.4\.2 .*\(during sendMail\)")
        self.assertEqual(len(graph_records()), 1)
        r = self.send(qid=qid)
        self.assertEqual(r.status, 0, r)
        self.assertEqual(len(graph_records()), 2)

    def test_retry_after_shared(self):
        # Transport A is told to wait 3 s; B, for the same mailbox, starts
        # while that holds and must not ask Graph before it ends.
        self.fault(429, retry_after="3", body={"error": {"code": "ApplicationThrottled",
                                                         "message": "Application is over its MailboxConcurrency limit."}})
        a = self.send()
        told = time.time()
        self.assertEqual(a.status, 75, a)
        self.assertIn("HTTP 429 ApplicationThrottled", a.first_line)
        with concurrent.futures.ThreadPoolExecutor(2) as ex:
            b, c = ex.map(lambda _: self.send(), range(2))
        for r in (b, c):
            self.assertEqual(r.status, 0, r)
            self.assertRegex(r.log, r"Graph asked erp@contoso.com to wait: \d+ ms")
        rec = graph_records()
        self.assertEqual(len(rec), 2)
        for x in rec:
            self.assertGreaterEqual(x["received"], told + 2.5, "asked before Retry-After ended")

    def test_retry_after_past_pacing_wait_defers(self):
        H.configure(pacing_wait=2)
        try:
            self.fault(429, retry_after="30")
            self.assertEqual(self.send().status, 75)
            r = self.send()
            self.assertEqual(r.status, 75, r)
            self.assertRegex(r.first_line, r"^4\.7\.500 Graph asked erp@contoso.com to wait \(Retry-After\) "
                                           r"until \d\d:\d\d:\d\dZ")
            self.assertEqual(stats().get("graph_requests"), 1, "the second never asked Graph")
        finally:
            H.configure(pacing_wait=120)

    def test_envelope_decides_the_recipients(self):
        # The header names alice and carol; the envelope is alice and dave:
        # dave (Bcc-only) gets it, carol (header-only) does not.
        msg = ("From: billing@contoso.com\nTo: Alice <alice@contoso.com>, carol@contoso.com\n"
               "Cc: alice@contoso.com\nBcc: eve@contoso.com\nSubject: envelope\n\n.leading dot\nbody\n")
        r = self.send(["alice@contoso.com", "dave@example.net"], msg=msg)
        self.assertEqual(r.status, 0, r)
        rec = graph_records()[-1]
        self.assertEqual(sorted(rec["rcpt_to"]), ["alice@contoso.com", "dave@example.net"])
        self.assertIn("not in the envelope, left out: carol@contoso.com", r.log)
        self.assertIn("the message's Bcc field dropped", r.log)
        stored = email.message_from_string(rec["stored_mime"])
        self.assertIsNone(stored["Bcc"], "Exchange removes the Bcc field")
        self.assertEqual(stored["To"], "Alice <alice@contoso.com>")
        self.assertEqual(stored["Cc"], "alice@contoso.com")
        # dot-stuffing is undone: Graph gets the body as written
        self.assertIn("\n.leading dot", rec["raw_mime"].replace("\r\n", "\n"))

    def test_long_envelope_only_recipients(self):
        # Twelve recipients of about 200 characters each, none in the header:
        # the Bcc line that names them must fit (it did not: the MIME's
        # bound counted 64 bytes a recipient, and the message waited).
        rcpts = ["r%d@%sexample.net" % (i, ("d" * 60 + ".") * 3) for i in range(12)]
        r = self.send(rcpts, msg="From: billing@contoso.com\nTo: undisclosed-recipients:;\n"
                                 "Subject: long\n\nbody\n")
        self.assertEqual(r.status, 0, r)
        self.assertEqual(sorted(graph_records()[-1]["rcpt_to"]), sorted(rcpts))

    def test_header_as_written_when_it_matches(self):
        msg = ("From: billing@contoso.com\nTo: \"Doe, Alice\" <alice@contoso.com>,\n bob@contoso.com\n"
               "Subject: as written\n\nbody\n")
        r = self.send(["alice@contoso.com", "bob@contoso.com"], msg=msg)
        self.assertEqual(r.status, 0, r)
        rec = graph_records()[-1]
        self.assertIn("To: \"Doe, Alice\" <alice@contoso.com>,\r\n bob@contoso.com\r\n", rec["raw_mime"])
        self.assertNotIn("Bcc:", rec["raw_mime"])
        self.assertNotIn("recipient fields follow the envelope", r.log)

    def test_obsolete_address_rewritten(self):
        # "Alice @contoso.com" (obsolete syntax, a space before the @) names
        # alice, but a field kept as written would leave Graph to read it its
        # own way: it is rewritten to the plain form (found by fuzz_graph).
        msg = ("From: billing@contoso.com\nTo: Alice @contoso.com\n"
               "Subject: obsolete\n\nbody\n")
        r = self.send(["alice@contoso.com"], msg=msg)
        self.assertEqual(r.status, 0, r)
        rec = graph_records()[-1]
        self.assertIn("To: Alice@contoso.com\r\n", rec["raw_mime"])
        self.assertNotIn("Alice @contoso.com", rec["raw_mime"])
        self.assertEqual(rec["rcpt_to"], ["alice@contoso.com"])

    def test_fifty_deliveries_one_token(self):
        before = graph_token_requests()
        for _ in range(50):
            r = self.send()
            self.assertEqual(r.status, 0, r)
        self.assertEqual(graph_token_requests() - before, 1)
        self.assertEqual(len(graph_records()), 50)

    def test_graph_and_smtp_tokens_apart(self):
        # The same app's SMTP token is not offered to Graph, nor the reverse.
        self.assertEqual(self.send().status, 0)
        r = H.run(["a@example.net"], sender="billing@contoso.com", route=ROUTES["oauth"])
        self.assertEqual(r.status, 0, r)
        by_scope = stats()["token_requests_by_scope"]
        self.assertGreaterEqual(by_scope.get("https://graph.microsoft.com/.default", 0), 1)
        self.assertGreaterEqual(by_scope.get("https://outlook.office365.com/.default", 0), 1)

    def test_size_rule(self):
        H.configure(extra_transport="graph_max_size = 2048")
        r = self.send(msg="From: billing@contoso.com\nTo: alice@contoso.com\nSubject: big\n\n"
                      + ("x" * 70 + "\n") * 40)
        self.assertEqual(r.status, 69, r)
        self.assertRegex(r.first_line, r"^5\.3\.4 message of \d+ bytes is larger than one Graph sendMail "
                                       r"request takes \(transport \{ graph_max_size = 2048 \}\)")
        self.assertEqual(stats().get("graph_requests"), 0)
        # and Graph's own limit answers 413, which bounces the same way
        H.configure(extra_transport="")
        H.sim.control("config", {"graph_max_bytes": 1024})
        r = self.send(msg="From: billing@contoso.com\nTo: alice@contoso.com\nSubject: big\n\n"
                      + ("x" * 70 + "\n") * 40)
        self.assertEqual(r.status, 69, r)
        self.assertTrue(r.first_line.startswith("5.3.4 localhost said: 552 5.3.4 HTTP 413"), r)
        H.sim.control("config", {"graph_max_bytes": 4194304})


    def test_m365ctl_token_test_graph(self):
        m365ctl = os.path.join(TOP_BUILDDIR, "cli", "m365ctl")
        p = subprocess.run([m365ctl, "-c", H.conf, "token", "test", "secret-app", "--graph", "erp@contoso.com"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("scope:       https://graph.microsoft.com/.default", p.stdout)
        self.assertIn('aud          "https://graph.microsoft.com"', p.stdout)
        self.assertIn('roles        ["Mail.Send"]', p.stdout)
        self.assertIn("status:      HTTP 200", p.stdout)
        self.assertIn("result:      OK, the app can use Graph as erp@contoso.com", p.stdout)
        self.assertEqual(graph_records(), [], "a dry run sends nothing")
        p = subprocess.run([m365ctl, "-c", H.conf, "token", "test", "secret-app", "--graph", "nobody@contoso.com"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("status:      HTTP 404", p.stdout)
        self.assertIn("error:       ErrorInvalidUser", p.stdout)


class HVE(unittest.TestCase):
    def setUp(self):
        H.reset()
        H.sim.control("config", {"hve_accounts": HVE_ACCOUNTS})

    def send(self, mailbox, rcpts=("alice@contoso.com",)):
        return H.run(list(rcpts), sender=mailbox, route=hve_route(mailbox))

    def hve_records(self):
        return [r for r in H.records() if r.get("role") == "hve"]

    def test_xoauth2(self):
        r = self.send("news@contoso.com")
        self.assertEqual(r.status, 0, r)
        rec = self.hve_records()
        self.assertEqual(len(rec), 1)
        self.assertEqual(rec[0]["auth_user"], "news@contoso.com")
        self.assertEqual(rec[0]["auth_mech"], "XOAUTH2")
        self.assertIn("mode=hve mailbox=news@contoso.com", r.log)

    def test_basic_without_warning(self):
        H.sim.control("config", {"basic_auth": "retired"})
        r = self.send("alerts@contoso.com")
        self.assertEqual(r.status, 0, r)
        rec = self.hve_records()
        self.assertEqual(rec[0]["auth_mech"], "LOGIN")
        self.assertNotIn("turns off by default", r.log, "HVE keeps Basic: no warning")

    def test_unknown_account_501(self):
        r = self.send("ghost@contoso.com")
        self.assertEqual(r.status, 75, r)
        self.assertTrue(r.first_line.startswith("4.5.124 localhost said: 501 5.5.124 Invalid XOAUTH2 auth data"), r)
        self.assertIn("New-MailUser -HVEAccount", r.log)
        self.assertEqual(self.hve_records(), [])

    def test_external_refused_by_endpoint(self):
        # The milter refuses external recipients before this; if one gets
        # here (a route made by hand), the endpoint's 550 5.7.1 bounces it.
        r = self.send("news@contoso.com", ["alice@contoso.com", "x@example.net"])
        self.assertEqual(r.status, 0, r)
        rec = self.hve_records()
        self.assertEqual(rec[0]["rcpt_to"], ["alice@contoso.com"])
        if MODE == "lmtp":
            # Postfix bounces it with the endpoint's reply and writes the report.
            self.assertEqual(r.replies["x@example.net"][0], 550, r.replies)
            self.assertEqual(H.dsns(), [])
        else:
            self.assertEqual(len(H.dsns()), 1, "the sender hears about x@example.net")


if __name__ == "__main__":
    unittest.main(verbosity=2)
