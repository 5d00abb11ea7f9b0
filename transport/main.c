/*
 * m365-transport - main(): argv, configuration, the message, deliver(),
 * and the exit status from outcome.c.
 *
 *   m365-transport [-c FILE] [-dl] -q QUEUEID -f SENDER [-a CLIENT] [-s SASL]
 *                  -- RCPT...
 *   m365-transport [-c FILE] -n
 *   m365-transport [-c FILE] [-dl] -L      (LMTP on stdin/stdout: lmtp.c)
 *   m365-transport [-dl] -D SOCKET         (the daemon m365-handoff hands
 *                                           deliveries to: forkserver.c)
 *
 * Postfix pipe(8) bounces on every exit status except 75 and 71, so every
 * path that is not a deliberate bounce ends in pipe_status() with a
 * deferral; a crash is a signal, which pipe(8) also defers.
 *
 * Every address on the command line is parsed with the project's address
 * parser and used only in its canonical form: an address that does not
 * parse (a CR or LF in it, a '>' outside quotes, a parameter after it,
 * too long) defers the delivery; it never reaches the SMTP dialogue.
 */
#include "config.h"

#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "net/curl_dl.h"
#include "conf/conf.h"
#include "deliver.h"
#include "forkserver.h"
#include "util/log.h"
#include "net/outcome.h"
#include "util/util.h"

static void
usage_to(FILE *fp)
{
	fprintf(fp, "usage: m365-transport [-c FILE] [-dl] -q QUEUEID -f SENDER [-a CLIENT] "
	            "[-s SASL] -- RECIPIENT...\n"
	            "       m365-transport [-c FILE] -n\n"
	            "       m365-transport [-c FILE] [-dl] -L\n"
	            "       m365-transport [-dl] -D SOCKET\n"
	            "       m365-transport -V | -h\n"
	            "  -a  the client's address (${client_address}; empty for local mail)\n"
	            "  -d  debug log (the SMTP transcript, secrets redacted)\n"
	            "  -D  serve m365-handoff on SOCKET (worker processes, sessions kept)\n"
	            "  -L  serve LMTP on standard input and output (Postfix spawn(8))\n"
	            "  -l  log to standard error instead of syslog (tests, by hand)\n"
	            "  -V  print the version; -h this help\n");
}

static void
usage(void)
{
	usage_to(stderr);
}

/* addresses - the sender and every recipient, checked and made canonical */
static int
addresses(struct delivery *d, const char *sender, char **argv, int n, struct outcome *o)
{
	char **rcpts;
	int i;

	/* pipe(8) writes the null sender as MAILER-DAEMON unless null_sender= is set. */
	if (strcmp(sender, "MAILER-DAEMON") == 0 || sender[0] == '\0')
		sender = "<>";
	if (delivery_addr(sender, true, &d->sender_addr, d->sender_text, o) < 0)
		return -1;
	d->sender = d->sender_text;
	rcpts = calloc((size_t)n, sizeof(*rcpts));
	if (rcpts == NULL) {
		outcome_local(o, OUT_DEFER, "4.3.0", "out of memory");
		return -1;
	}
	d->rcpts = (const char *const *)rcpts;
	for (i = 0; i < n; i++) {
		struct addr a;
		rcpts[i] = malloc(ADDR_TEXT_MAX + 1);
		d->n_rcpts++;
		if (rcpts[i] == NULL) {
			outcome_local(o, OUT_DEFER, "4.3.0", "out of memory");
			return -1;
		}
		if (delivery_addr(argv[i], false, &a, rcpts[i], o) < 0)
			return -1;
	}
	return 0;
}

static void
free_addresses(struct delivery *d)
{
	size_t i;

	for (i = 0; i < d->n_rcpts; i++)
		free((char *)d->rcpts[i]);
	free((char **)d->rcpts);
}

/* run - everything after the arguments; the outcome decides the exit status */
static void
run(struct delivery *d, const char *conf_file, const char *sender, char **argv, int n,
    struct handoff_worker *w, struct outcome *o)
{
	struct msg_err me;
	bool from_snapshot;

	if (addresses(d, sender, argv, n, o) < 0) {
		log_warnx("%s: %s", d->qid, o->line);
		return;
	}
	/* Warnings are for check-config and the milter's start, not every
	 * delivery; the compiled snapshot when check-config wrote a fresh one. */
	if (w != NULL) {
		/* the handoff daemon's worker: its kept configuration and sessions */
		d->conf = handoff_conf(w, conf_file);
		d->pool = d->conf != NULL ? &w->pool : NULL;
	} else {
		d->conf = conf_load_fast(conf_file, &from_snapshot);
		if (d->conf != NULL)
			log_debug("configuration %s read from %s", conf_file,
			          from_snapshot ? "its compiled snapshot" : "the text");
	}
	if (d->conf != NULL && d->conf->log_file != NULL && !d->to_stderr) {
		/* Not being able to log is no reason to hold mail: syslog then. */
		if (log_to_file(d->conf->log_file) < 0)
			log_warn("log_file %s (logging to syslog instead)", d->conf->log_file);
	}
	if (d->conf == NULL) {
		/* A configuration error defers: mail waits for the fix. */
		outcome_local(o, OUT_DEFER, "4.3.5",
		              "configuration %s has errors (m365ctl check-config shows them)",
		              conf_file);
		return;
	}
	if (message_read(0, d->conf->transport.max_size, &d->msg, &me) < 0) {
		if (me.code == MSG_ETOOLARGE)
			outcome_local(o, OUT_BOUNCE, "5.3.4", "%s", me.msg);
		else
			outcome_local(o, OUT_DEFER, "4.3.0", "%s", me.msg);
		log_warnx("%s: %s", d->qid, o->line);
		return;
	}
	deliver(d, o); /* libcurl is loaded only if a token or Graph needs it */
}

static int pipe_main(int argc, char **argv, struct handoff_worker *w);

int
main(int argc, char **argv)
{
	return pipe_main(argc, argv, NULL);
}

/*
 * pipe_main - the command line, run by main() and, with a worker w, by a
 * worker of the handoff daemon with the command line m365-handoff was
 * given: then only a delivery (never -D, -L, -n, -V, -h), with the
 * worker's kept configuration and sessions.
 */
static int
pipe_main(int argc, char **argv, struct handoff_worker *w)
{
	bool handed = w != NULL;
	const char *conf_file = M3_CONFIG_FILE, *sender = NULL, *daemon_sock = NULL;
	struct delivery d;
	struct outcome o;
	int check = 0, debug = 0, to_stderr = 0, lmtp = 0, ch;

	memset(&d, 0, sizeof(d));
	memset(&o, 0, sizeof(o));
	d.qid = "NOQUEUE";
	while ((ch = getopt(argc, argv, "a:c:dD:hlLnq:f:s:V")) != -1) {
		if (handed && strchr("DLnVh", ch) != NULL)
			ch = '?';
		switch (ch) {
		case 'V':
			printf("m365-transport (%s) %s\n", PACKAGE_NAME, PACKAGE_VERSION);
			return 0;
		case 'h':
			usage_to(stdout);
			return 0;
		case 'L':
			lmtp = 1;
			break;
		case 'D':
			daemon_sock = optarg;
			break;
		case 'a':
			d.client_given = true;
			d.have_client = optarg[0] != '\0' && ip_parse(optarg, &d.client) == 0;
			d.client_text = optarg;
			break;
		case 'c':
			conf_file = optarg;
			break;
		case 'd':
			debug = 1;
			break;
		case 'l':
			to_stderr = 1;
			d.to_stderr = true;
			break;
		case 'n':
			check = 1;
			break;
		case 'q':
			d.qid = optarg;
			break;
		case 'f':
			sender = optarg;
			break;
		case 's':
			d.sasl = optarg[0] ? optarg : NULL;
			break;
		default:
			usage();
			outcome_local(&o, OUT_DEFER, "4.3.5", "m365-transport: bad arguments");
			return pipe_status(&o, stdout);
		}
	}
	log_open("m365-transport", check || to_stderr ? LOG_TO_STDERR : LOG_TO_SYSLOG, debug);
	if (daemon_sock != NULL) {
		/* Every symbol bound once, here, not again in each delivery
		 * process (lazy binding left them to the first call in each).
		 * The delivery processes take their client's environment. */
		if (getenv("LD_BIND_NOW") == NULL && setenv("LD_BIND_NOW", "1", 1) == 0) {
			execv("/proc/self/exe", argv);
			log_warn("handoff: exec /proc/self/exe (symbols bound lazily)");
		}
		return forkserver_serve(daemon_sock, pipe_main);
	}
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
		return pipe_status(&o, stdout);
	}
	if (lmtp) {
		signal(SIGPIPE, SIG_IGN);
		srandom((unsigned)time(NULL) ^ (unsigned)getpid());
		OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
		return lmtp_serve(conf_file, to_stderr);
	}
	if (strcmp(d.qid, "NOQUEUE") == 0 || sender == NULL || optind >= argc ||
	    strspn(d.qid, "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") !=
	        strlen(d.qid) ||
	    strlen(d.qid) > 32) {
		usage();
		outcome_local(&o, OUT_DEFER, "4.3.5",
		              "m365-transport needs -q QUEUEID -f SENDER -- RECIPIENT...");
		log_errx("%s", o.line);
		return pipe_status(&o, stdout);
	}
	signal(SIGPIPE, SIG_IGN);
	srandom((unsigned)time(NULL) ^ (unsigned)getpid());
	/* The process ends with the delivery: OpenSSL's clean-up at exit
	 * (freeing every table it built) was 5% of a delivery's CPU. */
	OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, NULL);
	run(&d, conf_file, sender, argv + optind, argc - optind, w, &o);
	ch = pipe_status(&o, stdout);
	message_free(&d.msg);
	free_addresses(&d);
	if (w == NULL)
		conf_free((struct conf *)d.conf); /* a worker keeps it */
	return ch;
}
