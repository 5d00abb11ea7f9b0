#!/usr/bin/python3
"""test_handoff.py - m365-handoff and the m365-transport -D daemon it hands
deliveries to (transport/handoff.c, transport/forkserver.c): what is only
theirs.  The transport suites also run whole through them
(transport-handoff.sh).

  - a delivery goes through the daemon: with no transport to fall back
    to, it is still delivered, by one of the daemon's workers;
  - the workers keep their sessions: 30 deliveries in a row open no more
    connections than there are workers, each message still its own
    transaction, and a changed configuration is read again;
  - no daemon (no socket, a socket nobody listens on): m365-handoff runs
    m365-transport itself; and with nothing to run, it defers (75);
  - a second daemon does not take a live daemon's socket; a dead one's
    socket file is replaced;
  - a request from another user is refused (m365-handoff then runs
    m365-transport with its own rights, which refuses root): deferred,
    nothing sent;
  - a request that is not one ends with no status (deferred) and a log
    line; the daemon serves the next; one that stops half-way is given
    up after 10 s;
  - a delivery process killed mid-delivery: deferred, and the retry
    delivers once;
  - SIGTERM: the delivery under way finishes, the socket goes, and the
    next delivery runs m365-transport itself.
"""
import os
import signal
import socket
import struct
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from harness import HANDOFF, TRANSPORT, Harness, ROUTES  # noqa: E402
from sandbox import wait_for  # noqa: E402

H = None


def setUpModule():
    global H
    H = Harness()


def tearDownModule():
    H.stop()


def daemon_log():
    with open(os.path.join(H.work, "daemon.log")) as f:
        return f.read()


def alive(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def children(pid):
    """The live processes whose parent is pid (from /proc: no ps needed)."""
    kids = []
    for d in os.listdir("/proc"):
        try:
            with open("/proc/%s/stat" % d) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid) and fields[0] != "Z":
            kids.append(int(d))
    return kids


class Handoff(unittest.TestCase):
    def setUp(self):
        H.sim.control("reset")
        H.sim.control("config", {"connectors": [{"name": "onprem", "type": "certificate",
                                                 "tls_sender_certificate_name": "relay.contoso.com"}]})
        self.sock = H.start_daemon()

    def tearDown(self):
        H.stop_daemon()

    def handoff(self, rcpts, transport=TRANSPORT, sock=None, as_root=False, wait=True, qid=None):
        qid, msg = H.envelope(rcpts, "scanner@contoso.com", ROUTES["relay"], None, qid, None, None)
        args = [HANDOFF, "-S", sock or self.sock, "-T", transport, "-l", "-c", H.conf, "-q", qid,
                "-f", "scanner@contoso.com", "--"] + rcpts
        if as_root:
            p = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        else:
            p = H.popen(args, None, None, text=True)
        p.qid = qid
        if not wait:
            p.stdin.write(msg)
            p.stdin.close()
            return p
        out, err = p.communicate(msg, timeout=120)
        p.out, p.err = out, err
        return p

    def test_delivered_by_the_daemon(self):
        p = self.handoff(["a@example.net"], transport="/nonexistent/m365-transport")
        self.assertEqual(p.returncode, 0, p.out + p.err)
        self.assertIn("250 2.0.0 OK", p.out)
        self.assertIn("status=sent", p.err)
        self.assertEqual(len(H.records()), 1)

    def test_sessions_kept_across_deliveries(self):
        # A configuration changed less than 2 s (whole seconds) before it
        # was read is read again by every delivery (forkserver.c
        # unchanged()), closing the kept sessions: wait until it is not.
        newest = max(os.stat(os.path.join(H.work, f)).st_ctime for f in ("m365relay.conf", "route.key"))
        time.sleep(max(0, int(newest) + 3.1 - time.time()))
        before = H.sim.state()["stats"]["connections"]
        for i in range(30):
            p = self.handoff(["r%d@example.net" % i], transport="/nonexistent/m365-transport")
            self.assertEqual(p.returncode, 0, p.out + p.err)
        opened = H.sim.state()["stats"]["connections"] - before
        self.assertEqual(len(H.records()), 30)
        self.assertLessEqual(opened, 10, "a connection per worker at most, not one per message")
        # a changed configuration: the next delivery reads it (a helo name
        # the simulator records), over a new session
        with open(H.conf) as f:
            text = f.read()
        try:
            with open(H.conf, "w") as f:
                f.write(text.replace('helo_name = "gw.contoso.test"', 'helo_name = "changed.contoso.test"'))
            for i in range(12):  # whichever worker takes it
                p = self.handoff(["after%d@example.net" % i], transport="/nonexistent/m365-transport")
                self.assertEqual(p.returncode, 0, p.out + p.err)
                self.assertEqual(H.records()[-1].get("helo"), "changed.contoso.test", H.records()[-1])
        finally:
            with open(H.conf, "w") as f:
                f.write(text)

    def test_daemon_maps_no_libcurl(self):
        # libcurl (and its 25 libraries) is for the delivery that fetches a
        # token: the daemon never loads it, so no delivery process starts with it
        p = self.handoff(["a@example.net"])
        self.assertEqual(p.returncode, 0, p.out + p.err)
        with open("/proc/%d/maps" % H.daemon.pid) as f:
            maps = f.read()
        self.assertIn("libssl.so.3", maps)  # the maps are the daemon's
        self.assertNotIn("libcurl", maps)

    def test_no_daemon_runs_the_transport(self):
        H.stop_daemon()
        self.assertFalse(os.path.exists(self.sock), "the daemon removes its socket")
        p = self.handoff(["a@example.net"])
        self.assertEqual(p.returncode, 0, p.out + p.err)
        self.assertEqual(len(H.records()), 1)
        # nothing to fall back to: deferred, saying why
        p = self.handoff(["b@example.net"], transport="/nonexistent/m365-transport")
        self.assertEqual(p.returncode, 75, p.out + p.err)
        self.assertIn("4.3.0 m365-handoff: cannot run /nonexistent/m365-transport", p.out)
        self.assertEqual(len(H.records()), 1)

    def test_dead_daemons_socket(self):
        # (the socket takes connections before the ten are all forked)
        workers = wait_for(lambda: len(children(H.daemon.pid)) == 10 and children(H.daemon.pid), 30,
                           "the ten workers", lambda: repr(children(H.daemon.pid)))
        H.daemon.kill()
        H.daemon.wait()
        self.assertTrue(os.path.exists(self.sock), "SIGKILL leaves the socket file")
        # its workers end with it: nobody serves the socket any more
        wait_for(lambda: not any(alive(w) for w in workers), 15,
                 "the workers to end with their daemon")
        p = self.handoff(["a@example.net"])
        self.assertEqual(p.returncode, 0, p.out + p.err)
        self.assertEqual(len(H.records()), 1)
        # a new daemon replaces the dead one's socket and serves
        H.start_daemon()
        p = self.handoff(["b@example.net"], transport="/nonexistent/m365-transport")
        self.assertEqual(p.returncode, 0, p.out + p.err)
        self.assertEqual(len(H.records()), 2)

    def test_second_daemon_leaves_a_live_socket(self):
        r = subprocess.run([TRANSPORT, "-l", "-D", self.sock], capture_output=True, text=True, timeout=30,
                           preexec_fn=lambda: (os.setgid(H.gid), os.setuid(H.uid)))
        self.assertEqual(r.returncode, 1)
        self.assertIn("another daemon listens on %s" % self.sock, r.stderr)
        p = self.handoff(["a@example.net"], transport="/nonexistent/m365-transport")
        self.assertEqual(p.returncode, 0, p.out + p.err)

    def test_daemon_refuses_root(self):
        r = subprocess.run([TRANSPORT, "-l", "-D", self.sock + ".root"], capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("refuses to run as root", r.stderr)
        self.assertFalse(os.path.exists(self.sock + ".root"))

    def test_other_user_refused(self):
        # root's m365-handoff may connect (the socket is the service
        # user's, but root passes file modes); the daemon refuses it
        # (the worker closes before reading; m365-handoff, whose request
        # was not taken, runs m365-transport itself, which refuses root)
        p = self.handoff(["a@example.net"], as_root=True)
        self.assertEqual(p.returncode, 75, p.out + p.err)
        self.assertRegex(p.out, "ended without an exit status|refuses to run as root")
        self.assertEqual(H.records(), [])
        wait_for(lambda: "refused a request from uid 0" in daemon_log(), 10, "the refusal in the log",
                 daemon_log)
        self.assertEqual(os.stat(self.sock).st_mode & 0o777, 0o600)

    def garbage(self, data, fds=True):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # as the service user: only the content is wrong
        pid = os.fork()
        if pid == 0:
            try:
                os.setgid(H.gid)
                os.setuid(H.uid)
                s.connect(self.sock)
                anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("3i", 0, 1, 2))] if fds else []
                try:
                    s.sendmsg([data[:20]], anc)
                    if data[20:]:
                        s.sendall(data[20:])
                    s.shutdown(socket.SHUT_WR)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # refused before the rest was read
                try:
                    got = s.recv(1)
                except ConnectionResetError:  # closed with our bytes unread
                    got = b""
                os._exit(3 if got else 0)
            except Exception:
                os._exit(4)
        _, st = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(st)

    def test_malformed_requests(self):
        def req(args, env, length=None, magic=b"M365HO1\0"):
            b = b"".join(x + b"\0" for x in args + env)
            return magic + struct.pack("=III", len(args), len(env), len(b) if length is None else length) + b
        good = [b"m365-transport", b"-V"]
        cases = [
            (b"GET / HTTP/1.0\r\n\r\n" + b"x" * 8, True, "not a handoff request"),
            (req(good, [], magic=b"M365HO9\0"), True, "not a handoff request"),
            (req(good, [], length=1 << 24), True, "impossible length"),
            (req(good, [b"NOEQUALS"]), True, "NAME=value"),
            (req(good, [])[:-3], True, "cut short"),
            (req(good, []), False, "no standard input, output and error"),
        ]
        for data, fds, why in cases:
            with self.subTest(why=why):
                self.assertEqual(self.garbage(data, fds), 0, "no exit status for %r" % data[:40])
                wait_for(lambda: why in daemon_log(), 15, "the refusal: " + why, daemon_log)
        # a request that parses but is not a delivery (-V is refused when handed over)
        self.assertEqual(self.garbage(req(good, [b"A=b"])), 3)
        # and the daemon serves the next delivery
        p = self.handoff(["a@example.net"], transport="/nonexistent/m365-transport")
        self.assertEqual(p.returncode, 0, p.out + p.err)
        self.assertEqual(H.daemon.poll(), None)

    def test_stalled_request_lets_go(self):
        # 10 bytes of a header, then nothing, the connection held open: the
        # worker gives up after 10 s (it does not wait for ever) and serves on
        why = "no standard input, output and error"
        seen = daemon_log().count(why)
        pid = os.fork()
        if pid == 0:
            os.setgid(H.gid)
            os.setuid(H.uid)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.sock)
            s.send(b"M365HO1\0\1\0")
            time.sleep(30)
            os._exit(0)
        try:
            t0 = time.time()
            wait_for(lambda: daemon_log().count(why) > seen, 25, "the worker to give up", daemon_log)
            self.assertGreater(time.time() - t0, 8, "it waited for the rest first")
            p = self.handoff(["a@example.net"], transport="/nonexistent/m365-transport")
            self.assertEqual(p.returncode, 0, p.out + p.err)
        finally:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)

    def test_delivery_process_killed(self):
        H.sim.control("fault", {"step": "rcpt", "action": "stall", "seconds": 20})
        before = H.sim.state()["stats"]["connections"]
        p = self.handoff(["a@example.net"], transport="/nonexistent/m365-transport", wait=False, qid="QKILLED")
        # a worker has it (its session reached the simulator): kill them all
        wait_for(lambda: H.sim.state()["stats"]["connections"] > before, 20, "the delivery under way")
        kids = children(H.daemon.pid)
        for k in kids:
            os.kill(k, signal.SIGKILL)
        out = p.stdout.read()
        p.wait(timeout=30)
        self.assertEqual(p.returncode, 75, out)
        self.assertIn("ended without an exit status", out)
        wait_for(lambda: "killed by signal 9" in daemon_log(), 10, "the daemon's log line", daemon_log)
        self.assertEqual(H.records(), [])
        p = self.handoff(["a@example.net"], transport="/nonexistent/m365-transport", qid="QKILLED")
        self.assertEqual(p.returncode, 0, p.out + p.err)
        self.assertEqual(len(H.records()), 1)

    def test_sigterm_finishes_the_delivery_under_way(self):
        H.sim.control("fault", {"step": "rcpt", "action": "stall", "seconds": 3})
        before = H.sim.state()["stats"]["connections"]
        p = self.handoff(["a@example.net"], transport="/nonexistent/m365-transport", wait=False)
        # a worker has it: its session reached the simulator
        wait_for(lambda: H.sim.state()["stats"]["connections"] > before, 20, "the delivery under way")
        H.daemon.terminate()
        wait_for(lambda: not os.path.exists(self.sock), 5, "the socket removed")
        out = p.stdout.read()
        p.wait(timeout=60)
        self.assertEqual(p.returncode, 0, out)
        H.daemon.wait(timeout=30)
        self.assertIn("stopped taking requests", daemon_log())
        H.stop_daemon()
        # the next one runs the transport itself
        p = self.handoff(["b@example.net"])
        self.assertEqual(p.returncode, 0, p.out + p.err)
        self.assertEqual(len(H.records()), 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
