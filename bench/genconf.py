#!/usr/bin/python3
"""genconf.py - write a large, valid m365relay configuration for benchmarks.

    genconf.py DIR MAILBOXES [SUBMITTERS]

DIR/m365relay.conf (one tenant, one app, MAILBOXES mailboxes in the
documented style, SUBMITTERS submitters - default 0.4 x MAILBOXES - each
with its own /32 client, a SASL login and one mailbox it sends as),
DIR/domains.conf (one domain per 50 mailboxes, mode auto) and the secret
the app names, mode 0600.  State goes to DIR/state.  SIM_HOST and SIM_PORT
in the environment point smtp_host and mx_endpoint somewhere (default
localhost:2525).
"""
import os
import pwd
import sys


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__.strip())
    out = sys.argv[1]
    n = int(sys.argv[2])
    ns = int(sys.argv[3]) if len(sys.argv) > 3 else max(1, n * 2 // 5)
    host = os.environ.get("SIM_HOST", "localhost")
    port = os.environ.get("SIM_PORT", "2525")
    os.makedirs(os.path.join(out, "secrets"), exist_ok=True)
    os.makedirs(os.path.join(out, "state"), exist_ok=True)
    secret = os.path.join(out, "secrets", "app.secret")
    with open(secret, "w") as f:
        f.write("not-a-real-secret\n")
    os.chmod(secret, 0o600)
    ndom = max(1, n // 50)
    doms = ["d%05d.example" % i for i in range(ndom)]
    conf = []
    conf.append('user = "%s"\n' % pwd.getpwuid(os.getuid()).pw_name)
    conf.append('state_dir = "%s/state"\n' % out)
    conf.append('domain_file = "domains.conf"\n')
    conf.append('store { backend = lmdb }\n')
    conf.append('transport { local_submitter = "local" }\n')
    conf.append('tenant "t" {\n  accepted_domains = { %s }\n'
                % ", ".join('"%s"' % d for d in doms))
    conf.append('  mx_endpoint = "%s"\n  mx_port = %s\n' % (host, port))
    conf.append('  smtp_host = "%s"\n  smtp_port = %s\n' % (host, port))
    conf.append('  tenant_id = "t.onmicrosoft.com"\n}\n')
    conf.append('app "app" {\n  tenant = "t"\n'
                '  client_id = "11111111-2222-3333-4444-555555555555"\n'
                '  client_secret_file = "secrets/app.secret"\n}\n')
    for i in range(n):
        d = doms[i % ndom]
        conf.append('mailbox "mb%05d@%s" {\n  auth = oauth\n  app = "app"\n'
                    '  send_as = { "alias%05d@%s" }\n  messages = "30/60s"\n'
                    '  recipients = "10000/24h"\n  sessions = 3\n}\n'
                    % (i, d, i, d))
    for i in range(ns):
        d = doms[i % ndom]
        a = 10 << 24 | (i + 1)
        conf.append('submitter "s%05d" {\n  clients = { "%d.%d.%d.%d" }\n'
                    '  sasl_logins = { "login%05d" }\n  domain = "%s"\n'
                    '  mailbox = "mb%05d@%s"\n'
                    '  send_as = { "mb%05d@%s", "alias%05d@%s" }\n}\n'
                    % (i, a >> 24, a >> 16 & 255, a >> 8 & 255, a & 255,
                       i, d, i % n, doms[(i % n) % ndom], i % n,
                       doms[(i % n) % ndom], i % n, doms[(i % n) % ndom]))
    conf.append('submitter "local" {\n  clients = { "127.0.0.1", "::1" }\n'
                '  domain = "%s"\n  send_as = { "@%s" }\n}\n' % (doms[0], doms[0]))
    with open(os.path.join(out, "m365relay.conf"), "w") as f:
        f.write("".join(conf))
    with open(os.path.join(out, "domains.conf"), "w") as f:
        for j, d in enumerate(doms):
            f.write('domain "%s" {\n  mode = auto\n  default_sender = "mb%05d@%s"\n'
                    '  mailbox = "mb%05d@%s"\n}\n' % (d, j, d, j, d))


if __name__ == "__main__":
    main()
