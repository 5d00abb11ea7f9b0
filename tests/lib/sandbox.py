"""sandbox.py - what the Python harnesses share (tests/e2e/gateway.py,
tests/e2e/test_sendmail.py, tests/transport/harness.py, bench/soak.py):
loopback ports, waiting for a condition rather than for a while, commands
whose failure says why, and the Microsoft 365 simulator with the tenant
every sandbox configures.

    port = free_port(); wait_port(port, 10)
    wait_for(lambda: ..., 30, "the queue to empty")  # Timeout names what
    run([...])                            # CommandError: status, stderr
    sim = start_simulator(work, sim_config(...))     # work/sim, work/certs
    text = TENANT.format(**sim_fields(sim))          # and CONTOSO, ...

Run with Debian's /usr/bin/python3 (the simulator's modules are there).
"""
import copy
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "simulator"))
from simlib import Simulator  # noqa: E402

# The service user every sandbox runs m365-milter and m365-transport as.
USER = "nobody"
# The application the tenant registers for OAuth (client credentials).
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
CLIENT_SECRET = "demo-secret-value"


# Ports and waiting ----------------------------------------------------------------

def free_port():
    """An unused TCP port on 127.0.0.1."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Timeout(AssertionError):
    """A condition did not come true in time (a test failure, not an error)."""


def poll(cond, seconds, interval=0.05):
    """cond()'s first true value within seconds (checked every interval),
    else its last (false) value."""
    end = time.monotonic() + seconds
    while True:
        v = cond()
        if v or time.monotonic() >= end:
            return v
        time.sleep(interval)


def wait_for(cond, seconds, what, detail=None):
    """cond()'s first true value; else Timeout naming what was awaited and
    (detail, a function) what the harness can say about it."""
    v = poll(cond, seconds)
    if not v:
        msg = "timed out after %g s waiting for %s" % (seconds, what)
        if detail is not None:
            msg += "\n" + detail()
        raise Timeout(msg)
    return v


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def wait_port(port, seconds=10):
    """Whether something listens on 127.0.0.1:port within seconds."""
    return poll(lambda: port_open(port), seconds)


# Commands -------------------------------------------------------------------------

class CommandError(RuntimeError):
    pass


def failed(r, what=None):
    """The words for a finished command that failed: its command line, exit
    status, stderr and stdout."""
    args = r.args if isinstance(r.args, str) else " ".join(str(a) for a in r.args)
    return "%s%s: exit status %d\nstderr: %s\nstdout: %s" % (
        what + ": " if what else "", args, r.returncode, (r.stderr or "").strip() or "(empty)",
        (r.stdout or "").strip()[-2000:] or "(empty)")


def run(args, what=None, **kw):
    """subprocess.run with text output captured; a non-zero exit status
    raises CommandError saying the command, the status and its stderr."""
    if not ({"stdout", "stderr", "capture_output"} & set(kw)):
        kw["capture_output"] = True
    elif "stderr" not in kw and not kw.get("capture_output"):
        kw["stderr"] = subprocess.PIPE
    kw.setdefault("text", True)
    r = subprocess.run(args, **kw)
    if r.returncode != 0:
        raise CommandError(failed(r, what))
    return r


def exited(proc, log=""):
    """What to say about a started process that is not there: its exit
    status (or that it still runs) and its log."""
    rc = proc.poll()
    state = "still running" if rc is None else "exit status %d" % rc
    return "%s (%s)%s" % (proc.args[0] if isinstance(proc.args, list) else proc.args, state,
                          "\n" + log if log else "")


# The simulator and its tenant -------------------------------------------------------

# Contoso, as every sandbox's simulator knows it: a device mailbox with
# a password (Basic), an application's mailbox (OAuth), the certificate
# connector.  sim_config() gives a copy with changes.
SIM = {
    "tenant_ids": ["contoso.onmicrosoft.com", "contoso.com"],
    "accepted_domains": ["contoso.com"],
    "mailboxes": {"scanner@contoso.com": {"password": "pw", "send_as": ["noreply@contoso.com"]},
                  "erp@contoso.com": {"send_as": ["billing@contoso.com"], "apps": [CLIENT_ID]}},
    "apps": {CLIENT_ID: {"secret": CLIENT_SECRET}},
    "connectors": [{"name": "onprem", "type": "certificate", "tls_sender_certificate_name": "relay.contoso.com"}],
}


def sim_config(**changes):
    """A copy of SIM with top-level keys replaced."""
    cfg = copy.deepcopy(SIM)
    cfg.update(copy.deepcopy(changes))
    return cfg


def start_simulator(work, config=None):
    """m365sim with its state in work/sim and the test PKI in work/certs."""
    return Simulator(os.path.join(work, "sim"), config if config is not None else SIM,
                     certdir=os.path.join(work, "certs"))


def sim_fields(sim):
    """The fields TENANT needs, from a running simulator."""
    return {"mx": sim.ports["mx"], "smtp": sim.ports["smtp"], "token": sim.ports["token"],
            "graph": sim.ports["graph"], "hve": sim.ports["hve"],
            "certs": sim.certs, "accepted": ", ".join('"%s"' % d for d in sim.config["accepted_domains"])}


# Configuration text (str.format templates: {{ }} are braces) ---------------------------

# The tenant, every endpoint on the simulator (fields: sim_fields()).
TENANT = """tenant "contoso" {{
    accepted_domains = {{ {accepted} }}
    mx_endpoint = "localhost"
    mx_port = {mx}
    smtp_host = "localhost"
    smtp_port = {smtp}
    authority = "https://localhost:{token}"
    tenant_id = "contoso.onmicrosoft.com"
    graph_endpoint = "https://localhost:{graph}"
    graph_scope = "https://graph.microsoft.com/.default"
    hve_host = "localhost"
    hve_port = {hve}
}}
"""

# The OAuth application and the certificate connector (fields: work, certs,
# client_id; the secret is work/relay-app.secret, the key work/relay.key).
RELAY_APP = """app "relay-app" {{
    client_id = "{client_id}"
    client_secret_file = "{work}/relay-app.secret"
}}
connector "onprem" {{
    type = certificate
    certificate_file = "{certs}/relay.pem"
    key_file = "{work}/relay.key"
}}
"""

# contoso.com's policy and the two submitters by address (fields:
# domain_connector, a connector = line or ""; scanners and local, their
# client blocks).
CONTOSO = """domain "contoso.com" {{
    default_sender = "scanner@contoso.com"
{domain_connector}    rewrite_header_from = true
}}
submitter "scanners" {{
    clients = {{ "{scanners}" }}
    domain = "contoso.com"
    send_as = {{ "scanner@contoso.com" }}
}}
# Mail with no device behind it: local submissions, the MTA's own reports.
submitter "local" {{
    clients = {{ "{local}" }}
    domain = "contoso.com"
    send_as = {{ "@contoso.com" }}
}}
"""


def domain_connector(name):
    """CONTOSO's domain_connector field: relay through connector name, or not."""
    return '    connector = "%s"\n' % name if name else ""
