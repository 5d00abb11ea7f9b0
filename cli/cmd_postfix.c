/*
 * cmd_postfix.c - m365ctl postfix-config [--lmtp|--handoff] [main|master]: the lines that wire
 * this installation into Postfix, built from the configuration (socket,
 * service user, recipient limits) and from where things were installed.
 *
 * It prints and never edits: main.cf and master.cf are the administrator's.
 * "main" prints only "name = value" lines, one per postconf -e argument;
 * "master" only the master.cf entry; without an argument both, with the
 * reasons as comments.  --lmtp: the LMTP delivery service (lmtp(8) to
 * m365-transport -L under spawn(8)) instead of pipe(8); --handoff: pipe(8)
 * running m365-handoff, which hands each delivery to the m365-transport -D
 * daemon (or runs m365-transport itself when none listens).
 */
#include "config.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "util/util.h"

#define DEF_QUEUE_DIR   "/var/spool/postfix"
#define DEF_RCPT_LIMIT  500 /* Exchange Online's default per message */
#define TRANSPORT_PROCS 10  /* mailbox { sessions } holds each mailbox to 3 */

int
cli_postfix_milter(const struct conf *conf, const char *queue_dir, char *buf, size_t len,
                   bool *chroot_ok)
{
	const char *s = conf->milter.socket, *at;
	size_t q = strlen(queue_dir);
	int n;

	*chroot_ok = true;
	if (strncmp(s, "unix:", 5) == 0 || strncmp(s, "local:", 6) == 0 || s[0] == '/') {
		s += s[0] == '/' ? 0 : (s[0] == 'u' ? 5 : 6);
		/* Relative to the queue directory, where every Postfix daemon
		 * runs, chrooted or not. */
		while (q > 1 && queue_dir[q - 1] == '/')
			q--;
		if (strncmp(s, queue_dir, q) == 0 && s[q] == '/')
			n = snprintf(buf, len, "unix:%s", s + q + 1);
		else {
			*chroot_ok = false;
			n = snprintf(buf, len, "unix:%s", s);
		}
	} else if (strncmp(s, "inet:", 5) == 0 || strncmp(s, "inet6:", 6) == 0) {
		/* Sendmail's inet:PORT@HOST is Postfix's inet:HOST:PORT. */
		bool six = s[4] == '6';
		const char *port = s + (six ? 6 : 5);

		at = strchr(port, '@');
		if (at == NULL)
			n = snprintf(buf, len, "inet:localhost:%s", port);
		else if (six || strchr(at + 1, ':') != NULL)
			n = snprintf(buf, len, "inet:[%s]:%.*s", at + 1, (int)(at - port), port);
		else
			n = snprintf(buf, len, "inet:%s:%.*s", at + 1, (int)(at - port), port);
	} else
		return -1;
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

static unsigned
recipient_limit(const struct conf *conf)
{
	unsigned lim = 0;
	size_t i;

	for (i = 0; i < conf->n_mailboxes; i++)
		if (lim == 0 || conf->mailboxes[i].recipients_per_message < lim)
			lim = conf->mailboxes[i].recipients_per_message;
	return lim == 0 ? DEF_RCPT_LIMIT : lim;
}

static void
print_main(const struct conf *conf, const char *milter, bool comments, bool chroot_ok,
           const char *queue_dir, bool lmtp)
{
	if (comments) {
		printf("# main.cf (each line: postconf -e 'LINE')\n"
		       "# The milter for mail from the network and for local submission;\n"
		       "# protocol 6 to change the envelope sender; when it cannot be\n"
		       "# reached, 4xx so devices retry (never accept unchecked).\n");
		if (!chroot_ok)
			printf("# WARNING: %s is outside Postfix's queue directory %s: a chrooted\n"
			       "# smtpd (Debian's default) cannot reach it; put the socket under\n"
			       "# %s/ (milter { socket } in m365relay.conf).\n",
			       milter, queue_dir, queue_dir);
	}
	printf("smtpd_milters = %s\n"
	       "non_smtpd_milters = $smtpd_milters\n"
	       "milter_protocol = 6\n"
	       "milter_default_action = tempfail\n"
	       "milter_mail_macros = i {auth_authen} {cert_subject} {auth_type}\n",
	       milter);
	if (comments)
		printf("# The route is bound to the queue id: ids that are never reused.\n");
	printf("enable_long_queue_ids = yes\n");
	if (comments)
		printf("# Everything leaves through Microsoft 365, in submissions of at most\n"
		       "# the smallest recipients_per_message of the mailboxes.\n");
	if (!lmtp) {
		printf("default_transport = m365\n"
		       "relay_transport = m365\n"
		       "m365_destination_recipient_limit = %u\n"
		       "m365_destination_concurrency_limit = %d\n",
		       recipient_limit(conf), TRANSPORT_PROCS);
		return;
	}
	if (comments)
		printf("# LMTP: lmtp(8) delivers to m365-transport -L (spawn(8), a socket in\n"
		       "# the queue directory a chrooted lmtp(8) reaches), keeps the\n"
		       "# connection for message after message, and reports each recipient;\n"
		       "# XFORWARD gives the queue id (the route and the journal need it)\n"
		       "# and the client; a delivery may wait for its pacing window and\n"
		       "# Microsoft's replies longer than lmtp(8)'s 600 s, and spawn(8)\n"
		       "# must not cut a long session short.\n");
	printf("default_transport = lmtp:unix:private/m365lmtp\n"
	       "relay_transport = lmtp:unix:private/m365lmtp\n"
	       "lmtp_send_xforward_command = yes\n"
	       "lmtp_destination_recipient_limit = %u\n"
	       "lmtp_destination_concurrency_limit = %d\n"
	       "lmtp_data_done_timeout = 1800s\n"
	       "m365lmtp_time_limit = 3600s\n",
	       recipient_limit(conf), TRANSPORT_PROCS);
}

static void
print_master(const struct conf *conf, const char *conf_file, bool comments, bool lmtp, bool handoff)
{
	char *abs = realpath(conf_file, NULL); /* pipe(8) runs in the queue directory */
	bool own_conf;

	if (abs != NULL)
		conf_file = abs;
	own_conf = strcmp(conf_file, M3_CONFIG_FILE) != 0;

	if (lmtp) {
		if (comments)
			printf("# master.cf (append): one m365-transport -L per LMTP connection,\n"
			       "# as the service user.\n");
		printf("m365lmtp  unix  -       n       n       -       %d      spawn\n"
		       "  user=%s argv=%s%s%s -L\n",
		       TRANSPORT_PROCS, conf->user, M3_TRANSPORT_PATH, own_conf ? " -c " : "",
		       own_conf ? conf_file : "");
		free(abs);
		return;
	}
	if (comments)
		printf("# master.cf (append): the transport runs as the service user;\n"
		       "# -a ${client_address} lets it decide mail that bypassed the milter.\n");
	if (comments && handoff)
		printf("# m365-handoff hands each delivery to the daemon (m365-transport -D\n"
		       "# %s, as the service user: systemctl enable --now\n"
		       "# m365-transport), whose workers have OpenSSL set up and keep their\n"
		       "# sessions; with no daemon it runs %s itself,\n"
		       "# the same delivery.\n",
		       M3_HANDOFF_SOCKET, M3_TRANSPORT_PATH);
	printf("m365      unix  -       n       n       -       %d      pipe\n"
	       "  flags=q user=%s null_sender= argv=%s%s%s -q ${queue_id} -f ${sender} "
	       "-a ${client_address} -s ${sasl_username} -- ${recipient}\n",
	       TRANSPORT_PROCS, conf->user, handoff ? M3_HANDOFF_PATH : M3_TRANSPORT_PATH,
	       own_conf ? " -c " : "", own_conf ? conf_file : "");
	free(abs);
}

int
cmd_postfix_config(const char *conf_file, int argc, char **argv)
{
	struct diag diag = {0};
	struct conf *conf;
	char queue_dir[1024], milter[1200];
	bool chroot_ok, main_only = false, master_only = false, have_postfix;
	struct passwd *pw;
	struct group *gr;
	size_t i;

	bool lmtp = argc > 1 && strcmp(argv[1], "--lmtp") == 0;
	bool handoff = argc > 1 && strcmp(argv[1], "--handoff") == 0;

	if (lmtp || handoff) {
		argv++;
		argc--;
	}
	if (argc > 2 ||
	    (argc == 2 && strcmp(argv[1], "main") != 0 && strcmp(argv[1], "master") != 0)) {
		fprintf(
		    stderr,
		    "usage: m365ctl [-c FILE] postfix-config [--lmtp|--handoff] [main|master]\n");
		return 2;
	}
	if (argc == 2) {
		main_only = strcmp(argv[1], "main") == 0;
		master_only = !main_only;
	}
	/* The wiring needs no secret: missing files are check-config's job. */
	conf = conf_load_flags(conf_file, &diag, CONF_NO_FILES);
	for (i = 0; i < diag.n; i++)
		fprintf(stderr, "%s\n", diag.lines[i]);
	diag_free(&diag);
	if (conf == NULL) {
		fprintf(stderr, "m365ctl: %s is not usable; fix it first (m365ctl check-config)\n",
		        conf_file);
		return 1;
	}
	have_postfix = cli_postconf_value("queue_directory", queue_dir, sizeof(queue_dir)) == 0;
	if (!have_postfix)
		m3_strlcpy(queue_dir, DEF_QUEUE_DIR, sizeof(queue_dir));
	if (cli_postfix_milter(conf, queue_dir, milter, sizeof(milter), &chroot_ok) < 0) {
		fprintf(stderr, "m365ctl: milter socket %s: not one Postfix can name\n",
		        conf->milter.socket);
		conf_free(conf);
		return 1;
	}
	if (!master_only)
		print_main(conf, milter, !main_only, chroot_ok, queue_dir, lmtp);
	if (!main_only && !master_only)
		printf("\n");
	if (!main_only)
		print_master(conf, conf_file, !master_only, lmtp, handoff);
	if (!main_only && !master_only) {
		pw = getpwnam(conf->user);
		gr = pw != NULL ? getgrgid(pw->pw_gid) : NULL;
		printf("\n# The milter's socket is mode 0660, group %s: Postfix must be in it\n"
		       "#   adduser postfix %s\n"
		       "# then: postfix check && postfix reload\n",
		       gr != NULL ? gr->gr_name : conf->user, conf->user);
		if (!have_postfix)
			printf("# (postconf not found: assumed queue_directory = %s)\n", queue_dir);
	}
	conf_free(conf);
	return 0;
}
