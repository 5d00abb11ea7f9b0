/*
 * doctor_postfix.c - m365ctl doctor's Postfix section: read from postconf
 * (MAIL_CONFIG is honoured), the milter named by smtpd_milters and
 * non_smtpd_milters, milter_default_action, the socket reachable by
 * Postfix's mail_owner (its supplementary groups too), and the m365 line
 * of master.cf (user, -a).
 */
#include "config.h"

#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "doctor.h"
#include "util/sbuf.h"
#include "util/util.h"

/* in_list - whether a Postfix list value (commas or spaces) holds item */
static bool
in_list(const char *list, const char *item)
{
	size_t n = strlen(item), k;

	while (*list != '\0') {
		list += strspn(list, ", \t\r\n");
		k = strcspn(list, ", \t\r\n");
		if (k == n && strncmp(list, item, n) == 0)
			return true;
		list += k;
	}
	return false;
}

/* may_search - whether pw (with its groups) may pass through / use st with bits (x or rw) */
static bool
may_use(const struct passwd *pw, const struct stat *st, unsigned bits)
{
	gid_t groups[256];
	int n = (int)NELEM(groups), i;

	if (pw->pw_uid == 0)
		return true;
	if (st->st_uid == pw->pw_uid)
		return (st->st_mode & (bits << 6)) == (bits << 6);
	if (getgrouplist(pw->pw_name, pw->pw_gid, groups, &n) < 0)
		n = 0;
	for (i = 0; i < n; i++)
		if (groups[i] == st->st_gid)
			return (st->st_mode & (bits << 3)) == (bits << 3);
	return (st->st_mode & bits) == bits;
}

/* check_socket_access - the MTA's user can reach the milter's socket */
static void
check_socket_access(struct doctor *d, const char *owner)
{
	const char *sock = d->conf->milter.socket;
	struct passwd *pw = getpwnam(owner);
	struct group *gr;
	char dir[1024], fix[600];
	struct stat st;
	char *slash;

	if (strncmp(sock, "unix:", 5) == 0)
		sock += 5;
	else if (strncmp(sock, "local:", 6) == 0)
		sock += 6;
	else if (sock[0] != '/')
		return; /* inet: nothing on the file system to check */
	if (pw == NULL) {
		doctor_add(d, LVL_WARN, "postfix", "socket", NULL,
		           "mail_owner %s is not a user: socket access not checked", owner);
		return;
	}
	m3_strlcpy(dir, sock, sizeof(dir));
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return;
	*slash = '\0';
	if (stat(dir, &st) < 0) {
		doctor_add(
		    d, LVL_WARN, "postfix", "socket",
		    "it is made at install (tmpfiles, the package) or by the milter's first start",
		    "%s does not exist yet", dir);
		return;
	}
	gr = getgrgid(st.st_gid);
	snprintf(fix, sizeof(fix), "adduser %s %s, then postfix reload", owner,
	         gr != NULL ? gr->gr_name : "THE-DIRECTORY'S-GROUP");
	if (!may_use(pw, &st, 1)) {
		doctor_add(d, LVL_ERR, "postfix", "socket", fix,
		           "%s (mode %04o) cannot be entered by Postfix's user %s: smtpd gets "
		           "\"Permission denied\" and every device 451 4.7.1",
		           dir, (unsigned)(st.st_mode & 07777), owner);
		return;
	}
	if (stat(sock, &st) == 0 && !may_use(pw, &st, 6)) {
		doctor_add(d, LVL_ERR, "postfix", "socket", fix,
		           "the socket %s (mode %04o) cannot be used by Postfix's user %s: "
		           "every device gets 451 4.7.1",
		           sock, (unsigned)(st.st_mode & 07777), owner);
		return;
	}
	doctor_add(d, LVL_OK, "postfix", "socket", NULL, "Postfix's user %s can reach %s", owner,
	           sock);
}

/* check_lmtp - the LMTP service's client side: XFORWARD, which carries the
 * queue id and the client (without it every message would look local) */
static void
check_lmtp(struct doctor *d, const char *user)
{
	char v[64];

	if (cli_postconf_value("lmtp_send_xforward_command", v, sizeof(v)) < 0 ||
	    strcmp(v, "yes") != 0)
		doctor_add(d, LVL_ERR, "postfix", "main.cf", "lmtp_send_xforward_command = yes",
		           "lmtp(8) does not send XFORWARD: m365-transport -L would take every "
		           "message for local mail, and check none against its client (SECURITY)");
	else
		doctor_add(d, LVL_OK, "postfix", "master.cf", NULL,
		           "m365-transport -L (LMTP) runs as %s; lmtp(8) sends XFORWARD", user);
}

/* check_master - master.cf runs m365-transport as the service user, with -a */
static void
check_master(struct doctor *d)
{
	static const char *const args[] = {"-M", NULL};
	struct sbuf out;
	char fix[300], user[128];
	const char *line, *u, *argv0;
	size_t n, found = 0;

	if (cli_postconf(args, &out) < 0) {
		doctor_add(d, LVL_WARN, "postfix", "master.cf", NULL,
		           "postconf -M failed: not checked");
		return;
	}
	snprintf(fix, sizeof(fix),
	         "m365ctl postfix-config master >> master.cf (and remove "
	         "the old entry), then postfix reload");
	for (line = sbuf_str(&out); *line != '\0'; line += n + (line[n] == '\n')) {
		char entry[8192];

		n = strcspn(line, "\n");
		if (n >= sizeof(entry))
			continue;
		memcpy(entry, line, n);
		entry[n] = '\0';
		argv0 = strstr(entry, "argv=");
		if (argv0 == NULL || strstr(argv0, "/m365-transport") == NULL)
			continue;
		found++;
		u = strstr(entry, " user=");
		user[0] = '\0';
		if (u != NULL) {
			size_t k = strcspn(u + 6, ": \t");
			snprintf(user, sizeof(user), "%.*s", (int)(k < sizeof(user) ? k : 0),
			         u + 6);
		}
		if (strcmp(user, d->conf->user) != 0)
			doctor_add(
			    d, LVL_ERR, "postfix", "master.cf", fix,
			    "pipe(8) runs m365-transport as \"%s\", not the service user %s: "
			    "it cannot use the state and secrets (every delivery defers)",
			    user, d->conf->user);
		else if (strstr(argv0, " -L") != NULL)
			check_lmtp(d, user);
		else if (strstr(argv0, "${client_address}") == NULL)
			doctor_add(
			    d, LVL_WARN, "postfix", "master.cf", fix,
			    "m365-transport gets no -a ${client_address}: mail that did not pass "
			    "the milter cannot be told from local mail (SECURITY)");
		else
			doctor_add(d, LVL_OK, "postfix", "master.cf", NULL,
			           "m365-transport runs as %s with -a ${client_address}", user);
	}
	if (found == 0)
		doctor_add(
		    d, LVL_ERR, "postfix", "master.cf", fix,
		    "no master.cf entry runs m365-transport: Postfix cannot deliver through it");
	sbuf_free(&out);
}

/*
 * check_postfix - what Postfix must say for the milter and the transport to
 * work, read from postconf (MAIL_CONFIG is honoured).  Where there is no
 * Postfix (a Sendmail gateway), one line says so.
 */
void
check_postfix(struct doctor *d)
{
	char queue_dir[1024], want[1200], v[4096], owner[128];
	bool chroot_ok;

	if (cli_postconf_value("queue_directory", queue_dir, sizeof(queue_dir)) < 0) {
		doctor_add(d, LVL_OK, "postfix", "postconf", NULL,
		           "postconf not found: Postfix's settings not checked");
		return;
	}
	if (cli_postfix_milter(d->conf, queue_dir, want, sizeof(want), &chroot_ok) < 0)
		return;
	if (!chroot_ok)
		doctor_add(d, LVL_WARN, "postfix", "socket",
		           "put the socket under the queue directory: milter { socket = "
		           "\"unix:/var/spool/postfix/m365relay/milter.sock\" }",
		           "%s is outside Postfix's queue directory %s: a chrooted smtpd (Debian's "
		           "default) cannot reach it",
		           d->conf->milter.socket, queue_dir);
	if (cli_postconf_value("smtpd_milters", v, sizeof(v)) < 0 || !in_list(v, want))
		doctor_add(d, LVL_ERR, "postfix", "main.cf", "m365ctl postfix-config main",
		           "smtpd_milters does not name %s: mail from the network is not checked "
		           "at SMTP time",
		           want);
	else
		doctor_add(d, LVL_OK, "postfix", "main.cf", NULL, "smtpd_milters names %s", want);
	/* postconf -x: $smtpd_milters expanded */
	{
		const char *args[] = {"-xh", "non_smtpd_milters", NULL};
		struct sbuf out;

		if (cli_postconf(args, &out) == 0 && in_list(sbuf_str(&out), want))
			doctor_add(d, LVL_OK, "postfix", "main.cf", NULL,
			           "non_smtpd_milters names it too");
		else
			doctor_add(
			    d, LVL_WARN, "postfix", "main.cf", "non_smtpd_milters = $smtpd_milters",
			    "non_smtpd_milters does not name the milter: local submissions learn "
			    "of "
			    "a refusal only by a bounce (SECURITY)");
		sbuf_free(&out);
	}
	if (cli_postconf_value("milter_default_action", v, sizeof(v)) == 0 &&
	    strcmp(v, "accept") == 0)
		doctor_add(d, LVL_ERR, "postfix", "main.cf", "milter_default_action = tempfail",
		           "milter_default_action = accept: while the milter is down, mail enters "
		           "unchecked and refusals come back as bounces (SECURITY)");
	if (cli_postconf_value("mail_owner", owner, sizeof(owner)) < 0)
		m3_strlcpy(owner, "postfix", sizeof(owner));
	check_socket_access(d, owner);
	check_master(d);
}
