#!/usr/bin/python3
"""test_oauth.py - OAuth2 for SMTP AUTH against the simulator's token
endpoint: secret and certificate credentials, AADSTS errors that defer,
the shared token cache (one request for many deliveries, one refresh for
many processes), a revoked token, and m365ctl token test.
"""
import concurrent.futures
import json
import os
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import MODE, Harness, ROUTES, TOP_BUILDDIR  # noqa: E402

H = None
M365CTL = os.path.join(TOP_BUILDDIR, "cli", "m365ctl")


def setUpModule():
    global H
    H = Harness()


def tearDownModule():
    H.stop()


def requests():
    return H.sim.state()["stats"]["token_requests"]


def clear_cache():
    d = os.path.join(H.state, "tokens")
    if os.path.isdir(d):
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))


class OAuth(unittest.TestCase):
    def setUp(self):
        H.reset()
        H.sim.control("config", {"token_lifetime": 3599, "clock_offset": 0,
                                 "rate": {"count": 1000, "window": 60}})
        clear_cache()

    def use(self, app):
        H.configure(erp_app=app)

    def send(self, **kw):
        return H.run(["a@example.net"], sender="billing@contoso.com", route=ROUTES["oauth"], **kw)

    def test_secret(self):
        self.use("secret-app")
        r = self.send()
        self.assertEqual(r.status, 0, r)
        self.assertEqual(H.records()[-1]["app_id"], "cid")

    def test_bad_secret(self):
        self.use("badsecret-app")
        r = self.send()
        self.assertEqual(r.status, 75, r)
        self.assertTrue(r.first_line.startswith("4.7.8 OAuth token for app badsecret-app: token endpoint "
                                                "answered HTTP 401: AADSTS7000215: Invalid client secret provided."), r)
        self.assertIn("hint: AADSTS7000215: client_secret_file holds the secret's ID or a stale secret", r.log)
        self.assertNotIn("not-the-secret", r.log + r.stdout, "the secret is never logged")
        self.assertEqual(H.records(), [])

    def test_certificate_ps256_and_rs256(self):
        for app, client in (("cert-app", "certapp"), ("rsa-app", "rsaapp")):
            self.use(app)
            clear_cache()
            r = self.send()
            self.assertEqual(r.status, 0, (app, r))
            self.assertEqual(H.records()[-1]["app_id"], client)

    def test_wrong_key(self):
        self.use("wrongkey-app")
        r = self.send()
        self.assertEqual(r.status, 75, r)
        self.assertIn("AADSTS700027: Client assertion contains an invalid signature.", r.first_line)
        self.assertIn("key_file does not match the certificate uploaded", r.log)

    def test_key_not_matching_certificate(self):
        # Caught before asking: a configuration error, deferred, named.
        self.use("mismatch-app")
        r = self.send()
        self.assertEqual(r.status, 75, r)
        self.assertRegex(r.first_line, r"^4\.3\.5 OAuth token for app mismatch-app: key \S+/app2\.key does not "
                                       r"match certificate \S+/app\.pem")

    def test_out_of_time(self):
        self.use("cert-app")
        H.sim.control("config", {"clock_offset": 3600})
        r = self.send()
        self.assertEqual(r.status, 75, r)
        self.assertIn("AADSTS700024: Client assertion is not within its valid time range.", r.first_line)
        self.assertIn("check the gateway's clock (NTP)", r.log)

    def test_endpoint_down_or_5xx_defers(self):
        self.use("secret-app")
        H.sim.control("fault", {"role": "token", "step": "request", "action": "status", "status": 503})
        r = self.send()
        self.assertEqual(r.status, 75, r)
        self.assertTrue(r.first_line.startswith("4.4.1 OAuth token for app secret-app: token endpoint "
                                                "answered HTTP 503"), r)

    def test_token_cache_unusable_is_ours(self):
        # state_dir/tokens that cannot hold the cache is a local problem
        # (4.3.5, like a missing key), not the endpoint's (4.4.1), and the
        # endpoint is not asked at all.
        self.use("secret-app")
        d = os.path.join(H.state, "tokens")
        clear_cache()
        st = os.stat(d)
        os.rmdir(d)
        with open(d, "w") as f:
            f.write("not a directory\n")
        try:
            before = requests()
            r = self.send()
        finally:
            os.unlink(d)
            os.mkdir(d, 0o700)
            os.chown(d, st.st_uid, st.st_gid)  # the transport's user, as before
        self.assertEqual(r.status, 75, r)
        self.assertRegex(r.first_line, r"^4\.3\.5 OAuth token for app secret-app: token cache lock "
                                       r"\S+/tokens/\S+\.lock: Not a directory")
        self.assertEqual(requests(), before)

    @unittest.skipIf(MODE == "handoff", "the delivery process is forked, not executed: LD_DEBUG is read at exec "
                     "(test_handoff: the daemon has no libcurl mapped)")
    def test_libcurl_loaded_only_to_fetch(self):
        # libcurl and its 25 libraries are loaded by the delivery that
        # fetches a token, not by one that finds it in the cache.
        self.use("secret-app")
        trace = {"LD_DEBUG": "files"}
        cold = self.send(extra_env=trace)
        warm = self.send(extra_env=trace)
        self.assertEqual(cold.status, 0, cold)
        self.assertEqual(warm.status, 0, warm)
        self.assertIn("file=libcurl.so.4", cold.log)
        self.assertNotIn("file=libcurl.so.4", warm.log)
        self.assertIn("file=libssl.so.3", warm.log)  # the trace works

    def test_fifty_deliveries_one_request(self):
        self.use("secret-app")
        before = requests()
        for _ in range(50):
            r = self.send()
            self.assertEqual(r.status, 0, r)
        self.assertEqual(requests() - before, 1)
        self.assertEqual(len(H.records()), 50)

    def test_twenty_concurrent_one_refresh(self):
        self.use("secret-app")
        # A token of 400 s is usable for 100 s (token_margin 300 by default).
        H.sim.control("config", {"token_lifetime": 400})
        self.assertEqual(self.send().status, 0)
        before = requests()
        self.assertEqual(self.send(clock=60).status, 0)
        self.assertEqual(requests() - before, 0, "the token is reused 60 s later")
        # No wait: 120 s later for the transports (M365RELAY_TEST_CLOCK), the
        # token is inside the margin; 20 at once make one request.
        H.sim.control("config", {"token_lifetime": 3599})
        with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
            results = list(pool.map(lambda _: self.send(clock=120), range(20)))
        self.assertEqual([r.status for r in results], [0] * 20, [r for r in results if r.status])
        self.assertEqual(requests() - before, 1, "exactly one token request for 20 transports")

    def test_revoked_mid_run(self):
        self.use("secret-app")
        self.assertEqual(self.send().status, 0)
        H.sim.control("revoke", {})
        before = requests()
        r = self.send()
        self.assertEqual(r.status, 0, r)
        self.assertEqual(requests() - before, 1, "one refresh")
        refused = [x for x in H.sim.refused() if x["stage"] == "auth"]
        self.assertEqual(len(refused), 1, "the old token was refused once")

    def test_cache_file_mode(self):
        self.use("secret-app")
        self.assertEqual(self.send().status, 0)
        d = os.path.join(H.state, "tokens")
        files = [f for f in os.listdir(d) if not f.endswith(".lock")]
        self.assertEqual(len(files), 1)
        st = os.stat(os.path.join(d, files[0]))
        self.assertEqual(st.st_mode & 0o777, 0o600)
        with open(os.path.join(d, files[0])) as f:
            self.assertGreater(json.load(f)["expires_at"], time.time() + 3000)

    def test_m365ctl_token_test(self):
        self.use("secret-app")
        p = subprocess.run([M365CTL, "-c", H.conf, "token", "test", "secret-app", "--mailbox", "erp@contoso.com"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn('aud          "https://outlook.office365.com"', p.stdout)
        self.assertIn('roles        ["SMTP.SendAsApp"]', p.stdout)
        self.assertIn("auth:        235 2.7.0 Authentication successful", p.stdout)
        self.assertNotRegex(p.stdout, r"eyJ[A-Za-z0-9_-]{20,}", "the token itself is never printed")
        p = subprocess.run([M365CTL, "-c", H.conf, "token", "test", "badsecret-app"],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 1)
        self.assertIn("AADSTS7000215", p.stdout)
        self.assertIn("hint:", p.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
