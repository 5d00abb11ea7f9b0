#!/usr/bin/python3
"""test_snapshot.py - the compiled configuration (lib/conf/conf_snap.c):
m365ctl check-config writes FILE.snap, a pipe(8) delivery maps it instead
of reading the text, and falls back to the text whenever the snapshot is
not what it claims to be: a file it was made from changed (a touch alone
does not count), it is writable by others, damaged, or made for another
file.  A configuration broken after the snapshot is never hidden by it.
"""
import os
import shutil
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Harness, ROUTES, TOP_BUILDDIR  # noqa: E402

CTL = os.path.join(TOP_BUILDDIR, "cli", "m365ctl")
H = None


def setUpModule():
    global H
    H = Harness()


def tearDownModule():
    H.stop()


class SnapshotTest(unittest.TestCase):
    def setUp(self):
        H.sim.control("reset")
        # check-config's run-time checks need the service user; the
        # configuration is the service user's here, as the route key is.
        H.configure(extra_top='user = "nobody"')
        os.chown(H.conf, H.uid, H.gid)
        self.snap = H.conf + ".snap"
        if os.path.exists(self.snap):
            os.unlink(self.snap)

    def check_config(self, *args):
        return subprocess.run([CTL, "-c", H.conf, "check-config"] + list(args),
                              capture_output=True, text=True)

    def deliver(self):
        r = H.run(["alice@contoso.com"], route=ROUTES["relay"], debug=True)
        self.assertEqual(r.status, 0, r.log)
        return r.log

    def assertFrom(self, log, where):
        self.assertIn("configuration %s read from %s" % (H.conf, where), log)

    def test_written_and_used(self):
        c = self.check_config()
        self.assertEqual(c.returncode, 0, c.stderr)
        lines = c.stdout.splitlines()
        self.assertTrue(lines[0].startswith("configuration OK"), c.stdout)
        self.assertEqual(lines[1:], [
            "compiled: %s (pipe(8) deliveries map it while the files it was made from are unchanged)"
            % self.snap])
        # the configuration's owner; the route key's owner is the same
        # here, so nobody else may read it (it holds the route keys)
        st = os.stat(self.snap)
        self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o777), (H.uid, H.gid, 0o600))
        self.assertFrom(self.deliver(), "its compiled snapshot")
        self.assertEqual(len(H.records()), 1)

    def test_packaged_layout(self):
        # As installed: the configuration root's, the route key the
        # service user's.  The snapshot is root's, readable by the
        # service user's primary group only.
        os.chown(H.conf, 0, 0)
        self.addCleanup(os.chown, H.conf, H.uid, H.gid)
        c = self.check_config()
        self.assertIn("compiled: ", c.stdout, c.stderr)
        st = os.stat(self.snap)
        self.assertEqual((st.st_uid, st.st_gid, st.st_mode & 0o777), (0, H.gid, 0o640))
        self.assertFrom(self.deliver(), "its compiled snapshot")

    def test_touch_keeps_it_change_drops_it(self):
        self.assertEqual(self.check_config().returncode, 0)
        os.utime(H.conf)  # same content, new times: the digest decides
        self.assertFrom(self.deliver(), "its compiled snapshot")
        with open(H.conf, "a") as f:
            f.write("# edited\n")
        log = self.deliver()
        self.assertFrom(log, "the text")
        self.assertIn("configuration snapshot not used: %s changed since the snapshot" % H.conf, log)
        # the route key is a file it was made from too
        self.assertEqual(self.check_config().returncode, 0)
        self.assertFrom(self.deliver(), "its compiled snapshot")
        keyf = os.path.join(H.work, "route.key")
        with open(keyf) as f:
            key = f.read()
        self.addCleanup(lambda: open(keyf, "w").write(key))
        with open(keyf, "a") as f:
            f.write("# a comment\n")
        log = self.deliver()
        self.assertIn("%s changed since the snapshot" % keyf, log)

    def test_stat_vouches_unless_changed_just_before_the_check(self):
        # Checked a while after the last edit: the recorded stat vouches
        # for the content, and a delivery reads no file to compare.
        time.sleep(0.05)
        self.assertEqual(self.check_config().returncode, 0)
        log = self.deliver()
        self.assertFrom(log, "its compiled snapshot")
        self.assertNotIn("comparing its content", log)
        # Changed in the instant before the check (a change in the same
        # clock tick after the read would keep every stat field): its
        # stat is not recorded, so every delivery compares the content.
        # (Made certain here by a stamp a little ahead of the clock.)
        with open(H.conf, "a") as f:
            f.write("# edited just before\n")
        ahead = time.time_ns() + 200 * 1000 * 1000
        os.utime(H.conf, ns=(ahead, ahead))
        self.assertEqual(self.check_config().returncode, 0)
        log = self.deliver()
        self.assertFrom(log, "its compiled snapshot")
        self.assertIn("%s: stat differs from the snapshot's: comparing its content" % H.conf, log)
        # ... until the next check, made a while after.
        time.sleep(0.3)
        self.assertEqual(self.check_config().returncode, 0)
        log = self.deliver()
        self.assertFrom(log, "its compiled snapshot")
        self.assertNotIn("comparing its content", log)

    def test_broken_configuration_not_hidden(self):
        self.assertEqual(self.check_config().returncode, 0)
        with open(H.conf, "a") as f:
            f.write("transport { pacing_wait = many }\n")
        r = H.run(["alice@contoso.com"], route=ROUTES["relay"], debug=True)
        self.assertEqual(r.status, 75, r.log)  # deferred until it is fixed
        self.assertIn("4.3.5", r.first_line)
        self.assertEqual(H.records(), [])

    def test_untrusted_damaged_or_foreign(self):
        self.assertEqual(self.check_config().returncode, 0)
        os.chmod(self.snap, 0o620)
        log = self.deliver()
        self.assertIn("not trusted", log)
        self.assertFrom(log, "the text")
        os.chmod(self.snap, 0o600)
        with open(self.snap, "r+b") as f:
            f.truncate(os.path.getsize(self.snap) - 4096)
        log = self.deliver()
        self.assertIn("not a snapshot of this format", log)
        # made for another file: a copy of the configuration elsewhere
        self.assertEqual(self.check_config().returncode, 0)
        other = os.path.join(H.work, "other.conf")
        shutil.copy(H.conf, other)
        shutil.copy(self.snap, other + ".snap")
        for p in (other, other + ".snap"):
            os.chown(p, H.uid, H.gid)
        conf = H.conf
        try:
            H.conf = other
            log = self.deliver()
        finally:
            H.conf = conf
        self.assertIn("made for %s" % conf, log)
        self.assertIn("configuration %s read from the text" % other, log)

    def test_no_compile(self):
        c = self.check_config("--no-compile")
        self.assertEqual(c.returncode, 0, c.stderr)
        self.assertEqual(len(c.stdout.splitlines()), 1, c.stdout)
        self.assertTrue(c.stdout.startswith("configuration OK"), c.stdout)
        self.assertFalse(os.path.exists(self.snap))
        self.assertFrom(self.deliver(), "the text")


if __name__ == "__main__":
    unittest.main()
