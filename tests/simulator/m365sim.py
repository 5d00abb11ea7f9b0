#!/usr/bin/python3
"""m365sim.py - a Microsoft 365 (Exchange Online) stand-in for m365relay's tests.

Three roles on loopback, each on its own port:
  smtp   smtp.office365.com:587 - SMTP AUTH client submission
  mx     <tenant>.mail.protection.outlook.com:25 - Direct Send and connector relay
  token  login.microsoftonline.com - the OAuth2 client-credentials token endpoint (HTTPS)
plus a control port (plain HTTP, loopback) for tests to change flags, add
faults and read what was received.

Every reply text comes from doc/exchange-online.md at the top of the repository
(Appendix A and the sections it cites); where the reference marks a fact as
unconfirmed the choice is noted here.  See README in this directory.

Debian's /usr/bin/python3 (3.11) and python3-cryptography only.
"""
import argparse
import asyncio
import base64
import copy
import datetime
import email.parser
import email.policy
import hashlib
import hmac
import http.server
import ipaddress
import json
import os
import random
import re
import secrets
import ssl
import sys
import threading
import time
import urllib.parse
import warnings

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

# Reply texts (Appendix A).  {tag} is the server tag of the reference.
R = {
    "starttls": "220 2.0.0 SMTP server ready",
    "auth_bad_type": "504 5.7.4 Unrecognized authentication type{tag}",
    "auth_ok": "235 2.7.0 Authentication successful",
    "auth_failed": "535 5.7.3 Authentication unsuccessful{tag}",
    "smtp_auth_disabled": "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.{tag}",
    "basic_disabled": "535 5.7.139 Authentication unsuccessful, basic authentication is disabled.{tag}",
    "basic_retired": "550 5.7.30 Basic authentication is not supported for Client Submission.",
    "bad_credentials": "535 5.7.139 Authentication unsuccessful, the user credentials were incorrect.{tag}",
    "tls_required": "451 5.7.3 STARTTLS is required to send mail{tag}",
    "not_authenticated": "530 5.7.57 Client not authenticated to send mail.{tag}",
    "mail_ok": "250 2.1.0 Sender OK",
    "rcpt_ok": "250 2.1.5 Recipient OK",
    "data": "354 Start mail input; end with <CRLF>.<CRLF>",
    "queued": "250 2.0.0 OK <{msgid}> [Hostname={hostname}]",
    "send_as_denied": "554 5.2.252 SendAsDenied; {auth} not allowed to send as {sender}; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception with message [BeginDiagnosticData]Cannot submit message. 1.84300:0A000000, 1.84300:0A000000",
    "send_as_legacy": "550 5.7.60 SMTP; Client does not have permissions to send as this sender{tag}",
    "thread_limit": "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded [Hostname={hostname}]",
    "quota": "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
    "legacy_tls": "421 4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to support TLS 1.2. Visit https://aka.ms/smtp_auth_tls.{tag}",
    "transient": "451 4.7.0 Temporary server error. Please try again later. PRX4{tag}",
    "direct_send_blocked": "550 5.7.68 TenantInboundAttribution; Direct Send not allowed for this organization from unauthorized sources",
    "relay_denied": "550 5.7.64 TenantAttribution; Relay Access Denied{tag}",
    "reset": "250 2.0.0 Resetting",
    "quit": "221 2.0.0 Service closing transmission channel",
    "noop": "250 2.0.0 OK",
    "unknown": "500 5.3.3 Unrecognized command '{cmd}'{tag}",
    "bad_helo": "501 5.5.4 Invalid domain name{tag}",
    "hello_first": "503 5.5.2 Send hello first{tag}",
    "bad_sequence": "503 5.5.1 Bad sequence of commands{tag}",
    # Not in the reference (unconfirmed there): our choices, documented in README.
    "too_many_rcpts": "452 4.5.3 Too many recipients{tag}",
    "too_big": "552 5.3.4 Message size exceeds fixed maximum message size{tag}",
    "line_too_long": "500 5.5.2 Line too long{tag}",
    "throttled": "451 4.7.500 Server busy. Please try again later from [{ip}]. (AS761)",
}

EHLO_KEYWORDS = ["SIZE {size}", "PIPELINING", "DSN", "ENHANCEDSTATUSCODES", "STARTTLS",
                 "8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8"]

DEFAULT_CONFIG = {
    "tenant_ids": ["contoso.onmicrosoft.com", "contoso.com"],
    "accepted_domains": ["contoso.com"],
    "smtp_auth_disabled": False,      # Set-TransportConfig -SmtpClientAuthenticationDisabled
    "basic_auth": "allowed",          # allowed | disabled (535 5.7.139) | retired (550 5.7.30)
    "reject_direct_send": False,      # Set-OrganizationConfig -RejectDirectSend
    "send_as_mode": "submission",     # submission (554 5.2.252 after DATA) | legacy (550 5.7.60 at MAIL)
    "concurrency": 3,                 # sessions per mailbox; the next gets 432 4.3.2 after DATA
    "rate": {"count": 30, "window": 60},   # messages per mailbox
    "throttle": "delay",              # delay (the 2024 doc) | 4xx
    "recipient_quota": {"count": 10000, "window": 86400},
    "max_recipients": 500,
    "max_size": 157286400,
    "token_lifetime": 3599,
    "expires_in_as_string": False,    # the v1 endpoint's form
    "clock_offset": 0,                # seconds the token endpoint's clock is ahead
    "scope": "https://outlook.office365.com/.default",
    "audience": "https://outlook.office365.com",
    "relay_denied_text": None,        # override of the 5.7.64 reply
    "mailboxes": {},                  # address -> {password, send_as, smtp_auth_disabled, apps}
    "apps": {},                       # client_id -> {secret, certificates: [pem paths], roles}
    "connectors": [],                 # {name, type: certificate|ip, tls_sender_certificate_name | sender_ips}
    "rcpt_replies": {},               # address -> {"reply": "...", "count": N} (N: times; -1 always)
}


ADVANCED = [0.0]   # seconds the simulator's clock was moved ahead (POST /advance)


def now():
    return time.time() + ADVANCED[0]


def tag(role):
    """A server tag in the post-2023 form: host, ISO time with ms, session hex."""
    t = datetime.datetime.now(datetime.timezone.utc)
    if role == "smtp":
        host = "SIM%02dPR%02dCA%04d.namprd%02d.prod.outlook.com" % (
            random.randint(1, 9), random.randint(1, 9), random.randint(1, 999), random.randint(1, 20))
    else:
        host = "SIM%02dEUR%02dFT%03d.eop-EUR03.prod.protection.outlook.com" % (
            random.randint(1, 9), random.randint(1, 9), random.randint(1, 999))
    return " [%s %s.%03dZ %016X]" % (host, t.strftime("%Y-%m-%dT%H:%M:%S"),
                                     t.microsecond // 1000, random.getrandbits(64))


def b64url(b):
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode()


def b64url_decode(s):
    s = s + "=" * (-len(s) % 4)
    return base64.urlsafe_b64decode(s.encode())


def domain_of(addr):
    return addr.rsplit("@", 1)[-1].lower() if "@" in addr else ""


def name_matches(pattern, name):
    """Connector certificate names (reference 4.4): an SMTP domain, or
    *.domain matching any name below it (not the domain itself)."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        return name.endswith(pattern[1:]) and len(name) > len(pattern) - 1
    return pattern == name


class State:
    """Everything the roles share; guarded by one lock (asyncio + HTTP threads)."""

    def __init__(self, config, statedir, ports):
        self.lock = threading.Lock()
        self.config = config
        self.statedir = statedir
        self.ports = ports
        self.key = secrets.token_bytes(32)    # signs issued tokens (HS256)
        self.reset()

    def reset(self):
        with self.lock:
            self.records = []
            self.refused = []
            self.faults = []
            self.revoked = set()
            self.issued = {}
            self.token_requests = 0
            self.token_requests_by_client = {}
            self.sessions = {}          # mailbox -> open authenticated sessions
            self.max_sessions = {}      # mailbox -> highest seen
            self.sent = {}              # mailbox -> [(time, n_rcpts)]
            self.connections = 0
            self.rcpt_reply_used = {}
            self.fired = []             # faults that fired: time, role, step, action, client port
            for name in ("records.jsonl", "refused.jsonl", "sessions.jsonl", "faults.jsonl"):
                open(os.path.join(self.statedir, name), "w").close()

    def record(self, kind, rec):
        with self.lock:
            if kind == "records":
                self.records.append(rec)
            elif kind == "refused":
                self.refused.append(rec)
            elif kind == "faults":
                self.fired.append(rec)
            with open(os.path.join(self.statedir, kind + ".jsonl"), "a") as f:
                f.write(json.dumps(rec) + "\n")

    def take_fault(self, role, step, client_port=None):
        """The first fault armed for this role and step (consumes one use).
        A fault with "for_seconds" fires every time until that long after
        it was armed; its count is not used."""
        t = now()
        with self.lock:
            for f in self.faults:
                if f.get("step") != step or f.get("role", "any") not in ("any", role):
                    continue
                if "for_seconds" in f:
                    if t >= f["armed"] + float(f["for_seconds"]):
                        continue
                elif f.get("count", 1) == 0:
                    continue
                elif f.get("count", 1) > 0:
                    f["count"] = f.get("count", 1) - 1
                fired = dict(f)
                break
            else:
                return None
        self.record("faults", {"time": t, "role": role, "step": step, "action": fired.get("action"),
                               "reply": fired.get("reply"), "status": fired.get("status"),
                               "seconds": fired.get("seconds"), "client_port": client_port})
        return fired

    def mailbox(self, addr):
        for k, v in self.config["mailboxes"].items():
            if k.lower() == addr.lower():
                return k, v
        return None, None

    def internal(self, addr):
        d = domain_of(addr)
        return any(d == a.lower() for a in self.config["accepted_domains"])


# Tokens -------------------------------------------------------------------------

def issue_token(state, client_id, tenant):
    cfg = state.config
    app = cfg["apps"][client_id]
    t = int(now())
    claims = {"aud": cfg["audience"], "iss": "https://sts.windows.net/%s/" % tenant,
              "iat": t, "nbf": t, "exp": t + int(cfg["token_lifetime"]), "appid": client_id,
              "tid": tenant, "roles": app.get("roles", ["SMTP.SendAsApp"]),
              "jti": secrets.token_hex(8)}
    header = {"typ": "JWT", "alg": "HS256"}
    signing = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    sig = hmac.new(state.key, signing.encode(), hashlib.sha256).digest()
    token = signing + "." + b64url(sig)
    with state.lock:
        state.issued[claims["jti"]] = claims
    return token, claims


def check_token(state, token):
    """The claims of a token this endpoint issued and that still holds, or None."""
    try:
        h, c, s = token.split(".")
        sig = hmac.new(state.key, (h + "." + c).encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(sig, b64url_decode(s)):
            return None
        claims = json.loads(b64url_decode(c))
    except (ValueError, json.JSONDecodeError):
        return None
    with state.lock:
        if claims.get("jti") in state.revoked or "*" in state.revoked:
            return None
    if claims.get("exp", 0) <= now() or claims.get("aud") != state.config["audience"]:
        return None
    if "SMTP.SendAsApp" not in claims.get("roles", []):
        return None
    return claims


# SMTP -----------------------------------------------------------------------------

class Drop(Exception):
    """A fault: close the connection without a reply."""


class Session:
    def __init__(self, state, role, reader, writer, contexts):
        self.st = state
        self.role = role
        self.r = reader
        self.w = writer
        self.contexts = contexts
        peer = writer.get_extra_info("peername")
        self.ip = peer[0] if peer else "unknown"
        self.port = peer[1] if peer else None
        self.session_start = None      # when the session counted for its mailbox
        self.host = ("SIM%02dPR01CA%04d.outlook.office365.com" % (random.randint(1, 9), random.randint(1, 999))
                     if role == "smtp" else
                     "SIM%02dEUR03FT%03d.mail.protection.outlook.com" % (random.randint(1, 9), random.randint(1, 999)))
        self.sid = "%016X" % random.getrandbits(64)
        # The mailbox server named in "250 2.0.0 OK <id> [Hostname=...]".
        self.backend = "SIM%02dMB%04d.NAMP%03d.PROD.OUTLOOK.COM" % (
            random.randint(1, 9), random.randint(1, 9999), random.randint(1, 999))
        self.helo = None
        self.tls = None               # TLS version once STARTTLS is done
        self.cert_subject = None
        self.cert_names = []
        self.auth_user = None
        self.auth_mech = None
        self.app_id = None
        self.counted = False           # counted in the mailbox's sessions
        self.over_limit = False
        self.reset_tx()

    def reset_tx(self):
        self.mail_from = None
        self.rcpts = []
        self.mail_size = None

    # I/O ---------------------------------------------------------------
    async def send(self, line):
        line = line.replace("{tag}", tag(self.role)).replace("{hostname}", self.backend)
        self.w.write((line + "\r\n").encode())
        await self.w.drain()

    async def readline(self):
        try:
            line = await asyncio.wait_for(self.r.readline(), timeout=600)
        except ValueError:     # longer than the stream's limit
            await self.send(R["line_too_long"])
            raise Drop()
        if not line:
            raise Drop()
        return line

    async def fault(self, step):
        f = self.st.take_fault(self.role, step, self.port)
        if f is None:
            return False
        action = f.get("action")
        if action == "drop":
            self.refuse(step, "fault: connection dropped", fault=True)
            raise Drop()
        if action == "stall":
            # The stall ends early when the client hangs up (a server
            # notices a closed connection): the session is gone then.
            end = now() + float(f.get("seconds", 30))
            while now() < end:
                if getattr(self.r, "_eof", False) or self.w.is_closing():
                    raise Drop()
                await asyncio.sleep(min(0.1, max(end - now(), 0)))
            return False
        if action == "reply":
            reply = f.get("reply", R["transient"])
            self.refuse(step, reply, fault=True)
            await self.send(reply)
            return True
        if action == "extra":
            # A reply nobody asked for, then the real one: the client's
            # replies are out of step with its commands from here on.
            self.refuse(step, "fault: extra reply", fault=True)
            await self.send(f.get("reply", "250 2.1.0 Sender OK"))
            return False
        return False

    def refuse(self, stage, reply, **extra):
        rec = {"role": self.role, "time": now(), "stage": stage, "reply": reply.replace("{tag}", ""),
               "client_ip": self.ip, "mail_from": self.mail_from, "rcpt_to": list(self.rcpts),
               "auth_user": self.auth_user, "tls_version": self.tls,
               "client_cert_subject": self.cert_subject, "client_port": self.port}
        rec.update(extra)
        self.st.record("refused", rec)

    # Session -------------------------------------------------------------
    async def run(self):
        with self.st.lock:
            self.st.connections += 1
        try:
            if await self.fault("connect"):
                return
            t = datetime.datetime.now(datetime.timezone.utc)
            date = "%s, %d %s" % (t.strftime("%a"), t.day, t.strftime("%b %Y %H:%M:%S +0000"))
            if self.role == "smtp":
                await self.send("220 %s Microsoft ESMTP MAIL Service ready at %s [%s]" % (self.host, date, self.sid))
            else:
                await self.send("220 %s Microsoft ESMTP MAIL Service ready at %s" % (self.host, date))
            while True:
                raw = await self.readline()
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                if not await self.command(line):
                    break
        except (Drop, ConnectionError, asyncio.TimeoutError, ssl.SSLError):
            pass
        finally:
            self.release()
            try:
                self.w.close()
            except Exception:
                pass

    def release(self):
        if self.counted:
            with self.st.lock:
                self.st.sessions[self.auth_user] -= 1
            self.counted = False
            self.st.record("sessions", {"role": self.role, "auth_user": self.auth_user,
                                        "start": self.session_start, "end": now(),
                                        "client_ip": self.ip, "client_port": self.port})

    def ehlo_lines(self):
        kws = []
        for k in EHLO_KEYWORDS:
            k = k.replace("{size}", str(self.st.config["max_size"]))
            if k == "STARTTLS" and self.tls:
                if self.role == "smtp":
                    kws.append("AUTH LOGIN XOAUTH2")   # in STARTTLS's place
                continue
            kws.append(k)
        return ["250-%s Hello [%s]" % (self.host, self.ip)] + \
            ["250-" + k for k in kws[:-1]] + ["250 " + kws[-1]]

    async def command(self, line):
        verb, _, arg = line.partition(" ")
        verb = verb.upper()
        if verb in ("EHLO", "HELO"):
            if await self.fault("ehlo"):
                return True
            name = arg.strip()
            if not name or ".." in name or not re.fullmatch(r"[A-Za-z0-9._\-\[\]:]+", name):
                await self.send(R["bad_helo"])
                return True
            self.helo = name
            self.reset_tx()
            if verb == "HELO":
                await self.send("250 %s Hello [%s]" % (self.host, self.ip))
            else:
                for l in self.ehlo_lines():
                    await self.send(l)
            return True
        if verb == "STARTTLS":
            return await self.starttls()
        if verb == "AUTH":
            return await self.auth(arg)
        if verb == "MAIL":
            return await self.mail(arg)
        if verb == "RCPT":
            return await self.rcpt(arg)
        if verb == "DATA":
            return await self.data()
        if verb == "BDAT":
            return await self.bdat(arg)
        if verb == "RSET":
            self.reset_tx()
            await self.send(R["reset"])
            return True
        if verb == "NOOP":
            await self.send(R["noop"])
            return True
        if verb == "QUIT":
            await self.send(R["quit"])
            return False
        await self.send(R["unknown"].replace("{cmd}", line[:40]))
        return True

    async def starttls(self):
        if self.helo is None:
            await self.send(R["hello_first"])
            return True
        if self.tls:
            await self.send(R["bad_sequence"])
            return True
        if await self.fault("starttls"):
            return True
        await self.send(R["starttls"])
        try:
            await self.w.start_tls(self.contexts[self.role])
        except (ssl.SSLError, ConnectionError, OSError) as e:
            self.refuse("starttls", "TLS handshake failed: %s" % e)
            raise Drop()
        obj = self.w.get_extra_info("ssl_object")
        self.tls = obj.version()
        der = obj.getpeercert(binary_form=True)
        if der:
            cert = x509.load_der_x509_certificate(der)
            self.cert_subject = cert.subject.rfc4514_string()
            self.cert_names = [a.value for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
            try:
                san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
                self.cert_names += san.value.get_values_for_type(x509.DNSName)
            except x509.ExtensionNotFound:
                pass
        self.helo = None
        self.reset_tx()
        if self.tls in ("TLSv1", "TLSv1.1"):
            self.refuse("starttls", R["legacy_tls"])
            await self.send(R["legacy_tls"])
            return False
        return True

    # AUTH ------------------------------------------------------------------
    async def auth(self, arg):
        mech, _, initial = arg.strip().partition(" ")
        mech = mech.upper()
        if self.role != "smtp" or not self.tls or mech not in ("LOGIN", "XOAUTH2"):
            await self.send(R["auth_bad_type"])
            return True
        if self.auth_user:
            await self.send(R["bad_sequence"])
            return True
        if await self.fault("auth"):
            return True
        if mech == "LOGIN":
            if initial:         # RFC 4954 initial response: the user name
                user = initial.encode()
            else:
                await self.send("334 VXNlcm5hbWU6")
                user = (await self.readline()).strip()
            await self.send("334 UGFzc3dvcmQ6")
            pw = (await self.readline()).strip()
            try:
                user = base64.b64decode(user).decode()
                pw = base64.b64decode(pw).decode()
            except (ValueError, UnicodeDecodeError):
                return await self.auth_fail(R["auth_failed"], "LOGIN", None)
            return await self.auth_login(user, pw)
        if not initial:
            await self.send("334 ")
            initial = (await self.readline()).decode().strip()
        return await self.auth_xoauth2(initial)

    async def auth_fail(self, reply, mech, user):
        self.refuse("auth", reply, auth_mech=mech, attempted_user=user)
        await self.send(reply)
        return True

    def smtp_auth_disabled(self, box):
        if box is not None and box.get("smtp_auth_disabled") is not None:
            return box["smtp_auth_disabled"]
        return self.st.config["smtp_auth_disabled"]

    async def auth_login(self, user, pw):
        name, box = self.st.mailbox(user)
        if self.smtp_auth_disabled(box):
            return await self.auth_fail(R["smtp_auth_disabled"], "LOGIN", user)
        mode = self.st.config["basic_auth"]
        if mode == "retired":
            return await self.auth_fail(R["basic_retired"], "LOGIN", user)
        if mode == "disabled":
            return await self.auth_fail(R["basic_disabled"], "LOGIN", user)
        if box is None or box.get("password") is None or not hmac.compare_digest(box["password"], pw):
            return await self.auth_fail(R["bad_credentials"], "LOGIN", user)
        return await self.auth_ok(name, "LOGIN", None)

    async def auth_xoauth2(self, b64):
        try:
            raw = base64.b64decode(b64, validate=True).decode()
            parts = dict(p.split("=", 1) for p in raw.split("\x01") if p)
            user, bearer = parts["user"], parts["auth"]
            if not raw.endswith("\x01\x01") or not bearer.startswith("Bearer "):
                raise ValueError("layout")
        except (ValueError, KeyError, UnicodeDecodeError):
            return await self.auth_fail(R["auth_failed"], "XOAUTH2", None)
        name, box = self.st.mailbox(user)
        if self.smtp_auth_disabled(box):
            return await self.auth_fail(R["smtp_auth_disabled"], "XOAUTH2", user)
        claims = check_token(self.st, bearer[7:])
        if claims is None or box is None:
            return await self.auth_fail(R["auth_failed"], "XOAUTH2", user)
        apps = box.get("apps")
        if apps is not None and claims["appid"] not in apps:
            return await self.auth_fail(R["auth_failed"], "XOAUTH2", user)
        return await self.auth_ok(name, "XOAUTH2", claims["appid"])

    async def auth_ok(self, name, mech, app):
        self.auth_user, self.auth_mech, self.app_id = name, mech, app
        with self.st.lock:
            n = self.st.sessions.get(name, 0) + 1
            self.st.sessions[name] = n
            self.st.max_sessions[name] = max(self.st.max_sessions.get(name, 0), n)
            self.over_limit = n > self.st.config["concurrency"]
        self.counted = True
        self.session_start = now()
        await self.send(R["auth_ok"])
        return True

    # Transaction -------------------------------------------------------------
    def may_send_as(self, addr):
        if addr.lower() == self.auth_user.lower():
            return True
        _, box = self.st.mailbox(self.auth_user)
        return any(a.lower() == addr.lower() for a in (box or {}).get("send_as", []))

    def connector(self):
        """The inbound connector this session matches, or None."""
        for c in self.st.config["connectors"]:
            if c.get("type") == "certificate" and self.cert_names:
                want = c.get("tls_sender_certificate_name", "")
                if any(name_matches(want, n) for n in self.cert_names):
                    return c["name"]
            if c.get("type") == "ip":
                ip = ipaddress.ip_address(self.ip)
                if any(ip in ipaddress.ip_network(n, strict=False) for n in c.get("sender_ips", [])):
                    return c["name"]
        return None

    @staticmethod
    def path(arg, keyword):
        m = re.match(r"\s*%s:\s*<([^>]*)>(.*)$" % keyword, arg, re.I)
        if not m:
            return None, {}
        params = {}
        for p in m.group(2).split():
            k, _, v = p.partition("=")
            params[k.upper()] = v
        return m.group(1), params

    async def mail(self, arg):
        if self.helo is None:
            await self.send(R["hello_first"])
            return True
        if self.mail_from is not None:
            await self.send(R["bad_sequence"])
            return True
        if self.role == "smtp" and not self.tls:
            self.refuse("mail", R["tls_required"])
            await self.send(R["tls_required"])
            return True
        if self.role == "smtp" and not self.auth_user:
            self.refuse("mail", R["not_authenticated"])
            await self.send(R["not_authenticated"])
            return True
        addr, params = self.path(arg, "FROM")
        if addr is None:
            await self.send("501 5.5.4 Invalid arguments{tag}")
            return True
        if await self.fault("mail"):
            return True
        if "SIZE" in params and params["SIZE"].isdigit() and int(params["SIZE"]) > self.st.config["max_size"]:
            self.refuse("mail", R["too_big"])
            await self.send(R["too_big"])
            return True
        if self.role == "smtp" and self.st.config["send_as_mode"] == "legacy" and addr and not self.may_send_as(addr):
            self.refuse("mail", R["send_as_legacy"])
            await self.send(R["send_as_legacy"])
            return True
        if self.role == "mx" and self.st.config["reject_direct_send"] and self.st.internal(addr) \
                and self.connector() is None:
            self.refuse("mail", R["direct_send_blocked"], attempted_from=addr)
            await self.send(R["direct_send_blocked"])
            return True
        self.mail_from = addr
        self.mail_size = params.get("SIZE")
        await self.send(R["mail_ok"])
        return True

    async def rcpt(self, arg):
        if self.mail_from is None:
            await self.send(R["bad_sequence"])
            return True
        addr, _ = self.path(arg, "TO")
        if not addr:
            await self.send("501 5.1.3 Invalid address{tag}")
            return True
        if await self.fault("rcpt"):
            return True
        with self.st.lock:
            forced = None
            for k, v in self.st.config["rcpt_replies"].items():
                if k.lower() == addr.lower():
                    used = self.st.rcpt_reply_used.get(k, 0)
                    if v.get("count", -1) < 0 or used < v["count"]:
                        self.st.rcpt_reply_used[k] = used + 1
                        forced = v["reply"]
        if forced:
            self.refuse("rcpt", forced, rcpt=addr)
            await self.send(forced)
            return True
        if len(self.rcpts) >= self.st.config["max_recipients"]:
            await self.send(R["too_many_rcpts"])
            return True
        if self.role == "mx" and not self.st.internal(addr):
            reply = None
            if self.connector() is None:
                reply = self.st.config["relay_denied_text"] or R["relay_denied"]
            elif not self.st.internal(self.mail_from or ""):
                # Relayed mail must come from an accepted domain (ATTR36).
                reply = self.st.config["relay_denied_text"] or R["relay_denied"]
            if reply:
                self.refuse("rcpt", reply, rcpt=addr)
                await self.send(reply)
                return True
        self.rcpts.append(addr)
        if await self.fault("after_rcpt"):
            return True
        await self.send(R["rcpt_ok"])
        return True

    async def data(self):
        if not self.rcpts:
            await self.send("503 5.5.1 Valid RCPT command must precede DATA{tag}")
            return True
        if await self.fault("data"):
            return True
        await self.send(R["data"])
        body = bytearray()
        too_big = False
        while True:
            l = await self.readline()
            if l in (b".\r\n", b".\n"):
                break
            if l.startswith(b"."):
                l = l[1:]
            if len(body) + len(l) > self.st.config["max_size"]:
                too_big = True
            else:
                body += l
        if too_big:
            self.refuse("data", R["too_big"])
            await self.send(R["too_big"])
            self.reset_tx()
            return True
        return await self.end_of_data(bytes(body))

    async def bdat(self, arg):
        parts = arg.split()
        if not parts or not parts[0].isdigit() or not self.rcpts:
            await self.send(R["bad_sequence"])
            return True
        chunk = await self.r.readexactly(int(parts[0]))
        self.bdat_buf = getattr(self, "bdat_buf", b"") + chunk
        if len(parts) > 1 and parts[1].upper() == "LAST":
            body, self.bdat_buf = self.bdat_buf, b""
            return await self.end_of_data(body)
        await self.send("250 2.0.0 %d octets received" % len(chunk))
        return True

    async def end_of_data(self, body):
        received = now()
        if await self.fault("eom"):
            self.reset_tx()
            return True
        f = self.st.take_fault(self.role, "after_data", self.port)
        if f and f.get("action") == "drop":
            # The message is in; the client never hears so.  RFC 5321 6.1
            # allows the duplicate this causes.
            self.accept(body, received, dropped_reply=True)
            raise Drop()
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(body, headersonly=True)
        header_from = msg.get("From", "")
        m = re.search(r"<([^>]+)>", header_from)
        from_addr = (m.group(1) if m else header_from).strip()
        if self.role == "smtp":
            reply = None
            if self.over_limit:
                reply = R["thread_limit"]
            elif not self.may_send_as(from_addr) or (self.mail_from and not self.may_send_as(self.mail_from)):
                reply = R["send_as_denied"].replace("{auth}", self.auth_user).replace(
                    "{sender}", from_addr if not self.may_send_as(from_addr) else self.mail_from)
            else:
                reply = await self.limits(received)
            if reply:
                self.refuse("eom", reply, header_from=from_addr)
                await self.send(reply)
                self.reset_tx()
                return True
        msgid = self.accept(body, received)
        await self.send(R["queued"].replace("{msgid}", msgid))
        self.reset_tx()
        return True

    async def limits(self, received):
        """Rolling recipient quota, then the message rate (delay or 4xx)."""
        cfg = self.st.config
        with self.st.lock:
            hist = self.st.sent.setdefault(self.auth_user, [])
            q = cfg["recipient_quota"]
            used = sum(n for t, n in hist if t > received - q["window"])
            if used + len(self.rcpts) > q["count"]:
                return R["quota"]
        rate = cfg["rate"]
        while True:
            with self.st.lock:
                recent = [t for t, _ in hist if t > now() - rate["window"]]
                if len(recent) < rate["count"]:
                    hist.append((now(), len(self.rcpts)))
                    self.throttled_for = now() - received
                    return None
                if cfg["throttle"] != "delay":
                    return R["throttled"].replace("{ip}", self.ip)
                wait = min(recent) + rate["window"] - now()
            await asyncio.sleep(max(wait, 0.01))

    def accept(self, body, received, dropped_reply=False):
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(body, headersonly=True)
        headers = {}
        for k, v in msg.items():
            headers.setdefault(k, []).append(str(v))
        msgid = "%s@%s" % (secrets.token_hex(8), self.host.lower())
        rec = {"role": self.role, "received": received, "accepted": now(),
               "throttle_delay": round(getattr(self, "throttled_for", 0.0), 3),
               "mail_from": self.mail_from, "rcpt_to": list(self.rcpts), "headers": headers,
               "body_sha256": hashlib.sha256(body).hexdigest(), "size": len(body),
               "text": body[:65536].decode("utf-8", "replace"),
               "auth_user": self.auth_user, "auth_mech": self.auth_mech, "app_id": self.app_id,
               "tls_version": self.tls, "client_cert_subject": self.cert_subject,
               "client_cert_names": self.cert_names, "connector": self.connector() if self.role == "mx" else None,
               "client_ip": self.ip, "helo": self.helo, "message_id": msgid,
               "reply_dropped": dropped_reply}
        self.throttled_for = 0.0
        self.st.record("records", rec)
        return msgid


# HTTP: token endpoint and control -----------------------------------------------------

AADSTS = {
    7000215: (401, "invalid_client", "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{app}'."),
    7000218: (400, "invalid_request", "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'."),
    700027: (401, "invalid_client", "AADSTS700027: Client assertion contains an invalid signature."),
    700024: (400, "invalid_client", "AADSTS700024: Client assertion is not within its valid time range."),
    70011: (400, "invalid_scope", "AADSTS70011: The provided value for the input parameter 'scope' is not valid. The scope {scope} is not valid."),
    700016: (400, "unauthorized_client", "AADSTS700016: Application with identifier '{app}' was not found in the directory '{tenant}'."),
    90002: (400, "invalid_request", "AADSTS90002: Tenant '{tenant}' not found."),
    # [UNCONFIRMED] code for a wrong audience; the text is Entra's usual one.
    700021: (401, "invalid_client", "AADSTS700021: Client assertion audience claim does not match Realm issuer."),
}


def aad_error(code, **kw):
    status, err, text = AADSTS[code]
    for k, v in kw.items():
        text = text.replace("{%s}" % k, str(v))
    ts = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime())
    trace, corr = secrets.token_hex(16), secrets.token_hex(16)
    body = {"error": err,
            "error_description": "%s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s" % (text, trace, corr, ts),
            "error_codes": [code], "timestamp": ts, "trace_id": trace, "correlation_id": corr,
            "error_uri": "https://login.microsoftonline.com/error?code=%d" % code}
    return status, body


def verify_assertion(state, app, client_id, assertion, token_url):
    """0 when the JWT client assertion holds, else the AADSTS code."""
    try:
        h64, c64, s64 = assertion.split(".")
        header = json.loads(b64url_decode(h64))
        claims = json.loads(b64url_decode(c64))
        sig = b64url_decode(s64)
    except (ValueError, json.JSONDecodeError):
        return 700027
    cert = None
    for path in app.get("certificates", []):
        with open(path, "rb") as f:
            c = x509.load_pem_x509_certificate(f.read())
        der = c.public_bytes(serialization.Encoding.DER)
        if header.get("x5t#S256") == b64url(hashlib.sha256(der).digest()) or \
                header.get("x5t") == b64url(hashlib.sha1(der).digest()):
            cert = c
    if cert is None:
        return 700027
    alg = header.get("alg")
    data = (h64 + "." + c64).encode()
    try:
        if alg == "PS256":
            cert.public_key().verify(sig, data, padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                            salt_length=32), hashes.SHA256())
        elif alg == "RS256":
            cert.public_key().verify(sig, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return 700027
    except InvalidSignature:
        return 700027
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        return 700027
    if claims.get("aud") != token_url:
        return 700021
    t = now() + float(state.config.get("clock_offset", 0))
    if not (claims.get("nbf", t) <= t + 60 and claims.get("exp", 0) > t - 60):
        return 700024
    return 0


class Handler(http.server.BaseHTTPRequestHandler):
    state = None
    role = None
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def body(self):
        n = int(self.headers.get("Content-Length", "0"))
        return self.rfile.read(n) if n else b""

    def do_GET(self):
        st = self.state
        if self.role != "control":
            return self.reply(404, {"error": "not_found"})
        with st.lock:
            state = {"records": st.records, "refused": st.refused,
                     "stats": {"token_requests": st.token_requests,
                               "token_requests_by_client": st.token_requests_by_client,
                               "max_sessions": st.max_sessions, "open_sessions": st.sessions,
                               "connections": st.connections},
                     "faults_fired": st.fired,
                     "config": st.config, "ports": st.ports}
            return self.reply(200, json.loads(json.dumps(state)))

    def do_POST(self):
        if self.role == "token":
            return self.token()
        st = self.state
        try:
            data = json.loads(self.body() or b"{}")
        except json.JSONDecodeError:
            return self.reply(400, {"error": "bad json"})
        if self.path == "/reset":
            st.reset()
            ADVANCED[0] = 0.0
        elif self.path == "/advance":
            # Time passes for tokens, faults, windows and records without a
            # wait: {"seconds": N} moves the clock N seconds ahead.
            with st.lock:
                ADVANCED[0] += float(data.get("seconds", 0))
        elif self.path == "/config":
            with st.lock:
                merge(st.config, data)
        elif self.path == "/fault":
            with st.lock:
                data["armed"] = now()
                st.faults.append(data)
        elif self.path == "/revoke":
            with st.lock:
                st.revoked.update(["*"] if data.get("all") else st.issued.keys())
        else:
            return self.reply(404, {"error": "not_found"})
        return self.reply(200, {"ok": True})

    def token(self):
        st = self.state
        with st.lock:
            st.token_requests += 1
        f = st.take_fault("token", "request", self.client_address[1])
        if f:
            if f.get("action") == "stall":
                time.sleep(float(f.get("seconds", 30)))
            elif f.get("action") == "drop":
                self.close_connection = True
                self.connection.close()
                return
            elif f.get("action") == "status":
                return self.reply(int(f.get("status", 503)), {"error": "temporarily_unavailable"})
        m = re.fullmatch(r"/([^/]+)/oauth2/v2\.0/token", self.path)
        if not m:
            return self.reply(404, {"error": "not_found"})
        tenant = m.group(1)
        form = urllib.parse.parse_qs(self.body().decode(), keep_blank_values=True)
        get = lambda k: form.get(k, [None])[0]
        client_id = get("client_id")
        with st.lock:
            st.token_requests_by_client[client_id] = st.token_requests_by_client.get(client_id, 0) + 1
        cfg = st.config
        if tenant not in cfg["tenant_ids"]:
            return self.reply(*aad_error(90002, tenant=tenant))
        if get("grant_type") != "client_credentials":
            return self.reply(400, {"error": "unsupported_grant_type"})
        app = cfg["apps"].get(client_id)
        if app is None:
            return self.reply(*aad_error(700016, app=client_id, tenant=tenant))
        if get("client_secret") is not None:
            if not app.get("secret") or not hmac.compare_digest(app["secret"], get("client_secret")):
                return self.reply(*aad_error(7000215, app=client_id))
        elif get("client_assertion") is not None:
            if get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer":
                return self.reply(*aad_error(7000218))
            url = "https://%s%s" % (self.headers.get("Host", ""), self.path)
            code = verify_assertion(st, app, client_id, get("client_assertion"), url)
            if code:
                return self.reply(*aad_error(code))
        else:
            return self.reply(*aad_error(7000218))
        if get("scope") != cfg["scope"]:
            return self.reply(*aad_error(70011, scope=get("scope")))
        token, claims = issue_token(st, client_id, tenant)
        life = int(cfg["token_lifetime"])
        exp = str(life) if cfg["expires_in_as_string"] else life
        return self.reply(200, {"token_type": "Bearer", "expires_in": exp, "ext_expires_in": exp,
                                "access_token": token})


def merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict) and k not in ("mailboxes", "apps", "rcpt_replies"):
            merge(dst[k], v)
        else:
            dst[k] = v


def http_server(state, role, port, ctx=None):
    handler = type("H_" + role, (Handler,), {"state": state, "role": role})
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    srv.daemon_threads = True
    if ctx is not None:
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv.server_address[1]


def tls_contexts(certdir):
    def base(min_version):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(os.path.join(certdir, "server.pem"), os.path.join(certdir, "server.key"))
        ctx.minimum_version = min_version
        # Session resumption: tickets (the default) are kept on.
        return ctx

    # smtp: accept TLS 1.0/1.1 handshakes so that they can be answered 421 4.7.66.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    smtp = base(ssl.TLSVersion.TLSv1)
    smtp.set_ciphers("DEFAULT:@SECLEVEL=0")
    # mx: TLS >= 1.2; asks for a client certificate (Python's ssl must verify
    # what it asks for, so test client certificates come from the test CA).
    mx = base(ssl.TLSVersion.TLSv1_2)
    mx.verify_mode = ssl.CERT_OPTIONAL
    mx.load_verify_locations(os.path.join(certdir, "ca.pem"))
    token = base(ssl.TLSVersion.TLSv1_2)
    return {"smtp": smtp, "mx": mx, "token": token}


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--state-dir", required=True, help="records, pid file, ports.json")
    ap.add_argument("--certs", required=True, help="directory made by mkcerts.sh")
    ap.add_argument("--config", help="JSON tenant configuration (merged over the defaults)")
    ap.add_argument("--smtp-port", type=int, default=0)
    ap.add_argument("--mx-port", type=int, default=0)
    ap.add_argument("--token-port", type=int, default=0)
    ap.add_argument("--control-port", type=int, default=0)
    a = ap.parse_args()

    config = copy.deepcopy(DEFAULT_CONFIG)
    if a.config:
        with open(a.config) as f:
            merge(config, json.load(f))
    ctxs = tls_contexts(a.certs)
    ports = {}
    state = State(config, a.state_dir, ports)

    def serve(role):
        return lambda r, w: Session(state, role, r, w, ctxs).run()

    smtp = await asyncio.start_server(serve("smtp"), "127.0.0.1", a.smtp_port, limit=65536)
    mx = await asyncio.start_server(serve("mx"), "127.0.0.1", a.mx_port, limit=65536)
    ports["smtp"] = smtp.sockets[0].getsockname()[1]
    ports["mx"] = mx.sockets[0].getsockname()[1]
    ports["token"] = http_server(state, "token", a.token_port, ctxs["token"])
    ports["control"] = http_server(state, "control", a.control_port)
    with open(os.path.join(a.state_dir, "ports.json.tmp"), "w") as f:
        json.dump(ports, f)
    os.rename(os.path.join(a.state_dir, "ports.json.tmp"), os.path.join(a.state_dir, "ports.json"))
    with open(os.path.join(a.state_dir, "m365sim.pid"), "w") as f:
        f.write("%d\n" % os.getpid())
    print("m365sim: smtp %(smtp)d mx %(mx)d token %(token)d control %(control)d" % ports, flush=True)
    async with smtp, mx:
        await asyncio.gather(smtp.serve_forever(), mx.serve_forever())


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
