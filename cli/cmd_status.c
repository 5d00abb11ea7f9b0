/*
 * cmd_status.c - m365ctl status [--json] [MAILBOX]: where each mailbox
 * stands against its limits, read from the state store while the milter
 * and the transports run (reads never block them).
 *
 *   sent      what the transports submitted (what Microsoft counts)
 *   admitted  what the milter admitted at SMTP time (when it limits)
 */
#include "config.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "store/store.h"
#include "util/util.h"

static const char *
when(uint64_t at, uint64_t now, char *buf, size_t size)
{
	time_t t;
	struct tm tm;

	if (at <= now)
		return "now";
	if (at == UINT64_MAX)
		return "never";
	t = (time_t)(at / 1000);
	gmtime_r(&t, &tm);
	strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return buf;
}

int
cmd_status(const char *conf_file, int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {NULL, 0, NULL, 0}};
	const char *only = NULL;
	struct store_err e;
	struct store *st;
	struct conf *conf;
	uint64_t now = store_now();
	bool json = false, first = true;
	size_t i, shown = 0;
	int c, rc = 0;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'j') {
			fprintf(stderr, "usage: m365ctl [-c FILE] status [--json] [MAILBOX]\n");
			return 2;
		}
		json = true;
	}
	if (argc - optind > 1) {
		fprintf(stderr, "usage: m365ctl [-c FILE] status [--json] [MAILBOX]\n");
		return 2;
	}
	if (optind < argc)
		only = argv[optind];
	conf = cli_load(conf_file, 1);
	if (conf == NULL)
		return 1;
	if (cli_as_service_user(conf) < 0) {
		conf_free(conf);
		return 1;
	}
	st = store_open(conf, &e);
	if (st == NULL) {
		fprintf(stderr, "m365ctl: state store: %s\n", e.msg);
		conf_free(conf);
		return 1;
	}
	if (json)
		printf("[");
	else
		printf("%-32s %-14s %-14s %-18s %-9s %s\n", "MAILBOX", "SENT", "ADMITTED",
		       "RECIPIENTS", "SESSIONS", "NEXT MESSAGE");
	for (i = 0; i < conf->n_mailboxes; i++) {
		const struct mailbox_conf *m = &conf->mailboxes[i];
		struct store_usage out, adm;
		char lm[32], lr[32], a[48], b[48], r[48], s[24], w[40];

		if (only != NULL && m3_casecmp(only, m->name) != 0)
			continue;
		shown++;
		if (store_usage(st, "out", m, now, &out, &e) < 0 ||
		    store_usage(st, "adm", m, now, &adm, &e) < 0) {
			fprintf(stderr, "m365ctl: state store: %s\n", e.msg);
			rc = 1;
			break;
		}
		limit_format(&m->messages, lm, sizeof(lm));
		limit_format(&m->recipients, lr, sizeof(lr));
		if (json) {
			printf(
			    "%s\n  {\"mailbox\": \"%s\", \"messages\": {\"sent\": %llu, "
			    "\"admitted\": %llu, "
			    "\"limit\": %lu, \"window_seconds\": %lu, \"next_ms\": %llu}, "
			    "\"recipients\": {\"sent\": %llu, \"admitted\": %llu, \"limit\": %lu, "
			    "\"window_seconds\": %lu}, \"sessions\": {\"in_use\": %llu, \"limit\": "
			    "%u}}",
			    first ? "" : ",", m->name, (unsigned long long)out.msgs,
			    (unsigned long long)adm.msgs, m->messages.count, m->messages.window,
			    (unsigned long long)(out.msg_free_at > now ? out.msg_free_at - now : 0),
			    (unsigned long long)out.rcpts, (unsigned long long)adm.rcpts,
			    m->recipients.count, m->recipients.window,
			    (unsigned long long)out.sessions, m->sessions);
			first = false;
		} else {
			snprintf(a, sizeof(a), "%llu/%s", (unsigned long long)out.msgs, lm);
			snprintf(b, sizeof(b), "%llu/%s", (unsigned long long)adm.msgs, lm);
			snprintf(r, sizeof(r), "%llu/%s", (unsigned long long)out.rcpts, lr);
			snprintf(s, sizeof(s), "%llu/%u", (unsigned long long)out.sessions,
			         m->sessions);
			printf("%-32s %-14s %-14s %-18s %-9s %s\n", m->name, a, b, r, s,
			       when(out.msg_free_at, now, w, sizeof(w)));
		}
	}
	if (json)
		printf("%s]\n", first ? "" : "\n");
	if (only != NULL && shown == 0) {
		fprintf(stderr, "m365ctl: no mailbox %s in %s\n", only, conf_file);
		rc = 1;
	}
	store_close(st);
	conf_free(conf);
	return rc;
}
