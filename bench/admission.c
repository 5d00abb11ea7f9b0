/*
 * admission.c - the state store's admission path, timed: what m365-milter
 * asks the store at the end of each message: store_admit(), a recipient-
 * window take and a message-window take for the mailbox, as milter/admit.c
 * does.
 *
 *   bench/admission [--flush] CONFIG [N [MAILBOXES]]
 *
 * Opens the store CONFIG names (LMDB or Redis), runs N admissions (default
 * 5000) spread over MAILBOXES mailboxes (default 500, named afresh in
 * each run so that their windows start empty) with Exchange
 * Online's limits (30/60s, 10000/24h), and prints the latency of each
 * admission in microseconds: p50, p90, p99 and max.  --flush adds a
 * store_sync() to each admission: what a flush per commit costs (the LMDB
 * store's policy before issue 17).  bench/delivery runs
 * it for each backend and sync policy; it is not a test.
 *
 *   bench/admission --journal SIZE CONFIG [N]
 *
 * The journal instead: fills it with SIZE entries of queue files still
 * open (once: a run with a larger SIZE adds to them), then times N
 * deliveries' journal work (default 2000): one recipient's outcome put,
 * then the queue id dropped, as m365-transport does.  Whether that cost
 * grows with the journal (its expiry scan once ran on every delivery) is
 * what bench/delivery reads from it.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "store/store.h"

static uint64_t
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int
cmp(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void
report(const char *what, const struct conf *conf, uint64_t *lat, unsigned long n, const char *more)
{
	qsort(lat, n, sizeof(*lat), cmp);
	printf("backend=%s%s n=%lu %s p50_us=%.1f p90_us=%.1f p99_us=%.1f max_us=%.1f\n",
	       conf->store.backend == STORE_BACKEND_LMDB ? "lmdb" : "redis", what, n, more,
	       lat[n / 2] / 1e3, lat[n * 9 / 10] / 1e3, lat[n * 99 / 100] / 1e3, lat[n - 1] / 1e3);
}

/* journal - the journal's cost per delivery with size entries in it */
static int
journal(struct store *st, const struct conf *conf, unsigned long size, unsigned long n)
{
	struct store_err e;
	enum journal_state js;
	char qid[32], more[64], reply[JOURNAL_REPLY_MAX];
	uint64_t *lat = calloc(n, sizeof(*lat)), t0;
	unsigned long i, have = 0;

	if (lat == NULL)
		return 1;
	/* The entries already there from a smaller run count. */
	for (have = 0; have < size; have++) {
		snprintf(qid, sizeof(qid), "FILL%07lu", have);
		if (store_journal_get(st, qid, "r@example.com", &js, reply, sizeof(reply), &e) < 0)
			goto fail;
		if (js == JOURNAL_NONE)
			break;
	}
	for (i = have; i < size; i++) {
		snprintf(qid, sizeof(qid), "FILL%07lu", i);
		if (store_journal_put(st, qid, "r@example.com", JOURNAL_ACCEPTED, "250 2.0.0 OK",
		                      store_now(), &e) < 0)
			goto fail;
	}
	for (i = 0; i < n; i++) {
		snprintf(qid, sizeof(qid), "B%d%07lu", (int)getpid(), i);
		t0 = now_ns();
		if (store_journal_put(st, qid, "r@example.com", JOURNAL_ACCEPTED, "250 2.0.0 OK",
		                      store_now(), &e) < 0 ||
		    store_journal_drop(st, qid, &e) < 0)
			goto fail;
		lat[i] = now_ns() - t0;
	}
	snprintf(more, sizeof(more), "journal=%lu", size);
	report("", conf, lat, n, more);
	free(lat);
	return 0;
fail:
	fprintf(stderr, "admission: journal: %s\n", e.msg);
	free(lat);
	return 1;
}

int
main(int argc, char **argv)
{
	struct diag d = {0};
	struct conf *conf;
	struct store *st;
	struct store_err e;
	const struct limit rl = {10000, 86400};
	int flush = argc > 1 && strcmp(argv[1], "--flush") == 0;
	long jsize = -1;
	unsigned long n, boxes;
	uint64_t *lat, t0, free_at, now;
	unsigned long i, full = 0;
	char box[64];
	bool rfull;

	argc -= flush;
	argv += flush;
	if (argc > 2 && strcmp(argv[1], "--journal") == 0) {
		jsize = strtol(argv[2], NULL, 10);
		argc -= 2;
		argv += 2;
	}
	n = argc > 2 ? strtoul(argv[2], NULL, 10) : jsize >= 0 ? 2000 : 5000;
	boxes = argc > 3 ? strtoul(argv[3], NULL, 10) : 500;
	if (argc < 2 || n == 0 || boxes == 0) {
		fprintf(stderr, "usage: admission [--flush] CONFIG [N [MAILBOXES]]\n"
		                "       admission --journal SIZE CONFIG [N]\n");
		return 2;
	}
	conf = conf_load_flags(argv[1], &d, CONF_NO_ROUTE_KEYS);
	if (conf == NULL) {
		for (i = 0; i < d.n; i++)
			fprintf(stderr, "%s\n", d.lines[i]);
		return 1;
	}
	st = store_open(conf, &e);
	if (st == NULL) {
		fprintf(stderr, "admission: %s\n", e.msg);
		return 1;
	}
	if (jsize >= 0) {
		int rc = journal(st, conf, (unsigned long)jsize, n);
		store_close(st);
		conf_free(conf);
		diag_free(&d);
		return rc;
	}
	lat = calloc(n, sizeof(*lat));
	if (lat == NULL)
		return 1;
	for (i = 0; i < n; i++) {
		int rc;
		snprintf(box, sizeof(box), "bench%d-%05lu@example.com", (int)getpid(), i % boxes);
		now = store_now();
		t0 = now_ns();
		rc = store_admit(st, "adm", box, &rl, 1, 30, 60000, now, &free_at, &rfull, &e);
		if (rc >= 0 && flush && store_sync(st, &e) < 0)
			rc = STORE_FAIL;
		lat[i] = now_ns() - t0;
		if (rc < 0) {
			fprintf(stderr, "admission: %s\n", e.msg);
			return 1;
		}
		full += rc == STORE_FULL;
	}
	snprintf(box, sizeof(box), "mailboxes=%lu full=%lu", boxes, full);
	report(flush ? "+flush" : "", conf, lat, n, box);
	free(lat);
	store_close(st);
	conf_free(conf);
	diag_free(&d);
	return 0;
}
