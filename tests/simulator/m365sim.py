#!/usr/bin/python3
"""m365sim.py - a Microsoft 365 (Exchange Online) stand-in for m365relay's tests.

Five roles on loopback, each on its own port:
  smtp   smtp.office365.com:587 - SMTP AUTH client submission
  mx     <tenant>.mail.protection.outlook.com:25 - Direct Send and connector relay
  token  login.microsoftonline.com - the OAuth2 client-credentials token endpoint (HTTPS)
  graph  graph.microsoft.com - Microsoft Graph sendMail with MIME content (HTTPS)
  hve    smtp-hve.office365.com:587 - High Volume Email, SMTP AUTH for HVE accounts
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
import binascii
import copy
import datetime
import email.parser
import email.policy
import email.utils
import hashlib
import hmac
import http.server
import ipaddress
import json
import os
import random
import re
import secrets
import socket
import ssl
import sys
import threading
import time
import urllib.parse
import uuid
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
    # High Volume Email (reference section 8).  The 501 was observed; the
    # 550 5.7.1 text is our choice (README).
    "hve_bad_xoauth2": "501 5.5.124 Invalid XOAUTH2 auth data - User address provided is not valid. Please ensure the auth data is correctly formatted.",
    "hve_external": "550 5.7.1 Unable to relay. External recipients are not allowed for HVE accounts.",
}

SUBMISSION = ("smtp", "hve")     # the roles that speak SMTP AUTH client submission
GRAPH_ROLE = "Mail.Send"         # the application permission sendMail needs
HVE_ROLES = ("Mail.Send", "SMTP.SendAsApp")   # either is enough for HVE XOAUTH2 (README)

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
    "graph_scope": "https://graph.microsoft.com/.default",
    "graph_audience": "https://graph.microsoft.com",
    "graph_max_bytes": 4194304,       # decoded MIME per sendMail request; then 413
    "graph_concurrency": 4,           # requests in flight per (app, mailbox); then 429
    "graph_retry_after": 1,           # the 429's Retry-After, seconds
    "graph_delay": 0,                 # seconds each accepted Graph request takes
    "hve_accounts": {},               # address -> {password, apps, send_as, basic_auth_disabled}
    "hve_limits": {                   # per HVE account; all [UNCONFIRMED] (README)
        "rate": {"count": 1000, "window": 60},
        "recipient_quota": {"count": 100000, "window": 86400},
        "concurrency": 10,
        "max_recipients": 50,
        "max_size": 10485760,
    },
    "relay_denied_text": None,        # override of the 5.7.64 reply
    "mailboxes": {},                  # address -> {password, send_as, smtp_auth_disabled, apps, graph_access_denied}
    "apps": {},                       # client_id -> {secret, certificates: [pem paths], roles, graph_roles}
    "connectors": [],                 # {name, type: certificate|ip, tls_sender_certificate_name | sender_ips}
    "rcpt_replies": {},               # address -> {"reply": "...", "count": N} (N: times; -1 always)
}


ADVANCED = [0.0]   # seconds the simulator's clock was moved ahead (POST /advance)


def now():
    return time.time() + ADVANCED[0]


def tag(role):
    """A server tag in the post-2023 form: host, ISO time with ms, session hex."""
    t = datetime.datetime.now(datetime.timezone.utc)
    if role in SUBMISSION:
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


def may_send_as(owner, entry, addr):
    """Whether owner (a mailbox or an HVE account, entry its configuration)
    may put addr in From, Sender or MAIL FROM: itself or one of its send_as."""
    if addr.lower() == owner.lower():
        return True
    return any(a.lower() == addr.lower() for a in (entry or {}).get("send_as", []))


def find(table, addr):
    """(key, entry) of addr in a table keyed by address, case-insensitively."""
    for k, v in table.items():
        if k.lower() == addr.lower():
            return k, v
    return None, None


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
            self.token_requests_by_scope = {}
            self.graph_requests = 0         # every request to the Graph port
            self.graph_accepted = 0         # 202s
            self.graph_throttled = 0        # 429s for the concurrency limit
            self.graph_in_flight = {}       # "app|mailbox" -> requests being served
            self.graph_max_in_flight = {}   # "app|mailbox" -> highest seen
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
        return find(self.config["mailboxes"], addr)

    def hve_account(self, addr):
        return find(self.config.get("hve_accounts", {}), addr)

    def internal(self, addr):
        d = domain_of(addr)
        return any(d == a.lower() for a in self.config["accepted_domains"])


# Tokens -------------------------------------------------------------------------

def issue_token(state, client_id, tenant, graph=False):
    """A token for Exchange Online (the Outlook scope) or, with graph, for
    Microsoft Graph: audience and roles differ, nothing else."""
    cfg = state.config
    app = cfg["apps"][client_id]
    t = int(now())
    if graph:
        aud, roles = cfg["graph_audience"], app.get("graph_roles", [GRAPH_ROLE])
    else:
        aud, roles = cfg["audience"], app.get("roles", ["SMTP.SendAsApp"])
    claims = {"aud": aud, "iss": "https://sts.windows.net/%s/" % tenant,
              "iat": t, "nbf": t, "exp": t + int(cfg["token_lifetime"]), "appid": client_id,
              "tid": tenant, "roles": roles, "jti": secrets.token_hex(8)}
    header = {"typ": "JWT", "alg": "HS256"}
    signing = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    sig = hmac.new(state.key, signing.encode(), hashlib.sha256).digest()
    token = signing + "." + b64url(sig)
    with state.lock:
        state.issued[claims["jti"]] = claims
    return token, claims


def verify_token(state, token, audience):
    """(claims, None) for a token this endpoint issued that still holds and
    is for audience; else (None, why), why one of "invalid", "revoked",
    "expired", "audience"."""
    try:
        h, c, s = token.split(".")
        sig = hmac.new(state.key, (h + "." + c).encode(), hashlib.sha256).digest()
        if not hmac.compare_digest(sig, b64url_decode(s)):
            return None, "invalid"
        claims = json.loads(b64url_decode(c))
        if not isinstance(claims, dict):
            return None, "invalid"
    except (ValueError, json.JSONDecodeError):
        return None, "invalid"
    with state.lock:
        if claims.get("jti") in state.revoked or "*" in state.revoked:
            return None, "revoked"
    if claims.get("exp", 0) <= now():
        return None, "expired"
    if claims.get("aud") != audience:
        return None, "audience"
    return claims, None


def check_token(state, token, roles=("SMTP.SendAsApp",)):
    """The claims of an Exchange Online (Outlook audience) token this endpoint
    issued that still holds and carries one of roles, or None."""
    claims, _ = verify_token(state, token, state.config["audience"])
    if claims is None or not any(r in claims.get("roles", []) for r in roles):
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
                     if role in SUBMISSION else
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

    def limit(self, name):
        """A limit of this role: an HVE account's from hve_limits, a
        mailbox's from the top of the configuration."""
        if self.role == "hve":
            return self.st.config["hve_limits"][name]
        return self.st.config[name]

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
            if self.role in SUBMISSION:
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
            k = k.replace("{size}", str(self.limit("max_size")))
            if k == "STARTTLS" and self.tls:
                if self.role in SUBMISSION:
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
            if await self.fault("rset"):
                return False   # a reply (e.g. 421) and the session ends
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
        if self.role not in SUBMISSION or not self.tls or mech not in ("LOGIN", "XOAUTH2"):
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
        if self.role == "hve":
            # HVE accounts keep Basic: neither the tenant's SMTP AUTH switch
            # nor the Basic retirement applies (reference section 8).
            name, acct = self.st.hve_account(user)
            if acct is not None and acct.get("basic_auth_disabled"):
                return await self.auth_fail(R["basic_disabled"], "LOGIN", user)
            if acct is None or acct.get("password") is None or not hmac.compare_digest(acct["password"], pw):
                return await self.auth_fail(R["bad_credentials"], "LOGIN", user)
            return await self.auth_ok(name, "LOGIN", None)
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

    @staticmethod
    def xoauth2_parts(b64):
        """(user, bearer token) of an XOAUTH2 initial response; ValueError
        if it is not base64("user=" U "^Aauth=Bearer " T "^A^A")."""
        try:
            raw = base64.b64decode(b64, validate=True).decode()
            parts = dict(p.split("=", 1) for p in raw.split("\x01") if p)
            user, bearer = parts["user"], parts["auth"]
        except (ValueError, KeyError, UnicodeDecodeError, binascii.Error):
            raise ValueError("not XOAUTH2 data")
        if not raw.endswith("\x01\x01") or not bearer.startswith("Bearer ") or not user:
            raise ValueError("layout")
        return user, bearer[7:]

    async def auth_xoauth2(self, b64):
        if self.role == "hve":
            return await self.auth_xoauth2_hve(b64)
        try:
            user, bearer = self.xoauth2_parts(b64)
        except ValueError:
            return await self.auth_fail(R["auth_failed"], "XOAUTH2", None)
        name, box = self.st.mailbox(user)
        if self.smtp_auth_disabled(box):
            return await self.auth_fail(R["smtp_auth_disabled"], "XOAUTH2", user)
        claims = check_token(self.st, bearer)
        if claims is None or box is None:
            return await self.auth_fail(R["auth_failed"], "XOAUTH2", user)
        apps = box.get("apps")
        if apps is not None and claims["appid"] not in apps:
            return await self.auth_fail(R["auth_failed"], "XOAUTH2", user)
        return await self.auth_ok(name, "XOAUTH2", claims["appid"])

    async def auth_xoauth2_hve(self, b64):
        """HVE: data that is not XOAUTH2, or names no HVE account, gets
        501 5.5.124; a token that does not hold (Outlook audience, Mail.Send
        or SMTP.SendAsApp) or whose app is not on the account's allowed
        apps (Add-HVEAppAccess; none by default) 535 5.7.3."""
        try:
            user, bearer = self.xoauth2_parts(b64)
        except ValueError:
            return await self.auth_fail(R["hve_bad_xoauth2"], "XOAUTH2", None)
        name, acct = self.st.hve_account(user)
        if acct is None:
            return await self.auth_fail(R["hve_bad_xoauth2"], "XOAUTH2", user)
        claims = check_token(self.st, bearer, roles=HVE_ROLES)
        if claims is None or claims["appid"] not in (acct.get("apps") or []):
            return await self.auth_fail(R["auth_failed"], "XOAUTH2", user)
        return await self.auth_ok(name, "XOAUTH2", claims["appid"])

    async def auth_ok(self, name, mech, app):
        self.auth_user, self.auth_mech, self.app_id = name, mech, app
        with self.st.lock:
            n = self.st.sessions.get(name, 0) + 1
            self.st.sessions[name] = n
            self.st.max_sessions[name] = max(self.st.max_sessions.get(name, 0), n)
            self.over_limit = n > self.limit("concurrency")
        self.counted = True
        self.session_start = now()
        await self.send(R["auth_ok"])
        return True

    # Transaction -------------------------------------------------------------
    def may_send_as(self, addr):
        if self.role == "hve":
            _, entry = self.st.hve_account(self.auth_user)
        else:
            _, entry = self.st.mailbox(self.auth_user)
        return may_send_as(self.auth_user, entry, addr)

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
        if self.role in SUBMISSION and not self.tls:
            self.refuse("mail", R["tls_required"])
            await self.send(R["tls_required"])
            return True
        if self.role in SUBMISSION and not self.auth_user:
            self.refuse("mail", R["not_authenticated"])
            await self.send(R["not_authenticated"])
            return True
        addr, params = self.path(arg, "FROM")
        if addr is None:
            await self.send("501 5.5.4 Invalid arguments{tag}")
            return True
        if await self.fault("mail"):
            return True
        if "SIZE" in params and params["SIZE"].isdigit() and int(params["SIZE"]) > self.limit("max_size"):
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
        if len(self.rcpts) >= self.limit("max_recipients"):
            await self.send(R["too_many_rcpts"])
            return True
        if self.role == "hve" and not self.st.internal(addr):
            self.refuse("rcpt", R["hve_external"], rcpt=addr)
            await self.send(R["hve_external"])
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
            if len(body) + len(l) > self.limit("max_size"):
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
        if self.role in SUBMISSION:
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
        """Rolling recipient quota, then the message rate (delay or 4xx),
        both counted at the moment the message is taken: the recipients of
        messages accepted in the window before it (not of messages accepted
        after it arrived, while it was held at its end of data)."""
        cfg = self.st.config
        q = self.limit("recipient_quota")
        rate = self.limit("rate")
        while True:
            with self.st.lock:
                hist = self.st.sent.setdefault(self.auth_user, [])
                used = sum(n for t, n in hist if t > now() - q["window"])
                if used + len(self.rcpts) > q["count"]:
                    return R["quota"]
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


# Microsoft Graph: sendMail with MIME content, and GET user ----------------------------

def graph_raw_limit(cfg):
    """The longest request body a decoded graph_max_bytes can need: base64
    (4/3), a line break every 64 characters or more (1/32), 4 KiB slack.
    Longer bodies are answered 413 without being read."""
    b64 = (int(cfg["graph_max_bytes"]) + 2) // 3 * 4
    return b64 + b64 // 32 + 4096


def strip_header(raw, name):
    """raw (a message) without the header fields called name (continuation
    lines included); everything else byte for byte."""
    name = name.lower().encode()
    out, skip = [], False
    lines = raw.splitlines(keepends=True)
    for i, line in enumerate(lines):
        if line in (b"\r\n", b"\n", b"\r"):
            out.extend(lines[i:])
            break
        if line[:1] in (b" ", b"\t"):
            if not skip:
                out.append(line)
            continue
        skip = line.split(b":", 1)[0].strip().lower() == name
        if not skip:
            out.append(line)
    return b"".join(out)


def addresses(msg, *fields):
    """Lower-cased addr-specs of the given header fields, once each."""
    found = []
    for field in fields:
        for _, addr in email.utils.getaddresses([str(v) for v in msg.get_all(field, [])]):
            addr = addr.strip().lower()
            if addr and addr not in found:
                found.append(addr)
    return found


GRAPH_401 = {   # why (verify_token) -> message; only "audience" is a seen text (README)
    "empty": "Access token is empty.",
    "invalid": "Access token validation failure.",
    "revoked": "Access token validation failure. The token has been revoked.",
    "expired": "Lifetime validation failed, the token is expired.",
    "audience": "Access token validation failure. Invalid audience.",
}
GRAPH_FAULT_CODES = {429: ("TooManyRequests", "Too many requests."),
                     500: ("InternalServerError", "An internal server error occurred."),
                     502: ("BadGateway", "The service is unavailable."),
                     503: ("ServiceUnavailable", "The service is temporarily unavailable."),
                     504: ("GatewayTimeout", "The request timed out.")}


class GraphRequest:
    """What one Graph request is, for its reply and its record."""

    def __init__(self, handler):
        self.request_id = str(uuid.uuid4())
        self.client_request_id = handler.headers.get("client-request-id") or str(uuid.uuid4())
        self.mailbox = None
        self.app_id = None
        self.received = now()


class GraphMixin:
    """The graph role of Handler (Microsoft Graph v1.0 on loopback)."""

    def handle_expect_100(self):
        # An oversized body is refused before the client sends it.
        if self.role == "graph" and self.content_length() > graph_raw_limit(self.state.config):
            return True
        return super().handle_expect_100()

    def content_length(self):
        try:
            return int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return 0

    # Replies ----------------------------------------------------------------
    def graph_reply(self, status, body=None, headers=None, close=False):
        g = self.g
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("request-id", g.request_id)
        self.send_header("client-request-id", g.client_request_id)
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        if body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def graph_error(self, status, code, message, headers=None, close=False, fault=False):
        g = self.g
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        body = {"error": {"code": code, "message": message,
                          "innerError": {"date": date, "request-id": g.request_id,
                                         "client-request-id": g.client_request_id}}}
        self.state.record("refused", {
            "role": "graph", "time": now(), "stage": self.command + " " + self.path.split("?")[0],
            "status": status, "code": code, "reply": message, "mailbox": g.mailbox,
            "app_id": g.app_id, "request_id": g.request_id, "client_ip": self.client_address[0],
            "client_port": self.client_address[1], "fault": fault})
        self.graph_reply(status, body, headers, close)

    def linger(self):
        """After an early reply: take what the client still sends (2 s and
        64 MiB at most), so that closing does not reset the connection
        before the client has read the reply."""
        try:
            self.wfile.flush()
            self.connection.settimeout(0.5)
            end, total = time.time() + 2, 0
            while time.time() < end and total < 64 << 20:
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                total += len(chunk)
        except (OSError, ssl.SSLError):
            pass

    def graph_body(self):
        """The request body; None if it is over graph_raw_limit (unread)."""
        limit = graph_raw_limit(self.state.config)
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = bytearray()
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip() or b"x", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass   # trailer fields
                    return bytes(body)
                if len(body) + size > limit:
                    return None
                body += self.rfile.read(size)
                self.rfile.readline()
        n = self.content_length()
        if n > limit:
            return None
        return self.rfile.read(n) if n > 0 else b""

    # Steps ----------------------------------------------------------------------
    def graph_start(self):
        """Count the request, read its body, play a fault.  The body, or
        None when the request has been answered."""
        st = self.state
        self.g = GraphRequest(self)
        with st.lock:
            st.graph_requests += 1
        try:
            body = self.graph_body() if self.command == "POST" else b""
        except ValueError:
            self.graph_error(400, "BadRequest", "Invalid chunked encoding.", close=True)
            return None
        if body is None:
            self.graph_error(413, "ErrorMessageSizeExceeded",
                             "The message exceeds the maximum supported size.", close=True)
            self.linger()
            return None
        f = st.take_fault("graph", "request", self.client_address[1])
        if f:
            action = f.get("action")
            if action == "stall":
                end = time.time() + float(f.get("seconds", 30))
                while time.time() < end:
                    time.sleep(min(0.1, max(end - time.time(), 0)))
            elif action == "drop":
                self.graph_drop()
                return None
            elif action == "status":
                status = int(f.get("status", 503))
                headers = {"Retry-After": f["retry_after"]} if "retry_after" in f else None
                if "body" in f:
                    self.graph_reply(status, f["body"], headers)
                    self.state.record("refused", {"role": "graph", "time": now(), "stage": "request",
                                                  "status": status, "request_id": self.g.request_id,
                                                  "client_port": self.client_address[1], "fault": True})
                else:
                    code, message = GRAPH_FAULT_CODES.get(status, ("UnknownError", "An error occurred."))
                    self.graph_error(status, code, message, headers, fault=True)
                return None
        return body

    def graph_drop(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def graph_auth(self):
        """The claims of the request's Graph token, or None (answered 401)."""
        scheme, _, token = self.headers.get("Authorization", "").strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            why = "empty"
            claims = None
        else:
            claims, why = verify_token(self.state, token, self.state.config["graph_audience"])
        if claims is None:
            self.graph_error(401, "InvalidAuthenticationToken", GRAPH_401[why], headers={
                "WWW-Authenticate": 'Bearer realm="", authorization_uri='
                '"https://login.microsoftonline.com/common/oauth2/authorize", '
                'client_id="00000003-0000-0000-c000-000000000000"'})
            return None
        self.g.app_id = claims.get("appid")
        return claims

    def graph_user(self, user):
        """(name, mailbox) of a known mailbox, or (None, None) (answered 404)."""
        name, box = self.state.mailbox(user)
        if box is None:
            self.graph_error(404, "ErrorInvalidUser", "The requested user '%s' is invalid." % user)
            return None, None
        self.g.mailbox = name
        return name, box

    def graph_denied(self):
        self.graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")

    # Requests ---------------------------------------------------------------------
    def graph_get(self):
        if self.graph_start() is None:
            return
        path = self.path.split("?", 1)[0]
        m = re.fullmatch(r"/v1\.0/users/([^/]+)", path, re.I)
        if not m:
            return self.graph_not_found(path)
        if self.graph_auth() is None:
            return
        name, box = self.graph_user(urllib.parse.unquote(m.group(1)))
        if box is None:
            return
        self.graph_reply(200, {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, "m365sim:" + name.lower())),
            "displayName": name.split("@")[0], "userPrincipalName": name, "mail": name})

    def graph_not_found(self, path):
        segment = path.rstrip("/").rsplit("/", 1)[-1]
        self.graph_error(404, "ResourceNotFound", "Resource not found for the segment '%s'." % segment)

    def graph_post(self):
        body = self.graph_start()
        if body is None:
            return
        path = self.path.split("?", 1)[0]
        m = re.fullmatch(r"/v1\.0/users/([^/]+)/sendMail", path, re.I)
        if not m:
            return self.graph_not_found(path)
        claims = self.graph_auth()
        if claims is None:
            return
        if GRAPH_ROLE not in claims.get("roles", []):
            return self.graph_denied()
        name, box = self.graph_user(urllib.parse.unquote(m.group(1)))
        if box is None:
            return
        apps = box.get("apps")
        if box.get("graph_access_denied") or (apps is not None and claims["appid"] not in apps):
            return self.graph_denied()
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != "text/plain":
            # JSON messages are not simulated: what is sent is taken as
            # JSON that does not parse.
            return self.graph_error(400, "BadRequest", "Unable to read JSON request payload. Please ensure "
                                    "Content-Type header is set and payload is of valid JSON format.")
        st, cfg = self.state, self.state.config
        key = "%s|%s" % (claims["appid"], name.lower())
        with st.lock:
            n = st.graph_in_flight.get(key, 0)
            throttled = n >= int(cfg["graph_concurrency"])
            if throttled:
                st.graph_throttled += 1
            else:
                st.graph_in_flight[key] = n + 1
                st.graph_max_in_flight[key] = max(st.graph_max_in_flight.get(key, 0), n + 1)
        if throttled:
            return self.graph_error(429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.",
                                    headers={"Retry-After": cfg["graph_retry_after"]})
        try:
            self.graph_send(name, box, claims, body)
        finally:
            with st.lock:
                st.graph_in_flight[key] -= 1

    def graph_send(self, name, box, claims, body):
        cfg = self.state.config
        try:
            mime = base64.b64decode(re.sub(rb"[\r\n\t ]+", b"", body), validate=True)
        except (binascii.Error, ValueError):
            mime = b""
        if not mime:
            return self.graph_error(400, "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content.")
        if len(mime) > int(cfg["graph_max_bytes"]):
            return self.graph_error(413, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size.")
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(mime, headersonly=True)
        if not all(may_send_as(name, box, a) for a in addresses(msg, "From", "Sender")):
            return self.graph_error(403, "ErrorSendAsDenied", "The user account which was used to submit this "
                                    "request does not have the right to send mail on behalf of the specified "
                                    "sending account.")
        # No envelope: whom the message goes to is what its header says.
        rcpts = addresses(msg, "To", "Cc", "Bcc")
        if not rcpts:
            return self.graph_error(400, "ErrorInvalidRecipients", "At least one recipient is not valid., "
                                    "A message can't be sent because it contains no recipients.")
        if float(cfg.get("graph_delay") or 0) > 0:
            time.sleep(float(cfg["graph_delay"]))
        stored = strip_header(mime, "Bcc")    # Exchange keeps no Bcc in the sent copy
        smsg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(stored, headersonly=True)
        headers = {}
        for k, v in smsg.items():
            headers.setdefault(k, []).append(str(v))
        g = self.g
        f = self.state.take_fault("graph", "after_accept", self.client_address[1])
        dropped = bool(f and f.get("action") == "drop")
        rec = {"role": "graph", "received": g.received, "accepted": now(), "mailbox": name,
               "app_id": claims["appid"], "auth_user": name, "auth_mech": "Bearer",
               "mail_from": None, "rcpt_to": rcpts, "header_from": addresses(msg, "From"),
               "headers": headers, "body_sha256": hashlib.sha256(mime).hexdigest(), "size": len(mime),
               "raw_mime": mime.decode("utf-8", "replace"), "stored_mime": stored.decode("utf-8", "replace"),
               "text": stored[:65536].decode("utf-8", "replace"),
               "message_id": (smsg.get("Message-ID") or "").strip() or None,
               "request_id": g.request_id, "client_request_id": g.client_request_id,
               "tls_version": self.connection.version() if hasattr(self.connection, "version") else None,
               "client_ip": self.client_address[0], "client_port": self.client_address[1],
               "reply_dropped": dropped}
        with self.state.lock:
            self.state.graph_accepted += 1
        self.state.record("records", rec)
        if dropped:
            # The message is in; the client never hears so.
            return self.graph_drop()
        self.graph_reply(202)


class Handler(GraphMixin, http.server.BaseHTTPRequestHandler):
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
        if self.role == "graph":
            return self.graph_get()
        if self.role != "control":
            return self.reply(404, {"error": "not_found"})
        with st.lock:
            state = {"records": st.records, "refused": st.refused,
                     "stats": {"token_requests": st.token_requests,
                               "token_requests_by_client": st.token_requests_by_client,
                               "token_requests_by_scope": st.token_requests_by_scope,
                               "max_sessions": st.max_sessions, "open_sessions": st.sessions,
                               "connections": st.connections,
                               "graph_requests": st.graph_requests,
                               "graph_accepted": st.graph_accepted,
                               "graph_throttled": st.graph_throttled,
                               "graph_in_flight": st.graph_in_flight,
                               "graph_max_in_flight": st.graph_max_in_flight},
                     "faults_fired": st.fired,
                     "config": st.config, "ports": st.ports}
            return self.reply(200, json.loads(json.dumps(state)))

    def do_POST(self):
        if self.role == "token":
            return self.token()
        if self.role == "graph":
            return self.graph_post()
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
        scope = get("scope")
        with st.lock:
            st.token_requests_by_client[client_id] = st.token_requests_by_client.get(client_id, 0) + 1
            st.token_requests_by_scope[str(scope)] = st.token_requests_by_scope.get(str(scope), 0) + 1
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
        if scope not in (cfg["scope"], cfg["graph_scope"]):
            return self.reply(*aad_error(70011, scope=scope))
        token, claims = issue_token(st, client_id, tenant, graph=scope == cfg["graph_scope"])
        life = int(cfg["token_lifetime"])
        exp = str(life) if cfg["expires_in_as_string"] else life
        return self.reply(200, {"token_type": "Bearer", "expires_in": exp, "ext_expires_in": exp,
                                "access_token": token})


def merge(dst, src):
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict) and \
                k not in ("mailboxes", "apps", "rcpt_replies", "hve_accounts"):
            merge(dst[k], v)
        else:
            dst[k] = v


class TLSServer(http.server.ThreadingHTTPServer):
    """HTTPS, each connection's TLS handshake in its own thread, so that a
    slow or silent client holds up nobody else."""
    daemon_threads = True
    ctx = None

    def get_request(self):
        sock, addr = self.socket.accept()
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request, client_address):
        try:
            request.settimeout(30)
            request.do_handshake()
            request.settimeout(None)
        except (ssl.SSLError, OSError):
            return
        super().finish_request(request, client_address)


def http_server(state, role, port, ctx=None):
    handler = type("H_" + role, (Handler,), {"state": state, "role": role})
    if ctx is not None:
        srv = type("S_" + role, (TLSServer,), {"ctx": ctx})(("127.0.0.1", port), handler)
    else:
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        srv.daemon_threads = True
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
    # hve: the smtp dialogue, TLS included; graph: the token endpoint's.
    return {"smtp": smtp, "mx": mx, "token": token, "hve": smtp, "graph": token}


async def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--state-dir", required=True, help="records, pid file, ports.json")
    ap.add_argument("--certs", required=True, help="directory made by mkcerts.sh")
    ap.add_argument("--config", help="JSON tenant configuration (merged over the defaults)")
    ap.add_argument("--smtp-port", type=int, default=0)
    ap.add_argument("--mx-port", type=int, default=0)
    ap.add_argument("--token-port", type=int, default=0)
    ap.add_argument("--graph-port", type=int, default=0)
    ap.add_argument("--hve-port", type=int, default=0)
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
    hve = await asyncio.start_server(serve("hve"), "127.0.0.1", a.hve_port, limit=65536)
    ports["smtp"] = smtp.sockets[0].getsockname()[1]
    ports["mx"] = mx.sockets[0].getsockname()[1]
    ports["hve"] = hve.sockets[0].getsockname()[1]
    ports["token"] = http_server(state, "token", a.token_port, ctxs["token"])
    ports["graph"] = http_server(state, "graph", a.graph_port, ctxs["graph"])
    ports["control"] = http_server(state, "control", a.control_port)
    with open(os.path.join(a.state_dir, "ports.json.tmp"), "w") as f:
        json.dump(ports, f)
    os.rename(os.path.join(a.state_dir, "ports.json.tmp"), os.path.join(a.state_dir, "ports.json"))
    with open(os.path.join(a.state_dir, "m365sim.pid"), "w") as f:
        f.write("%d\n" % os.getpid())
    print("m365sim: smtp %(smtp)d mx %(mx)d hve %(hve)d token %(token)d graph %(graph)d "
          "control %(control)d" % ports, flush=True)
    async with smtp, mx, hve:
        await asyncio.gather(smtp.serve_forever(), mx.serve_forever(), hve.serve_forever())


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
