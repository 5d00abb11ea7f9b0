"""harness.py - run m365-transport the way Postfix pipe(8) does, against the
Microsoft 365 simulator, as an unprivileged user (the transport refuses root).

    h = Harness()                       # simulator + configuration + state
    r = h.run(["a@example.net"], sender="scanner@contoso.com",
              route=ROUTES["smtp-auth"], body=...)   # signed as the milter would
    r = h.run(..., raw_route="v=2; ...")               # a header as written
    r.status, r.first_line, r.log
    h.stop()
"""
import hashlib
import hmac
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from sandbox import SIM, TENANT, USER, sim_config, sim_fields, start_simulator  # noqa: E402

TOP_BUILDDIR = os.path.abspath(os.environ.get("top_builddir", "."))
TRANSPORT = os.path.join(TOP_BUILDDIR, "transport", "m365-transport")
# M365_TRANSPORT_MODE=lmtp: run() delivers through m365-transport -L,
# spoken to as Postfix's lmtp(8) does, and reads the replies back into
# what pipe(8) would have seen (Harness.run_lmtp).
# M365_TRANSPORT_MODE=handoff: run() and spawn() run m365-handoff, which
# hands each delivery to a m365-transport -D daemon the harness runs
# (started on first use, stopped with the harness).
MODE = os.environ.get("M365_TRANSPORT_MODE", "pipe")
HANDOFF = os.path.join(TOP_BUILDDIR, "transport", "m365-handoff")

# Contoso (tests/lib/sandbox.py) with fabrikam.com accepted too, and the
# applications erp@ allows: a secret, a certificate (PS256 and RS256).
SIM_MAILBOXES = dict(SIM["mailboxes"], **{
    "erp@contoso.com": {"send_as": ["billing@contoso.com"], "apps": ["cid", "certapp", "rsaapp"]}})

CONF = """
{extra_top}
state_dir = "{state}"
store {{ path = "{state}/store.mdb" size = 8 }}
transport {{
    ca_file = "{ca_file}"
    helo_name = "gw.contoso.test"
    sendmail = "{work}/fake-sendmail"
    timeout_command = {timeout}
    timeout_data = {timeout}
    timeout_dot = {timeout}
    pacing_wait = {pacing_wait}
    {extra_transport}
}}
""" + TENANT + """app "secret-app" {{ client_id = "cid" client_secret_file = "{work}/app.secret" }}
app "cert-app" {{ client_id = "certapp" certificate_file = "{certs}/app.pem" key_file = "{work}/app.key" }}
app "rsa-app" {{ client_id = "rsaapp" certificate_file = "{certs}/app.pem" key_file = "{work}/app.key" assertion = rs256 }}
app "wrongkey-app" {{ client_id = "certapp" certificate_file = "{certs}/app2.pem" key_file = "{work}/app2.key" }}
app "mismatch-app" {{ client_id = "certapp" certificate_file = "{certs}/app.pem" key_file = "{work}/app2.key" }}
app "badsecret-app" {{ client_id = "cid" client_secret_file = "{work}/bad.secret" }}
mailbox "scanner@contoso.com" {{ password_file = "{work}/scanner.pw" send_as = {{ "noreply@contoso.com" }}
    messages = "{rate}" recipients = "{recipients}" sessions = 3 }}
mailbox "erp@contoso.com" {{ app = "{erp_app}" send_as = {{ "billing@contoso.com" }}
    messages = "1000/60s" }}
connector "onprem" {{ type = certificate certificate_file = "{certs}/relay.pem" key_file = "{work}/relay.key" }}
connector "byip" {{ type = ip }}
domain "contoso.com" {{ default_sender = "scanner@contoso.com" mailbox = "scanner@contoso.com" connector = "onprem"
    rewrite_header_from = true }}
submitter "lan" {{ clients = {{ "192.168.10.0/24" }} send_as = {{ "@contoso.com" }} domain = "contoso.com" }}
{extra_sections}
"""

FAKE_SENDMAIL = """#!/bin/sh
# records what m365-transport would hand to sendmail (a delivery report)
n=$(ls "{work}/dsn" | wc -l)
printf '%s\\n' "$*" > "{work}/dsn/$n.args"
cat > "{work}/dsn/$n.msg"
"""

# The harness's route key (route.key next to the configuration).
ROUTE_KEY = "harness-route-key-0123456789abcdef0123456789abcdef"


def key_id(key):
    """The 8 hex digits that name a key (lib/conf/routekey.c route_key_id)."""
    return hashlib.sha256(b"m365relay-route-key\n" + key.encode()).hexdigest()[:8]


def sign_route(fields, qid, sender, key=ROUTE_KEY):
    """The route header value as m365-milter signs it (lib/policy/route.h), written
    here from the description rather than the C code: HMAC-SHA-256 over
    "m365relay-route" LF sender LF value-before-mac, the sender with its
    domain in lower case ("" for <>), fields in their canonical order."""
    value = "v=2; %s; qid=%s; key=%s" % (fields, qid, key_id(key))
    if sender in ("", "<>"):
        canon = ""
    else:
        local, _, domain = sender.strip("<>").rpartition("@")
        canon = "%s@%s" % (local, domain.lower())
    mac = hmac.new(key.encode(), ("m365relay-route\n%s\n%s" % (canon, value)).encode(),
                   hashlib.sha256).hexdigest()
    return "%s; mac=%s" % (value, mac)


# Route fields, in canonical order, without v=, qid=, key= and mac=.
ROUTES = {
    "smtp-auth": "mode=smtp-auth; tenant=contoso; domain=contoso.com; submitter=lan; mailbox=scanner@contoso.com",
    "oauth": "mode=smtp-auth; tenant=contoso; domain=contoso.com; submitter=lan; mailbox=erp@contoso.com",
    "direct-send": "mode=direct-send; tenant=contoso; domain=contoso.com; submitter=lan",
    "relay": "mode=relay; tenant=contoso; domain=contoso.com; submitter=lan; connector=onprem",
    "relay-ip": "mode=relay; tenant=contoso; domain=contoso.com; submitter=lan; connector=byip",
    "graph": "mode=graph; tenant=contoso; domain=contoso.com; submitter=lan; mailbox=erp@contoso.com",
}


class Result:
    def __init__(self, p):
        self.status = p.returncode
        self.stdout = p.stdout
        self.log = p.stderr
        self.first_line = p.stdout.split("\n")[0] if p.stdout else ""

    def __repr__(self):
        return "exit %d, %r\n%s" % (self.status, self.first_line, self.log)


class Harness:
    def __init__(self, rate="30/60s", erp_app="secret-app", timeout=10, pacing_wait=120, sim_extra=None,
                 recipients="10000/86400s"):
        self.work = tempfile.mkdtemp(prefix="m365-transport.")
        os.chmod(self.work, 0o755)
        certs = os.path.join(self.work, "certs")
        cfg = sim_config(accepted_domains=["contoso.com", "fabrikam.com"], mailboxes=SIM_MAILBOXES,
                         apps={"cid": {"secret": "s3cret"},
                               "certapp": {"certificates": [os.path.join(certs, "app.pem")]},
                               "rsaapp": {"certificates": [os.path.join(certs, "app.pem")]}})
        cfg.update(sim_extra or {})
        self.sim = start_simulator(self.work, cfg)
        self.certs = self.sim.certs
        self.state = os.path.join(self.work, "state")
        os.makedirs(os.path.join(self.work, "dsn"))
        os.makedirs(self.state)
        self.files = {"app.secret": "s3cret\n", "bad.secret": "not-the-secret\n", "scanner.pw": "pw\n"}
        for name, text in self.files.items():
            self.write(name, text, 0o600)
        for k in ("app", "app2", "relay"):
            shutil.copy(os.path.join(self.certs, k + ".key"), os.path.join(self.work, k + ".key"))
        self.write("fake-sendmail", FAKE_SENDMAIL.format(work=self.work), 0o755)
        self.write("route.key", ROUTE_KEY + "\n", 0o600)
        self.configure(rate=rate, recipients=recipients, erp_app=erp_app, timeout=timeout, pacing_wait=pacing_wait,
                       extra_top="", extra_transport="", extra_sections="", ca_file=os.path.join(self.certs, "ca.pem"))
        pw = pwd.getpwnam(USER)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        for root, dirs, files in os.walk(self.work):
            for n in dirs + files:
                os.chown(os.path.join(root, n), self.uid, self.gid)
        os.chown(self.work, self.uid, self.gid)
        self.qid = 0
        self.daemon_lock = threading.Lock()

    def write(self, name, text, mode):
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def configure(self, **kw):
        self.params = dict(getattr(self, "params", {}))
        self.params.update(kw)
        self.conf = self.write("m365relay.conf", CONF.format(
            work=self.work, state=self.state, **sim_fields(self.sim), **self.params), 0o644)

    def message(self, frm="scanner@contoso.com", to="a@example.net", route=None, subject="test", body="body\n"):
        hdr = ""
        if route:
            hdr += "X-M365Relay-Route: %s\n" % route
        hdr += "From: %s\nTo: %s\nSubject: %s\nMessage-ID: <%d.test@gw>\n\n" % (frm, to, subject, self.qid)
        return hdr + body

    def new_qid(self):
        self.qid += 1
        return "Q%05X" % self.qid

    def envelope(self, rcpts, sender, route, raw_route, qid, msg, frm):
        """The queue id and the message, its route signed for them."""
        qid = qid or self.new_qid()
        if route is not None:
            raw_route = sign_route(route, qid, sender)
        if msg is None:
            msg = self.message(frm=frm or sender, to=", ".join(rcpts), route=raw_route)
        elif raw_route is not None and "X-M365Relay-Route" not in msg:
            msg = "X-M365Relay-Route: %s\n%s" % (raw_route, msg)
        return qid, msg

    def popen(self, args, clock, extra_env, text):
        """The transport as the service user, its clock moved ahead by clock seconds."""
        def drop():
            os.setgid(self.gid)
            os.setuid(self.uid)
        env = dict(os.environ)
        if clock is not None:
            env["M365RELAY_TEST_CLOCK"] = str(clock)
        env.update(extra_env or {})
        return subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                preexec_fn=drop, text=text, env=env)

    def spawn(self, rcpts, sender="scanner@contoso.com", route=None, raw_route=None, qid=None, msg=None,
              frm=None, debug=False, client=None, sasl=None, stderr_log=True, clock=None, extra_env=None):
        """route: fields, signed here for this qid and sender; raw_route: a
        header value as given; client/sasl: -a / -s (None: not passed);
        clock: seconds the transport's clock is moved ahead
        (M365RELAY_TEST_CLOCK), so that time passes without a sleep."""
        qid, msg = self.envelope(rcpts, sender, route, raw_route, qid, msg, frm)
        args = [TRANSPORT] + (["-l"] if stderr_log else []) + ["-c", self.conf, "-q", qid, "-f", sender]
        if client is not None:
            args += ["-a", client]
        if sasl is not None:
            args += ["-s", sasl]
        args += (["-d"] if debug else []) + ["--"] + rcpts
        if MODE == "handoff":
            args = [HANDOFF, "-S", self.start_daemon(), "-T", TRANSPORT] + args[1:]
        p = self.popen(args, clock, extra_env, text=True)
        p.qid = qid
        p.msg = msg
        return p

    def run(self, rcpts, **kw):
        if MODE == "lmtp":
            return self.run_lmtp(rcpts, **kw)
        p = self.spawn(rcpts, **kw)
        out, err = p.communicate(p.msg, timeout=300)

        class P:
            pass
        r = P()
        r.returncode, r.stdout, r.stderr = p.returncode, out, err
        res = Result(r)
        res.qid = p.qid
        return res

    def run_lmtp(self, rcpts, sender="scanner@contoso.com", route=None, raw_route=None, qid=None, msg=None,
                 frm=None, debug=False, client=None, sasl=None, stderr_log=True, clock=None, extra_env=None):
        """The delivery run() makes, through one LMTP session with
        m365-transport -L: LHLO, XFORWARD (IDENT the queue id; ADDR the
        client, [UNAVAILABLE] for local mail, none when run() is given no
        client), MAIL, RCPT, DATA, QUIT.  Postfix's part is played too: a
        recipient that got a 2xx or 5xx is settled for the queue id and
        not given again.  The Result reads as pipe(8)'s would: exit 75 if
        any recipient was deferred, 69 if all bounced, else 0; the first
        line that recipient's reply (a deferral or bounce without its
        three digits, as pipe(8) prints them); .replies has them all.
        sasl has no XFORWARD attribute (lmtp.c): the test must not need it."""
        qid, msg = self.envelope(rcpts, sender, route, raw_route, qid, msg, frm)
        if not hasattr(self, "settled"):
            self.settled = {}
        # One queue file: its id, sender and content (the id alone comes
        # back for other messages, as Postfix's short ids do).
        settled = self.settled.setdefault(
            (qid, sender, hashlib.sha256(msg.encode("utf-8", "surrogateescape")).hexdigest()), {})
        todo = [r for r in rcpts if r not in settled]
        res = Result(type("P", (), {"returncode": 0, "stdout": "", "stderr": ""}))
        res.qid, res.replies = qid, {}
        if not todo:
            return res
        args = [TRANSPORT] + (["-l"] if stderr_log else []) + ["-c", self.conf, "-L"] + (["-d"] if debug else [])
        p = self.popen(args, clock, extra_env, text=False)
        err = []
        drain = threading.Thread(target=lambda: err.append(p.stderr.read()), daemon=True)
        drain.start()

        def send(*lines):
            p.stdin.write(b"".join(l.encode("utf-8", "surrogateescape") + b"\r\n" for l in lines))
            p.stdin.flush()

        def reply():
            texts = []
            while True:
                line = p.stdout.readline().decode("utf-8", "replace")
                if len(line) < 4:
                    return (0, "(the LMTP service closed the connection)")
                texts.append(line[4:].rstrip("\r\n"))
                if line[3] == " ":
                    return (int(line[:3]), "%s %s" % (line[:3], " / ".join(texts)))

        replies = {}
        try:
            reply()  # greeting
            send("LHLO gw.test")
            reply()
            xf = "XFORWARD IDENT=%s" % qid
            if client is not None:
                xf += " ADDR=%s SOURCE=%s" % ((client, "REMOTE") if client else ("[UNAVAILABLE]", "LOCAL"))
            send(xf)
            reply()
            env_from = "" if sender in ("", "<>", "MAILER-DAEMON") else sender
            send("MAIL FROM:<%s>" % env_from, *["RCPT TO:<%s>" % r for r in todo], "DATA")
            mail = reply()
            accepted = []
            for r in todo:
                rr = reply()
                if mail[0] != 250:
                    replies[r] = mail
                elif rr[0] != 250:
                    replies[r] = rr
                else:
                    accepted.append(r)
            data = reply()
            if data[0] == 354:
                body = "".join(("." + l if l.startswith(".") else l) + "\r\n" for l in msg.split("\n")[:-1])
                p.stdin.write(body.encode("utf-8", "surrogateescape") + b".\r\n")
                p.stdin.flush()
                for r in accepted:
                    replies[r] = reply()
            else:
                for r in accepted:
                    replies[r] = data
            send("QUIT")
            reply()
        except BrokenPipeError:
            pass
        p.stdin.close()
        p.wait(timeout=300)
        drain.join(timeout=30)
        for r in todo:
            replies.setdefault(r, (0, "(no reply)"))
            if replies[r][0] // 100 in (2, 5):
                settled[r] = replies[r]
        res.replies = replies
        res.log = b"".join(err).decode("utf-8", "replace")
        codes = [replies[r][0] for r in todo]
        if any(c // 100 not in (2, 5) for c in codes):
            res.status, pick = 75, next(r for r in todo if replies[r][0] // 100 not in (2, 5))
        elif all(c // 100 == 5 for c in codes):
            res.status, pick = 69, todo[0]
        else:
            res.status, pick = 0, next(r for r in todo if replies[r][0] // 100 == 2)
        code, text = replies[pick]
        if code // 100 != 2:
            text = text[4:]
        elif text.startswith("250 2.0.0 routed by the policy"):
            text = text[len("250 2.0.0 "):]
        res.first_line = text
        res.stdout = text + "\n"
        return res

    def records(self):
        return self.sim.records()

    def dsns(self):
        d = os.path.join(self.work, "dsn")
        out = []
        for n in sorted(f for f in os.listdir(d) if f.endswith(".msg")):
            with open(os.path.join(d, n)) as f:
                msg = f.read()
            with open(os.path.join(d, n.replace(".msg", ".args"))) as f:
                out.append((f.read().strip(), msg))
        return out

    def start_daemon(self):
        """m365-transport -D on a socket in the work directory, as the
        service user; its log in daemon.log.  The socket's path."""
        sock = os.path.join(self.work, "transport.sock")
        with self.daemon_lock:  # deliveries run in threads (test_pacing)
            return self._start_daemon(sock)

    def _start_daemon(self, sock):
        if getattr(self, "daemon", None) is None or self.daemon.poll() is not None:
            def drop():
                os.setgid(self.gid)
                os.setuid(self.uid)
            self.daemon_log = open(os.path.join(self.work, "daemon.log"), "a")
            self.daemon = subprocess.Popen([TRANSPORT, "-l", "-D", sock], stderr=self.daemon_log,
                                           preexec_fn=drop)
            # listening (a dead daemon's socket file may still be there)
            for _ in range(250):
                try:
                    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                        s.connect(sock)
                    break
                except OSError:
                    time.sleep(0.02)
            else:
                raise RuntimeError("m365-transport -D does not listen on %s" % sock)
        return sock

    def reset(self):
        """The simulator's state cleared, and nothing kept from the test
        before: in MODE handoff the daemon's workers, which keep their
        sessions to the simulator, are restarted with the next delivery."""
        self.sim.control("reset")
        if MODE == "handoff":
            self.stop_daemon()

    def stop_daemon(self):
        if getattr(self, "daemon", None) is not None:
            if self.daemon.poll() is None:
                self.daemon.terminate()
            try:
                self.daemon.wait(timeout=60)
            except subprocess.TimeoutExpired:
                try:  # what it was doing, where ps(1) is installed (procps)
                    ps = subprocess.run(["ps", "-eo", "pid,ppid,stat,wchan:20,cmd"], capture_output=True,
                                        text=True).stdout
                except OSError:
                    ps = "(no ps)"
                self.daemon.kill()
                raise RuntimeError("m365-transport -D did not stop on SIGTERM:\n" + ps)
            self.daemon_log.close()
            self.daemon = None

    def stop(self):
        self.stop_daemon()
        self.sim.stop()
        shutil.rmtree(self.work, ignore_errors=True)
