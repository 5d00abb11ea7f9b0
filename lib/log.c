/*
 * log.c - syslog (facility mail) or stderr.
 */
#include "config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>

#include "log.h"

static const char *log_ident = "m365relay";
static enum log_dest log_dest = LOG_TO_STDERR;
static int log_debug_on;

void
log_open(const char *ident, enum log_dest dest, int debug)
{
	log_ident = ident;
	log_dest = dest;
	log_debug_on = debug;
	if (dest == LOG_TO_SYSLOG)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void
log_set_debug(int debug)
{
	log_debug_on = debug;
}

int
log_debug_enabled(void)
{
	return log_debug_on;
}

static void vlog(int pri, int with_errno, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

static void
vlog(int pri, int with_errno, const char *fmt, va_list ap)
{
	char msg[2048];
	int saved = errno;
	int n;

	n = vsnprintf(msg, sizeof(msg), fmt, ap);
	if (n < 0)
		return;
	if (with_errno && (size_t)n < sizeof(msg))
		snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s",
			 strerror(saved));
	if (log_dest == LOG_TO_SYSLOG) {
		syslog(pri, "%s", msg);
	} else {
		const char *lvl = pri <= LOG_ERR       ? "error: "
				  : pri == LOG_WARNING ? "warning: "
				  : pri == LOG_DEBUG   ? "debug: "
						       : "";
		fprintf(stderr, "%s: %s%s\n", log_ident, lvl, msg);
	}
	errno = saved;
}

#define LOG_FN(name, pri, with_errno)                                          \
	void name(const char *fmt, ...)                                        \
	{                                                                      \
		va_list ap;                                                    \
		if (pri == LOG_DEBUG && !log_debug_on)                         \
			return;                                                \
		va_start(ap, fmt);                                             \
		vlog(pri, with_errno, fmt, ap);                                \
		va_end(ap);                                                    \
	}

LOG_FN(log_err, LOG_ERR, 1)
LOG_FN(log_errx, LOG_ERR, 0)
LOG_FN(log_warn, LOG_WARNING, 1)
LOG_FN(log_warnx, LOG_WARNING, 0)
LOG_FN(log_info, LOG_INFO, 0)
LOG_FN(log_debug, LOG_DEBUG, 0)

void
log_line(int error, const char *line)
{
	if (log_dest == LOG_TO_SYSLOG)
		syslog(error ? LOG_ERR : LOG_WARNING, "%s", line);
	else
		fprintf(stderr, "%s: %s\n", log_ident, line);
}
