"""gateway.py - the whole gateway in a sandbox on loopback: a private Postfix
(its own config, queue and data directories; never the system's), m365-milter
and m365-transport from the build, and the Microsoft 365 simulator.  Used by
the end-to-end tests and by tools/demo.

    g = Gateway(builddir)          # starts everything
    g.swaks("192.168.10.7", "--from", ..., "--to", ...)
    g.sim.records(), g.queue(), g.flush(), g.milter_log(), g.maillog()
    g.stop()

The soak (bench/soak.py) passes its own configuration template (conf=,
with conf_fields=), its own tenant (sim_config=), several milters each
behind its own smtpd listener (milters=2: smtp_ports[i] uses milter i,
each with its own copy of the configuration, the same store), more pipe
processes (maxproc=), SASL users (sasl_users=) and main.cf lines
(main_extra=).

The pieces every sandbox shares (ports, waiting, the simulator and its
tenant, the configuration text) are in tests/lib/sandbox.py; Postfix's
main.cf and master.cf are tests/lib's, as tests/lib/postfix.sh writes them.
"""
import os
import pwd
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
LIB = os.path.join(HERE, "..", "lib")
sys.path.insert(0, LIB)
from sandbox import (CLIENT_ID, CLIENT_SECRET, CONTOSO, RELAY_APP, SIM, TENANT, USER,  # noqa: E402
                     domain_connector, exited, failed, free_port, poll, run, sim_fields,
                     start_simulator, wait_port)

# The tenant, the relay application and connector, contoso.com with its
# scanners and local mail (tests/lib/sandbox.py), and the ERP application
# that logs in with SASL and sends as its own mailbox.
CONF = """# m365relay.conf for the sandbox (written by tests/e2e/gateway.py)
user = "{user}"
state_dir = "{state}"
milter {{
    socket = "inet:{milter_port}@127.0.0.1"
    pid_file = "{work}/milter.pid"
}}
transport {{
    ca_file = "{certs}/ca.pem"
    helo_name = "gateway.contoso.test"
    local_submitter = "local"
    sendmail = "{work}/sendmail"
    timeout_command = 15
    pacing_wait = 300
}}
""" + TENANT + RELAY_APP + """mailbox "erp@contoso.com" {{
    app = "relay-app"
    send_as = {{ "billing@contoso.com" }}
    messages = "{erp_rate}"
}}
submitter "erp" {{
    sasl_logins = {{ "erp" }}
    domain = "contoso.com"
    mailbox = "erp@contoso.com"
    send_as = {{ "billing@contoso.com" }}
}}
""" + CONTOSO

# LMTP mode: lmtp(8) to m365-transport -L under spawn(8) (m365ctl
# postfix-config --lmtp prints the same).
LMTP_MAIN = """default_transport = lmtp:unix:private/m365lmtp
relay_transport = lmtp:unix:private/m365lmtp
lmtp_send_xforward_command = yes
lmtp_destination_recipient_limit = 50
lmtp_data_done_timeout = 1800s
m365lmtp_time_limit = 3600s
"""

# What the gateway adds to the sandbox's main.cf (tests/lib/main.cf).
MAIN = """# Everything goes to Microsoft 365 through m365-transport.
default_transport = m365
relay_transport = m365
m365_destination_recipient_limit = 50
smtpd_milters = inet:127.0.0.1:{milter_port}
non_smtpd_milters = inet:127.0.0.1:{milter_port}
milter_protocol = 6
milter_default_action = tempfail
queue_run_delay = 300s
minimal_backoff_time = 300s
maximal_backoff_time = 600s
smtpd_sasl_auth_enable = yes
smtpd_sasl_security_options = noanonymous
"""


def set_main(main, line):
    """main.cf text with the setting on line replaced in place (Postfix's
    postlogd deadlocks logging its own "overriding earlier entry" warning
    before the maillog is open) or added at the end."""
    key = line.split("=", 1)[0].strip()
    if not key or key.startswith("#"):
        return main + line + "\n"
    lines = main.split("\n")
    hits = [i for i, l in enumerate(lines) if l.split("=", 1)[0].strip() == key]
    if not hits:
        return main + line + "\n"
    lines[hits[0]] = line
    return "\n".join(lines)


class Gateway:
    def __init__(self, builddir, connector=True, erp_rate="30/60s", sim_extra=None, bypass=False,
                 conf=None, conf_fields=None, sim_config=None, milters=1, maxproc=10,
                 sasl_users=None, main_extra="", before_start=None, lmtp=None):
        """bypass: a second smtpd listener without milters (self.bypass_port),
        as an administrator might add one; for the trust tests.
        before_start(gateway): called once the configuration is written,
        before any server starts (the soak starts its Redis there)."""
        # lmtp: Postfix delivers with lmtp(8) to m365-transport -L under
        # spawn(8) instead of pipe(8); M365_E2E_MODE=lmtp chooses it for a
        # whole suite (tests/e2e/lmtp.sh).
        self.lmtp = lmtp if lmtp is not None else os.environ.get("M365_E2E_MODE") == "lmtp"
        self.build = os.path.abspath(builddir)
        self.work = tempfile.mkdtemp(prefix="m365relay-gw.")
        os.chmod(self.work, 0o755)
        self.maxproc = maxproc
        self.main_extra = main_extra
        self.sasl_users = sasl_users or {"erp": "erp-password"}
        self.sim = start_simulator(self.work, dict(sim_config or SIM, **(sim_extra or {})))
        self.certs = self.sim.certs
        pw = pwd.getpwnam(USER)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        self.state = os.path.join(self.work, "state")
        os.makedirs(self.state)
        os.chown(self.state, self.uid, self.gid)
        self.milter_port = free_port()
        self.milter_ports = [self.milter_port] + [free_port() for _ in range(milters - 1)]
        self.smtp_port = free_port()
        self.smtp_ports = [self.smtp_port] + [free_port() for _ in range(milters - 1)]
        self.bypass_port = free_port() if bypass else None
        self._write("relay-app.secret", CLIENT_SECRET + "\n", 0o600)
        # Delivery reports for mixed outcomes would go to the system's
        # sendmail; in the sandbox they are kept in reports/.
        os.makedirs(os.path.join(self.work, "reports"))
        os.chown(os.path.join(self.work, "reports"), self.uid, self.gid)
        self._write("sendmail", '#!/bin/sh\ncat > "%s/reports/$$.msg"\n' % self.work, 0o755)
        shutil.copy(os.path.join(self.certs, "relay.key"), os.path.join(self.work, "relay.key"))
        os.chown(os.path.join(self.work, "relay.key"), self.uid, self.gid)
        fields = dict(sim_fields(self.sim), user=USER, state=self.state, work=self.work,
                      milter_port=self.milter_port, erp_rate=erp_rate, client_id=CLIENT_ID,
                      domain_connector=domain_connector("onprem" if connector else None),
                      scanners="192.168.10.0/24", local="127.0.0.1")
        fields.update(conf_fields or {})
        self.conf = self._write("m365relay.conf", (conf or CONF).format(**fields), 0o644)
        # The key that signs the route header, made as the README says.
        run([os.path.join(self.build, "cli", "m365ctl"), "-c", self.conf, "route-key"])
        # Milter i > 0: the same configuration but its own socket and pid file.
        self.confs = [self.conf]
        for i in range(1, milters):
            with open(self.conf) as f:
                text = f.read()
            text = text.replace("inet:%d@127.0.0.1" % self.milter_port, "inet:%d@127.0.0.1" % self.milter_ports[i])
            text = text.replace("/milter.pid", "/milter%d.pid" % i)
            self.confs.append(self._write("m365relay-%d.conf" % i, text, 0o644))
        if before_start:
            before_start(self)
        self.milter = None
        self.milters = [None] * milters
        self.milter_logfs = [None] * milters
        for i in range(milters):
            self.start_milter(i)
        self.pf = os.path.join(self.work, "postfix")
        self._postfix_init()
        r = self._postfix("start")
        if r.returncode != 0 or not wait_port(self.smtp_port):
            raise RuntimeError("postfix did not listen on %d: %s\nmaillog: %s"
                               % (self.smtp_port, failed(r), self.maillog()))

    def _write(self, name, text, mode, owner=True):
        path = os.path.join(self.work, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        if owner:
            os.chown(path, pwd.getpwnam(USER).pw_uid, pwd.getpwnam(USER).pw_gid)
        return path

    # Milter ---------------------------------------------------------------------
    def _milter_log_name(self, i):
        return os.path.join(self.work, "milter.log" if i == 0 else "milter%d.log" % i)

    def start_milter(self, i=0):
        logf = open(self._milter_log_name(i), "a")
        proc = subprocess.Popen([os.path.join(self.build, "milter", "m365-milter"), "-f", "-c", self.confs[i]],
                                stderr=logf)
        self.milters[i], self.milter_logfs[i] = proc, logf
        if i == 0:
            self.milter, self.milter_logf = proc, logf
        if not wait_port(self.milter_ports[i]):
            raise RuntimeError("m365-milter did not listen on %d: %s"
                               % (self.milter_ports[i], exited(proc, self.milter_log(i))))

    def stop_milter(self, i=0):
        proc, logf = self.milters[i], self.milter_logfs[i]
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if logf:
            logf.close()

    def milter_log(self, i=0):
        with open(self._milter_log_name(i)) as f:
            return f.read()

    # Postfix --------------------------------------------------------------------
    def _postfix_init(self):
        """The sandbox's main.cf and master.cf (tests/lib, as tests/lib/postfix.sh
        writes them), with the gateway's settings, milters and m365 pipe."""
        etc = os.path.join(self.pf, "etc")
        for d in ("etc", "queue", "data"):
            os.makedirs(os.path.join(self.pf, d), exist_ok=True)
        shutil.chown(os.path.join(self.pf, "data"), "postfix")
        transport = os.path.join(self.build, "transport", "m365-transport")
        with open(os.path.join(LIB, "main.cf")) as f:
            main = f.read().replace("@DIR@", self.pf).replace("@HOSTNAME@", "relay.contoso.test")
        extra = MAIN.format(milter_port=self.milter_port)
        if self.lmtp:
            extra += LMTP_MAIN
        for line in (extra + self.main_extra).splitlines():
            main = set_main(main, line)
        with open(os.path.join(LIB, "master.cf")) as f:
            master = f.read().replace("@PORT@", str(self.smtp_port))
        master += f"""m365      unix  -       n       n       -       {self.maxproc}      pipe
  flags=q user={USER} null_sender= argv={transport} -c {self.conf} -q ${{queue_id}} -f ${{sender}} -a ${{client_address}} -s ${{sasl_username}} -- ${{recipient}}
m365lmtp  unix  -       n       n       -       {self.maxproc}      spawn
  user={USER} argv={transport} -c {self.conf} -L
lmtp      unix  -       -       n       -       -       lmtp
"""
        for i in range(1, len(self.smtp_ports)):
            master += f"""127.0.0.1:{self.smtp_ports[i]} inet n - n - - smtpd
  -o smtpd_milters=inet:127.0.0.1:{self.milter_ports[i]}
"""
        if self.bypass_port:
            master += f"""127.0.0.1:{self.bypass_port} inet n - n - - smtpd
  -o smtpd_milters=
"""
        with open(os.path.join(etc, "main.cf"), "w") as f:
            f.write(main)
        with open(os.path.join(etc, "master.cf"), "w") as f:
            f.write(master)
        os.makedirs(os.path.join(etc, "sasl"), exist_ok=True)
        with open(os.path.join(etc, "sasl", "smtpd.conf"), "w") as f:
            f.write("pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\n"
                    "sasldb_path: %s/sasldb2\n" % os.path.join(etc, "sasl"))
        for login, password in self.sasl_users.items():
            run(["saslpasswd2", "-f", os.path.join(etc, "sasl", "sasldb2"), "-c", "-p", "-u",
                 "relay.contoso.test", login], input=password + "\n")
        shutil.chown(os.path.join(etc, "sasl", "sasldb2"), "postfix")

    def _postfix(self, *args):
        return subprocess.run(["postfix", "-c", os.path.join(self.pf, "etc")] + list(args),
                              capture_output=True, text=True)

    def postconf(self, *settings):
        """Change main.cf and reload Postfix."""
        etc = os.path.join(self.pf, "etc")
        run(["postconf", "-c", etc] + ["-e"] + list(settings))
        r = self._postfix("reload")
        if r.returncode != 0:
            raise RuntimeError(failed(r, "postfix reload"))

    def sendmail(self, sender, rcpts, message):
        """Local submission with Postfix's sendmail (pickup, no smtpd)."""
        return subprocess.run(["sendmail", "-C", os.path.join(self.pf, "etc"), "-i", "-f", sender, "--"]
                              + list(rcpts), input=message, capture_output=True, text=True)

    def postsuper(self, *args):
        return subprocess.run(["postsuper", "-c", os.path.join(self.pf, "etc")] + list(args),
                              capture_output=True, text=True)

    def kick_pickup(self):
        """Wake pickup (postsuper -r leaves the file in maildrop)."""
        run(["postkick", "-c", os.path.join(self.pf, "etc"), "public", "pickup", "W"])

    def queue(self):
        """postqueue -p's listing, or why there is none."""
        r = subprocess.run(["postqueue", "-c", os.path.join(self.pf, "etc"), "-p"],
                           capture_output=True, text=True)
        return r.stdout if r.returncode == 0 else failed(r)

    def queue_empty(self):
        return "Mail queue is empty" in self.queue()

    def flush(self):
        run(["postqueue", "-c", os.path.join(self.pf, "etc"), "-f"])

    def maillog(self):
        try:
            with open(os.path.join(self.pf, "maillog")) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def swaks(self, client_ip, *args, port=None):
        # stderr too: swaks says there why it could not talk at all (no TLS
        # module, connection refused); a test failing on '' helps nobody.
        # Its exit status says which step failed (swaks(1) EXIT CODES).
        r = subprocess.run(["swaks", "--server", "127.0.0.1:%d" % (port or self.smtp_port),
                            "--xclient-addr", client_ip, "--timeout", "30"] + list(args),
                           capture_output=True, text=True)
        return r.stdout + r.stderr + ("" if r.returncode == 0 else "\n=== swaks exit status %d\n" % r.returncode)

    def wait(self, cond, seconds=30):
        """cond()'s first true value within seconds, else a false one."""
        return poll(cond, seconds)

    def stop(self, keep=False):
        self._postfix("stop")
        for i in range(len(self.milters)):
            self.stop_milter(i)
        self.sim.stop()
        if not keep:
            shutil.rmtree(self.work, ignore_errors=True)
