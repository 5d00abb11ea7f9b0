#!/usr/bin/python3
"""soak.py - nothing lost, nothing duplicated, no limit exceeded.

The whole gateway (tests/e2e/gateway.py: a private Postfix on loopback,
m365-milter, m365-transport with maxproc 20, the Microsoft 365 simulator in
its enforcing mode) takes N messages from 50 concurrent device clients in
all three modes while faults are injected on a schedule; then three
independent sources - the devices' SMTP replies, Postfix's maillog and
queue, the simulator's records - account for every message, the
simulator's records are checked against the scaled limits, and the
processes' and the store's resources are reported.  Exit status 0 = pass.

    bench/soak [--messages N] [--store lmdb|redis] [--mode pipe|lmtp] [--quick] [--build DIR]

--mode lmtp delivers through lmtp(8) to m365-transport -L under spawn(8)
(the LMTP service, its sessions kept across messages) instead of pipe(8).

--store redis runs two milters on one Redis: two smtpd listeners, each
with its own m365-milter (its own process, its own configuration file,
the same store), the devices alternating between them message by message.
See bench/README.
"""
import argparse
import collections
import datetime
import json
import os
import platform
import random
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
from gateway import Gateway  # noqa: E402
from sandbox import CLIENT_ID, CONTOSO, RELAY_APP, TENANT, free_port, sim_config  # noqa: E402

N_MAILBOXES = 24
N_CLIENTS = 50
MSG_LIMIT = (5, 2)        # messages = "5/2s"   (Exchange Online: 30/60s)
RCPT_LIMIT = (30, 10)     # recipients = "30/10s" (Exchange Online: 10000/24h)
SESSIONS = 3              # Exchange Online's 3 concurrent sessions
TIMEOUT_COMMAND = 4
BOUNCE_RCPT = "nobody-here@contoso.com"
BOUNCE_REPLY = "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"
SENDAS_FROM = "ceo@contoso.com"
THROTTLES = ("451 4.7.500", "432 4.3.2", "554 5.2.0")


def mailbox(i):
    return "app%02d@contoso.com" % i


CONF = """# m365relay.conf for the soak (written by bench/soak.py)
user = "{user}"
state_dir = "{state}"
log_file = "{work}/m365relay.log"
milter {{
    socket = "inet:{milter_port}@127.0.0.1"
    pid_file = "{work}/milter.pid"
    # admission at SMTP time: over a mailbox's limit -> 451 4.7.0
    messages_action = tempfail
    recipients_action = tempfail
}}
store {{
{store}
}}
transport {{
    ca_file = "{certs}/ca.pem"
    helo_name = "gateway.contoso.test"
    local_submitter = "local"
    sendmail = "{work}/sendmail"
    timeout_connect = 5
    timeout_greeting = 10
    # Short for MAIL (the stall fault), long after the dot: a transport that
    # gives up waiting for the final reply cannot know whether the message
    # went (RFC 5321 6.1), and a loaded simulator answers late; only the
    # drop-after-dot fault may duplicate a message here.
    timeout_command = {timeout_command}
    timeout_data = 30
    timeout_block = 30
    timeout_dot = 120
    pacing_wait = 10
    token_timeout = 5
}}
""" + TENANT + RELAY_APP + CONTOSO + """{mailboxes}
"""

MAILBOX = """mailbox "{box}" {{
    app = "relay-app"
    messages = "{m}/{mw}s"
    recipients = "{r}/{rw}s"
    sessions = {sessions}
}}
submitter "{login}" {{
    sasl_logins = {{ "{login}" }}
    domain = "contoso.com"
    mailbox = "{box}"
    send_as = {{ "{box}" }}
}}
"""


def soak_sim_config():
    """Contoso (tests/lib/sandbox.py) with the soak's mailboxes, each
    allowing the relay application, and its scaled limits."""
    boxes = {mailbox(i): {"apps": [CLIENT_ID]} for i in range(1, N_MAILBOXES + 1)}
    return sim_config(
        mailboxes=boxes,
        concurrency=SESSIONS,
        rate={"count": MSG_LIMIT[0], "window": MSG_LIMIT[1]},
        recipient_quota={"count": RCPT_LIMIT[0], "window": RCPT_LIMIT[1]},
        throttle="4xx",
        # A short token life: the transport (token_margin 300 s) fetches a
        # new one every 30 s, so that the token endpoint's outage bites.
        token_lifetime=330,
        rcpt_replies={BOUNCE_RCPT: {"reply": BOUNCE_REPLY, "count": -1}})


def utc(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%H:%M:%S.%f")[:-3] + "Z"


# LMDB through liblmdb itself: the filler for map-full and the journal count.
from lmdbctl import Lmdb  # noqa: E402


class Redis:
    def __init__(self, work):
        self.dir = os.path.join(work, "redis")
        os.makedirs(self.dir)
        self.port = free_port()
        self.proc = None
        self.start()

    def start(self):
        self.log = open(os.path.join(self.dir, "redis.log"), "a")
        # Persistence on (AOF, fsync always): a restart keeps the journal.
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "always", "--dir", self.dir],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        for _ in range(200):
            if self.cli("ping").strip() == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port)] + list(args),
                              capture_output=True, text=True).stdout

    def used_memory(self):
        m = re.search(r"^used_memory:(\d+)", self.cli("info", "memory"), re.M)
        return int(m.group(1)) if m else None

    def journal_keys(self):
        return [k for k in self.cli("--scan", "--pattern", "soak:j:*").split("\n") if k]


# Processes -------------------------------------------------------------------------

def children(pid):
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def proc_res(pid):
    """(VmRSS kB, VmHWM kB, open fds) or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            st = f.read()
        fds = len(os.listdir("/proc/%d/fd" % pid))
    except OSError:
        return None
    g = lambda k: int(re.search(r"^%s:\s+(\d+)" % k, st, re.M).group(1)) if re.search(r"^%s:" % k, st, re.M) else 0
    return g("VmRSS"), g("VmHWM"), fds


def proc_mem(pid):
    """(RssAnon kB, RssFile kB) or None: the heap's share of RSS, and the
    mapped files' (LMDB's map counts there once its pages are touched)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            st = f.read()
    except OSError:
        return None
    g = lambda k: int(re.search(r"^%s:\s+(\d+)" % k, st, re.M).group(1)) if re.search(r"^%s:" % k, st, re.M) else 0
    return g("RssAnon"), g("RssFile")


def transports(exe):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            if os.readlink("/proc/%s/exe" % d) == exe:
                out.append(int(d))
        except OSError:
            pass
    return out


def pid_of_port(port, exe):
    """The m365-transport process whose TCP socket has local port PORT."""
    inodes = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    p = line.split()
                    if int(p[1].split(":")[1], 16) == port:
                        inodes.add(p[9])
        except OSError:
            pass
    for pid in transports(exe):
        try:
            for fd in os.listdir("/proc/%d/fd" % pid):
                link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return pid
        except OSError:
            pass
    return None


# The run ---------------------------------------------------------------------------

class Soak:
    def __init__(self, a):
        self.a = a
        self.n = a.messages
        self.build = os.path.abspath(a.build)
        self.t0 = None
        self.faults = []           # (name, start, end, detail)
        self.lock = threading.Lock()
        self.done = 0              # messages with a final device reply
        self.results = {}          # soak id -> dict
        self.attempt_replies = collections.Counter()
        self.samples = []
        self.stop_sampling = threading.Event()
        self.redis = None
        self.g = None
        self.dropped_qid = None
        self.extra_failures = []
        self.killed_transports = []

    # Set-up -----------------------------------------------------------------
    def start(self):
        rnd = random.Random(self.a.seed)
        self.rnd = rnd
        work_fields = {}
        mailboxes = "".join(MAILBOX.format(box=mailbox(i), login="app%02d" % i, m=MSG_LIMIT[0], mw=MSG_LIMIT[1],
                                           r=RCPT_LIMIT[0], rw=RCPT_LIMIT[1], sessions=SESSIONS)
                            for i in range(1, N_MAILBOXES + 1))
        self.redis_dir = None
        if self.a.store == "redis":
            import tempfile
            self.redis_dir = tempfile.mkdtemp(prefix="m365relay-soak-redis.")
            self.redis = Redis(self.redis_dir)
            store = ('    backend = redis\n    redis_host = "127.0.0.1"\n    redis_port = %d\n'
                     '    prefix = "soak:"\n    on_error = tempfail' % self.redis.port)
        else:
            store = '    backend = lmdb\n    size = %d\n    on_error = tempfail' % self.a.map_mb
        work_fields.update(store=store, mailboxes=mailboxes, timeout_command=TIMEOUT_COMMAND)
        sasl = {"app%02d" % i: "pw-app%02d" % i for i in range(1, N_MAILBOXES + 1)}
        main_extra = ("queue_run_delay = 5s\nminimal_backoff_time = 5s\nmaximal_backoff_time = 15s\n"
                      "smtpd_timeout = 60s\n")
        self.g = Gateway(self.build, conf=CONF, conf_fields=work_fields, sim_config=soak_sim_config(),
                         milters=2 if self.a.store == "redis" else 1, maxproc=self.a.maxproc,
                         sasl_users=sasl, main_extra=main_extra, before_start=self._logfile,
                         lmtp=self.a.mode == "lmtp")
        self.exe = os.path.join(self.build, "transport", "m365-transport")
        self.simdir = self.g.sim.dir

    def _logfile(self, g):
        path = os.path.join(g.work, "m365relay.log")
        open(path, "a").close()
        os.chown(path, g.uid, g.gid)

    def stop(self, keep):
        try:
            if self.g:
                self.g.stop(keep=keep)
        finally:
            if self.redis:
                self.redis.stop()
                if not keep:
                    shutil.rmtree(self.redis_dir, ignore_errors=True)

    def elapsed(self):
        return time.time() - self.t0

    # Messages -------------------------------------------------------------------
    def plan(self):
        """N messages: about 40% from applications (SASL, SMTP AUTH, some with two
        recipients), 40% scanner to internal (Direct Send), 20% scanner to
        external (connector relay); 1% to a recipient Microsoft refuses (bounce),
        0.5% with a From the scanner may not use (refused at SMTP)."""
        rnd = self.rnd
        msgs = []
        for i in range(self.n):
            sid = "soak-%06d" % i
            r = rnd.random()
            m = {"id": sid, "listener": i % len(self.g.smtp_ports), "size": rnd.choice([600] * 8 + [8000, 60000])}
            if r < 0.40:
                box = rnd.randrange(1, N_MAILBOXES + 1)
                m.update(kind="smtp-auth", login="app%02d" % box, password="pw-app%02d" % box,
                         ip="203.0.113.%d" % box, mail_from=mailbox(box), header_from=mailbox(box),
                         rcpts=["user%d@contoso.com" % rnd.randrange(100)])
                if rnd.random() < 0.3:
                    m["rcpts"].append("partner%d@example.net" % rnd.randrange(100))
            elif r < 0.80:
                m.update(kind="direct-send", login=None, ip="192.168.10.%d" % rnd.randrange(1, 27),
                         mail_from="scanner@printer.local", header_from="scanner@printer.local",
                         rcpts=["user%d@contoso.com" % rnd.randrange(100)])
            else:
                m.update(kind="relay", login=None, ip="192.168.10.%d" % rnd.randrange(1, 27),
                         mail_from="scanner@contoso.com", header_from="scanner@contoso.com",
                         rcpts=["partner%d@example.org" % rnd.randrange(100)])
            x = rnd.random()
            if x < 0.01 and m["kind"] != "relay":
                m["rcpts"] = [BOUNCE_RCPT]
            elif x < 0.015 and m["kind"] != "smtp-auth":
                m["header_from"] = SENDAS_FROM
            msgs.append(m)
        return msgs

    def text(self, m):
        body = ("Soak message %s.\r\n" % m["id"]) + ("x" * 70 + "\r\n") * (m["size"] // 72)
        return ("From: Device <%s>\r\nTo: %s\r\nSubject: soak %s\r\nMessage-ID: <%s@soak.test>\r\n"
                "X-Soak-Id: %s\r\nDate: %s\r\n\r\n%s" % (
                    m["header_from"], ", ".join(m["rcpts"]), m["id"], m["id"], m["id"],
                    time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime()), body))

    def attempt(self, m):
        """One SMTP session; (code, reply text, stage)."""
        s = smtplib.SMTP(timeout=60)
        try:
            s.connect("127.0.0.1", self.g.smtp_ports[m["listener"]])
            s.ehlo("device.soak.test")
            code, msg = s.docmd("XCLIENT", "ADDR=%s" % m["ip"])
            if code != 220:
                return code, msg.decode(), "xclient"
            s.ehlo("device.soak.test")
            if m["login"]:
                try:
                    s.login(m["login"], m["password"])
                except smtplib.SMTPAuthenticationError as e:
                    return e.smtp_code, e.smtp_error.decode(), "auth"
            code, msg = s.mail(m["mail_from"])
            if code != 250:
                return code, msg.decode(), "mail"
            ok = 0
            for r in m["rcpts"]:
                code, msg = s.rcpt(r)
                if code not in (250, 251):
                    return code, msg.decode(), "rcpt"
                ok += 1
            try:
                code, msg = s.data(self.text(m).encode())
            except smtplib.SMTPDataError as e:
                return e.smtp_code, e.smtp_error.decode(errors="replace"), "data"
            try:
                s.quit()
            except smtplib.SMTPException:
                pass
            return code, msg.decode(), "data"
        except (smtplib.SMTPException, OSError) as e:
            return 0, "connection: %s" % e, "conn"
        finally:
            s.close()

    def device(self, queue, pace):
        while True:
            with self.lock:
                if not queue:
                    return
                m = queue.pop()
            if pace and m["kind"] != "smtp-auth":   # applications burst: admission bites
                wait = self.t0 + pace * int(m["id"][5:]) - time.time()
                if wait > 0:
                    time.sleep(wait)
            tries = []
            for k in range(40):
                code, msg, stage = self.attempt(m)
                tries.append((round(self.elapsed(), 3), code, msg))
                with self.lock:
                    self.attempt_replies["%d %s" % (code, " ".join(msg.split()[:2]) if code else msg[:40])] += 1
                if code == 250 or 500 <= code < 600:
                    break
                time.sleep(0.5 + self.rnd.random() * (1.5 if k < 10 else 4))
            qid = None
            mm = re.search(r"queued as ([0-9A-Za-z]+)", msg)
            if code == 250 and mm:
                qid = mm.group(1)
            with self.lock:
                self.results[m["id"]] = {"msg": m, "code": code, "reply": msg, "stage": stage,
                                         "qid": qid, "attempts": len(tries)}
                self.done += 1

    # Faults ---------------------------------------------------------------------------
    def fault(self, name, fn):
        def run():
            start = time.time()
            try:
                detail = fn() or ""
            except Exception as e:  # a fault that could not be injected fails the run
                detail = "NOT INJECTED: %r" % e
                self.extra_failures.append("fault %s: %r" % (name, e))
            with self.lock:
                self.faults.append((name, start, time.time(), detail))
        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def f_sim(self, spec, what):
        def fn():
            self.g.sim.control("fault", spec)
            return what
        return fn

    def f_token(self):
        self.g.sim.control("fault", {"role": "token", "step": "request", "action": "status", "status": 503,
                                     "for_seconds": 30})
        time.sleep(30)
        n = sum(1 for f in self.fired() if f["role"] == "token")
        return "token endpoint 503 for 30 s (%d token requests answered 503 so far)" % n

    def fired(self):
        out = []
        with open(os.path.join(self.simdir, "faults.jsonl")) as f:
            for line in f:
                out.append(json.loads(line))
        return out

    def f_kill_transport(self):
        before = len(self.fired())
        self.g.sim.control("fault", {"role": "any", "step": "data", "action": "stall", "seconds": 3, "count": 1})
        end = time.time() + 60
        while time.time() < end:
            new = [f for f in self.fired()[before:] if f["step"] == "data" and f["action"] == "stall"]
            if new:
                time.sleep(0.3)
                pid = pid_of_port(new[0]["client_port"], self.exe)
                if pid is None:
                    return "stall fired but no transport owned port %s" % new[0]["client_port"]
                os.kill(pid, signal.SIGKILL)
                self.killed_transports.append((pid, time.time()))
                return "SIGKILL m365-transport pid %d waiting for the 354 to DATA (client port %d)" % (
                    pid, new[0]["client_port"])
            time.sleep(0.05)
        raise RuntimeError("no session reached DATA within 60 s")

    def f_kill_milter(self, i):
        def fn():
            sup = self.g.milters[i].pid
            workers = children(sup)
            if not workers:
                raise RuntimeError("milter %d has no worker" % i)
            os.kill(workers[0], signal.SIGKILL)
            end = time.time() + 10
            while time.time() < end:
                now = children(sup)
                if now and now[0] != workers[0]:
                    return "SIGKILL milter %d worker %d; supervisor started %d" % (i, workers[0], now[0])
                time.sleep(0.1)
            raise RuntimeError("milter %d worker not restarted" % i)
        return fn

    def f_postfix_reload(self):
        r = self.g._postfix("reload")
        if r.returncode != 0:
            raise RuntimeError(r.stderr)
        return "postfix reload"

    def f_conf_reload(self):
        changed = None
        for path in self.g.confs:
            with open(path) as f:
                text = f.read()
            if "messages_action = tempfail" in text:
                text, changed = text.replace("messages_action = tempfail", "messages_action = accept"), "tempfail -> accept"
            else:
                text, changed = text.replace("messages_action = accept", "messages_action = tempfail"), "accept -> tempfail"
            with open(path + ".new", "w") as f:
                f.write(text)
            os.chmod(path + ".new", 0o644)
            os.rename(path + ".new", path)
        for p in self.g.milters:
            os.kill(p.pid, signal.SIGHUP)
        return "SIGHUP to %d milter(s): milter { messages_action } %s" % (len(self.g.milters), changed)

    def f_readonly(self):
        os.chmod(self.g.state, 0o555)
        time.sleep(5)
        os.chmod(self.g.state, 0o755)
        return "state_dir mode 0555 for 5 s"

    def f_mapfull(self):
        # Both files: the counters (admission, pacing) and the journal.
        dbs = [Lmdb(os.path.join(self.g.state, f)) for f in ("store.mdb", "journal.mdb")]
        try:
            n = sum(db.fill() for db in dbs)
            time.sleep(5)
            k = sum(db.unfill() for db in dbs)
        finally:
            for db in dbs:
                db.close()
        return "LMDB maps full for 5 s (%d filler records written until MDB_MAP_FULL, %d removed)" % (n, k)

    def f_redis_oom(self):
        self.redis.cli("config", "set", "maxmemory", "1")
        time.sleep(5)
        self.redis.cli("config", "set", "maxmemory", "0")
        return "Redis maxmemory 1 byte (noeviction: every write OOM) for 5 s"

    def f_redis_restart(self):
        self.redis.stop()
        time.sleep(3)
        self.redis.start()
        return "redis-server stopped (SIGTERM), down 3 s, started again (AOF kept)"

    def f_drop_one(self):
        q = self.postqueue()
        cand = [e for e in q if e.get("sender")]
        if not cand:
            raise RuntimeError("nothing queued to delete")
        qid = cand[0]["queue_id"]
        r = self.g.postsuper("-d", qid)
        self.dropped_qid = qid
        return "postsuper -d %s: %s" % (qid, r.stderr.strip())

    def schedule(self):
        """(progress fraction, name, function): every fault twice."""
        tp = TIMEOUT_COMMAND + 4
        kinds = [
            ("drop-after-rcpt", self.f_sim({"role": "any", "step": "after_rcpt", "action": "drop", "count": 1},
                                           "simulator drops the connection after RCPT")),
            ("drop-after-dot", self.f_sim({"role": "any", "step": "after_data", "action": "drop", "count": 1},
                                          "simulator keeps the message, drops the connection before the reply")),
            ("reply-432", self.f_sim({"role": "smtp", "step": "eom", "action": "reply", "count": 2,
                                      "reply": "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded"},
                                     "simulator answers 432 4.3.2 at end of data (2 sessions)")),
            ("reply-451", self.f_sim({"role": "any", "step": "rcpt", "action": "reply", "count": 2,
                                      "reply": "451 4.7.0 Temporary server error. Please try again later. PRX4"},
                                     "simulator answers 451 4.7.0 at RCPT (2 sessions)")),
            ("stall", self.f_sim({"role": "any", "step": "mail", "action": "stall", "seconds": tp, "count": 1},
                                 "simulator stalls %d s at MAIL (timeout_command %d)" % (tp, TIMEOUT_COMMAND))),
            ("token-503", self.f_token),
            ("milter-kill", None),
            ("transport-kill", self.f_kill_transport),
            ("postfix-reload", self.f_postfix_reload),
            ("config-reload", self.f_conf_reload),
            ("state-readonly", self.f_readonly),
        ]
        if self.a.store == "lmdb":
            kinds.append(("lmdb-map-full", self.f_mapfull))
        else:
            kinds.append(("redis-restart", self.f_redis_restart))
            kinds.append(("redis-oom", self.f_redis_oom))
        ev = []
        slots = 2 * len(kinds)
        for rep in range(2):
            for j, (name, fn) in enumerate(kinds):
                frac = 0.06 + 0.76 * (rep * len(kinds) + j) / slots
                if name == "milter-kill":
                    fn = self.f_kill_milter(rep % len(self.g.milters))
                ev.append((frac, name, fn))
        if self.a.drop_one:
            ev.append((0.5, "drop-one", self.f_drop_one))
        return sorted(ev, key=lambda e: e[0])

    # Sampling ---------------------------------------------------------------------------
    def store_size(self):
        if self.a.store == "redis":
            return {"redis_used_memory": self.redis.used_memory()}
        out = {}
        for name in ("store", "journal"):
            path = os.path.join(self.g.state, name + ".mdb")
            out["lmdb_%s_file" % name] = os.path.getsize(path) if os.path.exists(path) else 0
            st = subprocess.run(["mdb_stat", "-ef", "-n", path], capture_output=True, text=True).stdout
            used = re.search(r"Number of pages used: (\d+)", st)
            free = re.search(r"Free pages: (\d+)", st)
            if used and free:
                out["lmdb_%s_live_pages" % name] = int(used.group(1)) - int(free.group(1))
        return out

    def sampler(self):
        while not self.stop_sampling.is_set():
            s = {"t": self.elapsed(), "milters": [], "transports": []}
            for p in self.g.milters:
                for pid in [p.pid] + children(p.pid):
                    r = proc_res(pid)
                    if r:
                        s["milters"].append((pid, pid == p.pid) + r)
                    m = proc_mem(pid) if pid != p.pid else None
                    if m:
                        s.setdefault("milter_mem", []).append(m)
            for pid in transports(self.exe):
                r = proc_res(pid)
                if r:
                    s["transports"].append((pid,) + r)
            s["queue"] = self.done
            self.samples.append(s)
            self.stop_sampling.wait(1.0)

    def postqueue(self):
        out = subprocess.run(["postqueue", "-c", os.path.join(self.g.pf, "etc"), "-j"],
                             capture_output=True, text=True).stdout
        return [json.loads(l) for l in out.splitlines() if l.strip()]

    # Run -----------------------------------------------------------------------------------
    def run(self):
        msgs = self.plan()
        queue = list(reversed(msgs))
        self.t0 = time.time()
        pace = (self.a.min_seconds / self.n) if self.a.min_seconds else 0
        sampler = threading.Thread(target=self.sampler, daemon=True)
        sampler.start()
        devs = [threading.Thread(target=self.device, args=(queue, pace), daemon=True) for _ in range(N_CLIENTS)]
        for d in devs:
            d.start()
        events = self.schedule()
        threads = []
        self.warm = None
        while any(d.is_alive() for d in devs):
            frac = self.done / self.n
            while events and events[0][0] <= frac:
                _, name, fn = events.pop(0)
                threads.append(self.fault(name, fn))
            if self.warm is None and frac >= 0.20:
                self.warm = {"t": self.elapsed(), "store": self.store_size(), "milters": self.milter_now()}
            if self.a.progress and int(self.elapsed()) % 30 == 0:
                print("  %6.0fs  %d/%d answered, %d faults fired" % (self.elapsed(), self.done, self.n,
                                                                     len(self.faults)), flush=True)
            time.sleep(0.2 if not self.a.progress else 1.0)
        for _, name, fn in events:      # the devices finished before these came up
            threads.append(self.fault(name, fn))
        for t in threads:
            t.join(120)
        self.submit_end = self.elapsed()
        # The final flush: postqueue -f until the queue is empty.
        end = time.time() + self.a.drain
        while time.time() < end:
            if not self.postqueue():
                break
            subprocess.run(["postqueue", "-c", os.path.join(self.g.pf, "etc"), "-f"], capture_output=True)
            time.sleep(5)
        time.sleep(2)
        self.drain_end = self.elapsed()
        self.end_state = {"t": self.elapsed(), "store": self.store_size(), "milters": self.milter_now()}
        self.stop_sampling.set()
        sampler.join(5)

    def milter_now(self):
        out = []
        for p in self.g.milters:
            for pid in children(p.pid):
                r = proc_res(pid)
                if r:
                    out.append(r)
        return out

    # Accounting ------------------------------------------------------------------------------
    def maillog(self):
        ids, accepted, status, removed, rejected = {}, set(), collections.defaultdict(list), set(), set()
        with open(os.path.join(self.g.pf, "maillog"), errors="replace") as f:
            for line in f:
                m = re.search(r"postfix/(\w+)\[\d+\]: ([0-9A-F]+): (.*)$", line)
                if not m:
                    continue
                prog, qid, rest = m.groups()
                mm = re.match(r"message-id=<(soak-\d+)@soak\.test>", rest)
                if mm:
                    ids[qid] = mm.group(1)
                elif prog == "qmgr" and rest.startswith("from="):
                    accepted.add(qid)
                elif rest.startswith("to="):
                    mm = re.match(r"to=<([^>]*)>.*?status=(\w+) \((.*)\)$", rest)
                    if mm:
                        status[qid].append((mm.group(1), mm.group(2), mm.group(3)))
                elif rest == "removed":
                    removed.add(qid)
                elif rest.startswith("milter-reject") or rest.startswith("reject"):
                    rejected.add(qid)
        return ids, accepted, status, removed

    def sim_records(self, name):
        out = []
        with open(os.path.join(self.simdir, name)) as f:
            for line in f:
                out.append(json.loads(line))
        return out

    def account(self):
        ids, accepted, status, removed = self.maillog()
        by_id = collections.defaultdict(list)
        for qid, sid in ids.items():
            if qid in accepted:
                by_id[sid].append(qid)
        queued = self.postqueue()
        queued_ids = {e["queue_id"] for e in queued}
        recs = self.sim_records("records.jsonl")
        deliveries = collections.defaultdict(list)   # (sid, rcpt) -> [record]
        foreign = 0
        for r in recs:
            sid = (r["headers"].get("X-Soak-Id") or [None])[0]
            if sid is None:
                foreign += 1
                continue
            for rc in r["rcpt_to"]:
                deliveries[(sid, rc.lower())].append(r)
        rows = collections.OrderedDict((k, []) for k in (
            "sent by the devices", "refused at SMTP time", "accepted by Postfix", "delivered once",
            "delivered twice (drop after dot)", "bounced", "still queued", "LOST", "DUPLICATED (unexplained)",
            "INCONSISTENT"))
        seen_sids = set()
        for sid, res in sorted(self.results.items()):
            m = res["msg"]
            seen_sids.add(sid)
            rows["sent by the devices"].append(sid)
            qids = by_id.get(sid, [])
            if res["code"] != 250:
                rows["refused at SMTP time"].append((sid, res["reply"].replace("\n", " ")))
                if qids or any(deliveries.get((sid, r.lower())) for r in m["rcpts"]):
                    rows["INCONSISTENT"].append((sid, "refused at SMTP (%s) but Postfix queued %s / the simulator got it"
                                                  % (res["reply"][:60], qids)))
                continue
            rows["accepted by Postfix"].append((sid, res["qid"]))
            if res["qid"] not in qids or len(qids) != 1:
                rows["INCONSISTENT"].append((sid, "device saw queue id %s, maillog has %s" % (res["qid"], qids)))
            qid = res["qid"]
            outcome = "delivered"
            dup = []
            for r in m["rcpts"]:
                got = deliveries.get((sid, r.lower()), [])
                st = [s for s in status.get(qid, []) if s[0].lower() == r.lower()]
                final = st[-1] if st else None
                if len(got) == 1 and final and final[1] == "sent":
                    continue
                if len(got) >= 2:
                    dropped = [g for g in got if g["reply_dropped"]]
                    if len(dropped) >= len(got) - 1 and final and final[1] == "sent":
                        dup.append((sid, qid, r, len(got)))
                        outcome = outcome if outcome != "delivered" else "twice"
                        continue
                    rows["DUPLICATED (unexplained)"].append((sid, qid, r, len(got)))
                    outcome = "dup"
                    continue
                if len(got) == 0 and final and final[1] == "bounced":
                    outcome = "bounced"
                    rows["bounced"].append((sid, qid, r, final[2]))
                    continue
                if qid in queued_ids:
                    outcome = "queued"
                    continue
                if len(got) == 1 and (not final or final[1] != "sent"):
                    rows["INCONSISTENT"].append((sid, "%s: the simulator has it, maillog says %s" % (r, final)))
                    outcome = "inconsistent"
                    continue
                if final and final[1] == "sent" and not got:
                    rows["LOST"].append((sid, qid, r, "maillog says sent, the simulator never got it"))
                else:
                    rows["LOST"].append((sid, qid, r, "not delivered, not bounced, not queued (last maillog status: %s)"
                                         % (final[1] if final else "none")))
                outcome = "lost"
            if outcome == "delivered":
                rows["delivered once"].append(sid)
            elif outcome == "twice":
                rows["delivered twice (drop after dot)"].extend(dup)
            elif outcome == "queued":
                rows["still queued"].append((sid, qid))
        for (sid, rc), got in deliveries.items():
            if sid not in seen_sids:
                rows["INCONSISTENT"].append((sid, "the simulator got %s for it, no device sent it" % rc))
        self.rows = rows
        self.foreign = foreign
        self.queue_left = queued
        return rows

    # Limits -------------------------------------------------------------------------------------
    def limits(self):
        recs = [r for r in self.sim_records("records.jsonl") if r["role"] == "smtp"]
        per = collections.defaultdict(list)
        for r in recs:
            per[r["auth_user"]].append((r["accepted"], len(r["rcpt_to"])))
        out = {}
        for box, ev in per.items():
            ev.sort()
            bm = br = 0
            j = jr = 0
            rsum = 0
            for i, (t, n) in enumerate(ev):
                while ev[j][0] <= t - MSG_LIMIT[1]:
                    j += 1
                bm = max(bm, i - j + 1)
                rsum += n
                while ev[jr][0] <= t - RCPT_LIMIT[1]:
                    rsum -= ev[jr][1]
                    jr += 1
                br = max(br, rsum)
            out[box] = {"messages": len(ev), "busiest_msg": bm, "busiest_rcpt": br, "sessions": 0}
        sess = collections.defaultdict(list)
        for s in self.sim_records("sessions.jsonl"):
            if s["role"] == "smtp":
                sess[s["auth_user"]].append((s["start"], 1))
                sess[s["auth_user"]].append((s["end"], -1))
        for box, ev in sess.items():
            ev.sort(key=lambda e: (e[0], e[1]))   # an end before a start at the same instant
            cur = peak = 0
            for _, d in ev:
                cur += d
                peak = max(peak, cur)
            out.setdefault(box, {"messages": 0, "busiest_msg": 0, "busiest_rcpt": 0})["sessions"] = peak
        refused = self.sim_records("refused.jsonl")
        throttles = [r for r in refused if r["reply"].startswith(THROTTLES) and not r.get("fault")]
        injected = [r for r in refused if r.get("fault")]
        self.lim = out
        self.throttles = throttles
        self.injected = injected
        return out

    # Report ---------------------------------------------------------------------------------------
    def journal(self):
        """The queue ids whose journal entry is still there."""
        if self.a.store == "redis":
            keys = self.redis.journal_keys()
        else:
            db = Lmdb(os.path.join(self.g.state, "journal.mdb"))
            try:
                keys = [k.decode("ascii", "replace") for k in db.keys(b"j:")]
            finally:
                db.close()
        out = []
        for k in keys:
            m = re.search(r"j:([0-9A-Za-z]+)", k)
            q = m.group(1) if m else k
            if q not in out:
                out.append(q)
        return out

    def journal_kept(self):
        """Queue ids the transport said it could not drop (store full or
        down), and (LMTP) those a transport SIGKILLed by the fault had
        finished: the LMTP service drops finished entries in batches, and
        a killed one's batch stays to expire."""
        try:
            with open(os.path.join(self.g.work, "m365relay.log"), errors="replace") as f:
                text = f.read()
        except FileNotFoundError:
            return set()
        kept = set(re.findall(r" ([0-9A-Za-z]+): journal: entry kept", text))
        for pid, killed in self.killed_transports:
            # what it finished: its batch waits up to a second after a
            # delivery, and a delivery may wait longer for its pacing
            for stamp, q in re.findall(r"^(\S+) m365-transport\[%d\]: ([0-9A-Za-z]+): to=<" % pid,
                                       text, re.M):
                kept.add(q)
        return kept

    def report(self):
        L = []
        fails = list(self.extra_failures)
        rows = self.rows
        L.append("| row | messages |")
        L.append("|---|---:|")
        for k, v in rows.items():
            L.append("| %s | %d |" % (k, len(v)))
        L.append("")
        L.append("(simulator records without an X-Soak-Id - delivery reports for the bounces: %d)" % self.foreign)
        L.append("")
        if rows["refused at SMTP time"]:
            c = collections.Counter(re.sub(r"\s+", " ", r)[:110] for _, r in rows["refused at SMTP time"])
            L.append("Refused at SMTP time, by final reply (ids in the run's log):")
            for r, n in c.most_common():
                L.append("    %5d  %s" % (n, r))
        if rows["bounced"]:
            L.append("Bounced:")
            for sid, qid, rc, why in rows["bounced"][:30]:
                L.append("    %s %s to=<%s>: %s" % (sid, qid, rc, why[:150]))
            if len(rows["bounced"]) > 30:
                L.append("    ... %d more" % (len(rows["bounced"]) - 30))
        if rows["delivered twice (drop after dot)"]:
            L.append("Delivered twice, each explained by a drop after the dot:")
            for sid, qid, rc, n in rows["delivered twice (drop after dot)"]:
                L.append("    %s queue id %s to=<%s>: %d copies, one with reply_dropped" % (sid, qid, rc, n))
        for bad in ("LOST", "DUPLICATED (unexplained)", "INCONSISTENT", "still queued"):
            if rows[bad]:
                fails.append("%d %s" % (len(rows[bad]), bad))
                L.append("%s:" % bad)
                for x in rows[bad][:50]:
                    L.append("    %s" % (x,))
        if self.queue_left:
            fails.append("%d still in the queue" % len(self.queue_left))
        # Expected outcomes
        n_bounce_rcpt = sum(1 for sid, r in self.results.items() if r["code"] == 250 and BOUNCE_RCPT in r["msg"]["rcpts"])
        if n_bounce_rcpt != len(rows["bounced"]):
            fails.append("%d messages to %s accepted, %d bounced" % (n_bounce_rcpt, BOUNCE_RCPT, len(rows["bounced"])))
        L.append("")
        L.append("Device attempts by reply (every attempt, retries included):")
        for r, n in self.attempt_replies.most_common(12):
            L.append("    %6d  %s" % (n, r))
        # Limits
        L.append("")
        L.append("Limits (simulator's records, per mailbox; scaled: %d/%ds messages, %d/%ds recipients, %d sessions):"
                 % (MSG_LIMIT[0], MSG_LIMIT[1], RCPT_LIMIT[0], RCPT_LIMIT[1], SESSIONS))
        L.append("")
        L.append("| mailbox | messages | busiest %ds | busiest %ds rcpts | most sessions |" % (MSG_LIMIT[1], RCPT_LIMIT[1]))
        L.append("|---|---:|---:|---:|---:|")
        viol = 0
        for box in sorted(self.lim):
            x = self.lim[box]
            bad = x["busiest_msg"] > MSG_LIMIT[0] or x["busiest_rcpt"] > RCPT_LIMIT[0] or x["sessions"] > SESSIONS
            viol += bad
            L.append("| %s | %d | %d | %d | %d%s |" % (box, x["messages"], x["busiest_msg"], x["busiest_rcpt"],
                                                      x["sessions"], " VIOLATION" if bad else ""))
        L.append("")
        L.append("Mailboxes over a limit: %d.  Throttling replies not injected (451 4.7.500, 432 4.3.2, "
                 "554 5.2.0): %d.  Replies/drops injected by the faults: %d." % (viol, len(self.throttles), len(self.injected)))
        for r in self.throttles[:20]:
            L.append("    %s %s %s" % (utc(r["time"]), r["auth_user"], r["reply"][:80]))
        if viol:
            fails.append("%d mailbox(es) over a limit" % viol)
        if self.throttles:
            fails.append("%d throttling replies not injected" % len(self.throttles))
        if len(self.lim) < 20:
            fails.append("only %d mailboxes used SMTP AUTH" % len(self.lim))
        # Pacing and admission at work
        log = open(os.path.join(self.g.work, "m365relay.log"), errors="replace").read()
        paced_def = len(re.findall(r"reached \d+/\d+s? (messages|recipients); next slot", log))
        adm = sum(n for r, n in self.attempt_replies.items() if r.startswith("451 4.7.0"))
        slow = 0
        with open(os.path.join(self.g.pf, "maillog"), errors="replace") as f:
            for line in f:
                mm = re.search(r"to=<[^>]*>, relay=m365, .*delays=[\d.]+/[\d.]+/[\d.]+/([\d.]+), .*mailbox=|"
                               r"to=<[^>]*>, relay=m365, .*delays=[\d.]+/[\d.]+/[\d.]+/([\d.]+)", line)
                if mm and float(mm.group(1) or mm.group(2)) > 1.0:
                    slow += 1
        L.append("Admission (milter, 451 4.7.0 at SMTP time): %d attempts refused.  Pacing: %d deliveries "
                 "spent over 1 s in m365-transport (slot or window waits, stalls, timeouts), %d deferred "
                 "when pacing_wait ran out." % (adm, slow, paced_def))
        # Resources
        L.append("")
        mil_rss = max((m[2] for s in self.samples for m in s["milters"] if not m[1]), default=0)
        mil_hwm = max((m[3] for s in self.samples for m in s["milters"] if not m[1]), default=0)
        mil_fd = max((m[4] for s in self.samples for m in s["milters"] if not m[1]), default=0)
        sup_rss = max((m[2] for s in self.samples for m in s["milters"] if m[1]), default=0)
        tr_rss = max((t[1] for s in self.samples for t in s["transports"]), default=0)
        tr_fd = max((t[3] for s in self.samples for t in s["transports"]), default=0)
        tr_n = max((len(s["transports"]) for s in self.samples), default=0)
        L.append("Resources (sampled from /proc every second):")
        L.append("    milter worker peak RSS %d kB (VmHWM %d kB), peak open fds %d; supervisor peak RSS %d kB"
                 % (mil_rss, mil_hwm, mil_fd, sup_rss))
        L.append("    m365-transport peak RSS %d kB, peak open fds %d, most running at once %d"
                 % (tr_rss, tr_fd, tr_n))
        w, e = self.warm or self.end_state, self.end_state
        L.append("    milter workers at warm-up (10%%, %.0f s): %s; at the end: %s  (RSS kB, HWM kB, fds)"
                 % (w["t"], w["milters"], e["milters"]))
        wm = [x for x in self.samples if x["t"] >= w["t"] and x.get("milter_mem")]
        if wm:
            L.append("    milter workers' RssAnon/RssFile kB at warm-up: %s; at the end: %s"
                     % (wm[0]["milter_mem"], wm[-1]["milter_mem"]))
        L.append("    store at warm-up: %s; at the end: %s" % (w["store"], e["store"]))
        # Redis: its used memory; LMDB: the live pages of each file (the
        # counters and the journal), each with its own slack - 10%, but at
        # least 16 pages (64 KiB) or 64 KiB of Redis: a few pages of
        # B-tree, or of free list after the map-full fault, are not a leak.
        if self.a.store == "redis":
            grown = [("Redis", w["store"]["redis_used_memory"], e["store"]["redis_used_memory"],
                      "bytes", 65536)]
        else:
            grown = [(n, w["store"].get("lmdb_%s_live_pages" % n), e["store"].get("lmdb_%s_live_pages" % n),
                      "pages", 16) for n in ("store", "journal")]
        for name, a_, b_, unit, floor in grown:
            if not a_ or b_ is None:
                continue
            slack = max(a_ * 0.10, floor)
            g_ = (b_ - a_) / a_ * 100
            L.append("    %s growth after warm-up: %+.1f%% (%+d %s; allowed %d)"
                     % (name, g_, b_ - a_, unit, slack))
            if b_ - a_ > slack:
                fails.append("%s grew %.1f%% after warm-up" % (name, g_))
        for (r0, h0, f0), (r1, h1, f1) in zip(sorted(w["milters"]), sorted(e["milters"])):
            if f1 > f0 + 2:
                fails.append("milter worker fds %d at warm-up, %d at the end" % (f0, f1))
        # Every delivery drops its journal entry; one the store could not
        # take (map full, Redis down) is kept to expire by itself, and the
        # transport says so.  An entry left without that line is a leak.
        # (The LMTP service writes its drops within a second: look again
        # for a few seconds before calling an entry left.)
        deadline = time.time() + 5
        while True:
            left = self.journal()
            kept = self.journal_kept()
            unexplained = [q for q in left if q not in kept]
            if not unexplained or time.time() > deadline:
                break
            time.sleep(0.5)
        L.append("    delivery journal: %d queue ids left (%d kept with the transport's "
                 "'journal: entry kept' line or in a killed transport's batch of drops, "
                 "to expire by themselves; %d unexplained)"
                 % (len(left), len(left) - len(unexplained), len(unexplained)))
        if unexplained:
            fails.append("%d journal entries left after the run with no reason logged (%s)"
                         % (len(unexplained), " ".join(unexplained[:10])))
        # Faults
        L.append("")
        L.append("Faults (time from start; UTC):")
        for name, s, e2, d in sorted(self.faults, key=lambda f: f[1]):
            L.append("    %7.1f s  %s  %-16s %s (%.1f s)" % (s - self.t0, utc(s), name, d, e2 - s))
        counts = collections.Counter(f[0] for f in self.faults)
        for name, n in counts.items():
            if n < 2 and name != "drop-one":
                fails.append("fault %s injected %d time(s)" % (name, n))
        fired = collections.Counter((f["step"], f["action"]) for f in self.fired())
        L.append("    fired in the simulator: %s" % ", ".join("%s/%s %d" % (k[0], k[1], v) for k, v in sorted(fired.items())))
        for need in (("after_rcpt", "drop"), ("after_data", "drop"), ("eom", "reply"), ("rcpt", "reply"),
                     ("mail", "stall"), ("data", "stall"), ("request", "status")):
            if fired.get(need, 0) < 2:
                fails.append("simulator fault %s/%s fired %d time(s)" % (need[0], need[1], fired.get(need, 0)))
        L.append("")
        L.append("Wall time: %.0f s (devices done at %.0f s, queue empty at %.0f s)"
                 % (self.drain_end, self.submit_end, self.drain_end))
        return L, fails


def main():
    ap = argparse.ArgumentParser(description="soak test (bench/README)")
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--store", choices=("lmdb", "redis"), default="lmdb")
    ap.add_argument("--mode", choices=("pipe", "lmtp"), default="pipe",
                    help="Postfix delivers with pipe(8) or with lmtp(8) to the LMTP service")
    ap.add_argument("--quick", action="store_true", help="500 messages, report under the build directory")
    ap.add_argument("--build", default=os.environ.get("top_builddir", "."))
    ap.add_argument("--maxproc", type=int, default=20)
    ap.add_argument("--map-mb", type=int, default=8, help="store { size } for LMDB")
    ap.add_argument("--min-seconds", type=float, default=0, help="spread submission over at least this long")
    ap.add_argument("--drain", type=float, default=600, help="seconds the final flush may take")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--results", help="append the report here (default: bench/RESULTS.md; --quick: BUILD/soak-report.md)")
    ap.add_argument("--keep", action="store_true", help="keep the sandbox")
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--drop-one", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.quick:
        a.messages = 500
        a.min_seconds = a.min_seconds or 75
    if os.geteuid() != 0:
        sys.exit("soak: needs root (a private Postfix)")
    results = a.results or (os.path.join(os.path.abspath(a.build), "soak-report.md") if a.quick
                            else os.path.join(HERE, "RESULTS.md"))
    cmd = "bench/soak " + " ".join(sys.argv[1:])
    s = Soak(a)
    ok = False
    try:
        print("soak: %d messages, %s store, %s delivery, %d clients, %d mailboxes"
              % (a.messages, a.store, a.mode, N_CLIENTS, N_MAILBOXES), flush=True)
        s.start()
        s.run()
        s.account()
        s.limits()
        lines, fails = s.report()
        ok = not fails
        started = datetime.datetime.fromtimestamp(s.t0, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        cpu = ""
        try:
            cpu = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read()).group(1)
        except (OSError, AttributeError):
            pass
        head = ["## soak: %d messages, %s store%s%s - %s" % (
                    a.messages, a.store, " (two milters, one Redis)" if a.store == "redis" else "",
                    ", LMTP delivery" if a.mode == "lmtp" else "", "PASS" if ok else "FAIL"),
                "",
                "Machine: %s, %d cores (%s), %s; started %s" % (platform.node(), os.cpu_count(), cpu,
                                                                 platform.platform(), started),
                "Command: `%s`" % cmd.strip(),
                ""]
        tail = [""] + (["Result: FAIL - " + "; ".join(fails)] if fails else ["Result: PASS"]) + [""]
        text = "\n".join(head + lines + tail)
        print(text, flush=True)
        if not a.drop_one or a.results:
            with open(results, "a") as f:
                f.write("\n" + text)
            print("soak: report appended to %s" % results)
    finally:
        keep = a.keep or not ok
        if keep and s.g:
            print("soak: sandbox kept in %s" % s.g.work)
        s.stop(keep)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
