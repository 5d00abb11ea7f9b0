/*
 * log.h - the one logging API of m365relay.
 *
 * Everything goes to syslog, facility mail; or, for hosts without a syslog
 * daemon, to the file of the log_file setting (like Postfix's
 * maillog_file); or to stderr in foreground and command-line use.  Lines
 * in a file and a foreground daemon's lines carry a UTC time stamp and the
 * pid.  Per-message lines start with the Postfix queue id so that `grep
 * QUEUEID /var/log/mail.log` tells a message's whole story.  Never log a
 * secret or a message body.
 *
 * log_warn() and log_err() append ": strerror(errno)"; the -x variants do
 * not (OpenSMTPD's convention).  Nothing here exits.
 */
#ifndef M3_LOG_H
#define M3_LOG_H

#include <stdarg.h>

enum log_dest {
	LOG_TO_STDERR,     /* command line: "prog: text" */
	LOG_TO_SYSLOG,     /* daemons; facility mail */
	LOG_TO_FOREGROUND, /* a daemon in the foreground: stderr, time-stamped */
	LOG_TO_FILE,       /* log_to_file(): time-stamped lines appended */
};

/* log_open - choose ident, destination and whether debug lines show */
void log_open(const char *ident, enum log_dest dest, int debug);
/* log_to_file - append to path from now on (0600 if created); -1 with errno */
int log_to_file(const char *path);
/* log_reopen - reopen the log file (after it was rotated); no-op otherwise */
void log_reopen(void);
/* log_debug_enabled - whether debug lines are written (skip costly work) */
int log_debug_enabled(void);

void log_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_errx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* log_line - a line that already says its severity (a configuration diagnostic) */
void log_line(int error, const char *line);

#endif
