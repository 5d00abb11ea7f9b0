/*
 * admission.c - the state store's admission path, timed: what m365-milter
 * asks the store at the end of each message (one message-window take and
 * one recipient-window take for the mailbox, as milter/admit.c does).
 *
 *   bench/admission CONFIG [N [MAILBOXES]]
 *
 * Opens the store CONFIG names (LMDB or Redis), runs N admissions (default
 * 5000) spread over MAILBOXES mailboxes (default 500) with Exchange
 * Online's limits (30/60s, 10000/24h), and prints the latency of each
 * admission in microseconds: p50, p90, p99 and max.  bench/delivery runs
 * it for each backend and sync policy; it is not a test.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

int
main(int argc, char **argv)
{
	struct diag d = {0};
	struct conf *conf;
	struct store *st;
	struct store_err e;
	const struct limit rl = {10000, 86400};
	unsigned long n = argc > 2 ? strtoul(argv[2], NULL, 10) : 5000;
	unsigned long boxes = argc > 3 ? strtoul(argv[3], NULL, 10) : 500;
	uint64_t *lat, t0, free_at, now;
	unsigned long i, full = 0;
	char box[64];

	if (argc < 2 || n == 0 || boxes == 0) {
		fprintf(stderr, "usage: admission CONFIG [N [MAILBOXES]]\n");
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
	lat = calloc(n, sizeof(*lat));
	if (lat == NULL)
		return 1;
	for (i = 0; i < n; i++) {
		int rc;
		snprintf(box, sizeof(box), "bench%05lu@example.com", i % boxes);
		now = store_now();
		t0 = now_ns();
		rc = store_msg_take(st, "adm", box, 30, 60000, now, &free_at, &e);
		if (rc == STORE_OK)
			rc = store_rcpt_take(st, "adm", box, &rl, 1, now, &free_at, &e);
		lat[i] = now_ns() - t0;
		if (rc < 0) {
			fprintf(stderr, "admission: %s\n", e.msg);
			return 1;
		}
		full += rc == STORE_FULL;
	}
	qsort(lat, n, sizeof(*lat), cmp);
	printf("backend=%s n=%lu mailboxes=%lu full=%lu p50_us=%.1f p90_us=%.1f p99_us=%.1f "
	       "max_us=%.1f\n",
	       conf->store.backend == STORE_BACKEND_LMDB ? "lmdb" : "redis", n, boxes, full,
	       lat[n / 2] / 1e3, lat[n * 9 / 10] / 1e3, lat[n * 99 / 100] / 1e3, lat[n - 1] / 1e3);
	free(lat);
	store_close(st);
	conf_free(conf);
	diag_free(&d);
	return 0;
}
