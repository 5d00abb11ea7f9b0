/*
 * m365-transport - main(): argv, configuration, the message, deliver(),
 * and the exit status from outcome.c.
 *
 *   m365-transport [-c FILE] [-d] -q QUEUEID -f SENDER [-s SASL] -- RCPT...
 *   m365-transport [-c FILE] -n
 *
 * Postfix pipe(8) bounces on every exit status except 75 and 71, so every
 * path that is not a deliberate bounce ends in outcome_exit() with a
 * deferral; a crash is a signal, which pipe(8) also defers.
 */
#include "config.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "deliver.h"
#include "log.h"
#include "outcome.h"

static void
usage(void)
{
	fprintf(stderr,
		"usage: m365-transport [-c FILE] [-dl] -q QUEUEID -f SENDER [-s SASL] "
		"-- RECIPIENT...\n"
		"       m365-transport [-c FILE] -n\n"
		"  -d  debug log (the SMTP transcript, secrets redacted)\n"
		"  -l  log to standard error instead of syslog (tests, by hand)\n");
}

int
main(int argc, char **argv)
{
	const char *conf_file = M3_CONFIG_FILE;
	struct delivery d;
	struct outcome o;
	char err[512];
	int check = 0, debug = 0, to_stderr = 0, ch, status;
	bool have_q = false, have_f = false;

	memset(&d, 0, sizeof(d));
	memset(&o, 0, sizeof(o));
	d.qid = "NOQUEUE";
	while ((ch = getopt(argc, argv, "c:dlnq:f:s:")) != -1) {
		switch (ch) {
		case 'c':
			conf_file = optarg;
			break;
		case 'd':
			debug = 1;
			break;
		case 'l':
			to_stderr = 1;
			break;
		case 'n':
			check = 1;
			break;
		case 'q':
			d.qid = optarg;
			have_q = true;
			break;
		case 'f':
			d.sender = optarg;
			have_f = true;
			break;
		case 's':
			d.sasl = optarg[0] ? optarg : NULL;
			break;
		default:
			usage();
			outcome_local(&o, OUT_DEFER, "4.3.5", "m365-transport: bad arguments");
			return outcome_exit(&o);
		}
	}
	log_open("m365-transport", check || to_stderr ? LOG_TO_STDERR : LOG_TO_SYSLOG,
		 debug);
	if (check) {
		struct conf *conf = conf_load_logged(conf_file, true);
		if (conf == NULL)
			return 1;
		printf("configuration OK\n");
		conf_free(conf);
		return 0;
	}
	if (geteuid() == 0) {
		outcome_local(&o, OUT_DEFER, "4.3.0",
			      "m365-transport refuses to run as root: give it user= in "
			      "master.cf");
		log_errx("%s", o.line);
		return outcome_exit(&o);
	}
	if (!have_q || !have_f || optind >= argc) {
		usage();
		outcome_local(&o, OUT_DEFER, "4.3.5",
			      "m365-transport needs -q QUEUEID -f SENDER -- RECIPIENT...");
		log_errx("%s", o.line);
		return outcome_exit(&o);
	}
	/* pipe(8) writes the null sender as MAILER-DAEMON unless null_sender= is set. */
	if (strcmp(d.sender, "MAILER-DAEMON") == 0 || strcmp(d.sender, "<>") == 0)
		d.sender = "";
	d.rcpts = (const char *const *)argv + optind;
	d.n_rcpts = (size_t)(argc - optind);
	signal(SIGPIPE, SIG_IGN);
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());

	/* Warnings are for check-config and the milter's start, not every delivery. */
	d.conf = conf_load_logged(conf_file, false);
	if (d.conf == NULL) {
		/* A configuration error defers: mail waits for the fix. */
		outcome_local(&o, OUT_DEFER, "4.3.5",
			      "configuration %s has errors (m365ctl check-config shows them)",
			      conf_file);
		return outcome_exit(&o);
	}
	if (message_read(0, d.conf->transport.max_size, &d.msg, err, sizeof(err)) < 0) {
		outcome_local(&o, strstr(err, "limit") ? OUT_BOUNCE : OUT_DEFER,
			      strstr(err, "limit") ? "5.3.4" : "4.3.0", "%s", err);
		log_warnx("%s: %s", d.qid, o.line);
		conf_free((struct conf *)d.conf);
		return outcome_exit(&o);
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	deliver(&d, &o);
	status = outcome_exit(&o);
	message_free(&d.msg);
	conf_free((struct conf *)d.conf);
	curl_global_cleanup();
	return status;
}
