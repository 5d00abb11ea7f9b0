/*
 * check_store.c - the store contract, run against a backend chosen by
 * M365_TEST_STORE (lmdb, the default, or redis with M365_TEST_REDIS_PORT:
 * tests/store/redis.sh starts a redis-server of its own and runs this
 * binary again).  Fake clock; real processes for the slot test.
 */
#include "config.h"

#include <check.h>
#include <hiredis/hiredis.h>

#include "common.h"
#include <fcntl.h>
#include <glob.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store/store.h"
#include "store/window.h"
#include "testconf.h"

static struct conf *conf;
static struct store *st;

static struct conf *
load(const char *extra)
{
	char text[2048];
	struct diag d = {0};
	struct conf *c;
	const char *be = getenv("M365_TEST_STORE");
	const char *port = getenv("M365_TEST_REDIS_PORT");
	char store[256];

	if (be != NULL && strcmp(be, "redis") == 0)
		snprintf(store, sizeof(store),
		         "store { backend = redis redis_port = %s prefix = \"t%d:\" }\n",
		         port ? port : "6379", (int)getpid());
	else
		snprintf(store, sizeof(store), "store { path = \"store.mdb\" size = 1 }\n");
	snprintf(text, sizeof(text),
	         "%s%s"
	         "tenant \"t\" { accepted_domains = { \"contoso.com\" } }\n"
	         "mailbox \"a@contoso.com\" { password_file = \"ops.pw\" }\n"
	         "domain \"contoso.com\" { default_sender = \"a@contoso.com\" }\n"
	         "submitter \"s\" { clients = { \"10.0.0.0/8\" } }\n",
	         store, extra ? extra : "");
	c = tc_load(text, NULL, &d);
	if (c == NULL)
		tc_diag_print(&d);
	diag_free(&d);
	return c;
}

static void
setup(void)
{
	struct store_err e;

	conf = load(NULL);
	ck_assert_ptr_nonnull(conf);
	st = store_open(conf, &e);
	ck_assert_msg(st != NULL, "open: %s", e.msg);
}

static void
teardown(void)
{
	store_close(st);
	conf_free(conf);
	tc_cleanup();
}

START_TEST(test_messages_exact)
{
	struct limit l = {30, 60};
	struct store_err e;
	uint64_t free_at;
	int i;

	for (i = 0; i < 30; i++)
		ck_assert_int_eq(store_msg_take(st, "out", "A@contoso.com", l.count,
		                                l.window * 1000, 1000 + i, &free_at, &e),
		                 STORE_OK);
	ck_assert_int_eq(store_msg_take(st, "out", "a@contoso.com", l.count, l.window * 1000, 1030,
	                                &free_at, &e),
	                 STORE_FULL);
	ck_assert_uint_eq(free_at, 61000);
	ck_assert_int_eq(store_msg_take(st, "out", "a@contoso.com", l.count, l.window * 1000, 60999,
	                                &free_at, &e),
	                 STORE_FULL);
	ck_assert_int_eq(store_msg_take(st, "out", "a@contoso.com", l.count, l.window * 1000, 61000,
	                                &free_at, &e),
	                 STORE_OK);
	/* Another namespace counts on its own. */
	ck_assert_int_eq(store_msg_take(st, "adm", "a@contoso.com", l.count, l.window * 1000, 61000,
	                                &free_at, &e),
	                 STORE_OK);
}
END_TEST

/*
 * The transport's hold, on both backends: a message in flight keeps its
 * place past the window until retimed to when it went; the take reports
 * the stamp it recorded (the one to retime); a release (retime to 0)
 * frees the place.  (deliver.c once retimed the now it had asked for, not
 * the stamp recorded: the retime found nothing, and test_pacing.py saw six
 * in a window under load.)
 */
START_TEST(test_messages_in_flight)
{
	struct store_err e;
	uint64_t a, b, f;

	ck_assert_int_eq(store_msg_hold(st, "out", "a@contoso.com", 2, 2000, 1000, 600000, &a, &e),
	                 STORE_OK);
	ck_assert_uint_eq(a, 601000);
	ck_assert_int_eq(store_msg_hold(st, "out", "a@contoso.com", 2, 2000, 1100, 600000, &b, &e),
	                 STORE_OK);
	ck_assert_uint_eq(b, 601100);
	/* Past the window, both still in flight: full, look again soon. */
	ck_assert_int_eq(store_msg_hold(st, "out", "a@contoso.com", 2, 2000, 3500, 600000, &f, &e),
	                 STORE_FULL);
	ck_assert_uint_eq(f, 3500 + WIN_POLL_MS);
	/* The first went at 3600; the second sent nothing. */
	ck_assert_int_eq(store_msg_retime(st, "out", "a@contoso.com", 2, a, 3600, &e), 0);
	ck_assert_int_eq(store_msg_retime(st, "out", "a@contoso.com", 2, b, 0, &e), 0);
	ck_assert_int_eq(store_msg_hold(st, "out", "a@contoso.com", 2, 2000, 3700, 600000, &b, &e),
	                 STORE_OK);
	ck_assert_int_eq(store_msg_retime(st, "out", "a@contoso.com", 2, b, 3750, &e), 0);
	ck_assert_int_eq(store_msg_hold(st, "out", "a@contoso.com", 2, 2000, 5599, 600000, &f, &e),
	                 STORE_FULL);
	ck_assert_uint_eq(f, 5600);
	ck_assert_int_eq(store_msg_hold(st, "out", "a@contoso.com", 2, 2000, 5600, 600000, &f, &e),
	                 STORE_OK);
}
END_TEST

START_TEST(test_recipients)
{
	struct limit l = {100, 86400};
	struct store_err e;
	uint64_t free_at, t0 = 900000ULL * 10;

	ck_assert_int_eq(store_rcpt_take(st, "out", "a@contoso.com", &l, 60, t0, &free_at, &e),
	                 STORE_OK);
	ck_assert_int_eq(
	    store_rcpt_take(st, "out", "a@contoso.com", &l, 40, t0 + 3600000, &free_at, &e),
	    STORE_OK);
	ck_assert_int_eq(
	    store_rcpt_take(st, "out", "a@contoso.com", &l, 1, t0 + 3600001, &free_at, &e),
	    STORE_FULL);
	ck_assert_uint_eq(free_at, t0 + 900000 + 86400000ULL);
	ck_assert_int_eq(store_rcpt_take(st, "out", "a@contoso.com", &l, 60, free_at, &free_at, &e),
	                 STORE_OK);
}
END_TEST

/* The same hold for recipients, on both backends (window.h). */
START_TEST(test_recipients_in_flight)
{
	struct limit l = {30, 10};
	struct store_err e;
	uint64_t a, c, f, now = store_now(), start;
	const uint64_t B = 10000 / 96;

	ck_assert_int_eq(store_rcpt_hold(st, "out", "a@contoso.com", &l, 20, now, 600000, &a, &e),
	                 STORE_OK);
	ck_assert_uint_eq(a, now + 600000);
	ck_assert_int_eq(
	    store_rcpt_hold(st, "out", "a@contoso.com", &l, 11, now + 20000, 600000, &f, &e),
	    STORE_FULL);
	ck_assert_uint_eq(f, now + 20000 + WIN_POLL_MS);
	ck_assert_int_eq(
	    store_rcpt_hold(st, "out", "a@contoso.com", &l, 10, now + 20000, 600000, &c, &e),
	    STORE_OK);
	/* One went (at now: store_rcpt_retime prunes by the real clock), one
	 * sent nothing. */
	ck_assert_int_eq(store_rcpt_retime(st, "out", "a@contoso.com", &l, 20, a, now, &e), 0);
	ck_assert_int_eq(store_rcpt_retime(st, "out", "a@contoso.com", &l, 10, c, 0, &e), 0);
	start = now / B * B;
	ck_assert_int_eq(
	    store_rcpt_hold(st, "out", "a@contoso.com", &l, 11, start + B + 10000 - 1, 0, &f, &e),
	    STORE_FULL);
	ck_assert_uint_eq(f, start + B + 10000);
	ck_assert_int_eq(
	    store_rcpt_hold(st, "out", "a@contoso.com", &l, 11, start + B + 10000, 0, &f, &e),
	    STORE_OK);
}
END_TEST

START_TEST(test_usage_and_persistence)
{
	struct limit l = {30, 60};
	struct store_usage u;
	struct store_err e;
	uint64_t free_at, now = store_now();
	const struct mailbox_conf *m = &conf->mailboxes[0];
	int i;

	for (i = 0; i < 25; i++)
		ck_assert_int_eq(
		    store_msg_take(st, "adm", m->name, l.count, l.window * 1000, now, &free_at, &e),
		    STORE_OK);
	ck_assert_int_eq(store_rcpt_take(st, "adm", m->name, &m->recipients, 7, now, &free_at, &e),
	                 STORE_OK);
	/* A new process (or a reboot) sees the same counts. */
	store_close(st);
	st = store_open(conf, &e);
	ck_assert_ptr_nonnull(st);
	ck_assert_int_eq(store_usage(st, "adm", m, now, &u, &e), STORE_OK);
	ck_assert_uint_eq(u.msgs, 25);
	ck_assert_uint_eq(u.rcpts, 7);
	ck_assert_uint_eq(u.sessions, 0);
	for (i = 0; i < 5; i++)
		ck_assert_int_eq(
		    store_msg_take(st, "adm", m->name, l.count, l.window * 1000, now, &free_at, &e),
		    STORE_OK);
	ck_assert_int_eq(
	    store_msg_take(st, "adm", m->name, l.count, l.window * 1000, now, &free_at, &e),
	    STORE_FULL);
}
END_TEST

/* A child takes a slot and waits; the parent kills some of them. */
static pid_t
holder_child(int *ready_fd)
{
	int p[2];
	pid_t pid;

	ck_assert_int_eq(pipe(p), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct store_err e;
		struct store *s2 = store_open(conf, &e);
		struct holder me;
		char r;
		store_self(&me, store_now());
		r = s2 && store_slot_take(s2, "a@contoso.com", 3, &me, &e) == STORE_OK ? 'y' : 'n';
		if (write(p[1], &r, 1) != 1)
			_exit(1);
		pause();
		_exit(0);
	}
	close(p[1]);
	*ready_fd = p[0];
	return pid;
}

START_TEST(test_slots_freed_when_holder_dies)
{
	struct holder me;
	struct store_err e;
	pid_t kids[3];
	int i, fd, status;
	char r;

	for (i = 0; i < 3; i++) {
		kids[i] = holder_child(&fd);
		ck_assert_int_eq(read(fd, &r, 1), 1);
		close(fd);
		ck_assert_msg(r == 'y', "child %d could not take a slot", i);
	}
	store_self(&me, store_now());
	ck_assert_int_eq(store_slot_take(st, "a@contoso.com", 3, &me, &e), STORE_FULL);
	kill(kids[1], SIGKILL);
	waitpid(kids[1], &status, 0);
	ck_assert_int_eq(store_slot_take(st, "a@contoso.com", 3, &me, &e), STORE_OK);
	ck_assert_int_eq(store_slot_release(st, "a@contoso.com", &me, &e), STORE_OK);
	kill(kids[0], SIGKILL);
	kill(kids[2], SIGKILL);
	waitpid(kids[0], &status, 0);
	waitpid(kids[2], &status, 0);
	ck_assert_int_eq(store_slot_take(st, "a@contoso.com", 1, &me, &e), STORE_OK);
}
END_TEST

START_TEST(test_journal)
{
	enum journal_state js;
	struct store_err e;
	char reply[600];

	ck_assert_int_eq(
	    store_journal_get(st, "Q1", "x@example.net", &js, reply, sizeof(reply), &e), STORE_OK);
	ck_assert_int_eq(js, JOURNAL_NONE);
	ck_assert_int_eq(
	    store_journal_put(st, "Q1", "x@example.net", JOURNAL_ACCEPTED, "250 2.0.0 OK", 1, &e),
	    STORE_OK);
	ck_assert_int_eq(store_journal_put(st, "Q1", "y@example.net", JOURNAL_FAILED,
	                                   "550 5.1.10 RecipientNotFound", 1, &e),
	                 STORE_OK);
	ck_assert_int_eq(store_journal_put(st, "Q10", "x@example.net", JOURNAL_ACCEPTED, "", 1, &e),
	                 STORE_OK);
	ck_assert_int_eq(
	    store_journal_get(st, "Q1", "y@example.net", &js, reply, sizeof(reply), &e), STORE_OK);
	ck_assert_int_eq(js, JOURNAL_FAILED);
	ck_assert_str_eq(reply, "550 5.1.10 RecipientNotFound");
	ck_assert_int_eq(store_journal_drop(st, "Q1", &e), STORE_OK);
	ck_assert_int_eq(
	    store_journal_get(st, "Q1", "x@example.net", &js, reply, sizeof(reply), &e), STORE_OK);
	ck_assert_int_eq(js, JOURNAL_NONE);
	/* Dropping Q1 leaves Q10 alone. */
	ck_assert_int_eq(
	    store_journal_get(st, "Q10", "x@example.net", &js, reply, sizeof(reply), &e), STORE_OK);
	ck_assert_int_eq(js, JOURNAL_ACCEPTED);
	/* A queue id with no entry: nothing to drop (LMDB: no commit). */
	ck_assert_int_eq(store_journal_drop(st, "QNONE", &e), STORE_OK);
	ck_assert_int_eq(
	    store_journal_get(st, "Q10", "x@example.net", &js, reply, sizeof(reply), &e), STORE_OK);
	ck_assert_int_eq(js, JOURNAL_ACCEPTED);
	/* Writes after a drop (whose commit does not flush the meta page)
	 * commit and read back as before. */
	ck_assert_int_eq(store_journal_drop(st, "Q10", &e), STORE_OK);
	ck_assert_int_eq(
	    store_journal_put(st, "Q2", "x@example.net", JOURNAL_ACCEPTED, "250 ok", 1, &e),
	    STORE_OK);
	ck_assert_int_eq(
	    store_journal_get(st, "Q2", "x@example.net", &js, reply, sizeof(reply), &e), STORE_OK);
	ck_assert_int_eq(js, JOURNAL_ACCEPTED);
	ck_assert_int_eq(
	    store_journal_get(st, "Q10", "x@example.net", &js, reply, sizeof(reply), &e), STORE_OK);
	ck_assert_int_eq(js, JOURNAL_NONE);
}
END_TEST

/* Several deliveries' entries go in one write (the LMTP service's
 * batches), on both backends: a queue file whole, or the recipients of
 * one delivery only - another delivery of the same queue file (Postfix
 * splits many recipients) keeps its own; the others stay. */
START_TEST(test_journal_forget)
{
	static const struct journal_ref refs[] = {{"QA.0123456789abcdef", NULL},
	                                          {"QC.0123456789abcdef", "x@example.net"},
	                                          {"QC.0123456789abcdef", "y@example.net"},
	                                          {"QD.0123456789abcdef", "x@example.net"},
	                                          {"QNONE.0000000000000000", NULL},
	                                          {"QNONE.0000000000000000", "x@example.net"}};
	const char *all[] = {"QA.0123456789abcdef", "QB.0123456789abcdef", "QC.0123456789abcdef",
	                     "QA.fedcba9876543210", "QD.0123456789abcdef"};
	const char *rc[] = {"x@example.net", "y@example.net", "z@example.net"};
	enum journal_state js;
	struct store_err e;
	char reply[64];
	size_t i, j;

	for (i = 0; i < 5; i++)
		for (j = 0; j < 3; j++)
			ck_assert_int_eq(
			    store_journal_put(st, all[i], rc[j], JOURNAL_ACCEPTED, "250 ok", 1, &e),
			    STORE_OK);
	ck_assert_int_eq(store_journal_forget(st, refs, 6, &e), STORE_OK);
	ck_assert_int_eq(store_journal_forget(st, refs, 0, &e), STORE_OK);
	for (i = 0; i < 5; i++)
		for (j = 0; j < 3; j++) {
			bool gone = i == 0 || (i == 2 && j < 2) || (i == 4 && j == 0);
			ck_assert_int_eq(
			    store_journal_get(st, all[i], rc[j], &js, reply, sizeof(reply), &e),
			    STORE_OK);
			ck_assert_msg(js == (gone ? JOURNAL_NONE : JOURNAL_ACCEPTED), "%s %s: %d",
			              all[i], rc[j], (int)js);
		}
}
END_TEST

/*
 * The journal's expiry scan runs at most once every 10 minutes for all
 * processes together (LMDB; Redis expires entries itself): a second
 * handle - another transport process - does not scan on its first write
 * when one scanned a moment ago, and does once 10 minutes have passed.
 */
START_TEST(test_journal_expiry_shared)
{
	const uint64_t min = 60000, ttl = 7ULL * 86400 * 1000, t = 1000ULL * 86400 * 1000;
	struct store *other;
	struct store_err e;
	enum journal_state js;
	char reply[64];

	if (getenv("M365_TEST_STORE") && strcmp(getenv("M365_TEST_STORE"), "redis") == 0)
		return;
	ck_assert_int_eq(store_journal_put(st, "OLD", "x@example.net", JOURNAL_ACCEPTED, "", t, &e),
	                 STORE_OK);
	/* a scan just before OLD expires: it stays */
	ck_assert_int_eq(
	    store_journal_put(st, "P", "x@example.net", JOURNAL_ACCEPTED, "", t + ttl - min, &e),
	    STORE_OK);
	other = store_open(conf, &e);
	ck_assert_ptr_nonnull(other);
	/* OLD has expired, but the last scan was 2 minutes ago: no scan */
	ck_assert_int_eq(
	    store_journal_put(other, "Q", "x@example.net", JOURNAL_ACCEPTED, "", t + ttl + min, &e),
	    STORE_OK);
	ck_assert_int_eq(
	    store_journal_get(other, "OLD", "x@example.net", &js, reply, sizeof(reply), &e),
	    STORE_OK);
	ck_assert_int_eq(js, JOURNAL_ACCEPTED);
	/* 10 minutes after the last scan, the next write scans */
	ck_assert_int_eq(store_journal_put(other, "R", "x@example.net", JOURNAL_ACCEPTED, "",
	                                   t + ttl + 11 * min, &e),
	                 STORE_OK);
	ck_assert_int_eq(
	    store_journal_get(other, "OLD", "x@example.net", &js, reply, sizeof(reply), &e),
	    STORE_OK);
	ck_assert_int_eq(js, JOURNAL_NONE);
	ck_assert_int_eq(
	    store_journal_get(other, "Q", "x@example.net", &js, reply, sizeof(reply), &e),
	    STORE_OK);
	ck_assert_int_eq(js, JOURNAL_ACCEPTED);
	store_close(other);
}
END_TEST

/* A pause is raised, never lowered, read by everyone, and forgotten once over. */
START_TEST(test_pause)
{
	struct store_err e;
	uint64_t now = store_now(), cur = 1;

	ck_assert_int_eq(store_pause(st, "P@contoso.com", 0, now, &cur, &e), STORE_OK);
	ck_assert_uint_eq(cur, 0);
	ck_assert_int_eq(store_pause(st, "p@contoso.com", now + 5000, now, &cur, &e), STORE_OK);
	ck_assert_uint_eq(cur, now + 5000);
	/* a shorter pause asked later does not shorten it */
	ck_assert_int_eq(store_pause(st, "p@contoso.com", now + 2000, now + 10, &cur, &e),
	                 STORE_OK);
	ck_assert_uint_eq(cur, now + 5000);
	/* another process reads it (the key folds case like the others) */
	ck_assert_int_eq(store_pause(st, "P@Contoso.com", 0, now + 20, &cur, &e), STORE_OK);
	ck_assert_uint_eq(cur, now + 5000);
	/* another mailbox is not paused */
	ck_assert_int_eq(store_pause(st, "q@contoso.com", 0, now, &cur, &e), STORE_OK);
	ck_assert_uint_eq(cur, 0);
	/* over: reads as none, and a new one starts from scratch */
	ck_assert_int_eq(store_pause(st, "p@contoso.com", 0, now + 5000, &cur, &e), STORE_OK);
	ck_assert_uint_eq(cur, 0);
	ck_assert_int_eq(store_pause(st, "p@contoso.com", now + 6000, now + 5001, &cur, &e),
	                 STORE_OK);
	ck_assert_uint_eq(cur, now + 6000);
}
END_TEST

/*
 * store_admit: recipients first, then the message, as the milter asked
 * before it was one call (and one LMDB transaction): which window said no,
 * and recipients that fit are counted even when the message does not.
 */
START_TEST(test_admit)
{
	const struct limit rl = {10, 60};
	struct store_usage u;
	struct store_err e;
	uint64_t fa = 0, now = 1000000;
	bool rfull = true;

	ck_assert_int_eq(
	    store_admit(st, "adm", "a@contoso.com", &rl, 4, 1, 60000, now, &fa, &rfull, &e),
	    STORE_OK);
	ck_assert(!rfull);
	/* the message window (1 per minute) says no; the 4 recipients count */
	ck_assert_int_eq(
	    store_admit(st, "adm", "a@contoso.com", &rl, 4, 1, 60000, now + 1, &fa, &rfull, &e),
	    STORE_FULL);
	ck_assert(!rfull);
	ck_assert_uint_eq(fa, now + 60000);
	/* the recipient window (10) says no: 8 + 4 */
	ck_assert_int_eq(
	    store_admit(st, "adm", "a@contoso.com", &rl, 4, 0, 0, now + 2, &fa, &rfull, &e),
	    STORE_FULL);
	ck_assert(rfull);
	/* neither window asked: nothing to say no */
	ck_assert_int_eq(
	    store_admit(st, "adm", "a@contoso.com", NULL, 4, 0, 0, now + 3, &fa, &rfull, &e),
	    STORE_OK);
	ck_assert_int_eq(store_usage(st, "adm", &conf->mailboxes[0], now + 3, &u, &e), STORE_OK);
	ck_assert_uint_eq(u.msgs, 1);
	ck_assert_uint_eq(u.rcpts, 8);
}
END_TEST

/*
 * The sync policy (LMDB; store_lmdb.c): the journal is a file of its own;
 * counters written by a process that dies without closing the store are
 * there for the next; after a reboot the first opener reads the counters
 * whole, keeps a sound file and moves a torn one aside.
 */
START_TEST(test_lmdb_sync_policy)
{
	const struct limit rl = {100, 60};
	struct store_usage u;
	struct store_err e;
	struct stat sb;
	uint64_t fa, now = store_now();
	bool rfull;
	pid_t pid;
	int status, fd, i;
	char buf[4096], aside[600];
	glob_t g;

	if (getenv("M365_TEST_STORE") && strcmp(getenv("M365_TEST_STORE"), "redis") == 0)
		return;
	ck_assert_int_eq(stat(conf->store.journal_path, &sb), 0);
	ck_assert_str_ne(conf->store.journal_path, conf->store.path);
	setenv("M365RELAY_TEST_BOOT_ID", "boot-1", 1);
	store_close(st);
	st = NULL;
	/* A process admits three messages and dies without closing anything. */
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		struct store *s2 = store_open(conf, &e);
		for (i = 0; s2 != NULL && i < 3; i++)
			if (store_admit(s2, "adm", "a@contoso.com", &rl, 2, 30, 60000, now, &fa,
			                &rfull, &e) != STORE_OK)
				_exit(2);
		_exit(s2 != NULL ? 0 : 1);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	st = store_open(conf, &e);
	ck_assert_ptr_nonnull(st);
	ck_assert_int_eq(store_usage(st, "adm", &conf->mailboxes[0], now, &u, &e), STORE_OK);
	ck_assert_int_eq(u.msgs, 3);
	ck_assert_int_eq(u.rcpts, 6);
	store_close(st);
	st = NULL;

	/* A reboot, a sound file: read whole, kept, counts and all. */
	setenv("M365RELAY_TEST_BOOT_ID", "boot-2", 1);
	st = store_open(conf, &e);
	ck_assert_ptr_nonnull(st);
	ck_assert_int_eq(store_usage(st, "adm", &conf->mailboxes[0], now, &u, &e), STORE_OK);
	ck_assert_int_eq(u.msgs, 3);
	store_close(st);
	st = NULL;

	/* A reboot after a crash that tore the file (everything past the two
	 * meta pages overwritten): moved aside, the counters start again. */
	fd = open(conf->store.path, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	memset(buf, 0xa5, sizeof(buf));
	for (i = 2; i < 64; i++)
		ck_assert_int_eq(pwrite(fd, buf, sizeof(buf), (off_t)i * 4096),
		                 (ssize_t)sizeof(buf));
	close(fd);
	setenv("M365RELAY_TEST_BOOT_ID", "boot-3", 1);
	st = store_open(conf, &e);
	ck_assert_msg(st != NULL, "open after a torn file: %s", e.msg);
	ck_assert_int_eq(store_usage(st, "adm", &conf->mailboxes[0], now, &u, &e), STORE_OK);
	ck_assert_int_eq(u.msgs, 0);
	snprintf(aside, sizeof(aside), "%s.torn-*", conf->store.path);
	ck_assert_int_eq(glob(aside, 0, NULL, &g), 0);
	ck_assert_int_eq(g.gl_pathc, 1);
	globfree(&g);
	/* and it works again */
	ck_assert_int_eq(
	    store_admit(st, "adm", "a@contoso.com", &rl, 1, 30, 60000, now, &fa, &rfull, &e),
	    STORE_OK);
	store_close(st);
	st = NULL;
	/* A check that died in this boot (LMDB aborts on some broken pages)
	 * left its marker: the next opener takes the file for torn. */
	snprintf(buf, sizeof(buf), "%s.boot", conf->store.path);
	fd = open(buf, O_WRONLY | O_TRUNC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, "checking boot-4", 15), 15);
	close(fd);
	setenv("M365RELAY_TEST_BOOT_ID", "boot-4", 1);
	st = store_open(conf, &e);
	ck_assert_msg(st != NULL, "open after a check that died: %s", e.msg);
	ck_assert_int_eq(store_usage(st, "adm", &conf->mailboxes[0], now, &u, &e), STORE_OK);
	ck_assert_int_eq(u.msgs, 0);
	ck_assert_int_eq(glob(aside, 0, NULL, &g), 0);
	ck_assert_int_eq(g.gl_pathc, 2);
	globfree(&g);
	unsetenv("M365RELAY_TEST_BOOT_ID");
}
END_TEST

START_TEST(test_lmdb_full_and_unwritable)
{
	struct store_err e;
	char rcpt[64], big[JOURNAL_REPLY_MAX];
	int i, rc = STORE_OK;

	if (getenv("M365_TEST_STORE") && strcmp(getenv("M365_TEST_STORE"), "redis") == 0)
		return; /* LMDB only: Redis failures are tests/store/redis.sh's */
	/* A 1 MiB map fills up: a clean error, never a crash. */
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	for (i = 0; i < 10000 && rc == STORE_OK; i++) {
		snprintf(rcpt, sizeof(rcpt), "r%d@example.net", i);
		rc = store_journal_put(st, "QFULL", rcpt, JOURNAL_ACCEPTED, big, 1, &e);
	}
	ck_assert_int_eq(rc, STORE_FAIL);
	ck_assert_int_eq(e.code, STORE_EMAPFULL);
	ck_assert_msg(strstr(e.msg, "raise store { size }") != NULL, "the fix is said: %s", e.msg);
	/* A drop in the full map (its deletes need pages too) removes the
	 * entries or says it did not - never "done" with them still there.
	 * Full to the last page first: small entries until none fits. */
	for (i = 0, rc = STORE_OK; i < 10000 && rc == STORE_OK; i++) {
		snprintf(rcpt, sizeof(rcpt), "s%d@example.net", i);
		rc = store_journal_put(st, "QFULL", rcpt, JOURNAL_ACCEPTED, "", 1, &e);
	}
	ck_assert_int_eq(rc, STORE_FAIL);
	{
		enum journal_state js;
		char reply[16];
		int drc = store_journal_drop(st, "QFULL", &e);
		ck_assert_int_eq(
		    store_journal_get(st, "QFULL", "r0@example.net", &js, reply, sizeof(reply), &e),
		    STORE_OK);
		if (drc == STORE_OK)
			ck_assert_int_eq(js, JOURNAL_NONE);
		else
			ck_assert_int_eq(js, JOURNAL_ACCEPTED);
	}
	/* A place where the file cannot be created (root ignores modes, so
	 * a missing directory it is): open fails and says where and why. */
	store_close(st);
	st = NULL;
	conf->store.path = "/nonexistent-m365relay/store.mdb";
	st = store_open(conf, &e);
	ck_assert_ptr_null(st);
	ck_assert_str_eq(e.msg, "LMDB /nonexistent-m365relay/store.mdb: No such file or directory");
}
END_TEST

START_TEST(test_redis_scripts_flushed)
{
	const char *port = getenv("M365_TEST_REDIS_PORT");
	struct limit l = {30, 60};
	struct store_err e;
	uint64_t free_at;
	redisContext *rc;
	redisReply *r;

	if (getenv("M365_TEST_STORE") == NULL || strcmp(getenv("M365_TEST_STORE"), "redis") != 0)
		return; /* Redis only */
	ck_assert_int_eq(store_msg_take(st, "adm", "a@contoso.com", l.count, l.window * 1000,
	                                1000000, &free_at, &e),
	                 STORE_OK);
	/* The server forgets our Lua scripts (a restart, SCRIPT FLUSH): the
	 * next call gets NOSCRIPT, loads them again and succeeds. */
	rc = redisConnect("127.0.0.1", port ? atoi(port) : 6379);
	ck_assert_msg(rc != NULL && rc->err == 0, "connect to the test Redis");
	r = redisCommand(rc, "SCRIPT FLUSH");
	ck_assert_msg(r != NULL && r->type == REDIS_REPLY_STATUS, "SCRIPT FLUSH");
	freeReplyObject(r);
	redisFree(rc);
	ck_assert_int_eq(store_msg_take(st, "adm", "a@contoso.com", l.count, l.window * 1000,
	                                1000001, &free_at, &e),
	                 STORE_OK);
	ck_assert_int_eq(store_rcpt_take(st, "adm", "a@contoso.com", &l, 2, 1000002, &free_at, &e),
	                 STORE_OK);
}
END_TEST

int
main(void)
{
	static const struct check_suite suite = {"store", "contract", setup, teardown, 60};
	const struct check_test tests[] = {CHECK_TEST(test_messages_exact),
	                                   CHECK_TEST(test_messages_in_flight),
	                                   CHECK_TEST(test_recipients),
	                                   CHECK_TEST(test_recipients_in_flight),
	                                   CHECK_TEST(test_usage_and_persistence),
	                                   CHECK_TEST(test_slots_freed_when_holder_dies),
	                                   CHECK_TEST(test_journal),
	                                   CHECK_TEST(test_pause),
	                                   CHECK_TEST(test_journal_forget),
	                                   CHECK_TEST(test_journal_expiry_shared),
	                                   CHECK_TEST(test_admit),
	                                   CHECK_TEST(test_lmdb_sync_policy),
	                                   CHECK_TEST(test_lmdb_full_and_unwritable),
	                                   CHECK_TEST(test_redis_scripts_flushed)};

	return check_main(&suite, tests, CHECK_ROWS(tests));
}
