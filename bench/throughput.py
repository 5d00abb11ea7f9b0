#!/usr/bin/python3
"""throughput.py - how fast the gateway delivers, against Postfix's own client.

    bench/throughput.py [--build DIR] [--messages N] [--rounds R] [--variants a,b,...]

Two private Postfix instances on loopback (their own directories, never the
system's): a sink (smtpd with STARTTLS, everything to discard(8)) and a
gateway.  For each variant the gateway receives N messages of 1.3 KB with
smtp-source (through m365-milter, so each carries a signed route), holds
them, then is restarted and releases them all to the sink; the clock runs
from the release until the queue is empty.  Variants:

    smtp        Postfix smtp(8), STARTTLS required, default connection caching
    smtp-reuse  the same with smtp_tls_connection_reuse = yes
    msmtp       pipe(8) + msmtp, STARTTLS (one process and TLS session per message)
    pipe        pipe(8) + m365-transport, relay mode through a certificate
                connector (what the gateway ships)
    lmtp        lmtp(8) to m365-transport -L under spawn(8), the same mode
                (m365ctl postfix-config --lmtp)
    pipe-floor  pipe(8) + dd of=/dev/null: the cheapest agent pipe(8) can
                run (one small libc program that reads the message and
                sends nothing).  What any pipe(8) delivery costs before
                its agent does anything: the output then also gives pipe's
                and msmtp's agent CPU above it, and their ratio.
    pipe-handoff
                pipe(8) + m365-handoff, handing each delivery to the
                m365-transport -D daemon (started here, as the service
                user), the same mode and configuration as pipe.  The
                daemon and its delivery processes are counted as agent
                CPU (and gateway CPU): what the gateway spends, not only
                what runs under Postfix.
    msmtp-system, pipe-system
                msmtp and pipe as installed: trusting the machine's CA
                store (plus the sink's CA) instead of one CA file - msmtp
                its bundle file, m365-transport without ca_file (the hashed
                directory, made here as update-ca-certificates makes
                /etc/ssl/certs, and passed as SSL_CERT_DIR)

Both configurations are compiled (m365ctl check-config), as an
administrator does after each change.

For each: messages per second, the delivering agents' CPU per message
(smtp(8), pipe(8), or lmtp(8) and spawn(8), with what they run:
utime+stime+cutime+cstime of those processes) and the whole gateway Postfix's CPU per message (its master and
everything under it), medians over R rounds (variants alternate within a
round), and the ratios against msmtp and against smtp-reuse, measured in the
same run.  Nothing here passes or fails; the numbers are what this machine
did.  Needs root, postfix, smtp-source (postfix), msmtp, openssl.
"""
import argparse
import os
import pwd
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, "tests", "lib"))
from sandbox import USER, free_port, wait_port  # noqa: E402

HZ = os.sysconf("SC_CLK_TCK")

CONF = """user = "{user}"
state_dir = "{work}/state"
milter {{ socket = "inet:{milter_port}@127.0.0.1" pid_file = "{work}/milter.pid" }}
transport {{ ca_file = "{certs}/ca.pem" local_submitter = "local" helo_name = "gw.contoso.test" }}
tenant "contoso" {{
    accepted_domains = {{ "contoso.com" }}
    mx_endpoint = "localhost"
    mx_port = {sink_port}
    tenant_id = "contoso.onmicrosoft.com"
}}
connector "onprem" {{
    type = certificate
    certificate_file = "{certs}/relay.pem"
    key_file = "{work}/relay.key"
}}
domain "contoso.com" {{ mode = relay default_sender = "scanner@contoso.com" connector = "onprem" }}
submitter "local" {{
    clients = {{ "127.0.0.1" }}
    domain = "contoso.com"
    send_as = {{ "@contoso.com" }}
    envelope_senders = {{ "@contoso.com" }}
}}
"""


def sh(args, **kw):
    r = subprocess.run(args, capture_output=True, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError("%s: %s%s" % (" ".join(args), r.stdout, r.stderr))
    return r.stdout


class Postfix:
    def __init__(self, work, name, port, extra_main, extra_master):
        self.dir = os.path.join(work, name)
        self.etc = os.path.join(self.dir, "etc")
        for d in ("etc", "queue", "data"):
            os.makedirs(os.path.join(self.dir, d), exist_ok=True)
        shutil.chown(os.path.join(self.dir, "data"), "postfix")
        with open(os.path.join(TOP, "tests", "lib", "main.cf")) as f:
            main = f.read().replace("@DIR@", self.dir).replace("@HOSTNAME@", name + ".test")
        with open(os.path.join(TOP, "tests", "lib", "master.cf")) as f:
            master = f.read().replace("@PORT@", str(port))
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write(main + extra_main)
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write(master + extra_master)
        self.port = port

    def cmd(self, *args):
        return subprocess.run(["postfix", "-c", self.etc] + list(args), capture_output=True, text=True)

    def start(self):
        r = self.cmd("start")
        if r.returncode != 0 or not wait_port(self.port, 20):
            raise RuntimeError("postfix %s did not start: %s%s" % (self.dir, r.stdout, r.stderr))

    def stop(self):
        self.cmd("stop")
        for _ in range(100):
            if self.master_pid() is None:
                return
            time.sleep(0.1)

    def postconf(self, *settings):
        sh(["postconf", "-c", self.etc, "-e"] + list(settings))

    def master_pid(self):
        try:
            with open(os.path.join(self.dir, "queue", "pid", "master.pid")) as f:
                pid = int(f.read().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def queued(self, dirs=("incoming", "active", "deferred", "hold", "maildrop")):
        n = 0
        for d in dirs:
            for _, _, files in os.walk(os.path.join(self.dir, "queue", d)):
                n += len(files)
        return n


def stat_of(pid):
    """(comm, ppid, ticks of the process and its reaped children)"""
    try:
        with open("/proc/%d/stat" % pid) as f:
            s = f.read()
    except OSError:
        return None
    comm = s[s.index("(") + 1:s.rindex(")")]
    f = s[s.rindex(")") + 2:].split()
    return comm, int(f[1]), sum(int(x) for x in f[11:15])


def tree_cpu(root):
    """CPU seconds of root and every live process under it (reaped ones are
    in their parents' cutime/cstime), and of those named like a delivery
    agent (smtp, pipe, lmtp and their children)."""
    procs = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = stat_of(int(d))
            if st:
                procs[int(d)] = st
    kids = {}
    for pid, (_, ppid, _) in procs.items():
        kids.setdefault(ppid, []).append(pid)
    total = agents = 0
    todo = [root]
    while todo:
        p = todo.pop()
        if p not in procs:
            continue
        comm, _, ticks = procs[p]
        total += ticks
        if comm in ("smtp", "pipe", "lmtp", "spawn", "m365-transport"):
            agents += ticks
        todo.extend(kids.get(p, []))
    return total / HZ, agents / HZ


def gateway_cpu(master, daemon):
    """tree_cpu of the Postfix master, plus the m365-transport -D daemon's
    whole tree (its reaped delivery processes are in its cutime/cstime),
    which counts as delivering agent too."""
    total, agents = tree_cpu(master)
    if daemon is not None:
        d = tree_cpu(daemon.pid)[0]
        total, agents = total + d, agents + d
    return total, agents


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=TOP)
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variants", default="smtp,smtp-reuse,msmtp,pipe,pipe-handoff,lmtp")
    ap.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    ap.add_argument("--no-results", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (debugging)")
    a = ap.parse_args()
    for tool in ("postfix", "smtp-source", "msmtp", "openssl"):
        if shutil.which(tool) is None:
            sys.exit("bench/throughput: %s is missing (apt-get install %s)"
                     % (tool, {"smtp-source": "postfix"}.get(tool, tool)))
    build = os.path.abspath(a.build)
    transport = os.path.join(build, "transport", "m365-transport")
    handoff = os.path.join(build, "transport", "m365-handoff")
    variants = a.variants.split(",")
    work = tempfile.mkdtemp(prefix="m365-throughput.", dir="/var/tmp")
    os.chmod(work, 0o755)
    milter = daemon = None
    sink = gw = None
    try:
        certs = os.path.join(work, "certs")
        sh(["sh", os.path.join(TOP, "tests", "simulator", "mkcerts.sh"), certs])
        for f in os.listdir(certs):
            os.chmod(os.path.join(certs, f), 0o644)
        os.makedirs(os.path.join(work, "state"))
        pw = pwd.getpwnam(USER)
        os.chown(os.path.join(work, "state"), pw.pw_uid, pw.pw_gid)
        shutil.copy(os.path.join(certs, "relay.key"), os.path.join(work, "relay.key"))
        os.chown(os.path.join(work, "relay.key"), pw.pw_uid, pw.pw_gid)
        os.chmod(os.path.join(work, "relay.key"), 0o600)
        sink_port, gw_port, milter_port = free_port(), free_port(), free_port()
        conf = os.path.join(work, "m365relay.conf")
        with open(conf, "w") as f:
            f.write(CONF.format(user=USER, work=work, certs=certs, milter_port=milter_port,
                                sink_port=sink_port))
        sh([os.path.join(build, "cli", "m365ctl"), "-c", conf, "route-key"])
        os.chown(os.path.join(work, "route.key"), pw.pw_uid, pw.pw_gid)
        # The machine's CA store plus the sink's CA: a bundle (msmtp) and
        # a hashed directory (m365-transport without ca_file).
        systore = os.path.join(work, "systore")
        os.makedirs(systore)
        for n in os.listdir("/etc/ssl/certs"):
            if n.endswith(".pem"):
                shutil.copy(os.path.join("/etc/ssl/certs", n), os.path.join(systore, n))
        shutil.copy(os.path.join(certs, "ca.pem"), os.path.join(systore, "bench-sink-ca.pem"))
        sh(["openssl", "rehash", systore])
        bundle = os.path.join(work, "bundle.crt")
        with open(bundle, "w") as out:
            for src in ("/etc/ssl/certs/ca-certificates.crt", os.path.join(certs, "ca.pem")):
                with open(src) as f:
                    out.write(f.read())
        os.chmod(bundle, 0o644)
        conf_sys = os.path.join(work, "m365relay-system.conf")
        with open(conf_sys, "w") as f:
            f.write(CONF.format(user=USER, work=work, certs=certs, milter_port=milter_port,
                                sink_port=sink_port).replace('ca_file = "%s/ca.pem" ' % certs, ""))
        # An administrator checks a while after the last edit; a file
        # changed within 10 ms of the check is hashed by every delivery
        # (its stat cannot vouch for it: lib/conf/conf_snap.c racy()).
        time.sleep(0.05)
        for c in (conf, conf_sys):
            out = subprocess.run([os.path.join(build, "cli", "m365ctl"), "-c", c, "check-config"],
                                 capture_output=True, text=True)
            print("%s: %s" % (os.path.basename(c), " / ".join(out.stdout.split("\n")[:2])), flush=True)
        sink = Postfix(work, "sink", sink_port, """
smtpd_tls_security_level = may
smtpd_tls_cert_file = {c}/server.pem
smtpd_tls_key_file = {c}/server.key
default_transport = discard
relay_transport = discard
default_process_limit = 200
""".format(c=certs), "")
        sink.start()

        milter = subprocess.Popen([os.path.join(build, "milter", "m365-milter"), "-f", "-c", conf],
                                  stderr=open(os.path.join(work, "milter.log"), "w"))
        if not wait_port(milter_port, 20):
            raise RuntimeError("m365-milter did not start")
        sock = os.path.join(work, "state", "transport.sock")
        if "pipe-handoff" in variants:
            def drop():
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)
            daemon = subprocess.Popen([transport, "-l", "-D", sock], preexec_fn=drop,
                                      stderr=open(os.path.join(work, "daemon.log"), "w"))
            for _ in range(100):
                if os.path.exists(sock):
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("m365-transport -D did not start")
        with open(os.path.join(work, "hold.re"), "w") as f:
            f.write("/^Subject:/ HOLD\n")
        gw = Postfix(work, "gw", gw_port, """
smtpd_milters = inet:127.0.0.1:{m}
milter_protocol = 6
milter_default_action = tempfail
header_checks = regexp:{w}/hold.re
smtp_tls_security_level = encrypt
smtp_tls_CAfile = {c}/ca.pem
smtp_tls_connection_reuse = no
relayhost = [127.0.0.1]:{s}
default_transport = smtp
default_destination_concurrency_limit = 20
default_process_limit = 100
queue_run_delay = 3600s
import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ XAUTHORITY DISPLAY LANG=C POSTLOG_SERVICE POSTLOG_HOSTNAME SSL_CERT_DIR={st}
export_environment = TZ MAIL_CONFIG LANG SSL_CERT_DIR
""".format(m=milter_port, w=work, c=certs, s=sink_port, st=systore), """
tlsproxy  unix  -       -       n       -       0       tlsproxy
lmtp      unix  -       -       n       -       -       lmtp
m365lmtp  unix  -       n       n       -       20      spawn
  user={u} argv={t} -c {conf} -L
m365      unix  -       n       n       -       20      pipe
  flags=q user={u} null_sender= argv={t} -c {conf} -q ${{queue_id}} -f ${{sender}} -a ${{client_address}} -s ${{sasl_username}} -- ${{recipient}}
msmtp     unix  -       n       n       -       20      pipe
  flags=q user={u} null_sender= argv=/usr/bin/msmtp --host=127.0.0.1 --port={s} --tls=on --tls-starttls=on --tls-trust-file={c}/ca.pem --domain=gw.contoso.test -f ${{sender}} -- ${{recipient}}
m365sys   unix  -       n       n       -       20      pipe
  flags=q user={u} null_sender= argv={t} -c {conf_sys} -q ${{queue_id}} -f ${{sender}} -a ${{client_address}} -s ${{sasl_username}} -- ${{recipient}}
m365ho    unix  -       n       n       -       20      pipe
  flags=q user={u} null_sender= argv={h} -S {sock} -T {t} -c {conf} -q ${{queue_id}} -f ${{sender}} -a ${{client_address}} -s ${{sasl_username}} -- ${{recipient}}
pipefloor unix  -       n       n       -       20      pipe
  flags=q user={u} argv=/usr/bin/dd of=/dev/null status=none
msmtpsys  unix  -       n       n       -       20      pipe
  flags=q user={u} null_sender= argv=/usr/bin/msmtp --host=127.0.0.1 --port={s} --tls=on --tls-starttls=on --tls-trust-file={b} --domain=gw.contoso.test -f ${{sender}} -- ${{recipient}}
""".format(u=USER, t=transport, h=handoff, sock=sock, conf=conf, conf_sys=conf_sys, s=sink_port, c=certs,
           b=bundle))
        gw.start()

        setting = {
            "smtp": ["default_transport = smtp", "smtp_tls_connection_reuse = no"],
            "smtp-reuse": ["default_transport = smtp", "smtp_tls_connection_reuse = yes"],
            "msmtp": ["default_transport = msmtp"],
            "pipe": ["default_transport = m365"],
            "msmtp-system": ["default_transport = msmtpsys"],
            "pipe-system": ["default_transport = m365sys"],
            "pipe-floor": ["default_transport = pipefloor"],
            "pipe-handoff": ["default_transport = m365ho"],
            "lmtp": ["default_transport = lmtp:unix:private/m365lmtp", "lmtp_send_xforward_command = yes",
                     "m365lmtp_time_limit = 3600s"],
        }
        res = {v: [] for v in variants}
        for r in range(a.rounds):
            for v in variants if r % 2 == 0 else list(reversed(variants)):
                # N held messages, accepted through the milter.
                sh(["smtp-source", "-s", "10", "-m", str(a.messages), "-l", "1300", "-S", "bench",
                    "-f", "scanner@contoso.com", "-t", "someone@example.net", "-M", "gw.contoso.test",
                    "127.0.0.1:%d" % gw_port])
                deadline = time.time() + 120
                while gw.queued(("hold",)) < a.messages and time.time() < deadline:
                    time.sleep(0.2)
                if gw.queued(("hold",)) < a.messages:
                    raise RuntimeError("only %d of %d messages held" % (gw.queued(("hold",)), a.messages))
                gw.stop()
                gw.postconf(*setting[v])
                gw.start()
                time.sleep(1)
                master = gw.master_pid()
                cpu0, ag0 = gateway_cpu(master, daemon)
                t0 = time.time()
                sh(["postsuper", "-c", gw.etc, "-H", "ALL"])
                sh(["postqueue", "-c", gw.etc, "-f"])
                # (postsuper -H puts the mail in the deferred queue; a
                # deferral shows in the log, and would wait an hour.)
                logf = open(os.path.join(gw.dir, "maillog"))
                while gw.queued() > 0:
                    why = [x for x in logf if "status=deferred" in x]
                    if time.time() - t0 > 900 or why:
                        raise RuntimeError("%s: mail deferred or stuck: %s" % (v, "".join(why[:1])))
                    time.sleep(0.05)
                logf.close()
                dt = time.time() - t0
                cpu1, ag1 = gateway_cpu(master, daemon)
                with open(os.path.join(gw.dir, "maillog")) as f:
                    log = f.read()
                bad = len(re.findall(r"status=(deferred|bounced)", log))
                res[v].append((a.messages / dt, (ag1 - ag0) * 1000 / a.messages,
                               (cpu1 - cpu0) * 1000 / a.messages, bad))
                # a fresh log for the next variant's count
                open(os.path.join(gw.dir, "maillog"), "w").close()
                print("round %d %-10s %7.1f msg/s  agent %6.2f ms/msg  gateway %6.2f ms/msg  "
                      "deferred/bounced %d" % ((r + 1, v) + res[v][-1]), flush=True)

        med = {v: tuple(statistics.median(x[i] for x in res[v]) for i in range(3)) for v in variants}
        out = ["## throughput: %d messages, %d rounds" % (a.messages, a.rounds), "",
               "Machine: %d cores, %s; %s" % (os.cpu_count(), " ".join(os.uname()[2:5:2]),
                                               time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())),
               "Command: `bench/throughput.py --messages %d --rounds %d --variants %s`"
               % (a.messages, a.rounds, a.variants), "",
               "| variant | msg/s | agent CPU ms/msg | gateway CPU ms/msg | vs msmtp (-system: msmtp-system): msg/s, agent CPU "
               "| vs smtp-reuse: msg/s, gateway CPU |",
               "|---|---:|---:|---:|---:|---:|"]
        for v in variants:
            m = med[v]
            # a -system variant against msmtp trusting the same store
            base = "msmtp-system" if v.endswith("-system") else "msmtp"
            vm = ("x%.2f, x%.2f" % (m[0] / med[base][0], m[1] / med[base][1])
                  if base in med and med[base][1] > 0 else "-")
            vr = ("x%.2f, x%.2f" % (m[0] / med["smtp-reuse"][0], m[2] / med["smtp-reuse"][2])
                  if "smtp-reuse" in med and med["smtp-reuse"][2] > 0 else "-")
            out.append("| %s | %.1f | %.2f | %.2f | %s | %s |" % (v, m[0], m[1], m[2], vm, vr))
        if "pipe-floor" in med:
            fl = med["pipe-floor"][1]
            above = {v: med[v][1] - fl for v in ("pipe", "msmtp", "pipe-handoff", "pipe-system", "msmtp-system")
                     if v in med}
            out.append("")
            out.append("Agent CPU above pipe(8)'s floor (pipe-floor, %.2f ms/msg): %s%s" % (
                fl, ", ".join("%s %.2f ms" % (v, x) for v, x in above.items()),
                "; pipe vs msmtp x%.2f" % (above["pipe"] / above["msmtp"])
                if "pipe" in above and "msmtp" in above and above["msmtp"] > 0 else ""))
        failed = {v: sum(x[3] for x in res[v]) for v in variants if sum(x[3] for x in res[v])}
        if failed:
            out.append("")
            out.append("Deferred or bounced (should be none): %s" % failed)
        print("\n".join(out))
        if not a.no_results:
            with open(a.results, "a") as f:
                f.write("\n" + "\n".join(out) + "\n")
    finally:
        if gw:
            gw.stop()
        if sink:
            sink.stop()
        if milter:
            milter.terminate()
            milter.wait()
        if daemon:
            daemon.terminate()
            daemon.wait()
        if a.keep:
            print("work directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
