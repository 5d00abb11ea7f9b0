#!/usr/bin/python3
"""test_sim.py - the simulator's own tests: every row of the reference's
Appendix A, each role, each fault knob, the token endpoint, the Graph
sendMail endpoint and High Volume Email.

Run: /usr/bin/python3 tests/simulator/test_sim.py  (make check runs it)
Clients: smtplib for exact replies, swaks and openssl s_client where a
real tool matters (AUTH LOGIN as devices do it, a TLS 1.0 handshake).
"""
import base64
import hashlib
import json
import os
import http.client
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.parse
import urllib.request
import uuid

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from simlib import Simulator  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from sandbox import wait_for  # noqa: E402

WORK = tempfile.mkdtemp(prefix="m365sim-test.")
CERTS = os.path.join(WORK, "certs")
SIM = None

CONFIG = {
    "tenant_ids": ["contoso.onmicrosoft.com", "contoso.com"],
    "accepted_domains": ["contoso.com", "fabrikam.com"],
    "mailboxes": {
        "scanner@contoso.com": {"password": "pw", "send_as": ["noreply@contoso.com"]},
        "erp@contoso.com": {"password": "erp-pw", "apps": ["cid"]},
        "blocked@contoso.com": {"password": "pw", "smtp_auth_disabled": True},
        "policy@contoso.com": {"password": "pw", "graph_access_denied": True},
    },
    "apps": {"cid": {"secret": "s3cret", "certificates": [os.path.join(CERTS, "app.pem")]},
             "other": {"secret": "x"},
             "readonly": {"secret": "r", "graph_roles": ["User.Read.All"], "roles": ["IMAP.AccessAsApp"]}},
    "hve_accounts": {
        "hve@contoso.com": {"password": "hve-pw", "apps": ["cid"], "send_as": ["alerts@contoso.com"]},
        "noapps@contoso.com": {"password": "pw"},
        "oauthonly@contoso.com": {"password": "pw", "apps": ["cid"], "basic_auth_disabled": True},
    },
    "connectors": [{"name": "onprem", "type": "certificate", "tls_sender_certificate_name": "relay.contoso.com"}],
}
TAG = r" \[\S+\.prod\.(protection\.)?outlook\.com \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [0-9A-F]{16}\]$"


def setUpModule():
    global SIM
    SIM = Simulator(WORK, CONFIG, certdir=CERTS)


def tearDownModule():
    SIM.stop()
    shutil.rmtree(WORK, ignore_errors=True)


def tls_ctx(cert=None):
    ctx = ssl.create_default_context(cafile=SIM.ca)
    if cert:
        ctx.load_cert_chain(os.path.join(CERTS, cert + ".pem"), os.path.join(CERTS, cert + ".key"))
    return ctx


def connect(role="smtp", tls=True, cert=None):
    s = smtplib.SMTP("localhost", SIM.ports[role], local_hostname="device.test", timeout=15)
    s.ehlo()
    if tls:
        s.starttls(context=tls_ctx(cert))
        s.ehlo()
    return s


def xoauth2(user, token):
    return base64.b64encode(("user=%s\x01auth=Bearer %s\x01\x01" % (user, token)).encode()).decode()


def http_post(url, form):
    ctx = ssl.create_default_context(cafile=SIM.ca)
    req = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(), method="POST")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=15) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def token(client_id="cid", secret="s3cret"):
    status, body = http_post(SIM.token_url(), {
        "client_id": client_id, "client_secret": secret, "grant_type": "client_credentials",
        "scope": "https://outlook.office365.com/.default"})
    assert status == 200, body
    return body["access_token"]


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def assertion(alg="PS256", cert="app", key=None, aud=None, iss="cid", nbf=None, exp=None):
    with open(os.path.join(CERTS, cert + ".pem"), "rb") as f:
        der = x509.load_pem_x509_certificate(f.read()).public_bytes(serialization.Encoding.DER)
    header = {"alg": alg, "typ": "JWT"}
    if alg == "PS256":
        header["x5t#S256"] = b64url(hashlib.sha256(der).digest())
    else:
        header["x5t"] = b64url(hashlib.sha1(der).digest())
    t = int(time.time())
    claims = {"aud": aud or SIM.token_url(), "iss": iss, "sub": iss, "jti": str(uuid.uuid4()),
              "nbf": t if nbf is None else nbf, "iat": t, "exp": t + 300 if exp is None else exp}
    signing = (b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())).encode()
    with open(os.path.join(CERTS, (key or cert) + ".key"), "rb") as f:
        k = serialization.load_pem_private_key(f.read(), None)
    if alg == "PS256":
        sig = k.sign(signing, padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), hashes.SHA256())
    else:
        sig = k.sign(signing, padding.PKCS1v15(), hashes.SHA256())
    return signing.decode() + "." + b64url(sig)


MSG = b"From: %s\r\nTo: %s\r\nSubject: test\r\n\r\nbody\r\n"


class Base(unittest.TestCase):
    def setUp(self):
        SIM.control("reset")
        SIM.control("config", {k: v for k, v in CONFIG.items()})
        SIM.control("config", {"smtp_auth_disabled": False, "basic_auth": "allowed",
                               "reject_direct_send": False, "send_as_mode": "submission",
                               "concurrency": 3, "rate": {"count": 30, "window": 60}, "throttle": "delay",
                               "recipient_quota": {"count": 10000, "window": 86400}, "token_lifetime": 3599,
                               "expires_in_as_string": False, "relay_denied_text": None, "rcpt_replies": {},
                               "graph_max_bytes": 4194304, "graph_concurrency": 4, "graph_retry_after": 1,
                               "graph_delay": 0,
                               "hve_limits": {"rate": {"count": 1000, "window": 60},
                                              "recipient_quota": {"count": 100000, "window": 86400},
                                              "concurrency": 10, "max_recipients": 50, "max_size": 10485760}})

    def assertReply(self, got, code, text):
        self.assertEqual(got[0], code, got)
        msg = got[1].decode() if isinstance(got[1], bytes) else got[1]
        if text.endswith("<TAG>"):
            self.assertTrue(msg.startswith(text[:-5]), msg)
            self.assertRegex(msg, TAG)
        else:
            self.assertEqual(msg, text)


class SmtpAuthEndpoint(Base):
    def test_greeting_and_ehlo_before_tls(self):
        s = smtplib.SMTP()
        code, msg = s.connect("localhost", SIM.ports["smtp"])
        self.assertEqual(code, 220)
        self.assertRegex(msg.decode(), r"^\S+\.outlook\.office365\.com Microsoft ESMTP MAIL Service ready at "
                         r"\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d \+0000 \[[0-9A-F]{16}\]$")
        code, msg = s.ehlo("device.test")
        lines = msg.decode().split("\n")
        self.assertRegex(lines[0], r"^\S+ Hello \[127\.0\.0\.1\]$")
        self.assertEqual(lines[1:], ["SIZE 157286400", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES",
                                     "STARTTLS", "8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8"])
        s.close()

    def test_starttls_and_ehlo_after(self):
        s = smtplib.SMTP("localhost", SIM.ports["smtp"])
        s.ehlo()
        self.assertReply(s.starttls(context=tls_ctx()), 220, "2.0.0 SMTP server ready")
        code, msg = s.ehlo("device.test")
        self.assertEqual(msg.decode().split("\n")[1:], [
            "SIZE 157286400", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "AUTH LOGIN XOAUTH2",
            "8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8"])
        self.assertIn(s.sock.version(), ("TLSv1.2", "TLSv1.3"))
        s.close()

    def test_auth_before_tls_and_auth_plain(self):
        s = connect(tls=False)
        self.assertReply(s.docmd("AUTH", "LOGIN"), 504, "5.7.4 Unrecognized authentication type<TAG>")
        s.starttls(context=tls_ctx())
        s.ehlo()
        self.assertReply(s.docmd("AUTH", "PLAIN AGZvbwBiYXI="), 504, "5.7.4 Unrecognized authentication type<TAG>")
        s.close()

    def test_mail_before_tls(self):
        s = connect(tls=False)
        self.assertReply(s.docmd("MAIL", "FROM:<scanner@contoso.com>"), 451, "5.7.3 STARTTLS is required to send mail<TAG>")
        s.close()

    def test_mail_without_auth(self):
        s = connect()
        self.assertReply(s.docmd("MAIL", "FROM:<scanner@contoso.com>"), 530, "5.7.57 Client not authenticated to send mail.<TAG>")
        s.close()

    def test_order_and_unknown(self):
        s = smtplib.SMTP("localhost", SIM.ports["smtp"])
        self.assertReply(s.docmd("STARTTLS"), 503, "5.5.2 Send hello first<TAG>")
        self.assertReply(s.docmd("EHLO", "MacBook.."), 501, "5.5.4 Invalid domain name<TAG>")
        s.ehlo("device.test")
        self.assertReply(s.docmd("FOO"), 500, "5.3.3 Unrecognized command 'FOO'<TAG>")
        self.assertReply(s.docmd("RSET"), 250, "2.0.0 Resetting")
        self.assertReply(s.docmd("QUIT"), 221, "2.0.0 Service closing transmission channel")
        s.close()

    def test_auth_login_with_swaks(self):
        out = subprocess.run(["swaks", "--server", "localhost:%d" % SIM.ports["smtp"], "--tls",
                              "--tls-ca-path", SIM.ca, "--auth", "LOGIN", "--auth-user", "scanner@contoso.com",
                              "--auth-password", "pw", "--from", "scanner@contoso.com", "--to", "bob@example.net",
                              "--header", "From: scanner@contoso.com"], capture_output=True, text=True).stdout
        self.assertIn("<~  334 VXNlcm5hbWU6", out)
        self.assertIn("<~  334 UGFzc3dvcmQ6", out)
        self.assertIn("<~  235 2.7.0 Authentication successful", out)
        self.assertRegex(out, r"<~  250 2\.0\.0 OK <\S+> \[Hostname=\S+\.PROD\.OUTLOOK\.COM\]")
        rec = SIM.records()[-1]
        self.assertEqual((rec["role"], rec["auth_user"], rec["auth_mech"]), ("smtp", "scanner@contoso.com", "LOGIN"))
        self.assertIn(rec["tls_version"], ("TLSv1.2", "TLSv1.3"))

    def test_bad_password(self):
        s = connect()
        with self.assertRaises(smtplib.SMTPAuthenticationError) as e:
            s.login("scanner@contoso.com", "wrong")
        self.assertEqual(e.exception.smtp_code, 535)
        self.assertRegex(e.exception.smtp_error.decode(),
                         r"^5\.7\.139 Authentication unsuccessful, the user credentials were incorrect\." + TAG)

    def test_basic_disabled_and_retired(self):
        SIM.control("config", {"basic_auth": "disabled"})
        s = connect()
        with self.assertRaises(smtplib.SMTPAuthenticationError) as e:
            s.login("scanner@contoso.com", "pw")
        self.assertRegex(e.exception.smtp_error.decode(), r"^5\.7\.139 Authentication unsuccessful, basic authentication is disabled\." + TAG)
        SIM.control("config", {"basic_auth": "retired"})
        s = connect()
        with self.assertRaises(smtplib.SMTPAuthenticationError) as e:
            s.login("scanner@contoso.com", "pw")
        self.assertEqual((e.exception.smtp_code, e.exception.smtp_error.decode()),
                         (550, "5.7.30 Basic authentication is not supported for Client Submission."))

    def test_smtp_auth_disabled(self):
        text = (r"^5\.7\.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant\. "
                r"Visit https://aka\.ms/smtp_auth_disabled for more information\." + TAG)
        SIM.control("config", {"smtp_auth_disabled": True})
        s = connect()
        code, msg = s.docmd("AUTH", "XOAUTH2 " + xoauth2("erp@contoso.com", token()))
        self.assertEqual(code, 535)
        self.assertRegex(msg.decode(), text)
        SIM.control("config", {"smtp_auth_disabled": False})
        s = connect()       # the per-mailbox setting overrides the tenant's
        with self.assertRaises(smtplib.SMTPAuthenticationError) as e:
            s.login("blocked@contoso.com", "pw")
        self.assertRegex(e.exception.smtp_error.decode(), text)

    def test_xoauth2(self):
        tok = token()
        s = connect()
        self.assertReply(s.docmd("AUTH", "XOAUTH2 " + xoauth2("erp@contoso.com", tok)), 235, "2.7.0 Authentication successful")
        s.sendmail("erp@contoso.com", ["bob@example.net"], MSG % (b"erp@contoso.com", b"bob@example.net"))
        rec = SIM.records()[-1]
        self.assertEqual((rec["auth_user"], rec["auth_mech"], rec["app_id"]), ("erp@contoso.com", "XOAUTH2", "cid"))
        # Without an initial response: a bare 334 first.
        s = connect()
        self.assertEqual(s.docmd("AUTH", "XOAUTH2"), (334, b""))
        self.assertReply(s.docmd(xoauth2("erp@contoso.com", tok)), 235, "2.7.0 Authentication successful")

    def test_xoauth2_refused(self):
        good = token()
        cases = [xoauth2("erp@contoso.com", good[:-4] + "AAAA"),            # forged signature
                 xoauth2("scanner@contoso.com", token("other", "x")),        # app not allowed on the mailbox
                 base64.b64encode(b"user=erp@contoso.com\x01auth=Bearer x").decode(),  # malformed
                 xoauth2("nobody@contoso.com", good)]                         # no such mailbox
        SIM.control("config", {"mailboxes": dict(CONFIG["mailboxes"], **{
            "scanner@contoso.com": {"password": "pw", "send_as": ["noreply@contoso.com"], "apps": ["cid"]}})})
        for b in cases:
            s = connect()
            self.assertReply(s.docmd("AUTH", "XOAUTH2 " + b), 535, "5.7.3 Authentication unsuccessful<TAG>")
            s.close()

    def test_token_expiry_and_revocation(self):
        SIM.control("config", {"token_lifetime": 1})
        tok = token()
        SIM.control("advance", {"seconds": 1.2})
        s = connect()
        self.assertEqual(s.docmd("AUTH", "XOAUTH2 " + xoauth2("erp@contoso.com", tok))[0], 535, "expired token")
        SIM.control("config", {"token_lifetime": 3599})
        tok = token()
        SIM.control("revoke", {})
        s = connect()
        self.assertEqual(s.docmd("AUTH", "XOAUTH2 " + xoauth2("erp@contoso.com", tok))[0], 535, "revoked token")
        s = connect()
        self.assertEqual(s.docmd("AUTH", "XOAUTH2 " + xoauth2("erp@contoso.com", token()))[0], 235, "new token")

    def test_send_as(self):
        s = connect()
        s.login("scanner@contoso.com", "pw")
        s.sendmail("scanner@contoso.com", ["a@example.net"], MSG % (b"noreply@contoso.com", b"a@example.net"))
        with self.assertRaises(smtplib.SMTPDataError) as e:
            s.sendmail("scanner@contoso.com", ["a@example.net"], MSG % (b"ceo@contoso.com", b"a@example.net"))
        self.assertEqual(e.exception.smtp_code, 554)
        self.assertTrue(e.exception.smtp_error.decode().startswith(
            "5.2.252 SendAsDenied; scanner@contoso.com not allowed to send as ceo@contoso.com; "
            "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process "
            "message due to a permanent exception with message [BeginDiagnosticData]Cannot submit message."))
        SIM.control("config", {"send_as_mode": "legacy"})
        s = connect()
        s.login("scanner@contoso.com", "pw")
        self.assertReply(s.docmd("MAIL", "FROM:<ceo@contoso.com>"), 550,
                         "5.7.60 SMTP; Client does not have permissions to send as this sender<TAG>")

    def test_fourth_session(self):
        conns = []
        for _ in range(4):
            s = connect()
            s.login("scanner@contoso.com", "pw")
            conns.append(s)
        for s in conns[:3]:
            s.sendmail("scanner@contoso.com", ["a@example.net"], MSG % (b"scanner@contoso.com", b"a@example.net"))
        with self.assertRaises(smtplib.SMTPDataError) as e:
            conns[3].sendmail("scanner@contoso.com", ["a@example.net"], MSG % (b"scanner@contoso.com", b"a@example.net"))
        self.assertEqual(e.exception.smtp_code, 432)
        self.assertRegex(e.exception.smtp_error.decode(),
                         r"^4\.3\.2 STOREDRV\.ClientSubmit; sender thread limit exceeded \[Hostname=\S+\]$")
        for s in conns:
            s.quit()
        self.assertEqual(SIM.state()["stats"]["max_sessions"]["scanner@contoso.com"], 4)

    def test_rate_delay_and_4xx(self):
        SIM.control("config", {"rate": {"count": 2, "window": 2}})
        s = connect()
        s.login("scanner@contoso.com", "pw")
        t0 = time.time()
        for _ in range(3):
            s.sendmail("scanner@contoso.com", ["a@example.net"], MSG % (b"scanner@contoso.com", b"a@example.net"))
        self.assertGreater(time.time() - t0, 1.5, "the third message waited for the window")
        recs = SIM.records()
        self.assertGreater(recs[-1]["throttle_delay"], 1.0)
        self.assertEqual(recs[0]["throttle_delay"], 0.0)
        SIM.control("config", {"throttle": "4xx", "rate": {"count": 1, "window": 10}})
        with self.assertRaises(smtplib.SMTPDataError) as e:
            s.sendmail("scanner@contoso.com", ["a@example.net"], MSG % (b"scanner@contoso.com", b"a@example.net"))
        self.assertEqual((e.exception.smtp_code, e.exception.smtp_error.decode()),
                         (451, "4.7.500 Server busy. Please try again later from [127.0.0.1]. (AS761)"))

    def test_recipient_quota(self):
        SIM.control("config", {"recipient_quota": {"count": 3, "window": 86400}})
        s = connect()
        s.login("scanner@contoso.com", "pw")
        s.sendmail("scanner@contoso.com", ["a@example.net", "b@example.net"], MSG % (b"scanner@contoso.com", b"a@example.net"))
        with self.assertRaises(smtplib.SMTPDataError) as e:
            s.sendmail("scanner@contoso.com", ["c@example.net", "d@example.net"], MSG % (b"scanner@contoso.com", b"c@example.net"))
        self.assertEqual((e.exception.smtp_code, e.exception.smtp_error.decode()),
                         (554, "5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException"))

    def test_legacy_tls_with_openssl(self):
        # openssl s_client speaks STARTTLS and TLS 1.0; the server answers 421 4.7.66.
        p = subprocess.run(["openssl", "s_client", "-connect", "127.0.0.1:%d" % SIM.ports["smtp"],
                            "-starttls", "smtp", "-tls1", "-cipher", "DEFAULT@SECLEVEL=0", "-ign_eof",
                            "-servername", "localhost"],
                           input="EHLO device.test\r\n", capture_output=True, text=True, timeout=20)
        self.assertRegex(p.stdout, r"421 4\.7\.66 TLS 1\.0 and 1\.1 are not supported\. Please upgrade/update your "
                                   r"client to support TLS 1\.2\. Visit https://aka\.ms/smtp_auth_tls\." + TAG[:-1], p.stdout + p.stderr)
        self.assertEqual(SIM.refused()[-1]["tls_version"], "TLSv1")


class MxEndpoint(Base):
    def test_greeting_ehlo_and_no_auth(self):
        s = smtplib.SMTP()
        code, msg = s.connect("localhost", SIM.ports["mx"])
        s._host = "localhost"   # connect() does not keep it for STARTTLS
        self.assertRegex(msg.decode(), r"^\S+\.mail\.protection\.outlook\.com Microsoft ESMTP MAIL Service ready at "
                                       r"\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d \+0000$")
        s.ehlo("device.test")
        self.assertIn("starttls", s.esmtp_features)
        self.assertReply(s.docmd("AUTH", "LOGIN"), 504, "5.7.4 Unrecognized authentication type<TAG>")
        s.starttls(context=tls_ctx())
        s.ehlo()
        self.assertNotIn("auth", s.esmtp_features)
        self.assertReply(s.docmd("AUTH", "LOGIN"), 504, "5.7.4 Unrecognized authentication type<TAG>")

    def test_direct_send_internal_any_sender_no_tls(self):
        s = connect("mx", tls=False)
        s.sendmail("anyone@gmail.com", ["alice@contoso.com", "bob@fabrikam.com"],
                   MSG % (b"anyone@gmail.com", b"alice@contoso.com"))
        rec = SIM.records()[-1]
        self.assertEqual((rec["role"], rec["tls_version"], rec["connector"]), ("mx", None, None))

    def test_external_without_connector(self):
        s = connect("mx")
        s.mail("scanner@contoso.com")
        self.assertReply(s.rcpt("x@gmail.com"), 550, "5.7.64 TenantAttribution; Relay Access Denied<TAG>")
        SIM.control("config", {"relay_denied_text": "550 5.7.54 SMTP; Unable to relay recipient in non-accepted domain"})
        self.assertReply(s.rcpt("x@gmail.com"), 550, "5.7.54 SMTP; Unable to relay recipient in non-accepted domain")

    def test_certificate_connector(self):
        s = connect("mx", cert="relay")
        s.sendmail("app@contoso.com", ["x@gmail.com"], MSG % (b"app@contoso.com", b"x@gmail.com"))
        rec = SIM.records()[-1]
        self.assertEqual(rec["connector"], "onprem")
        self.assertIn("CN=relay.contoso.com", rec["client_cert_subject"])
        # Relayed mail with a sender outside the accepted domains: refused.
        s.mail("app@example.org")
        self.assertReply(s.rcpt("x@gmail.com"), 550, "5.7.64 TenantAttribution; Relay Access Denied<TAG>")

    def test_connector_wildcards_and_mismatch(self):
        SIM.control("config", {"connectors": [{"name": "wild", "type": "certificate",
                                               "tls_sender_certificate_name": "*.contoso.com"}]})
        s = connect("mx", cert="relay")      # relay.contoso.com under *.contoso.com
        s.sendmail("app@contoso.com", ["x@gmail.com"], MSG % (b"app@contoso.com", b"x@gmail.com"))
        self.assertEqual(SIM.records()[-1]["connector"], "wild")
        s = connect("mx", cert="other")      # relay.example.org: no match
        s.mail("app@contoso.com")
        self.assertEqual(s.rcpt("x@gmail.com")[0], 550)
        SIM.control("config", {"connectors": [{"name": "byname", "type": "certificate",
                                               "tls_sender_certificate_name": "mail.fabrikam.com"}]})
        s = connect("mx", cert="wild")       # SAN mail.fabrikam.com matches
        s.sendmail("app@fabrikam.com", ["x@gmail.com"], MSG % (b"app@fabrikam.com", b"x@gmail.com"))
        self.assertEqual(SIM.records()[-1]["connector"], "byname")

    def test_ip_connector(self):
        SIM.control("config", {"connectors": [{"name": "byip", "type": "ip", "sender_ips": ["127.0.0.1/32"]}]})
        s = connect("mx", tls=False)
        s.sendmail("app@contoso.com", ["x@gmail.com"], MSG % (b"app@contoso.com", b"x@gmail.com"))
        self.assertEqual(SIM.records()[-1]["connector"], "byip")

    def test_reject_direct_send(self):
        SIM.control("config", {"reject_direct_send": True})
        s = connect("mx")
        self.assertReply(s.docmd("MAIL", "FROM:<scanner@contoso.com>"), 550,
                         "5.7.68 TenantInboundAttribution; Direct Send not allowed for this organization from unauthorized sources")
        s.rset()
        self.assertEqual(s.docmd("MAIL", "FROM:<someone@gmail.com>")[0], 250, "inbound mail from outside still flows")
        s = connect("mx", cert="relay")      # a matching connector is exempt
        s.sendmail("scanner@contoso.com", ["alice@contoso.com"], MSG % (b"scanner@contoso.com", b"alice@contoso.com"))


class TokenEndpoint(Base):
    def form(self, **kw):
        f = {"client_id": "cid", "grant_type": "client_credentials", "scope": "https://outlook.office365.com/.default"}
        f.update(kw)
        return f

    def test_secret(self):
        status, body = http_post(SIM.token_url(), self.form(client_secret="s3cret"))
        self.assertEqual(status, 200)
        self.assertEqual((body["token_type"], body["expires_in"], body["ext_expires_in"]), ("Bearer", 3599, 3599))
        claims = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[1] + "=="))
        self.assertEqual((claims["aud"], claims["roles"]), ("https://outlook.office365.com", ["SMTP.SendAsApp"]))
        SIM.control("config", {"expires_in_as_string": True})
        self.assertEqual(http_post(SIM.token_url(), self.form(client_secret="s3cret"))[1]["expires_in"], "3599")

    def aad(self, status, body, code):
        self.assertEqual(status, 401 if code in (7000215, 700027, 700021) else 400, body)
        self.assertEqual(body["error_codes"], [code])
        self.assertTrue(body["error_description"].startswith("AADSTS%d: " % code), body)
        for k in ("timestamp", "trace_id", "correlation_id"):
            self.assertIn(k, body)

    def test_errors(self):
        self.aad(*http_post(SIM.token_url(), self.form(client_secret="wrong")), 7000215)
        st, b = http_post(SIM.token_url(), self.form(client_secret="wrong"))
        self.assertEqual(b["error"], "invalid_client")
        self.assertIn("Ensure the secret being sent in the request is the client secret value, not the client secret ID",
                      b["error_description"])
        self.aad(*http_post(SIM.token_url(), self.form()), 7000218)
        self.aad(*http_post(SIM.token_url(), self.form(client_secret="s3cret", scope="https://foo.microsoft.com/.default")), 70011)
        self.aad(*http_post(SIM.token_url("wrong-tenant.example"), self.form(client_secret="s3cret")), 90002)

    def test_assertions(self):
        typ = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        for alg in ("PS256", "RS256"):
            st, b = http_post(SIM.token_url(), self.form(client_assertion_type=typ, client_assertion=assertion(alg)))
            self.assertEqual(st, 200, (alg, b))
        self.aad(*http_post(SIM.token_url(), self.form(client_assertion_type=typ,
                                                       client_assertion=assertion(key="app2"))), 700027)
        self.aad(*http_post(SIM.token_url(), self.form(client_assertion_type=typ,
                                                       client_assertion=assertion(cert="app2"))), 700027)
        t = int(time.time())
        self.aad(*http_post(SIM.token_url(), self.form(client_assertion_type=typ,
                                                       client_assertion=assertion(nbf=t - 900, exp=t - 600))), 700024)
        self.aad(*http_post(SIM.token_url(), self.form(client_assertion_type=typ,
                                                       client_assertion=assertion(iss="someone-else"))), 700027)
        self.aad(*http_post(SIM.token_url(), self.form(client_assertion_type=typ,
                                                       client_assertion=assertion(aud="https://login.example/x"))), 700021)

    def test_counts_requests(self):
        before = SIM.state()["stats"]["token_requests"]
        for _ in range(3):
            token()
        self.assertEqual(SIM.state()["stats"]["token_requests"] - before, 3)
        self.assertGreaterEqual(SIM.state()["stats"]["token_requests_by_client"]["cid"], 3)

    def test_faults(self):
        SIM.control("fault", {"role": "token", "step": "request", "action": "status", "status": 503})
        self.assertEqual(http_post(SIM.token_url(), self.form(client_secret="s3cret"))[0], 503)
        self.assertEqual(http_post(SIM.token_url(), self.form(client_secret="s3cret"))[0], 200, "one use only")

    def test_fault_for_seconds(self):
        SIM.control("fault", {"role": "token", "step": "request", "action": "status", "status": 503,
                              "for_seconds": 1.5})
        for _ in range(3):
            self.assertEqual(http_post(SIM.token_url(), self.form(client_secret="s3cret"))[0], 503)
        SIM.control("advance", {"seconds": 1.6})
        self.assertEqual(http_post(SIM.token_url(), self.form(client_secret="s3cret"))[0], 200, "over after 1.5 s")
        fired = SIM.state()["faults_fired"]
        self.assertEqual([(f["role"], f["step"], f["status"]) for f in fired], [("token", "request", 503)] * 3)


class Faults(Base):
    def login(self):
        s = connect()
        s.login("scanner@contoso.com", "pw")
        return s

    def test_drop_after_data(self):
        SIM.control("fault", {"step": "after_data", "action": "drop"})
        s = self.login()
        with self.assertRaises(smtplib.SMTPServerDisconnected):
            s.sendmail("scanner@contoso.com", ["a@example.net"], MSG % (b"scanner@contoso.com", b"a@example.net"))
        rec = SIM.records()[-1]
        self.assertTrue(rec["reply_dropped"], "the message was taken, the reply never sent")

    def test_drop_after_rcpt(self):
        SIM.control("fault", {"step": "after_rcpt", "action": "drop"})
        s = self.login()
        s.mail("scanner@contoso.com")
        with self.assertRaises(smtplib.SMTPServerDisconnected):
            s.rcpt("a@example.net")
        self.assertEqual(SIM.records(), [])

    def test_stall(self):
        SIM.control("fault", {"step": "mail", "action": "stall", "seconds": 1.5})
        s = self.login()
        t0 = time.time()
        self.assertEqual(s.mail("scanner@contoso.com")[0], 250)
        self.assertGreater(time.time() - t0, 1.4)

    def test_stall_ends_when_the_client_hangs_up(self):
        SIM.control("fault", {"step": "mail", "action": "stall", "seconds": 30})
        s = self.login()
        port = s.sock.getsockname()[1]
        s.sock.sendall(b"MAIL FROM:<scanner@contoso.com>\r\n")
        wait_for(lambda: SIM.state()["faults_fired"], 10, "the stall to begin at MAIL")
        s.close()
        # Well before the stall's 30 s are up.
        wait_for(lambda: SIM.state()["stats"]["open_sessions"]["scanner@contoso.com"] == 0, 10,
                 "the stalled session to end with its connection")
        self.assertEqual([(f["step"], f["action"], f["client_port"]) for f in SIM.state()["faults_fired"]],
                         [("mail", "stall", port)])

    def test_session_records(self):
        s = self.login()
        port = s.sock.getsockname()[1]
        s.quit()

        def mine():
            try:
                with open(os.path.join(WORK, "sessions.jsonl")) as f:
                    return [r for r in map(json.loads, f) if r["client_port"] == port]
            except FileNotFoundError:
                return []
        rec = wait_for(mine, 10, "the session's record in sessions.jsonl (client port %d)" % port)[-1]
        self.assertEqual(rec["auth_user"], "scanner@contoso.com")
        self.assertLessEqual(rec["start"], rec["end"])

    def test_fault_replies_are_marked(self):
        SIM.control("fault", {"step": "rcpt", "action": "reply"})
        s = self.login()
        s.mail("scanner@contoso.com")
        s.rcpt("a@example.net")
        self.assertTrue(SIM.refused()[-1]["fault"])

    def test_transient_reply_at_a_step(self):
        SIM.control("fault", {"step": "rcpt", "action": "reply"})
        s = self.login()
        s.mail("scanner@contoso.com")
        self.assertReply(s.rcpt("a@example.net"), 451, "4.7.0 Temporary server error. Please try again later. PRX4<TAG>")
        self.assertEqual(s.rcpt("a@example.net")[0], 250, "only once")

    def test_per_recipient_replies(self):
        SIM.control("config", {"rcpt_replies": {"bad@example.net": {"reply": "550 5.1.10 RESOLVER.ADR.RecipientNotFound", "count": -1},
                                                "later@example.net": {"reply": "451 4.4.4 Temporary server error", "count": 1}}})
        s = self.login()
        s.mail("scanner@contoso.com")
        self.assertEqual(s.rcpt("bad@example.net")[0], 550)
        self.assertEqual(s.rcpt("later@example.net")[0], 451)
        self.assertEqual(s.rcpt("later@example.net")[0], 250, "a 4xx for the first attempt only")

    def test_records_and_refusals(self):
        s = self.login()
        s.sendmail("scanner@contoso.com", ["a@example.net"], MSG % (b"scanner@contoso.com", b"a@example.net"))
        rec = SIM.records()[-1]
        for k in ("mail_from", "rcpt_to", "headers", "body_sha256", "role", "auth_user", "tls_version",
                  "client_cert_subject", "received"):
            self.assertIn(k, rec)
        self.assertEqual(rec["headers"]["Subject"], ["test"])
        with open(os.path.join(WORK, "records.jsonl")) as f:
            self.assertEqual(json.loads(f.readlines()[-1])["message_id"], rec["message_id"])
        s2 = connect()
        s2.docmd("MAIL", "FROM:<x@contoso.com>")
        self.assertEqual(SIM.refused()[-1]["stage"], "mail")


# Microsoft Graph sendMail and High Volume Email -------------------------------------

GUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
SENDMAIL = "/v1.0/users/%s/sendMail"
MIME = (b"From: Erp <erp@contoso.com>\r\nTo: Alice <Alice@Example.net>, bob@example.net\r\n"
        b"Cc: carol@contoso.com\r\nBcc: dave@example.org,\r\n Erin <erin@example.org>\r\n"
        b"Subject: graph test\r\nMessage-ID: <m1@device.test>\r\n\r\nbody\r\n")


def graph_token(client_id="cid", secret="s3cret"):
    return SIM.graph_token(client_id, secret)


def b64_lines(mime):
    """base64 in 76-character lines ending in CRLF, as MIME encoders write it."""
    return base64.encodebytes(mime).replace(b"\n", b"\r\n")


def send_mime(mime=MIME, mailbox="erp@contoso.com", token=None, headers=None, body=None):
    return SIM.graph("POST", SENDMAIL % mailbox, token or graph_token(),
                     b64_lines(mime) if body is None else body, headers)


def claims_of(tok):
    return json.loads(base64.urlsafe_b64decode(tok.split(".")[1] + "=="))


class GraphBase(Base):
    def assertGraphError(self, got, status, code, message=None):
        st, headers, body = got
        self.assertEqual(st, status, body)
        err = json.loads(body)["error"]
        self.assertEqual(err["code"], code, err)
        if message is not None:
            self.assertEqual(err["message"], message)
        self.assertRegex(headers["request-id"], GUID)
        self.assertEqual(err["innerError"]["request-id"], headers["request-id"])
        self.assertEqual(err["innerError"]["client-request-id"], headers["client-request-id"])
        self.assertIn("date", headers)
        return headers, err


class TokenScopes(GraphBase):
    def test_graph_scope_token(self):
        st, body = SIM.token(scope="https://graph.microsoft.com/.default")
        self.assertEqual(st, 200, body)
        self.assertEqual((body["token_type"], body["expires_in"]), ("Bearer", 3599))
        c = claims_of(body["access_token"])
        self.assertEqual((c["aud"], c["roles"], c["appid"]), ("https://graph.microsoft.com", ["Mail.Send"], "cid"))
        # graph_roles is the app's Graph permission; roles stays the Outlook one.
        c = claims_of(SIM.graph_token("readonly", "r"))
        self.assertEqual(c["roles"], ["User.Read.All"])
        st, body = SIM.token("readonly", "r")
        self.assertEqual(claims_of(body["access_token"])["roles"], ["IMAP.AccessAsApp"])

    def test_outlook_scope_unchanged(self):
        c = claims_of(token())
        self.assertEqual((c["aud"], c["roles"]), ("https://outlook.office365.com", ["SMTP.SendAsApp"]))
        st, body = SIM.token(scope="https://graph.microsoft.com/Mail.Send")
        self.assertEqual((st, body["error_codes"]), (400, [70011]))

    def test_counts_by_scope(self):
        token()
        graph_token()
        graph_token()
        SIM.token(scope="https://example.com/.default")
        stats = SIM.state()["stats"]
        self.assertEqual(stats["token_requests_by_scope"], {
            "https://outlook.office365.com/.default": 1, "https://graph.microsoft.com/.default": 2,
            "https://example.com/.default": 1})
        self.assertEqual(stats["token_requests"], 4)
        self.assertEqual(stats["token_requests_by_client"], {"cid": 4})

    def test_smtp_refuses_graph_token(self):
        s = connect()
        self.assertReply(s.docmd("AUTH", "XOAUTH2 " + xoauth2("erp@contoso.com", graph_token())), 535,
                         "5.7.3 Authentication unsuccessful<TAG>")
        self.assertReply(s.docmd("AUTH", "XOAUTH2 " + xoauth2("erp@contoso.com", token())), 235,
                         "2.7.0 Authentication successful")

    def test_graph_refuses_outlook_token(self):
        self.assertGraphError(send_mime(token=token()), 401, "InvalidAuthenticationToken",
                              "Access token validation failure. Invalid audience.")
        self.assertGraphError(SIM.graph("GET", "/v1.0/users/erp@contoso.com", token()), 401,
                              "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
        self.assertEqual(SIM.records(), [])

    def test_hve_refuses_graph_token(self):
        s = connect("hve")
        self.assertReply(s.docmd("AUTH", "XOAUTH2 " + xoauth2("hve@contoso.com", graph_token())), 535,
                         "5.7.3 Authentication unsuccessful<TAG>")


class GraphEndpoint(GraphBase):
    def test_send_and_record(self):
        st, headers, body = send_mime(headers={"client-request-id": "c0ffee00-0000-4000-8000-000000000001"})
        self.assertEqual((st, body), (202, b""))
        self.assertEqual(headers["content-length"], "0")
        self.assertEqual(headers["client-request-id"], "c0ffee00-0000-4000-8000-000000000001")
        self.assertRegex(headers["request-id"], GUID)
        self.assertRegex(headers["date"], r"^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$")
        rec = SIM.records()[-1]
        self.assertEqual((rec["role"], rec["mailbox"], rec["app_id"], rec["request_id"]),
                         ("graph", "erp@contoso.com", "cid", headers["request-id"]))
        # Graph has no envelope: the recipients are To, Cc and Bcc, lower-cased.
        self.assertEqual(rec["rcpt_to"], ["alice@example.net", "bob@example.net", "carol@contoso.com",
                                          "dave@example.org", "erin@example.org"])
        self.assertIsNone(rec["mail_from"])
        self.assertEqual(rec["raw_mime"], MIME.decode())
        # The stored copy has no Bcc (continuation line included), the rest byte for byte.
        self.assertEqual(rec["stored_mime"], MIME.decode().replace("Bcc: dave@example.org,\r\n Erin <erin@example.org>\r\n", ""))
        self.assertNotIn("Bcc", rec["headers"])
        self.assertEqual(rec["headers"]["Subject"], ["graph test"])
        self.assertEqual(rec["message_id"], "<m1@device.test>")
        self.assertEqual((rec["size"], rec["body_sha256"]), (len(MIME), hashlib.sha256(MIME).hexdigest()))
        self.assertIn(rec["tls_version"], ("TLSv1.2", "TLSv1.3"))

    def test_base64_forms(self):
        # One line, LF-wrapped, CRLF-wrapped with stray spaces: all the same MIME.
        for body in (base64.b64encode(MIME), base64.encodebytes(MIME),
                     b"  " + b64_lines(MIME).replace(b"\r\n", b" \r\n\t")):
            self.assertEqual(send_mime(body=body)[0], 202, body)
        recs = SIM.records()
        self.assertEqual(len(recs), 3)
        self.assertEqual({r["body_sha256"] for r in recs}, {hashlib.sha256(MIME).hexdigest()})

    def test_client_request_id_generated(self):
        st, headers, _ = send_mime()
        self.assertEqual(st, 202)
        self.assertRegex(headers["client-request-id"], GUID)
        self.assertNotEqual(headers["client-request-id"], headers["request-id"])

    def test_bcc_only(self):
        mime = b"From: erp@contoso.com\r\nBcc: hidden@example.net\r\nSubject: x\r\n\r\nbody\r\n"
        self.assertEqual(send_mime(mime)[0], 202)
        rec = SIM.records()[-1]
        self.assertEqual(rec["rcpt_to"], ["hidden@example.net"])
        self.assertEqual(rec["stored_mime"], "From: erp@contoso.com\r\nSubject: x\r\n\r\nbody\r\n")

    def test_no_recipients(self):
        mime = b"From: erp@contoso.com\r\nSubject: x\r\n\r\nbody\r\n"
        self.assertGraphError(send_mime(mime), 400, "ErrorInvalidRecipients",
                              "At least one recipient is not valid., A message can't be sent because it contains no recipients.")
        self.assertEqual(SIM.records(), [])

    def test_401(self):
        msg = "InvalidAuthenticationToken"
        headers, _ = self.assertGraphError(SIM.graph("POST", SENDMAIL % "erp@contoso.com", None, b64_lines(MIME)),
                                           401, msg, "Access token is empty.")
        self.assertTrue(headers["www-authenticate"].startswith("Bearer "))
        self.assertGraphError(send_mime(headers={"Authorization": "Basic ZXJwOnB3"}), 401, msg, "Access token is empty.")
        self.assertGraphError(send_mime(token="not.a.token"), 401, msg, "Access token validation failure.")
        tok = graph_token()
        forged = tok.rsplit(".", 1)[0] + "." + b64url(b"x" * 32)
        self.assertGraphError(send_mime(token=forged), 401, msg, "Access token validation failure.")
        SIM.control("advance", {"seconds": 3600})
        self.assertGraphError(send_mime(token=tok), 401, msg, "Lifetime validation failed, the token is expired.")
        tok = graph_token()
        self.assertEqual(send_mime(token=tok)[0], 202)
        SIM.control("revoke")
        self.assertGraphError(send_mime(token=tok), 401, msg, "Access token validation failure. The token has been revoked.")
        self.assertEqual(len(SIM.records()), 1)
        refused = [r for r in SIM.refused() if r["role"] == "graph"]
        self.assertEqual([r["status"] for r in refused], [401] * 6)

    def test_403_access_denied(self):
        text = "Access is denied. Check credentials and try again."
        # A Graph token without Mail.Send.
        self.assertGraphError(send_mime(token=graph_token("readonly", "r")), 403, "ErrorAccessDenied", text)
        # An app the mailbox does not allow ("apps", as for SMTP).
        self.assertGraphError(send_mime(token=graph_token("other", "x")), 403, "ErrorAccessDenied", text)
        # An application access policy that leaves the mailbox out.
        mime = MIME.replace(b"erp@contoso.com", b"policy@contoso.com")
        self.assertGraphError(send_mime(mime, "policy@contoso.com"), 403, "ErrorAccessDenied", text)
        # A mailbox without "apps" takes any app with Mail.Send.
        mime = MIME.replace(b"erp@contoso.com", b"scanner@contoso.com")
        self.assertEqual(send_mime(mime, "scanner@contoso.com", token=graph_token("other", "x"))[0], 202)
        self.assertEqual(SIM.records()[-1]["app_id"], "other")

    def test_404(self):
        self.assertGraphError(send_mime(mailbox="nobody@contoso.com"), 404, "ErrorInvalidUser",
                              "The requested user 'nobody@contoso.com' is invalid.")
        self.assertGraphError(SIM.graph("GET", "/v1.0/users/nobody@contoso.com", graph_token()), 404,
                              "ErrorInvalidUser", "The requested user 'nobody@contoso.com' is invalid.")
        for method, path in (("POST", "/v1.0/users/erp@contoso.com/messages"), ("GET", "/v1.0/me"),
                             ("POST", "/beta/users/erp@contoso.com/sendMail"), ("GET", "/")):
            _, err = self.assertGraphError(SIM.graph(method, path, graph_token(), b"" if method == "POST" else None),
                                           404, "ResourceNotFound")
            self.assertTrue(err["message"].startswith("Resource not found for the segment "), err)

    def test_400_invalid_base64(self):
        text = "Invalid base64 string for MIME content."
        for body in (b"this is not base64!", base64.b64encode(MIME)[:-3], b"", MIME):
            self.assertGraphError(send_mime(body=body), 400, "ErrorMimeContentInvalidBase64String", text)
        self.assertEqual(SIM.records(), [])

    def test_400_not_text_plain(self):
        got = send_mime(headers={"Content-Type": "application/json"})
        self.assertGraphError(got, 400, "BadRequest")
        self.assertIn("Unable to read JSON request payload", json.loads(got[2])["error"]["message"])

    def test_413(self):
        text = "The message exceeds the maximum supported size."
        SIM.control("config", {"graph_max_bytes": 1000})
        big = MIME + b"x" * 1000
        # Decoded MIME over the limit, the request itself a reasonable size.
        headers, _ = self.assertGraphError(send_mime(big), 413, "ErrorMessageSizeExceeded", text)
        self.assertNotEqual(headers.get("connection"), "close")
        self.assertEqual(send_mime(MIME + b"x" * (1000 - len(MIME)))[0], 202, "exactly at the limit")
        # A request body far over what the limit allows: refused unread, then closed.
        headers, _ = self.assertGraphError(send_mime(body=b"QUFB" * 100000), 413, "ErrorMessageSizeExceeded", text)
        self.assertEqual(headers["connection"], "close")

    def test_413_before_the_body_is_sent(self):
        # Expect: 100-continue with a huge Content-Length: 413 at once, no 100.
        s = tls_ctx().wrap_socket(socket.create_connection(("localhost", SIM.ports["graph"]), timeout=10),
                                  server_hostname="localhost")
        s.sendall(("POST /v1.0/users/erp@contoso.com/sendMail HTTP/1.1\r\nHost: localhost\r\n"
                   "Authorization: Bearer %s\r\nContent-Type: text/plain\r\nContent-Length: 1000000000\r\n"
                   "Expect: 100-continue\r\n\r\n" % graph_token()).encode())
        t0 = time.time()
        data = b""
        while b"}}}" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        s.close()
        self.assertTrue(data.startswith(b"HTTP/1.1 413 "), data[:200])
        self.assertIn(b'"code": "ErrorMessageSizeExceeded"', data)
        self.assertLess(time.time() - t0, 5)

    def test_send_as(self):
        text = ("The user account which was used to submit this request does not have the right to send mail "
                "on behalf of the specified sending account.")
        mime = MIME.replace(b"From: Erp <erp@contoso.com>", b"From: ceo@contoso.com")
        self.assertGraphError(send_mime(mime), 403, "ErrorSendAsDenied", text)
        mime = b"From: Scanner <noreply@contoso.com>\r\nTo: a@example.net\r\n\r\nx\r\n"
        self.assertEqual(send_mime(mime, "scanner@contoso.com")[0], 202, "noreply is in scanner's send_as")
        mime = b"From: scanner@contoso.com\r\nSender: ceo@contoso.com\r\nTo: a@example.net\r\n\r\nx\r\n"
        self.assertGraphError(send_mime(mime, "scanner@contoso.com"), 403, "ErrorSendAsDenied", text)
        self.assertEqual([r["header_from"] for r in SIM.records()], [["noreply@contoso.com"]])

    def test_429_mailbox_concurrency(self):
        SIM.control("config", {"graph_delay": 1.0, "graph_retry_after": 7})
        tok = graph_token()
        barrier = threading.Barrier(6)
        results = [None] * 6
        scanner = MIME.replace(b"erp@contoso.com", b"scanner@contoso.com")

        def one(i):
            barrier.wait()
            if i < 5:
                results[i] = send_mime(token=tok)
            else:      # another mailbox: a limit of its own
                results[i] = send_mime(scanner, "scanner@contoso.com", token=tok)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        statuses = sorted(r[0] for r in results[:5])
        self.assertEqual(statuses, [202, 202, 202, 202, 429])
        self.assertEqual(results[5][0], 202)
        throttled = [r for r in results if r[0] == 429][0]
        headers, _ = self.assertGraphError(throttled, 429, "ApplicationThrottled",
                                           "Application is over its MailboxConcurrency limit.")
        self.assertEqual(headers["retry-after"], "7")
        stats = SIM.state()["stats"]
        self.assertEqual((stats["graph_throttled"], stats["graph_accepted"]), (1, 5))
        self.assertEqual(stats["graph_max_in_flight"], {"cid|erp@contoso.com": 4, "cid|scanner@contoso.com": 1})
        SIM.control("config", {"graph_delay": 0})
        self.assertEqual(send_mime(token=tok)[0], 202, "the slots are free again")

    def test_concurrency_setting(self):
        SIM.control("config", {"graph_delay": 1.0, "graph_concurrency": 1})
        tok = graph_token()
        results = []
        threads = [threading.Thread(target=lambda: results.append(send_mime(token=tok)[0])) for _ in range(2)]
        for t in threads:
            t.start()
            time.sleep(0.3)
        for t in threads:
            t.join(30)
        self.assertEqual(results, [429, 202])

    def test_get_user(self):
        st, headers, body = SIM.graph("GET", "/v1.0/users/ERP@contoso.com?$select=id,mail", graph_token("readonly", "r"))
        self.assertEqual(st, 200, body)
        user = json.loads(body)
        self.assertEqual((user["userPrincipalName"], user["mail"]), ("erp@contoso.com", "erp@contoso.com"))
        self.assertRegex(user["id"], GUID)
        self.assertEqual(json.loads(SIM.graph("GET", "/v1.0/users/erp%40contoso.com", graph_token())[2])["id"], user["id"])
        self.assertGraphError(SIM.graph("GET", "/v1.0/users/erp@contoso.com"), 401, "InvalidAuthenticationToken",
                              "Access token is empty.")

    def test_stats(self):
        send_mime()
        send_mime(body=b"!")
        SIM.graph("GET", "/v1.0/users/erp@contoso.com", graph_token())
        stats = SIM.state()["stats"]
        self.assertEqual((stats["graph_requests"], stats["graph_accepted"], stats["graph_throttled"]), (3, 1, 0))
        self.assertEqual(stats["graph_in_flight"], {"cid|erp@contoso.com": 0})

    def test_fault_status(self):
        SIM.control("fault", {"role": "graph", "step": "request", "action": "status", "status": 503,
                              "retry_after": 30})
        headers, err = self.assertGraphError(send_mime(), 503, "ServiceUnavailable")
        self.assertEqual(headers["retry-after"], "30")
        self.assertEqual(send_mime()[0], 202, "one use only")
        body = {"error": {"code": "ApplicationThrottled", "message": "Application is over its MailboxConcurrency limit."}}
        SIM.control("fault", {"role": "graph", "step": "request", "action": "status", "status": 429,
                              "retry_after": 2, "body": body})
        st, headers, raw = send_mime()
        self.assertEqual((st, headers["retry-after"], json.loads(raw)), (429, "2", body))
        SIM.control("fault", {"role": "graph", "step": "request", "action": "status", "status": 500})
        self.assertEqual(send_mime()[0], 500)
        self.assertNotIn("retry-after", send_mime()[1])
        fired = SIM.state()["faults_fired"]
        self.assertEqual([(f["role"], f["step"], f["status"]) for f in fired],
                         [("graph", "request", 503), ("graph", "request", 429), ("graph", "request", 500)])
        self.assertEqual(len(SIM.records()), 2)
        self.assertTrue(all(r["fault"] for r in SIM.refused()))

    def test_fault_drop(self):
        SIM.control("fault", {"role": "graph", "step": "request", "action": "drop"})
        with self.assertRaises((ConnectionError, http.client.HTTPException)):
            send_mime()
        self.assertEqual(SIM.records(), [])
        self.assertEqual(send_mime()[0], 202)

    def test_fault_drop_after_accept(self):
        SIM.control("fault", {"role": "graph", "step": "after_accept", "action": "drop"})
        with self.assertRaises((ConnectionError, http.client.HTTPException)):
            send_mime()
        rec = SIM.records()[-1]
        self.assertTrue(rec["reply_dropped"], "the message was taken, the reply never sent")

    def test_fault_stall(self):
        SIM.control("fault", {"role": "graph", "step": "request", "action": "stall", "seconds": 1.5})
        t0 = time.time()
        self.assertEqual(send_mime()[0], 202)
        self.assertGreater(time.time() - t0, 1.4)


class HveEndpoint(Base):
    def test_greeting_and_ehlo(self):
        s = smtplib.SMTP()
        code, msg = s.connect("localhost", SIM.ports["hve"])
        s._host = "localhost"
        self.assertEqual(code, 220)
        self.assertRegex(msg.decode(), r"^\S+ Microsoft ESMTP MAIL Service ready at .* \[[0-9A-F]{16}\]$")
        s.ehlo("device.test")
        self.assertNotIn("auth", s.esmtp_features)
        self.assertReply(s.docmd("AUTH", "LOGIN"), 504, "5.7.4 Unrecognized authentication type<TAG>")
        self.assertReply(s.docmd("MAIL", "FROM:<hve@contoso.com>"), 451, "5.7.3 STARTTLS is required to send mail<TAG>")
        s.starttls(context=tls_ctx())
        code, msg = s.ehlo("device.test")
        self.assertIn("AUTH LOGIN XOAUTH2", msg.decode().split("\n"))
        self.assertIn("SIZE 10485760", msg.decode().split("\n"))
        self.assertReply(s.docmd("MAIL", "FROM:<hve@contoso.com>"), 530, "5.7.57 Client not authenticated to send mail.<TAG>")

    def test_xoauth2(self):
        s = connect("hve")
        self.assertReply(s.docmd("AUTH", "XOAUTH2 " + xoauth2("HVE@contoso.com", token())), 235,
                         "2.7.0 Authentication successful")
        s.sendmail("hve@contoso.com", ["alice@contoso.com"], MSG % (b"hve@contoso.com", b"alice@contoso.com"))
        rec = SIM.records()[-1]
        self.assertEqual((rec["role"], rec["auth_user"], rec["auth_mech"], rec["app_id"], rec["rcpt_to"]),
                         ("hve", "hve@contoso.com", "XOAUTH2", "cid", ["alice@contoso.com"]))
        # Without an initial response: 334, then the data.
        s = connect("hve")
        self.assertEqual(s.docmd("AUTH", "XOAUTH2"), (334, b""))
        self.assertEqual(s.docmd(xoauth2("hve@contoso.com", token()))[0], 235)

    def test_xoauth2_refused_535(self):
        s = connect("hve")
        # An app that is not on the account's allowed apps (Add-HVEAppAccess).
        self.assertReply(s.docmd("AUTH", "XOAUTH2 " + xoauth2("hve@contoso.com", token("other", "x"))), 535,
                         "5.7.3 Authentication unsuccessful<TAG>")
        # No allowed apps at all: none may use the account.
        self.assertReply(s.docmd("AUTH", "XOAUTH2 " + xoauth2("noapps@contoso.com", token())), 535,
                         "5.7.3 Authentication unsuccessful<TAG>")
        tok = token()
        SIM.control("advance", {"seconds": 3600})
        self.assertReply(s.docmd("AUTH", "XOAUTH2 " + xoauth2("hve@contoso.com", tok)), 535,
                         "5.7.3 Authentication unsuccessful<TAG>")

    def test_xoauth2_bad_data_501(self):
        text = ("5.5.124 Invalid XOAUTH2 auth data - User address provided is not valid. "
                "Please ensure the auth data is correctly formatted.")
        s = connect("hve")
        # A mailbox is not an HVE account.
        self.assertReply(s.docmd("AUTH", "XOAUTH2 " + xoauth2("erp@contoso.com", token())), 501, text)
        self.assertReply(s.docmd("AUTH", "XOAUTH2 " + xoauth2("nobody@contoso.com", token())), 501, text)
        bad = [base64.b64encode(b"garbage").decode(), "!!not base64!!",
               base64.b64encode(("user=hve@contoso.com\x01auth=%s\x01\x01" % token()).encode()).decode(),
               base64.b64encode(("user=hve@contoso.com\x01auth=Bearer %s" % token()).encode()).decode(),
               base64.b64encode(("auth=Bearer %s\x01\x01" % token()).encode()).decode()]
        for data in bad:
            self.assertReply(s.docmd("AUTH", "XOAUTH2 " + data), 501, text)
        self.assertEqual(s.docmd("AUTH", "XOAUTH2"), (334, b""))
        self.assertReply(s.docmd(base64.b64encode(b"user=\x01\x01").decode()), 501, text)
        self.assertEqual([r["reply"] for r in SIM.refused()], ["501 " + text] * 8)

    def test_basic_when_retired_and_smtp_auth_off(self):
        SIM.control("config", {"basic_auth": "retired", "smtp_auth_disabled": True})
        s = connect("hve")
        self.assertEqual(s.login("hve@contoso.com", "hve-pw"), (235, b"2.7.0 Authentication successful"))
        s.sendmail("alerts@contoso.com", ["alice@contoso.com"], MSG % (b"alerts@contoso.com", b"alice@contoso.com"))
        rec = SIM.records()[-1]
        self.assertEqual((rec["role"], rec["auth_user"], rec["auth_mech"], rec["app_id"]),
                         ("hve", "hve@contoso.com", "LOGIN", None))
        # The same tenant's ordinary submission refuses Basic.
        s = connect()
        with self.assertRaises(smtplib.SMTPAuthenticationError) as e:
            s.login("scanner@contoso.com", "pw")
        self.assertEqual(e.exception.smtp_code, 535)

    def test_basic_refusals(self):
        s = connect("hve")
        with self.assertRaises(smtplib.SMTPAuthenticationError) as e:
            s.login("hve@contoso.com", "wrong")
        self.assertRegex(e.exception.smtp_error.decode(),
                         r"^5\.7\.139 Authentication unsuccessful, the user credentials were incorrect\." + TAG)
        s = connect("hve")      # a mailbox is not an HVE account
        with self.assertRaises(smtplib.SMTPAuthenticationError) as e:
            s.login("scanner@contoso.com", "pw")
        self.assertEqual(e.exception.smtp_code, 535)
        s = connect("hve")      # an authentication policy without AllowBasicAuthSmtp
        with self.assertRaises(smtplib.SMTPAuthenticationError) as e:
            s.login("oauthonly@contoso.com", "pw")
        self.assertRegex(e.exception.smtp_error.decode(),
                         r"^5\.7\.139 Authentication unsuccessful, basic authentication is disabled\." + TAG)
        s = connect()           # and an HVE account is no mailbox for smtp.office365.com
        with self.assertRaises(smtplib.SMTPAuthenticationError) as e:
            s.login("hve@contoso.com", "hve-pw")
        self.assertEqual(e.exception.smtp_code, 535)

    def test_external_recipient_refused(self):
        s = connect("hve")
        s.login("hve@contoso.com", "hve-pw")
        s.mail("hve@contoso.com")
        self.assertEqual(s.rcpt("x@gmail.com"),
                         (550, b"5.7.1 Unable to relay. External recipients are not allowed for HVE accounts."))
        self.assertEqual(s.rcpt("bob@fabrikam.com")[0], 250, "every accepted domain is internal")
        s.data(MSG % (b"hve@contoso.com", b"bob@fabrikam.com"))
        self.assertEqual(SIM.records()[-1]["rcpt_to"], ["bob@fabrikam.com"])
        ref = SIM.refused()[-1]
        self.assertEqual((ref["role"], ref["stage"], ref["rcpt"]), ("hve", "rcpt", "x@gmail.com"))

    def test_send_as(self):
        s = connect("hve")
        s.login("hve@contoso.com", "hve-pw")
        with self.assertRaises(smtplib.SMTPDataError) as e:
            s.sendmail("hve@contoso.com", ["alice@contoso.com"], MSG % (b"ceo@contoso.com", b"alice@contoso.com"))
        self.assertEqual(e.exception.smtp_code, 554)
        self.assertTrue(e.exception.smtp_error.decode().startswith(
            "5.2.252 SendAsDenied; hve@contoso.com not allowed to send as ceo@contoso.com;"))

    def test_hve_limits(self):
        SIM.control("config", {"hve_limits": {"max_recipients": 2}, "throttle": "4xx"})
        s = connect("hve")
        s.login("hve@contoso.com", "hve-pw")
        s.mail("hve@contoso.com")
        s.rcpt("a@contoso.com")
        s.rcpt("b@contoso.com")
        self.assertReply(s.rcpt("c@contoso.com"), 452, "4.5.3 Too many recipients<TAG>")
        s.rset()
        SIM.control("config", {"hve_limits": {"rate": {"count": 1, "window": 60}}})
        s.sendmail("hve@contoso.com", ["a@contoso.com"], MSG % (b"hve@contoso.com", b"a@contoso.com"))
        with self.assertRaises(smtplib.SMTPDataError) as e:
            s.sendmail("hve@contoso.com", ["a@contoso.com"], MSG % (b"hve@contoso.com", b"a@contoso.com"))
        self.assertEqual(e.exception.smtp_code, 451)
        # The mailbox limits are not the HVE account's.
        m = connect()
        m.login("scanner@contoso.com", "pw")
        for _ in range(2):
            m.sendmail("scanner@contoso.com", ["a@contoso.com"], MSG % (b"scanner@contoso.com", b"a@contoso.com"))
        self.assertEqual([r["role"] for r in SIM.records()], ["hve", "smtp", "smtp"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
