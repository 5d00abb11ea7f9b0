#!/usr/bin/python3
"""demo.py - the gateway's main job, on loopback, in words.

A sandboxed Postfix with m365-milter and m365-transport in front of the
bundled Microsoft 365 simulator; four devices send; the decisions, what
"Microsoft" received and the counters are shown; everything stops at the
end.  Run by tools/demo after the build (argument: the build directory).
"""
import os
import re
import subprocess
import sys
import time

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(TOP, "tests", "e2e"))
from gateway import Gateway  # noqa: E402

BOLD, DIM, END = ("\033[1m", "\033[2m", "\033[0m") if sys.stdout.isatty() else ("", "", "")


def say(text):
    print("\n" + BOLD + text + END)


def show(label, text):
    for i, line in enumerate(text.rstrip().split("\n")):
        print("   %s %s" % (label if i == 0 else " " * len(label), line))


def decisions(g, since):
    lines = g.milter_log().split("\n")[since:]
    return [re.sub(r"^.*?m365-milter(\[\d+\])?: ", "", l) for l in lines if "submitter=" in l or "refused:" in l]


def main():
    build = sys.argv[1]
    say("Starting a sandbox on loopback: Postfix (its own directories), m365-milter,")
    print("m365-transport and the Microsoft 365 simulator (smtp.office365.com, the tenant's")
    print("MX endpoint and the token endpoint all played by tests/simulator/m365sim.py).")
    g = Gateway(build, erp_rate="30/60s")
    try:
        print("   Postfix listens on 127.0.0.1:%d; the configuration is %s" % (g.smtp_port, g.conf))
        cases = [
            ("1. A LAN scanner (192.168.10.7) with the made-up sender scanner@printer.local scans\n"
             "   to a colleague.  Expected: Direct Send, sender and From rewritten.",
             "192.168.10.7", ["--from", "scanner@printer.local", "--to", "alice@contoso.com",
                              "--header", 'From: "Scanner 3rd floor" <scanner@printer.local>',
                              "--header", "Subject: Scan from MFP"]),
            ("2. The ERP logs in with SASL as 'erp' and bills a customer outside.\n"
             "   Expected: SMTP AUTH as erp@contoso.com with an OAuth2 token (XOAUTH2).",
             "203.0.113.50", ["--auth", "LOGIN", "--auth-user", "erp", "--auth-password", "erp-password",
                              "--from", "billing@contoso.com", "--to", "customer@example.net",
                              "--header", "From: Billing <billing@contoso.com>", "--header", "Subject: Invoice 42"]),
            ("3. The scanner writes to a partner outside.\n"
             "   Expected: relay through the certificate connector (client certificate).",
             "192.168.10.7", ["--from", "scanner@contoso.com", "--to", "partner@example.org",
                              "--header", "From: scanner@contoso.com", "--header", "Subject: For the partner"]),
            ("4. The scanner pretends to be the CEO.\n"
             "   Expected: refused at SMTP time, with Microsoft's own words; nothing queued.",
             "192.168.10.7", ["--from", "scanner@contoso.com", "--to", "alice@contoso.com",
                              "--header", "From: \"scanner@contoso.com\" <ceo@contoso.com>",
                              "--header", "Subject: Wire the money"]),
        ]
        # What each case must give at Microsoft's side: the role that
        # received it ("smtp" for SMTP AUTH, "mx" for Direct Send and
        # relay) or None for "nothing".  A case that does not is counted,
        # and the demo exits 1 (tools/test-all runs it from the tarball).
        expect = ["mx", "smtp", "mx", None]
        seen = 0
        wrong = []
        for n, (title, ip, args) in enumerate(cases):
            say(title)
            before = len(g.milter_log().split("\n")) - 1
            out = g.swaks(ip, *args)
            replies = [l for l in out.split("\n") if re.match(r"^<[~*-]", l) and re.search(r"\b[245]\d\d\b", l)]
            show("device saw:", replies[-2] if len(replies) >= 2 else out[-300:])
            if "queued" in out:
                g.wait(lambda: len(g.sim.records()) > seen, 20)
            time.sleep(0.3)
            for d in decisions(g, before):
                show("milter:   ", d)
            recs = g.sim.records()
            if len(recs) > seen:
                r = recs[-1]
                where = ("smtp.office365.com (SMTP AUTH)" if r["role"] == "smtp"
                         else "the tenant's MX endpoint")
                how = ", ".join(x for x in [
                    "as %s (%s)" % (r["auth_user"], r["auth_mech"]) if r["auth_user"] else "",
                    "connector %s, client certificate %s" % (r["connector"], r["client_cert_subject"])
                    if r["connector"] else "",
                    r["tls_version"] or "no TLS"] if x)
                show("Microsoft:", "received at %s %s\nMAIL FROM:<%s> RCPT TO:%s\nFrom: %s" % (
                    where, how, r["mail_from"], ", ".join("<%s>" % x for x in r["rcpt_to"]),
                    r["headers"].get("From", ["(none)"])[0]))
                seen = len(recs)
                if r["role"] != expect[n]:
                    wrong.append("case %d: received by %s, expected %s" % (n + 1, r["role"], expect[n]))
            else:
                show("Microsoft:", "received nothing")
                if expect[n] is not None:
                    wrong.append("case %d: Microsoft received nothing" % (n + 1))
        say("Postfix's log of the deliveries through m365-transport (pipe):")
        for l in g.maillog().split("\n"):
            if "postfix/pipe" in l:
                show("postfix:  ", re.sub(r"^.*postfix/pipe\[\d+\]: ", "", l))
        status = subprocess.run([os.path.join(build, "cli", "m365ctl"), "-c", g.conf, "status"],
                                capture_output=True, text=True)
        if status.returncode == 0:
            say("m365ctl status (the counters the transport paces against):")
            print(status.stdout)
        say("Done.  Stopping Postfix, the milter and the simulator.")
    finally:
        g.stop()
    for w in wrong:
        print("demo: NOT AS EXPECTED: " + w)
    if wrong:
        sys.exit(1)


if __name__ == "__main__":
    main()
