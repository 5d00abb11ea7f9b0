"""simlib.py - start, drive and stop m365sim.py from Python tests.

    sim = Simulator(workdir, config)      # makes certificates, starts it
    sim.ports["smtp"], sim.control("config", {...}), sim.state()
    sim.ports["graph"], sim.ports["hve"]  # and "mx", "token", "control"
    tok = sim.graph_token("cid", "s3cret")     # a Graph-scope access token
    status, headers, body = sim.graph("POST", "/v1.0/users/a@contoso.com/sendMail",
                                      token=tok, body=base64.b64encode(mime))
    sim.stop()

Also used by the transport and end-to-end tests (run with Debian's
/usr/bin/python3).
"""
import http.client
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
OUTLOOK_SCOPE = "https://outlook.office365.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"


def make_certs(certdir):
    if not os.path.exists(os.path.join(certdir, "ca.pem")):
        subprocess.run(["sh", os.path.join(HERE, "mkcerts.sh"), certdir], check=True)
    return certdir


class Simulator:
    def __init__(self, workdir, config, certdir=None):
        self.dir = workdir
        self.config = config
        os.makedirs(workdir, exist_ok=True)
        self.certs = make_certs(certdir or os.path.join(workdir, "certs"))
        with open(os.path.join(workdir, "sim.json"), "w") as f:
            json.dump(config, f)
        ports = os.path.join(workdir, "ports.json")
        if os.path.exists(ports):
            os.unlink(ports)
        self.log = open(os.path.join(workdir, "sim.log"), "w")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(HERE, "m365sim.py"), "--state-dir", workdir,
             "--certs", self.certs, "--config", os.path.join(workdir, "sim.json")],
            stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(200):
            if os.path.exists(ports):
                break
            if self.proc.poll() is not None:
                raise RuntimeError("m365sim exited with status %d: %s" % (self.proc.returncode, self._log_tail()))
            time.sleep(0.05)
        else:
            raise RuntimeError("m365sim did not write %s in 10 s: %s" % (ports, self._log_tail()))
        with open(ports) as f:
            self.ports = json.load(f)
        self.ca = os.path.join(self.certs, "ca.pem")

    def _log_tail(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()[-3000:] or "(%s is empty)" % self.log.name

    def control(self, what, data=None):
        req = urllib.request.Request(
            "http://127.0.0.1:%d/%s" % (self.ports["control"], what),
            data=json.dumps(data or {}).encode(), method="POST",
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def state(self):
        with urllib.request.urlopen("http://127.0.0.1:%d/state" % self.ports["control"], timeout=10) as r:
            return json.load(r)

    def records(self):
        return self.state()["records"]

    def refused(self):
        return self.state()["refused"]

    def token_url(self, tenant="contoso.onmicrosoft.com"):
        return "https://localhost:%d/%s/oauth2/v2.0/token" % (self.ports["token"], tenant)

    def tls_context(self):
        return ssl.create_default_context(cafile=self.ca)

    def token(self, client_id="cid", secret="s3cret", scope=OUTLOOK_SCOPE, tenant="contoso.onmicrosoft.com"):
        """(status, JSON reply) of a client-credentials request with a secret."""
        form = {"client_id": client_id, "client_secret": secret,
                "grant_type": "client_credentials", "scope": scope}
        req = urllib.request.Request(self.token_url(tenant), data=urllib.parse.urlencode(form).encode(),
                                     method="POST")
        try:
            with urllib.request.urlopen(req, context=self.tls_context(), timeout=15) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def graph_token(self, client_id="cid", secret="s3cret", tenant="contoso.onmicrosoft.com"):
        """A Microsoft Graph access token (scope https://graph.microsoft.com/.default)."""
        status, body = self.token(client_id, secret, GRAPH_SCOPE, tenant)
        if status != 200:
            raise RuntimeError("graph token: %d %s" % (status, body))
        return body["access_token"]

    def graph_url(self, path=""):
        return "https://localhost:%d%s" % (self.ports["graph"], path)

    def graph(self, method, path, token=None, body=None, headers=None, timeout=30):
        """One request to the Graph role: (status, headers with lower-case
        names, body bytes).  body (bytes) goes as text/plain unless headers
        say otherwise."""
        conn = http.client.HTTPSConnection("localhost", self.ports["graph"], context=self.tls_context(),
                                           timeout=timeout)
        h = {}
        if token is not None:
            h["Authorization"] = "Bearer " + token
        if body is not None:
            h["Content-Type"] = "text/plain"
        h.update(headers or {})
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
