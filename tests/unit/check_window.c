/*
 * check_window.c - the limit rules on a fake clock: exact at the
 * boundaries, and never over the limit under random load.
 */
#include "config.h"

#include <check.h>

#include "common.h"
#include <stdlib.h>
#include <string.h>

#include "store/window.h"

START_TEST(test_msg_boundaries)
{
	uint64_t st[30], free_at;
	size_t n = 0, i;

	/* 30 per 60 s, taken at t = 1000..1029 ms. */
	for (i = 0; i < 30; i++)
		ck_assert(win_msg_take(st, &n, 30, 30, 60000, 1000 + i, 0, &free_at));
	ck_assert(!win_msg_take(st, &n, 30, 30, 60000, 1030, 0, &free_at));
	ck_assert_uint_eq(free_at, 61000); /* the first leaves at t + W */
	ck_assert(!win_msg_take(st, &n, 30, 30, 60000, 60999, 0, &free_at));
	ck_assert(win_msg_take(st, &n, 30, 30, 60000, 61000, 0, &free_at));
	ck_assert(!win_msg_take(st, &n, 30, 30, 60000, 61000, 0, &free_at));
	ck_assert_uint_eq(free_at, 61001);
	ck_assert_uint_eq(win_msg_count(st, n, 30, 60000, 61000, &free_at), 30);
	ck_assert_uint_eq(win_msg_count(st, n, 30, 60000, 200000, &free_at), 0);
	ck_assert_uint_eq(free_at, 200000);
}
END_TEST

START_TEST(test_msg_retime)
{
	uint64_t st[4] = {100, 200, 300, 400};

	/* 200 went at 350: it now counts from there, in order. */
	ck_assert(win_msg_retime(st, 4, 200, 350));
	ck_assert_uint_eq(st[0], 100);
	ck_assert_uint_eq(st[1], 300);
	ck_assert_uint_eq(st[2], 350);
	ck_assert_uint_eq(st[3], 400);
	ck_assert(win_msg_retime(st, 4, 100, 500));
	ck_assert_uint_eq(st[3], 500);
	ck_assert(!win_msg_retime(st, 4, 999, 1000)); /* not ours (pruned) */
	/* Earlier too: a place held ahead comes back to when the message went. */
	ck_assert(win_msg_retime(st, 4, 500, 250));
	ck_assert_uint_eq(st[0], 250);
	ck_assert_uint_eq(st[1], 300);
	ck_assert_uint_eq(st[2], 350);
	ck_assert_uint_eq(st[3], 400);
}
END_TEST

/*
 * A message in flight holds its place however long it takes: admitted at
 * 1000 with a hold, it still counts at 1000 + W + 500 (it would have left
 * the window at 1000 + W), and the refusal says "look again soon", not a
 * time computed from a provisional stamp.  Retimed to when it went, it
 * counts from there; released (0), its place is free at once.
 */
START_TEST(test_msg_in_flight)
{
	uint64_t st[2], free_at, a, b;
	size_t n = 0;

	ck_assert(win_msg_take(st, &n, 2, 2, 2000, 1000, 600000, &a));
	ck_assert_uint_eq(a, 601000);
	ck_assert(win_msg_take(st, &n, 2, 2, 2000, 1100, 600000, &b));
	ck_assert(!win_msg_take(st, &n, 2, 2, 2000, 3500, 600000, &free_at));
	ck_assert_uint_eq(free_at, 3500 + WIN_POLL_MS);
	ck_assert_uint_eq(win_msg_count(st, n, 2, 2000, 3500, &free_at), 2);
	/* The first went at 3600 (a 2.6 s transfer in a 2 s window). */
	ck_assert(win_msg_retime(st, n, a, 3600));
	ck_assert(!win_msg_take(st, &n, 2, 2, 2000, 3700, 600000, &free_at));
	ck_assert_uint_eq(free_at, 5600); /* the oldest place frees first; b still counts */
	/* The second sent nothing: released, its place is free. */
	ck_assert(win_msg_retime(st, n, b, 0));
	ck_assert(win_msg_take(st, &n, 2, 2, 2000, 3800, 600000, &b));
	ck_assert(!win_msg_take(st, &n, 2, 2, 2000, 3900, 600000, &free_at));
	/* Both in the window or in flight: the first frees at 3600 + W. */
	ck_assert(win_msg_retime(st, n, b, 3850));
	ck_assert(!win_msg_take(st, &n, 2, 2, 2000, 5599, 600000, &free_at));
	ck_assert_uint_eq(free_at, 5600);
	ck_assert(win_msg_take(st, &n, 2, 2, 2000, 5600, 600000, &free_at));
}
END_TEST

START_TEST(test_msg_random_never_over)
{
	/* Whatever the arrival pattern, no window of W holds more than N. */
	uint64_t st[5], all[4000], free_at, t = 0;
	size_t n = 0, na = 0, i, j;

	srandom(42);
	for (i = 0; i < 20000 && na < 4000; i++) {
		t += (uint64_t)(random() % 700);
		if (win_msg_take(st, &n, 5, 5, 2000, t, 0, &free_at))
			all[na++] = t;
		else
			ck_assert_uint_gt(free_at, t);
	}
	ck_assert_uint_gt(na, 100);
	for (i = 0; i < na; i++) {
		size_t in = 0;
		for (j = i; j < na && all[j] < all[i] + 2000; j++)
			in++;
		ck_assert_uint_le(in, 5);
	}
}
END_TEST

START_TEST(test_rcpt_buckets)
{
	struct bucket b[WINDOW_BUCKETS + 8];
	const uint64_t W = 86400000, B = W / 96;
	uint64_t free_at, t0 = 10 * B + 123;
	size_t n = 0;

	ck_assert_uint_eq(win_bucket_width(W), 900000); /* 15 minutes */
	ck_assert(win_rcpt_take(b, &n, 104, 100, W, 60, t0, 0, &free_at));
	ck_assert(win_rcpt_take(b, &n, 104, 100, W, 40, t0 + 3600000, 0, &free_at));
	ck_assert(!win_rcpt_take(b, &n, 104, 100, W, 1, t0 + 3600001, 0, &free_at));
	/* The first bucket (start 10B) counts until its end leaves the window. */
	ck_assert_uint_eq(free_at, 10 * B + B + W);
	ck_assert(!win_rcpt_take(b, &n, 104, 100, W, 1, free_at - 1, 0, &free_at));
	ck_assert(win_rcpt_take(b, &n, 104, 100, W, 60, 11 * B + W, 0, &free_at));
	/* Never more than the limit in one message. */
	ck_assert(!win_rcpt_take(b, &n, 104, 100, W, 101, 11 * B + W, 0, &free_at));
	ck_assert_uint_eq(free_at, UINT64_MAX);
	ck_assert_uint_eq(win_rcpt_sum(b, n, 100, W, 11 * B + W, NULL), 100);
}
END_TEST

START_TEST(test_rcpt_random_never_over)
{
	/* Exact accounting of everything admitted: never over the limit in any
	 * window, and admission is at most one bucket late. */
	struct bucket b[WINDOW_BUCKETS + 8];
	static uint64_t when[20000], howmany[20000];
	const uint64_t W = 96000, B = 1000, LIM = 50;
	uint64_t t = 0, free_at;
	size_t n = 0, na = 0, i, j;

	srandom(7);
	for (i = 0; i < 20000; i++) {
		uint64_t k = 1 + (uint64_t)(random() % 5);
		t += (uint64_t)(random() % 400);
		if (win_rcpt_take(b, &n, WINDOW_BUCKETS + 8, LIM, W, k, t, 0, &free_at)) {
			when[na] = t;
			howmany[na++] = k;
		} else {
			/* Refused: justified by a window at most one bucket
			 * longer, (t - W - B, t]. */
			uint64_t exact = 0;
			for (j = 0; j < na; j++)
				if (when[j] + W + B > t)
					exact += howmany[j];
			ck_assert_uint_gt(exact + k, LIM);
		}
	}
	for (i = 0; i < na; i++) {
		uint64_t sum = 0;
		for (j = i; j < na && when[j] < when[i] + W; j++)
			sum += howmany[j];
		ck_assert_uint_le(sum, LIM);
	}
}
END_TEST

/* Recipients in flight hold their place until retimed or released. */
START_TEST(test_rcpt_in_flight)
{
	struct bucket b[WINDOW_BUCKETS + 8];
	const size_t cap = WINDOW_BUCKETS + 8;
	const uint64_t W = 10000, B = W / 96, LIM = 30;
	uint64_t a, c, f, start;
	size_t n = 0;

	ck_assert(win_rcpt_take(b, &n, cap, LIM, W, 20, 1000, 60000, &a));
	ck_assert_uint_eq(a, 61000);
	/* Past the window, still in flight: counted; look again soon. */
	ck_assert(!win_rcpt_take(b, &n, cap, LIM, W, 11, 12000, 60000, &f));
	ck_assert_uint_eq(f, 12000 + WIN_POLL_MS);
	ck_assert(win_rcpt_take(b, &n, cap, LIM, W, 10, 12000, 60000, &c));
	ck_assert_uint_eq(win_rcpt_sum(b, n, LIM, W, 12000, NULL), 30);
	/* The first went at 12500, the second sent nothing. */
	ck_assert(win_rcpt_retime(b, &n, cap, W, 20, a, 12500, 12500));
	ck_assert(win_rcpt_retime(b, &n, cap, W, 10, c, 0, 12600));
	ck_assert_uint_eq(win_rcpt_sum(b, n, LIM, W, 12600, NULL), 20);
	/* Counted from 12500 (its bucket's start), to the end of its bucket. */
	start = 12500 / B * B;
	ck_assert(!win_rcpt_take(b, &n, cap, LIM, W, 11, start + B + W - 1, 0, &f));
	ck_assert_uint_eq(f, start + B + W);
	ck_assert(win_rcpt_take(b, &n, cap, LIM, W, 11, start + B + W, 0, &f));
	/* Held past hold + W (its sender died): expired, nothing to move; the
	 * recipients are counted at the new time all the same. */
	ck_assert(win_rcpt_take(b, &n, cap, LIM, W, 5, 30000, 1000, &a));
	ck_assert(!win_rcpt_retime(b, &n, cap, W, 5, a, 45000, 45000));
	ck_assert_uint_eq(win_rcpt_sum(b, n, LIM, W, 45000, NULL), 5);
}
END_TEST

/*
 * rcpt_traffic - messages admitted at random times, each reaching the
 * receiver after a random delay (or never: nothing sent), its recipients
 * held (hold true) and retimed to one millisecond after they arrived, or
 * counted from admission (hold false, no retime: the transport before
 * the LMTP soak).  Returns the most recipients the receiver saw in one
 * window (t - W, t].
 */
static uint64_t
rcpt_traffic(bool hold, unsigned seed)
{
	enum { N = 6000 };
	struct bucket b[WINDOW_BUCKETS + 8];
	static uint64_t stamp[N], k[N], arrive[N], done[N];
	static bool pending[N], sent[N];
	const size_t cap = WINDOW_BUCKETS + 8;
	const uint64_t W = 10000, LIM = 30, H = 5000;
	uint64_t t = 0, most = 0;
	size_t n = 0, m = 0, i, j;

	srandom(seed);
	for (i = 0; i < N; i++) {
		t += (uint64_t)(random() % 60);
		/* First what finished by now, in the order it finished. */
		for (;;) {
			size_t next = N;
			for (j = 0; j < m; j++)
				if (pending[j] && done[j] <= t &&
				    (next == N || done[j] < done[next]))
					next = j;
			if (next == N)
				break;
			pending[next] = false;
			if (hold)
				win_rcpt_retime(b, &n, cap, W, k[next], stamp[next],
				                sent[next] ? arrive[next] + 1 : 0, done[next]);
		}
		k[m] = 1 + (uint64_t)(random() % 4);
		if (!win_rcpt_take(b, &n, cap, LIM, W, k[m], t, hold ? H : 0, &stamp[m]))
			continue;
		sent[m] = random() % 10 != 0;
		arrive[m] = t + (uint64_t)(random() % 3000);
		done[m] = arrive[m] + 1 + (uint64_t)(random() % 20);
		pending[m] = true;
		m++;
	}
	for (i = 0; i < m; i++) {
		uint64_t sum = 0;
		if (!sent[i])
			continue;
		for (j = 0; j < m; j++)
			if (sent[j] && arrive[j] >= arrive[i] && arrive[j] < arrive[i] + W)
				sum += k[j];
		if (sum > most)
			most = sum;
	}
	return most;
}

/* The receiver's window, not ours, is the one that must hold: with
 * delays between admission and arrival, counting from admission lets it
 * overfill (the check can fail); held and retimed, it never does. */
START_TEST(test_rcpt_never_over_at_receiver)
{
	unsigned seed;
	uint64_t worst_old = 0;

	for (seed = 1; seed <= 5; seed++) {
		uint64_t old = rcpt_traffic(false, seed);
		if (old > worst_old)
			worst_old = old;
		ck_assert_uint_le(rcpt_traffic(true, seed), 30);
	}
	ck_assert_uint_gt(worst_old, 30);
}
END_TEST

static bool
alive_odd(const struct holder *h)
{
	return h->pid % 2 == 1;
}

START_TEST(test_slots)
{
	struct holder h[8], a = {1, 10, 1, 0, 0}, b2 = {1, 10, 3, 0, 0}, c = {1, 10, 5, 0, 0},
	                    d = {1, 10, 7, 0, 0}, dead = {1, 10, 2, 0, 0};
	size_t n = 0;

	ck_assert(win_slot_take(h, &n, 8, 3, &dead, alive_odd));
	ck_assert(win_slot_take(h, &n, 8, 3, &a, alive_odd));
	ck_assert(win_slot_take(h, &n, 8, 3, &b2, alive_odd));
	/* The dead holder is pruned, so a third live one fits. */
	ck_assert(win_slot_take(h, &n, 8, 3, &c, alive_odd));
	ck_assert_uint_eq(n, 3);
	ck_assert(!win_slot_take(h, &n, 8, 3, &d, alive_odd));
	ck_assert(win_slot_take(h, &n, 8, 3, &a, alive_odd)); /* already held */
	ck_assert_uint_eq(n, 3);
	ck_assert(win_slot_release(h, &n, &b2));
	ck_assert(!win_slot_release(h, &n, &b2));
	ck_assert(win_slot_take(h, &n, 8, 3, &d, alive_odd));
	ck_assert_uint_eq(win_slot_count(h, n, alive_odd), 3);
}
END_TEST

int
main(void)
{
	static const struct check_suite suite = {"window", "core", NULL, NULL, 60};
	const struct check_test tests[] = {
	    CHECK_TEST(test_msg_boundaries), CHECK_TEST(test_msg_retime),
	    CHECK_TEST(test_msg_in_flight),  CHECK_TEST(test_msg_random_never_over),
	    CHECK_TEST(test_rcpt_buckets),   CHECK_TEST(test_rcpt_random_never_over),
	    CHECK_TEST(test_rcpt_in_flight), CHECK_TEST(test_rcpt_never_over_at_receiver),
	    CHECK_TEST(test_slots)};

	return check_main(&suite, tests, CHECK_ROWS(tests));
}
