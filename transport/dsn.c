/*
 * dsn.c - the delivery report (RFC 3464) for recipients Microsoft refused
 * while others of the same message were delivered.  pipe(8) has one exit
 * status for all recipients, so Postfix cannot say it; we hand a report
 * to the local sendmail command (null sender, so it can never loop).
 */
#include "config.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "deliver.h"
#include "util/util.h"

static int
put(void *fp, const char *p, size_t n)
{
	return fwrite(p, 1, n, fp) == n ? 0 : -1;
}

static void
report(FILE *fp, const struct delivery *d, const char *const *failed, const char *const *replies,
       size_t n, const char *host)
{
	char date[64], boundary[64];
	time_t now = time(NULL);
	struct tm tm;
	size_t i;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	snprintf(boundary, sizeof(boundary), "m365relay-%s-%ld", d->qid, (long)now);
	fprintf(fp, "From: MAILER-DAEMON@%s (Mail Delivery System)\n", host);
	fprintf(fp, "To: <%s>\n", d->sender);
	fprintf(fp, "Subject: Undelivered Mail Returned to Sender\n");
	fprintf(fp, "Date: %s\n", date);
	fprintf(fp, "Message-ID: <%s.%ld.m365relay@%s>\n", d->qid, (long)now, host);
	fprintf(fp, "Auto-Submitted: auto-replied\n");
	fprintf(fp, "MIME-Version: 1.0\n");
	fprintf(fp,
	        "Content-Type: multipart/report; report-type=delivery-status;\n"
	        "\tboundary=\"%s\"\n\n",
	        boundary);
	fprintf(fp, "This is a MIME-encapsulated message.\n\n--%s\n", boundary);
	fprintf(fp, "Content-Type: text/plain; charset=utf-8\n\n");
	fprintf(fp,
	        "This is the mail gateway at %s.\n\n"
	        "Microsoft 365 did not accept your message%s%s%s for the\n"
	        "recipients below. It was delivered to the other recipients.\n\n",
	        host, d->msg.subject[0] ? " \"" : "", d->msg.subject,
	        d->msg.subject[0] ? "\"" : "");
	for (i = 0; i < n; i++)
		fprintf(fp, "<%s>: %s\n", failed[i], replies[i]);
	fprintf(fp, "\n--%s\nContent-Type: message/delivery-status\n\n", boundary);
	fprintf(fp, "Reporting-MTA: dns; %s\nX-Postfix-Queue-ID: %s\n", host, d->qid);
	for (i = 0; i < n; i++) {
		char status[16] = "5.0.0";
		sscanf(replies[i], "%15s", status);
		fprintf(fp,
		        "\nFinal-Recipient: rfc822; %s\nAction: failed\nStatus: %s\n"
		        "Diagnostic-Code: smtp; %s\n",
		        failed[i], status, replies[i]);
	}
	fprintf(fp, "\n--%s\nContent-Type: text/rfc822-headers\n\n", boundary);
	/* The headers as received, but never the route header: it names the
	 * gateway's submitters, mailboxes and connectors. */
	message_report_headers(&d->msg, put, fp);
	fprintf(fp, "\n--%s--\n", boundary);
}

int
dsn_send(const struct delivery *d, const char *const *failed, const char *const *replies, size_t n,
         struct dsn_err *err)
{
	char host[256];
	int p[2], status;
	pid_t pid;
	FILE *fp;

	if (d->conf->transport.helo_name != NULL)
		m3_strlcpy(host, d->conf->transport.helo_name, sizeof(host));
	else if (gethostname(host, sizeof(host)) < 0)
		m3_strlcpy(host, "localhost", sizeof(host));
	if (pipe(p) < 0)
		return M3_FAIL(err, DSN_ELOCAL, "pipe: %s", strerror(errno));
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return M3_FAIL(err, DSN_ELOCAL, "fork: %s", strerror(errno));
	}
	if (pid == 0) {
		dup2(p[0], 0);
		close(p[0]);
		close(p[1]);
		/* -f "" : the null sender, so a report can never cause another. */
		execl(d->conf->transport.sendmail, "sendmail", "-i", "-f", "", "--", d->sender,
		      (char *)NULL);
		_exit(127);
	}
	close(p[0]);
	signal(SIGPIPE, SIG_IGN);
	fp = fdopen(p[1], "w");
	if (fp == NULL) {
		close(p[1]);
		waitpid(pid, &status, 0);
		return M3_FAIL(err, DSN_ELOCAL, "fdopen: %s", strerror(errno));
	}
	report(fp, d, failed, replies, n, host);
	if (fclose(fp) != 0) {
		waitpid(pid, &status, 0);
		return M3_FAIL(err, DSN_ESUBMIT, "writing to %s: %s", d->conf->transport.sendmail,
		               strerror(errno));
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		return M3_FAIL(err, DSN_ESUBMIT, "%s exited with status %d",
		               d->conf->transport.sendmail,
		               WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	}
	return 0;
}
