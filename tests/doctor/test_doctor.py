"""test_doctor.py - m365ctl doctor and the milter's require_spf_pass against
real DNS: dnsmasq serving test zones inside a network namespace the test
creates (`ip netns exec` binds /etc/netns/NAME/resolv.conf over
/etc/resolv.conf, so libspf2 and the resolver ask it), and certificates
made at test time by tests/simulator/mkcerts.sh.

Nothing leaves the namespace: its only interface is its own loopback.
Needs root (ip netns): skipped (77) otherwise, as every root-only test is;
a missing tool is an error (99) naming its Debian package.
"""
import grp
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_SRCDIR = os.path.abspath(os.environ.get("top_srcdir", os.path.join(HERE, "..", "..")))
TOP_BUILDDIR = os.path.abspath(os.environ.get("top_builddir", "."))
CTL = os.path.join(TOP_BUILDDIR, "cli", "m365ctl")
MILTER = os.path.join(TOP_BUILDDIR, "milter", "m365-milter")
SIM = os.path.join(TOP_SRCDIR, "tests", "simulator", "m365sim.py")
MKCERTS = os.path.join(TOP_SRCDIR, "tests", "simulator", "mkcerts.sh")
EGRESS = "203.0.113.7"
M365 = "spf.protection.outlook.com"

# The zones: one domain per case of the issue, plus the ones the
# certificate and clean runs use.
ZONE = [
    "local=/test/", "local=/outlook.com/", "local=/office365.com/", "local=/com/",
    'txt-record=%s,"v=spf1 ip4:40.92.0.0/15 ip4:52.100.0.0/14 -all"' % M365,
    # pass
    'txt-record=pass.test,"v=spf1 ip4:203.0.113.7 include:%s -all"' % M365,
    'txt-record=pass.test,"google-site-verification=abc"',
    "mx-host=pass.test,pass-test.mail.protection.outlook.com,0",
    # missing include
    'txt-record=noinclude.test,"v=spf1 ip4:203.0.113.0/24 -all"',
    "mx-host=noinclude.test,noinclude-test.mail.protection.outlook.com,0",
    # egress IP not listed
    'txt-record=notlisted.test,"v=spf1 ip4:198.51.100.0/24 include:%s ~all"' % M365,
    "mx-host=notlisted.test,notlisted-test.mail.protection.outlook.com,0",
    # no record
    'txt-record=norecord.test,"ms=ms12345"',
    "mx-host=norecord.test,norecord-test.mail.protection.outlook.com,0",
    # two records
    'txt-record=two.test,"v=spf1 ip4:203.0.113.7 -all"',
    'txt-record=two.test,"v=spf1 include:%s -all"' % M365,
    "mx-host=two.test,two-test.mail.protection.outlook.com,0",
    # more than 10 look-ups
    'txt-record=many.test,"v=spf1 ip4:203.0.113.7 include:a.many.test include:b.many.test '
    'include:%s mx a ~all"' % M365,
    'txt-record=a.many.test,"v=spf1 a:h1.many.test a:h2.many.test a:h3.many.test -all"',
    'txt-record=b.many.test,"v=spf1 a:h4.many.test a:h5.many.test exists:h6.many.test -all"',
    "mx-host=many.test,many-test.mail.protection.outlook.com,0",
    # +all
    'txt-record=plusall.test,"v=spf1 include:%s +all"' % M365,
    "mx-host=plusall.test,plusall-test.mail.protection.outlook.com,0",
    # MX mismatch
    'txt-record=mxwrong.test,"v=spf1 ip4:203.0.113.7 include:%s -all"' % M365,
    "mx-host=mxwrong.test,mx.mxwrong.test,10",
    # a TXT set longer than the resolver's first 8 KiB buffer (over TCP)
    'txt-record=big.test,"v=spf1 ip4:203.0.113.7 include:%s -all"' % M365,
] + ['txt-record=big.test,"filler-%02d-%s"' % (i, "x" * 240) for i in range(45)] + [
    "mx-host=big.test,big-test.mail.protection.outlook.com,0",
    # name servers that do not answer
    "server=/deadns.test/127.0.0.1#5399",
    # the certificate tenant's domains, clean
    'txt-record=contoso.com,"v=spf1 ip4:203.0.113.7 include:%s -all"' % M365,
    "mx-host=contoso.com,contoso-com.mail.protection.outlook.com,0",
    'txt-record=fabrikam.com,"v=spf1 ip4:203.0.113.7 include:%s -all"' % M365,
    "mx-host=fabrikam.com,fabrikam-com.mail.protection.outlook.com,0",
    # Microsoft's endpoints are this namespace's loopback
    "address=/mail.protection.outlook.com/127.0.0.1",
    "address=/smtp.office365.com/127.0.0.1",
    "address=/smtp-hve.office365.com/127.0.0.1",
    "address=/graph.microsoft.com/127.0.0.1",
    "address=/login.microsoftonline.com/127.0.0.1",
]


class Lab:
    """A network namespace with dnsmasq as its resolver."""

    def __init__(self, work):
        self.ns = "m365doc%d" % os.getpid()
        self.etc = "/etc/netns/" + self.ns
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self.procs = []
        try:
            self.run(["ip", "link", "set", "lo", "up"], check=True)
            os.makedirs(self.etc, exist_ok=True)
            with open(os.path.join(self.etc, "resolv.conf"), "w") as f:
                f.write("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
            conf = os.path.join(work, "dnsmasq.conf")
            with open(conf, "w") as f:
                f.write("\n".join(["no-resolv", "no-hosts", "no-poll", "bind-interfaces",
                                   "listen-address=127.0.0.1", "port=53", "user=root",
                                   "pid-file=", "log-queries",
                                   "log-facility=" + os.path.join(work, "dnsmasq.log")]
                                  + ZONE) + "\n")
            self.dnsmasq = self.start(["dnsmasq", "--keep-in-foreground", "--conf-file=" + conf])
            for _ in range(100):
                r = self.run(["getent", "hosts", "smtp.office365.com"],
                             capture_output=True, text=True)
                if r.returncode == 0:
                    break
                time.sleep(0.05)
            else:
                raise RuntimeError("dnsmasq does not answer in the namespace")
        except BaseException:
            self.stop()
            raise

    def run(self, argv, **kw):
        return subprocess.run(["ip", "netns", "exec", self.ns] + argv, **kw)

    def start(self, argv, **kw):
        p = subprocess.Popen(["ip", "netns", "exec", self.ns] + argv, **kw)
        self.procs.append(p)
        return p

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        subprocess.run(["ip", "netns", "delete", self.ns], check=False)
        shutil.rmtree(self.etc, ignore_errors=True)


def findings(out):
    """{(subject, check): [finding, ...]} from doctor --json."""
    doc = json.loads(out)
    by = {}
    for f in doc["findings"]:
        by.setdefault((f["subject"], f["check"]), []).append(f)
    return doc, by


class Doctor(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="m365doc.")
        os.chmod(cls.work, 0o755)
        cls.certs = os.path.join(cls.work, "certs")
        subprocess.run(["sh", MKCERTS, cls.certs], check=True)
        os.chmod(cls.certs, 0o755)
        nobody = pwd.getpwnam("nobody")
        cls.nobody = nobody
        for name in os.listdir(cls.certs):
            if name.endswith(".key"):
                os.chown(os.path.join(cls.certs, name), nobody.pw_uid, nobody.pw_gid)
        cls.lab = Lab(cls.work)
        # A private Postfix configuration (never the system's), wired the
        # way m365ctl postfix-config says; doctor reads it through postconf.
        cls.queue = os.path.join(cls.work, "pfq")
        cls.sockdir = os.path.join(cls.queue, "m365relay")
        os.makedirs(cls.sockdir)
        os.chown(cls.sockdir, nobody.pw_uid, grp.getgrnam("postfix").gr_gid)
        os.chmod(cls.sockdir, 0o750)
        cls.postfix = cls.postfix_dir("pf-good")

    @classmethod
    def postfix_dir(cls, name, main=(), master_user=None, master=True, lmtp=False):
        d = os.path.join(cls.work, name)
        os.makedirs(d, exist_ok=True)
        conf = cls.conf_text(os.path.join(d, "m365relay.conf"),
                             'tenant "lab" { accepted_domains = { "pass.test" } }\n')
        env = dict(os.environ, MAIL_CONFIG=d)
        with open(os.path.join(d, "main.cf"), "w") as f:
            f.write("compatibility_level = 3.6\nqueue_directory = %s\n" % cls.queue)
        with open(os.path.join(d, "master.cf"), "w") as f:
            f.write("smtp inet n - y - - smtpd\n")
        subprocess.run(["chmod", "755", d], check=True)
        mode = ["--lmtp"] if lmtp else []
        lines = subprocess.run([CTL, "-c", conf, "postfix-config"] + mode + ["main"], env=env,
                               check=True, capture_output=True, text=True).stdout.splitlines()
        for line in lines + list(main):
            subprocess.run(["postconf", "-e", line], env=env, check=True)
        if master:
            entry = subprocess.run([CTL, "-c", conf, "postfix-config"] + mode + ["master"], env=env,
                                   check=True, capture_output=True, text=True).stdout
            if master_user:
                entry = entry.replace("user=nobody", "user=" + master_user)
            with open(os.path.join(d, "master.cf"), "a") as f:
                f.write(entry)
        return d

    @classmethod
    def tearDownClass(cls):
        cls.lab.stop()
        shutil.rmtree(cls.work, ignore_errors=True)

    @classmethod
    def conf_text(cls, path, text):
        state = os.path.join(cls.work, "state")
        os.makedirs(state, exist_ok=True)
        os.chown(state, cls.nobody.pw_uid, cls.nobody.pw_gid)
        with open(path, "w") as f:
            f.write('user = "nobody"\nstate_dir = "%s/state"\n'
                    'transport { ca_file = "%s/ca.pem" }\n'
                    % (cls.work, cls.certs) +
                    ('' if "milter {" in text else
                     'milter { socket = "unix:%s/milter.sock" }\n' % cls.sockdir) + text)
        return path

    def conf(self, name, text):
        return self.conf_text(os.path.join(self.work, name), text)

    def doctor(self, conf, *args, postfix=None):
        env = dict(os.environ, MAIL_CONFIG=postfix or self.postfix)
        r = self.lab.run([CTL, "-c", conf, "doctor"] + list(args), capture_output=True,
                         text=True, timeout=120, env=env)
        sys.stdout.write(r.stdout if "--json" not in args else "")
        sys.stdout.write(r.stderr)
        return r

    def level(self, by, subject, check, level, text=None, fix=None):
        fs = by.get((subject, check), [])
        hit = [f for f in fs if f["level"] == level and (text is None or text in f["text"])
               and (fix is None or fix in f.get("fix", ""))]
        self.assertTrue(hit, "%s %s: no %s finding with %r / fix %r in %s"
                        % (subject, check, level, text, fix, json.dumps(fs, indent=1)))
        return hit[0]

    def no_error(self, by, subject, check):
        fs = [f for f in by.get((subject, check), []) if f["level"] == "error"]
        self.assertFalse(fs, "%s %s: unexpected %s" % (subject, check, fs))

    # DNS -----------------------------------------------------------------------------

    def test_dns_cases(self):
        conf = self.conf("dns.conf", """
tenant "lab" {
    accepted_domains = { "pass.test", "*.pass.test", "noinclude.test", "notlisted.test",
                         "norecord.test", "two.test", "many.test", "plusall.test",
                         "mxwrong.test", "deadns.test", "gone.test" }
    mx_endpoint = "pass-test.mail.protection.outlook.com"
    egress_ip = "%s"
}
""" % EGRESS)
        r = self.doctor(conf, "--json")
        self.assertEqual(r.returncode, 1, r.stdout)
        doc, by = findings(r.stdout)
        self.assertEqual(doc["errors"], sum(f["level"] == "error" for f in doc["findings"]))
        # pass
        self.level(by, "pass.test", "spf", "ok", "203.0.113.7 pass")
        self.no_error(by, "pass.test", "spf")
        self.level(by, "pass.test", "mx", "ok", "pass-test.mail.protection.outlook.com")
        self.assertNotIn(("*.pass.test", "spf"), by)
        # missing include: the fix keeps the existing mechanisms and -all
        self.level(by, "noinclude.test", "spf", "error", "no include:" + M365,
                   'publish one TXT record at noinclude.test: "v=spf1 ip4:203.0.113.0/24 '
                   'include:spf.protection.outlook.com -all"')
        self.level(by, "noinclude.test", "mx", "ok")
        # egress IP not listed
        self.level(by, "notlisted.test", "spf", "error", "203.0.113.7 gets SPF softfail",
                   '"v=spf1 ip4:203.0.113.7 ip4:198.51.100.0/24 include:%s ~all"' % M365)
        # no record
        self.level(by, "norecord.test", "spf", "error", "no SPF record",
                   '"v=spf1 ip4:203.0.113.7 include:%s ~all"' % M365)
        # two records: one merged record proposed
        self.level(by, "two.test", "spf", "error", "more than one SPF record",
                   'merge them into one TXT record at two.test: "v=spf1 ip4:203.0.113.7 '
                   'include:%s -all"' % M365)
        # too many look-ups
        self.level(by, "many.test", "spf", "error", "more than the 10 DNS look-ups SPF allows (counted 11")
        # +all
        self.level(by, "plusall.test", "spf", "error", "ends in +all",
                   '"v=spf1 include:%s ~all"' % M365)
        # MX mismatch, SPF fine
        self.no_error(by, "mxwrong.test", "spf")
        self.level(by, "mxwrong.test", "mx", "error", "MX is mx.mxwrong.test",
                   "MX 0 mxwrong-test.mail.protection.outlook.com.")
        # a domain that does not exist is said as such, not as "no record"
        self.level(by, "gone.test", "spf", "error", "gone.test does not exist in DNS (NXDOMAIN)",
                   "check the spelling in accepted_domains")
        self.level(by, "gone.test", "mx", "error", "gone.test does not exist in DNS (NXDOMAIN)")
        self.assertFalse([f for f in by[("gone.test", "spf")] if f["text"].startswith("no SPF")])
        # DNS that does not answer is an error of its own, not "no record"
        self.level(by, "deadns.test", "spf", "error",
                   "the SPF record could not be read: DNS query for deadns.test failed",
                   "check the resolver in /etc/resolv.conf")
        # endpoints
        self.level(by, "tenant lab", "endpoint", "ok", "smtp_host smtp.office365.com port 587")
        self.level(by, "tenant lab", "endpoint", "ok", "has the <domain>-<tld>")

    def test_long_txt_set(self):
        # 46 TXT records, about 11.5 KiB: the answer comes over TCP and does
        # not fit the first buffer.  Once parsed past the buffer's end.
        r = self.lab.run(["dig", "+short", "+tcp", "TXT", "big.test"], capture_output=True, text=True) \
            if shutil.which("dig") else None
        if r is not None:
            self.assertGreater(len(r.stdout), 8192, "the zone's answer is long enough")
        conf = self.conf("big.conf", """
tenant "lab" {
    accepted_domains = { "big.test" }
    mx_endpoint = "big-test.mail.protection.outlook.com"
    egress_ip = "%s"
}
""" % EGRESS)
        r = self.doctor(conf, "--json")
        doc, by = findings(r.stdout)
        self.level(by, "big.test", "spf", "ok", "203.0.113.7 pass")
        self.no_error(by, "big.test", "spf")
        self.level(by, "big.test", "mx", "ok", "big-test.mail.protection.outlook.com")

    def test_text_checklist(self):
        conf = self.conf("text.conf", """
tenant "lab" {
    accepted_domains = { "pass.test", "notlisted.test" }
    mx_endpoint = "pass-test.mail.protection.outlook.com"
    egress_ip = "%s"
}
""" % EGRESS)
        r = self.doctor(conf)
        self.assertEqual(r.returncode, 1)
        lines = r.stdout.splitlines()
        self.assertIn("notlisted.test", lines)
        i = lines.index("notlisted.test")
        self.assertRegex(lines[i + 1], r"^  error +spf +the gateway's address 203\.0\.113\.7 gets SPF softfail")
        self.assertRegex(lines[i + 2], r"^ +fix: publish one TXT record at notlisted\.test: ")
        self.assertEqual(lines[-1], "1 error, 0 warnings")

    # Certificates and credentials -----------------------------------------------------

    def test_certificates(self):
        c = self.certs
        secret = os.path.join(self.work, "root-only.secret")
        with open(secret, "w") as f:
            f.write("s\n")
        os.chmod(secret, 0o600)
        conf = self.conf("certs.conf", """
tenant "contoso" {
    accepted_domains = { "contoso.com", "fabrikam.com" }
    mx_endpoint = "contoso-com.mail.protection.outlook.com"
    egress_ip = "%(ip)s"
}
connector "cn" { type = certificate certificate_file = "%(c)s/relay.pem" key_file = "%(c)s/relay.key" }
connector "san" { type = certificate certificate_file = "%(c)s/san.pem" key_file = "%(c)s/san.key" }
connector "wild" { type = certificate certificate_file = "%(c)s/wild.pem" key_file = "%(c)s/wild.key" }
connector "mismatch" { type = certificate certificate_file = "%(c)s/other.pem" key_file = "%(c)s/other.key" }
connector "expired" { type = certificate certificate_file = "%(c)s/expired.pem" key_file = "%(c)s/expired.key" }
connector "keymismatch" { type = certificate certificate_file = "%(c)s/relay.pem" key_file = "%(c)s/other.key" }
connector "soon" { type = certificate certificate_file = "%(c)s/soon.pem" key_file = "%(c)s/soon.key" }
connector "nochain" { type = certificate certificate_file = "%(c)s/chained.pem" key_file = "%(c)s/chained.key" }
connector "chain" { type = certificate certificate_file = "%(c)s/chained-full.pem" key_file = "%(c)s/chained.key" }
app "rootonly" { client_id = "x" client_secret_file = "%(secret)s" }
app "certapp" { client_id = "y" certificate_file = "%(c)s/app.pem" key_file = "%(c)s/app.key" }
""" % {"ip": EGRESS, "c": c, "secret": secret})
        r = self.doctor(conf, "--json")
        self.assertEqual(r.returncode, 1, r.stdout)
        doc, by = findings(r.stdout)
        cert = "certificate"
        # matching CN
        self.level(by, "connector cn", cert, "ok", "name relay.contoso.com is in an accepted domain")
        self.level(by, "connector cn", cert, "ok", "the key matches")
        self.level(by, "connector cn", cert, "ok", "chain complete")
        self.no_error(by, "connector cn", cert)
        # matching SAN (no CN at all)
        self.level(by, "connector san", cert, "ok", "name relay.fabrikam.com")
        self.no_error(by, "connector san", cert)
        # wildcard SAN
        self.level(by, "connector wild", cert, "ok", "name *.contoso.com")
        self.no_error(by, "connector wild", cert)
        # mismatch
        self.level(by, "connector mismatch", cert, "error",
                   "no name in an accepted domain (names: relay.example.org, relay.example.org)",
                   "CN or SAN is in an accepted domain")
        # expired
        self.level(by, "connector expired", cert, "error", "expired", "renew")
        # key mismatch
        self.level(by, "connector keymismatch", cert, "error", "does not hold the key")
        # 30 days' warning
        self.level(by, "connector soon", cert, "warning", "expires in")
        # chain without its intermediate, then with it
        self.level(by, "connector nochain", cert, "error", "chain incomplete",
                   "append the intermediate certificates")
        self.level(by, "connector chain", cert, "ok", "chain complete")
        self.no_error(by, "connector chain", cert)
        # credentials: the service user must be able to read them
        self.level(by, "app rootonly", "credentials", "error",
                   "cannot be read by the service user nobody", "chown nobody")
        self.level(by, "app certapp", "credentials", "ok", "app.key: present, mode 0600")
        self.no_error(by, "app certapp", cert)  # self-signed is fine for an app
        # the domains themselves are clean
        self.no_error(by, "contoso.com", "spf")
        self.no_error(by, "fabrikam.com", "mx")

    # Clean, and --connect -----------------------------------------------------------------

    def clean_conf(self, mx_port, tenant_extra="", extra=""):
        secret = os.path.join(self.work, "app.secret")
        with open(secret, "w") as f:
            f.write("s\n")
        os.chmod(secret, 0o600)
        os.chown(secret, self.nobody.pw_uid, self.nobody.pw_gid)
        return self.conf("clean%d.conf" % mx_port, """
tenant "lab" {
    accepted_domains = { "pass.test" }
    mx_endpoint = "pass-test.mail.protection.outlook.com"
    mx_port = %d
    egress_ip = "%s"
%s
}
app "a" { client_id = "x" client_secret_file = "%s" }
mailbox "scanner@pass.test" { app = "a" }
%s
""" % (mx_port, EGRESS, tenant_extra, secret, extra))

    def test_clean_exit_zero(self):
        r = self.doctor(self.clean_conf(25))
        self.assertEqual(r.returncode, 0, r.stdout)
        self.assertEqual(r.stdout.splitlines()[-1], "0 errors, 0 warnings")

    def test_connect(self):
        state = os.path.join(self.work, "sim")
        os.makedirs(state, exist_ok=True)
        log = open(os.path.join(state, "sim.log"), "w")
        simconf = os.path.join(state, "tenant.json")
        with open(simconf, "w") as f:
            json.dump({"tenant_ids": ["pass.test"], "accepted_domains": ["pass.test"],
                       "apps": {"x": {"secret": "s"}},
                       "mailboxes": {"reports@pass.test": {"apps": ["x"]}},
                       "hve_accounts": {"news@pass.test": {"apps": ["x"]}}}, f)
        sim = self.lab.start(["/usr/bin/python3", SIM, "--state-dir", state, "--certs", self.certs,
                              "--config", simconf, "--smtp-port", "587", "--mx-port", "25",
                              "--hve-port", "2587", "--graph-port", "8443", "--token-port", "9443"],
                             stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(200):
                if os.path.exists(os.path.join(state, "ports.json")):
                    break
                time.sleep(0.05)
            r = self.doctor(self.clean_conf(25), "--connect", "--json")
            self.assertEqual(r.returncode, 0, r.stdout)
            _, by = findings(r.stdout)
            self.level(by, "smtp.office365.com:587", "tls", "ok", "TLSv1.")
            self.level(by, "smtp.office365.com:587", "tls", "ok", "smtp.office365.com")
            self.level(by, "smtp.office365.com:587", "ehlo", "ok", "AUTH-XOAUTH2")
            self.level(by, "pass-test.mail.protection.outlook.com:25", "tls", "ok",
                       "*.mail.protection.outlook.com")
            # An HVE account and a mailbox that sends through Graph: their
            # endpoints, a Graph token and a request that sends nothing.
            conf = self.clean_conf(
                25, tenant_extra='hve_port = 2587\n'
                'authority = "https://login.microsoftonline.com:9443"\n'
                'graph_endpoint = "https://graph.microsoft.com:8443"\n'
                'graph_scope = "https://graph.microsoft.com/.default"',
                extra='mailbox "news@pass.test" { app = "a" hve = yes }\n'
                      'mailbox "reports@pass.test" { app = "a" smtp_auth = no }\n'
                      'mailbox "ghost@pass.test" { app = "a" smtp_auth = no }')
            r = self.doctor(conf, "--connect", "--json")
            _, by = findings(r.stdout)
            self.level(by, "smtp-hve.office365.com:2587", "tls", "ok", "smtp-hve.office365.com")
            self.level(by, "smtp-hve.office365.com:2587", "ehlo", "ok", "AUTH-XOAUTH2")
            self.level(by, "reports@pass.test (graph)", "graph", "ok",
                       "https://graph.microsoft.com:8443 over verified TLS took the app's token")
            self.level(by, "ghost@pass.test (graph)", "graph", "error",
                       "GET /v1.0/users/ghost@pass.test: HTTP 404 ErrorInvalidUser",
                       "no such mailbox in the tenant")
            self.assertNotIn(("news@pass.test (graph)", "graph"), by, "an HVE account has no Graph")
            self.assertEqual(r.returncode, 1, "the unknown mailbox is an error")
        finally:
            sim.send_signal(signal.SIGTERM)
            sim.wait(10)
            log.close()
        # Nothing listens any more: port 25 is reported as blocked, with the fix.
        r = self.doctor(self.clean_conf(25), "--connect", "--json")
        self.assertEqual(r.returncode, 1)
        _, by = findings(r.stdout)
        self.level(by, "pass-test.mail.protection.outlook.com:25", "connect", "error",
                   "outbound port 25 looks blocked", "open outbound TCP port 25")
        self.level(by, "smtp.office365.com:587", "connect", "error", "cannot connect")
        # A name that does not resolve is said as such, not as a blocked port.
        conf = self.clean_conf(25)
        with open(conf) as f:
            text = f.read().replace('mx_endpoint = "pass-test.mail.protection.outlook.com"',
                                    'mx_endpoint = "mx.nxdomain.test"')
        with open(conf, "w") as f:
            f.write(text)
        r = self.doctor(conf, "--connect", "--json")
        _, by = findings(r.stdout)
        f = self.level(by, "mx.nxdomain.test:25", "connect", "error", "cannot resolve mx.nxdomain.test")
        self.assertNotIn("blocked", f["text"])

    # Postfix's side ------------------------------------------------------------------------

    def postfix_findings(self, postfix):
        r = self.doctor(self.clean_conf(25), "--json", postfix=postfix)
        doc, by = findings(r.stdout)
        return r, {k: v for k, v in by.items() if k[0] == "postfix"}

    def test_postfix_wired(self):
        r, pf = self.postfix_findings(self.postfix)
        self.assertEqual(r.returncode, 0, r.stdout)
        self.level(pf, "postfix", "main.cf", "ok", "smtpd_milters names unix:m365relay/milter.sock")
        self.level(pf, "postfix", "socket", "ok", "Postfix's user postfix can reach")
        self.level(pf, "postfix", "master.cf", "ok", "m365-transport runs as nobody with -a")
        bad = [f for fs in pf.values() for f in fs if f["level"] != "ok"]
        self.assertFalse(bad, bad)

    def test_postfix_socket_unreachable(self):
        os.chown(self.sockdir, self.nobody.pw_uid, grp.getgrnam("nogroup").gr_gid)
        try:
            r, pf = self.postfix_findings(self.postfix)
        finally:
            os.chown(self.sockdir, self.nobody.pw_uid, grp.getgrnam("postfix").gr_gid)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.level(pf, "postfix", "socket", "error",
                   "cannot be entered by Postfix's user postfix", "adduser postfix nogroup")

    def test_postfix_wrong_pipe_user(self):
        r, pf = self.postfix_findings(self.postfix_dir("pf-user", master_user="postfix"))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.level(pf, "postfix", "master.cf", "error",
                   'runs m365-transport as "postfix", not the service user nobody',
                   "m365ctl postfix-config master")

    def test_postfix_no_transport(self):
        r, pf = self.postfix_findings(self.postfix_dir("pf-nomaster", master=False))
        self.assertEqual(r.returncode, 1, r.stdout)
        self.level(pf, "postfix", "master.cf", "error", "no master.cf entry runs m365-transport")

    def test_postfix_lmtp(self):
        # The LMTP service as postfix-config --lmtp wires it: fine; without
        # XFORWARD every message would pass for local mail: an error.
        r, pf = self.postfix_findings(self.postfix_dir("pf-lmtp", lmtp=True))
        self.assertEqual(r.returncode, 0, r.stdout)
        self.level(pf, "postfix", "master.cf", "ok", "m365-transport -L (LMTP) runs as nobody")
        d = self.postfix_dir("pf-lmtp-noxf", lmtp=True, main=["lmtp_send_xforward_command = no"])
        r, pf = self.postfix_findings(d)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.level(pf, "postfix", "main.cf", "error", "lmtp(8) does not send XFORWARD",
                   "lmtp_send_xforward_command = yes")

    def test_postfix_unsafe_main(self):
        d = self.postfix_dir("pf-unsafe", main=["milter_default_action = accept",
                                                "smtpd_milters =", "non_smtpd_milters ="])
        r, pf = self.postfix_findings(d)
        self.assertEqual(r.returncode, 1, r.stdout)
        self.level(pf, "postfix", "main.cf", "error", "milter_default_action = accept")
        self.level(pf, "postfix", "main.cf", "error", "smtpd_milters does not name")
        self.level(pf, "postfix", "main.cf", "warning", "non_smtpd_milters does not name")

    # The milter -----------------------------------------------------------------------

    def test_milter_require_spf_pass(self):
        state = os.path.join(self.work, "mstate")
        os.makedirs(state, exist_ok=True)
        os.chown(state, self.nobody.pw_uid, self.nobody.pw_gid)
        conf = self.conf("milter.conf", """
milter { socket = "inet:18465@127.0.0.1" require_spf_pass = yes pid_file = "%s/milter.pid" }
store { path = "%s/store.mdb" }
tenant "lab" {
    accepted_domains = { "pass.test", "notlisted.test" }
    mx_endpoint = "pass-test.mail.protection.outlook.com"
    egress_ip = "%s"
}
domain "pass.test" { mode = direct-send default_sender = "scanner@pass.test" }
domain "notlisted.test" { mode = direct-send default_sender = "scanner@notlisted.test" }
submitter "good" { clients = { "192.168.1.0/24" } domain = "pass.test"
    send_as = { "scanner@pass.test" } }
submitter "bad" { clients = { "192.168.2.0/24" } domain = "notlisted.test"
    send_as = { "scanner@notlisted.test" } }
""" % (state, state, EGRESS))
        r = self.lab.run(["miltertest", "-D", "milter=" + MILTER, "-D", "conf=" + conf,
                          "-D", "port=18465", "-D",
                          "common=" + os.path.join(TOP_SRCDIR, "tests", "milter", "common.lua"),
                          "-s", os.path.join(HERE, "spf-gate.lua")],
                         capture_output=True, text=True, timeout=120)
        print(r.stdout)
        print(r.stderr)
        self.assertEqual(r.returncode, 0, "miltertest failed")
        self.assertIn("require_spf_pass: notlisted.test: SPF softfail for 203.0.113.7; not used "
                      "as a rewrite target for direct-send or relay", r.stderr)
        self.assertIn("require_spf_pass: pass.test: SPF passes 203.0.113.7", r.stderr)
        self.assertIn("reason=spf-not-authorized", r.stderr)
        # Looked up once at start (the worker; the supervisor only parses).
        self.assertEqual(r.stderr.count("require_spf_pass: notlisted.test:"), 1, r.stderr)

        # m365ctl explain looks SPF up as the milter does, and says the same.
        e = self.lab.run([CTL, "-c", conf, "explain", "--client", "192.168.2.5", "--sender",
                          "dev@printer.local", "--rcpt", "a@notlisted.test", "--from",
                          "scanner@notlisted.test"], capture_output=True, text=True, timeout=60)
        print(e.stdout, e.stderr)
        self.assertEqual(e.returncode, 1, "refused (451) is exit status 1")
        self.assertIn("spf:         notlisted.test: SPF softfail for 203.0.113.7", e.stdout)
        self.assertIn("verdict:     451 4.7.0 SPF for notlisted.test does not authorize this "
                      "gateway (203.0.113.7)", e.stdout)

        # A reload looks it up once more, in the worker only.
        log = os.path.join(state, "milter.log")
        with open(log, "w") as lf:
            p = self.lab.start([MILTER, "-f", "-c", conf], stderr=lf)
        try:
            def count(text):
                with open(log) as f:
                    return f.read().count(text)
            for _ in range(200):
                if count("started (worker") and count("require_spf_pass: notlisted.test:"):
                    break
                time.sleep(0.05)
            p.send_signal(signal.SIGHUP)
            for _ in range(200):
                if count("reload: configuration"):
                    break
                time.sleep(0.05)
            time.sleep(0.2)
            self.assertEqual(count("reload: configuration"), 1)
            self.assertEqual(count("require_spf_pass: notlisted.test:"), 2,
                             "one look-up at start, one at the reload")
        finally:
            p.send_signal(signal.SIGTERM)
            p.wait(10)


if __name__ == "__main__":
    # A missing tool is an error that names its package, never a silent skip.
    for tool, pkg in (("dnsmasq", "dnsmasq-base"), ("miltertest", "miltertest"), ("ip", "iproute2"),
                      ("postconf", "postfix")):
        if shutil.which(tool) is None:
            print("ERROR: %s not installed (apt-get install %s)" % (tool, pkg))
            sys.exit(99)
    if os.geteuid() != 0:
        print("SKIP: needs root (ip netns)")
        sys.exit(77)
    unittest.main(verbosity=2)
