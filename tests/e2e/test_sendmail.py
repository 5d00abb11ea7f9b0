#!/usr/bin/python3
"""test_sendmail.py - the gateway end to end through a real Sendmail.

Debian's sendmail (sendmail-bin and sendmail-cf, unpacked by
tools/install-deps into /var/cache/m365relay-test/sendmail: the packages
conflict with postfix, so they are never installed) runs with its own
sendmail.cf, queue, pid file and port on 127.0.0.1.  The cf is built with
m4 from a small .mc that includes the shipped contrib/sendmail/m365relay.mc
(the milter with INPUT_MAIL_FILTER, m365-transport as the m365 mailer),
with only its paths defined for the sandbox.  m365-milter and
m365-transport come from the build; Microsoft 365 is the simulator.

  (a) a scanner (recognised by its address) sends as scanner@printer.local:
      the envelope sender is rewritten to the domain's default sender and
      the message reaches the simulator, its route header trusted by the
      transport (signed for Sendmail's $i and $g);
  (b) a From the scanner may not send as: 550 5.7.60 from Sendmail at SMTP
      time (the milter's reply), nothing queued or sent;
  (c) the simulator answers 432 4.3.2 once: the message waits in Sendmail's
      queue, a queue run (sendmail -C cf -q) delivers it, exactly once;
  (d) a recipient Microsoft refuses for good: Sendmail's report goes back
      through the gateway with the null sender.

Run as root (the other end-to-end tests need it too); KEEP=1 keeps the
sandbox directory (logs, queue, cf) for a look afterwards.
"""
import glob
import os
import pwd
import re
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from sandbox import (CONTOSO, TENANT, USER, domain_connector, exited, failed, free_port, poll,  # noqa: E402
                     run, sim_fields, start_simulator, wait_for, wait_port)

SRC = os.path.abspath(os.environ.get("top_srcdir", os.path.join(HERE, "..", "..")))
BUILD = os.path.abspath(os.environ.get("top_builddir", "."))
SENDMAIL_DIR = "/var/cache/m365relay-test/sendmail"
SENDMAIL = os.path.join(SENDMAIL_DIR, "usr/libexec/sendmail/sendmail")
CF_M4 = os.path.join(SENDMAIL_DIR, "usr/share/sendmail/cf/m4/cf.m4")
# The scanner: Sendmail listens on 127.0.0.1 only, and an address
# /etc/hosts names keeps its client look-up off the network.
SCANNER_IP = "127.0.0.1"
HOSTNAME = "relay.contoso.test"
# Sendmail wants a fully qualified host name at every start (it sleeps a
# minute, then looks it up in DNS, when it has none): each sendmail command
# runs in a UTS and mount namespace of its own, with that name and a hosts
# file naming it bound over /etc/hosts there.  The system's host name and
# files are never touched, and no look-up leaves the machine.
IN_NAMESPACE = 'mount --bind "$1" /etc/hosts && hostname "$2" && shift 2 && exec "$@"'

# The tenant, contoso.com by Direct Send (no connector), the scanner and
# Sendmail's own reports, which have no client address (tests/lib/sandbox.py).
CONF = """# m365relay.conf for the Sendmail sandbox (tests/e2e/test_sendmail.py)
user = "{user}"
state_dir = "{work}/state"
log_file = "{work}/m365relay.log"
milter {{
    socket = "unix:{work}/milter.sock"
    pid_file = "{work}/milter.pid"
}}
transport {{
    ca_file = "{certs}/ca.pem"
    helo_name = "gateway.contoso.test"
    sendmail = "{work}/reports.sh"
    timeout_command = 15
    local_submitter = "local"
}}
""" + TENANT + CONTOSO

# A site's sendmail.mc: the sandbox's paths, then the shipped file.
MC = """divert(-1)
dnl sendmail.mc for the sandbox (tests/e2e/test_sendmail.py)
divert(0)dnl
OSTYPE(`linux')dnl
define(`confDOMAIN_NAME', `{hostname}')dnl
define(`confSERVICE_SWITCH_FILE', `{work}/sendmail/service.switch')dnl
define(`confHOSTS_FILE', `{work}/sendmail/hosts')dnl
define(`QUEUE_DIR', `{work}/sendmail/mqueue')dnl
define(`confPID_FILE', `{work}/sendmail/sendmail.pid')dnl
define(`ALIAS_FILE', `{work}/sendmail/aliases')dnl
define(`STATUS_FILE', `{work}/sendmail/statistics')dnl
define(`HELP_FILE', `{sendmail_dir}/etc/mail/helpfile')dnl
define(`confDONT_PROBE_INTERFACES', `True')dnl
dnl The sandbox (milter socket, queue) is under /tmp, world-writable and sticky.
define(`confDONT_BLAME_SENDMAIL', `TrustStickyBit')dnl
define(`confTO_IDENT', `0')dnl
DAEMON_OPTIONS(`Port={port}, Addr=127.0.0.1, Name=MTA')dnl
FEATURE(`no_default_msa')dnl
FEATURE(`nocanonify')dnl
RELAY_DOMAIN(`127.0.0.1')dnl
define(`M365RELAY_SOCKET', `unix:{work}/milter.sock')dnl
define(`M365RELAY_TRANSPORT', `{build}/transport/m365-transport')dnl
define(`M365RELAY_CONFIG', `{work}/m365relay.conf')dnl
define(`M365RELAY_USER', `{user}:{group}')dnl
include(`{src}/contrib/sendmail/m365relay.mc')dnl
MAILER(`local')dnl
MAILER(`smtp')dnl
"""

MESSAGE = """From: {from_}
To: {rcpt}
Subject: {subject}

Scanned document.
"""


def need_tools():
    """Fail (not skip) naming what to install when a tool is missing."""
    if os.geteuid() != 0:
        raise RuntimeError("test_sendmail: must run as root (Sendmail's daemon, its namespaces, chown)")
    missing = []
    if not (os.access(SENDMAIL, os.X_OK) and os.path.exists(CF_M4)):
        missing.append("sendmail-bin and sendmail-cf unpacked into %s" % SENDMAIL_DIR)
    elif "not found" in subprocess.run(["ldd", SENDMAIL], capture_output=True, text=True).stdout:
        missing.append("the libraries %s links (libwrap0)" % SENDMAIL)
    if shutil.which("m4") is None:
        missing.append("Debian package m4")
    for tool, pkg in (("unshare", "util-linux"), ("mount", "mount"), ("hostname", "hostname")):
        if shutil.which(tool) is None:
            missing.append("%s (Debian package %s)" % (tool, pkg))
    if missing:
        raise RuntimeError("test_sendmail: missing %s; run sh tools/install-deps as root"
                           % ", ".join(missing))


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


class Sandbox:
    def __init__(self):
        need_tools()
        self.work = tempfile.mkdtemp(prefix="m365relay-sm.")
        os.chmod(self.work, 0o755)
        self.sendmail = None
        self.milter = None
        self.sim = None
        pw = pwd.getpwnam(USER)
        self.uid, self.gid = pw.pw_uid, pw.pw_gid
        try:
            self._start()
        except BaseException:
            self.stop(keep=True)
            raise

    def path(self, *names):
        return os.path.join(self.work, *names)

    def _write(self, name, text, mode, owned=False):
        with open(self.path(name), "w") as f:
            f.write(text)
        os.chmod(self.path(name), mode)
        if owned:
            os.chown(self.path(name), self.uid, self.gid)
        return self.path(name)

    def _start(self):
        self.sim = start_simulator(self.work)
        os.makedirs(self.path("state"))
        os.chown(self.path("state"), self.uid, self.gid)
        # Both programs log here (log_file), the transport as the service user.
        self._write("m365relay.log", "", 0o600, owned=True)
        os.makedirs(self.path("reports"))
        os.chown(self.path("reports"), self.uid, self.gid)
        self._write("reports.sh", '#!/bin/sh\ncat > "%s/reports/$$.msg"\n' % self.work, 0o755)
        self.conf = self._write("m365relay.conf", CONF.format(
            user=USER, work=self.work, domain_connector=domain_connector(None), scanners=SCANNER_IP,
            local="::1", **sim_fields(self.sim)), 0o644, owned=True)
        run([os.path.join(BUILD, "cli", "m365ctl"), "-c", self.conf, "route-key"])
        self.milter_err = open(self.path("milter.stderr"), "w")
        self.milter = subprocess.Popen([os.path.join(BUILD, "milter", "m365-milter"), "-f", "-c", self.conf],
                                       stderr=self.milter_err)
        sock = self.path("milter.sock")
        poll(lambda: os.path.exists(sock) or self.milter.poll() is not None, 10)
        if not os.path.exists(sock):
            raise RuntimeError("m365-milter did not make %s: %s"
                               % (sock, exited(self.milter, self.log() + self._read("milter.stderr"))))

        # Sendmail: its own cf (built from the shipped .mc), queue, pid file, port.
        sm = self.path("sendmail")
        os.makedirs(os.path.join(sm, "mqueue"))
        os.chmod(os.path.join(sm, "mqueue"), 0o700)
        self._write("sendmail/aliases", "", 0o644)
        self._write("sendmail/hosts", "127.0.0.1\tlocalhost\n127.0.0.1\t%s relay\n" % HOSTNAME, 0o644)
        self._write("sendmail/service.switch", "hosts files\naliases files\n", 0o644)
        self.port = free_port()
        mc = self._write("sendmail/test.mc", MC.format(
            work=self.work, sendmail_dir=SENDMAIL_DIR, port=self.port, build=BUILD, src=SRC,
            user=USER, group=self.gid, hostname=HOSTNAME), 0o644)
        self.cf = self.path("sendmail", "sendmail.cf")
        r = run(["m4", CF_M4, mc])
        if r.stderr.strip():
            raise RuntimeError("m4 %s: exit status 0 but: %s" % (mc, r.stderr))
        with open(self.cf, "w") as f:
            f.write(r.stdout)
        self.sendmail_out = open(self.path("sendmail.out"), "w")
        # -bD: the daemon in the foreground, in a process group of its own,
        # so that stop() ends it and the children it forked, and only those.
        self.sendmail = subprocess.Popen(self.sm("-bD"), stdout=self.sendmail_out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        if not wait_port(self.port, 30):
            raise RuntimeError("sendmail did not listen on %d: %s" % (
                self.port, exited(self.sendmail, self._read("sendmail.out"))))

    def sm(self, *args):
        """The command line of sendmail with this cf, in its namespaces."""
        return (["unshare", "--uts", "--mount", "--propagation", "private", "sh", "-c", IN_NAMESPACE, "sh",
                 self.path("sendmail", "hosts"), HOSTNAME, SENDMAIL, "-C", self.cf] + list(args))

    def _read(self, name):
        try:
            with open(self.path(name)) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log(self):
        return self._read("m365relay.log")

    def log_for(self, qid):
        return "\n".join(line for line in self.log().splitlines() if qid + ":" in line)

    def mailq(self):
        r = subprocess.run(self.sm("-bp"), capture_output=True, text=True)
        return r.stdout if r.returncode == 0 else failed(r)

    def queue_files(self):
        return glob.glob(self.path("sendmail", "mqueue", "qf*"))

    def run_queue(self):
        """One queue run, as an administrator would start it (-v: its transcript)."""
        return subprocess.run(self.sm("-q", "-v"), capture_output=True, text=True,
                              timeout=120)

    def stop(self, keep=False):
        if self.sendmail is not None:
            try:
                os.killpg(self.sendmail.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.sendmail.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.sendmail.pid, signal.SIGKILL)
                self.sendmail.wait()
            # Children it forked (sessions, deliveries) share its group.
            if not poll(lambda: not group_alive(self.sendmail.pid), 10):
                try:
                    os.killpg(self.sendmail.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.sendmail_out.close()
        if self.milter is not None:
            if self.milter.poll() is None:
                self.milter.terminate()
                self.milter.wait(10)
            self.milter_err.close()
        if self.sim is not None:
            self.sim.stop()
        if keep or os.environ.get("KEEP"):
            sys.stderr.write("test_sendmail: sandbox kept in %s\n" % self.work)
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    def wait(self, cond, seconds=30):
        """cond()'s first true value within seconds, else a false one."""
        return poll(cond, seconds)


S = None


def setUpModule():
    global S
    S = Sandbox()


def tearDownModule():
    if S is not None:
        S.stop()


class SendmailGateway(unittest.TestCase):
    def setUp(self):
        self.assertEqual(S.queue_files(), [], "nothing left in the queue:\n" + S.mailq())
        S.sim.control("reset")
        S.sim.control("config", {"rcpt_replies": {}})

    def submit(self, sender, from_, subject, rcpt="alice@contoso.com"):
        """One SMTP transaction as the scanner; (code, text) of the reply to the data."""
        with smtplib.SMTP("127.0.0.1", S.port, local_hostname="scanner.contoso.test", timeout=60) as s:
            code, text = s.ehlo()
            self.assertEqual(code, 250, text)
            code, text = s.mail(sender)
            self.assertEqual(code, 250, text)
            code, text = s.rcpt(rcpt)
            self.assertEqual(code, 250, text)
            msg = MESSAGE.format(from_=from_, rcpt=rcpt, subject=subject).replace("\n", "\r\n")
            try:
                code, text = s.data(msg.encode())
            except smtplib.SMTPDataError as e:
                code, text = e.smtp_code, e.smtp_error
            return code, text.decode()

    def queued(self, code, text):
        self.assertEqual(code, 250, text)
        m = re.match(r"2\.0\.0 ([0-9A-Za-z]+) Message accepted for delivery", text)
        self.assertIsNotNone(m, text)
        return m.group(1)

    def diag(self):
        return "\nqueue:\n%s\nlog:\n%s" % (S.mailq(), S.log()[-4000:])

    def test_a_scanner_rewritten_and_delivered(self):
        qid = self.queued(*self.submit("scanner@printer.local", '"Scanner 3F" <scanner@printer.local>',
                                       "scan"))
        self.assertTrue(S.wait(lambda: S.sim.records()), "nothing reached the simulator" + self.diag())
        self.assertTrue(S.wait(lambda: not S.queue_files()), "still queued" + self.diag())
        recs = S.sim.records()
        self.assertEqual(len(recs), 1, recs)
        rec = recs[0]
        self.assertEqual(rec["role"], "mx", "Direct Send goes to the MX endpoint")
        self.assertEqual(rec["mail_from"], "scanner@contoso.com", "the envelope sender was rewritten")
        self.assertEqual(rec["rcpt_to"], ["alice@contoso.com"])
        self.assertEqual(rec["headers"]["From"], ["Scanner 3F <scanner@contoso.com>"])
        self.assertEqual(rec["headers"]["Reply-To"], ["Scanner 3F <scanner@printer.local>"])
        self.assertEqual(rec["headers"]["Subject"], ["scan"])
        self.assertNotIn("X-M365Relay-Route", rec["headers"], "the transport removed the route header")
        # F=n: no mbox "From " line before the headers (Sendmail's header first).
        self.assertTrue(rec["text"].startswith("Received: from scanner.contoso.test "), rec["text"][:200])
        # The milter and the transport name the same queue id (Sendmail's
        # {i} and $i), and the route verified for it and the new sender ($g).
        log = S.log_for(qid)
        self.assertRegex(log, r"m365-milter.*%s: client=\[%s\] submitter=scanners "
                              r"sender=<scanner@printer\.local> -> <scanner@contoso\.com>"
                         % (qid, re.escape(SCANNER_IP)), S.log())
        self.assertRegex(log, r"m365-transport.*%s: to=<alice@contoso\.com> relay=localhost.* "
                              r"mode=direct-send.*status=sent" % qid, S.log())
        self.assertNotIn("route not trusted", log)

    def test_b_send_as_refused_at_smtp_time(self):
        code, text = self.submit("scanner@contoso.com", "ceo@contoso.com", "not mine")
        self.assertEqual(code, 550, text)
        self.assertEqual(text, "5.7.60 SMTP; Client does not have permissions to send as this sender")
        # Sendmail drops the refused message's files (had it queued it, they
        # would stay until delivered, and the delivery would be recorded).
        wait_for(lambda: not S.queue_files(), 10, "Sendmail to drop the refused message", S.mailq)
        self.assertEqual(S.queue_files(), [], S.mailq())
        self.assertEqual(S.sim.records(), [])
        self.assertRegex(S.log(), r"m365-milter.*: client=\[%s\] submitter=scanners sender=<scanner@contoso\.com> "
                                  r"from=<ceo@contoso\.com> .*verdict=reject reason=send-as-denied"
                         % re.escape(SCANNER_IP))

    def test_c_432_deferred_then_delivered_once(self):
        S.sim.control("fault", {"role": "mx", "step": "eom", "action": "reply", "reply":
                                "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded [Hostname=SIM]"})
        qid = self.queued(*self.submit("scanner@contoso.com", "scanner@contoso.com", "deferred once"))
        # The first attempt (Sendmail delivers in the background) is deferred.
        self.assertTrue(S.wait(lambda: "%s: deferred" % qid in S.log()), "no deferral" + self.diag())
        self.assertIn("4.3.2", S.log_for(qid))
        self.assertEqual([r["stage"] for r in S.sim.refused()], ["eom"])
        self.assertEqual(S.sim.records(), [])
        self.assertTrue(S.wait(lambda: qid in S.mailq()), "left in Sendmail's queue" + self.diag())
        # The queue file keeps what a queue run gives the transport's -a
        # (m365relay.mc adds it to Sendmail's persistent macros).
        with open(S.path("sendmail", "mqueue", "qf" + qid), "rb") as f:
            self.assertIn(b"\n${client_addr}%s\n" % SCANNER_IP.encode(), f.read())
        qrun = S.run_queue()
        self.assertEqual(qrun.returncode, 0, qrun.stdout + qrun.stderr)
        self.assertTrue(S.wait(lambda: S.sim.records()), "not delivered by the queue run:\n" +
                        qrun.stdout + self.diag())
        # Once its queue file is gone nothing can send it again.
        wait_for(lambda: not S.queue_files(), 30, "the queue file to go after the delivery", self.diag)
        recs = S.sim.records()
        self.assertEqual(len(recs), 1, "delivered exactly once: %r" % recs)
        self.assertEqual(recs[0]["headers"]["Subject"], ["deferred once"])
        self.assertEqual(recs[0]["mail_from"], "scanner@contoso.com")
        self.assertEqual(S.queue_files(), [], S.mailq())
        # A second queue run (in the foreground: done when it returns) has
        # nothing to send again.
        qrun = S.run_queue()
        self.assertEqual(qrun.returncode, 0, qrun.stdout + qrun.stderr)
        self.assertEqual(len(S.sim.records()), 1)
        log = S.log_for(qid)
        self.assertEqual(len(re.findall(r"to=<alice@contoso\.com> .*status=sent", log)), 1, log)
        self.assertNotIn("route not trusted", log)

    def test_d_sendmail_report_has_the_null_sender(self):
        # Microsoft refuses the recipient for good: the transport bounces
        # (69), and Sendmail's report goes back through the m365 mailer with
        # $g = MAILER-DAEMON, which must leave as <> (m365relay.mc's
        # EnvFromM365), never as MAILER-DAEMON@relay.contoso.test.
        S.sim.control("config", {"rcpt_replies": {"gone@contoso.com": {
            "reply": "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
            "count": -1}}})
        qid = self.queued(*self.submit("scanner@contoso.com", "scanner@contoso.com", "to nobody",
                                       rcpt="gone@contoso.com"))
        self.assertTrue(S.wait(lambda: S.sim.records()), "no report reached the simulator" + self.diag())
        self.assertTrue(S.wait(lambda: not S.queue_files()), "still queued" + self.diag())
        recs = S.sim.records()
        self.assertEqual(len(recs), 1, recs)
        self.assertEqual(recs[0]["mail_from"], "", "a delivery report has the null sender")
        self.assertEqual(recs[0]["rcpt_to"], ["scanner@contoso.com"])
        # Sendmail's transcript carries the transport's line with Microsoft's reply.
        self.assertIn("<gone@contoso.com>", recs[0]["text"])
        self.assertIn("5.1.10 localhost said: 550 5.1.10 RESOLVER.ADR.RecipientNotFound", recs[0]["text"])
        self.assertRegex(S.log_for(qid), r"bounced: 5\.1\.10 localhost said: 550 5\.1\.10")


if __name__ == "__main__":
    unittest.main(verbosity=2)
