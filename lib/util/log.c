/*
 * log.c - syslog (facility mail), a file, or stderr.
 *
 * A file is opened with O_APPEND and each line is one write(): the milter's
 * threads and the transports writing at once never mix their lines.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static const char *log_ident = "m365relay";
static enum log_dest log_dest = LOG_TO_STDERR;
static int log_debug_on;
static int log_fd = -1;
static char log_path[4096];

static int
open_file(const char *path)
{
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
}

int
log_to_file(const char *path)
{
	int fd = open_file(path);

	if (fd < 0)
		return -1;
	if (log_fd >= 0)
		close(log_fd);
	log_fd = fd;
	m3_strlcpy(log_path, path, sizeof(log_path));
	log_dest = LOG_TO_FILE;
	return 0;
}

void
log_reopen(void)
{
	int fd;

	if (log_dest != LOG_TO_FILE)
		return;
	fd = open_file(log_path);
	if (fd < 0)
		return; /* keep writing to the old one */
	/* Onto the same number: a thread writing now writes to one or the other. */
	if (dup2(fd, log_fd) < 0)
		log_fd = fd;
	else
		close(fd);
}

void
log_open(const char *ident, enum log_dest dest, int debug)
{
	log_ident = ident;
	log_dest = dest;
	log_debug_on = debug;
	if (dest == LOG_TO_SYSLOG)
		openlog(ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
}

int
log_debug_enabled(void)
{
	return log_debug_on;
}

/* emit - one finished line to where logs go */
static void
emit(int pri, const char *msg)
{
	const char *lvl = pri <= LOG_ERR       ? "error: "
	                  : pri == LOG_WARNING ? "warning: "
	                  : pri == LOG_DEBUG   ? "debug: "
	                                       : "";
	char line[2400], stamp[40];
	struct timeval tv;
	struct tm tm;
	int n;

	switch (log_dest) {
	case LOG_TO_SYSLOG:
		syslog(pri, "%s", msg);
		return;
	case LOG_TO_STDERR:
		fprintf(stderr, "%s: %s%s\n", log_ident, lvl, msg);
		return;
	case LOG_TO_FOREGROUND:
	case LOG_TO_FILE:
		break;
	}
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	n = snprintf(line, sizeof(line), "%s.%03ldZ %s[%ld]: %s%s\n", stamp,
	             (long)(tv.tv_usec / 1000), log_ident, (long)getpid(), lvl, msg);
	if (n < 0)
		return;
	if ((size_t)n >= sizeof(line)) { /* cut, but still one line */
		n = (int)sizeof(line) - 1;
		line[n - 1] = '\n';
	}
	if (write(log_dest == LOG_TO_FILE ? log_fd : 2, line, (size_t)n) < 0)
		return; /* nowhere left to say so */
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
		snprintf(msg + n, sizeof(msg) - (size_t)n, ": %s", strerror(saved));
	emit(pri, msg);
	errno = saved;
}

#define LOG_FN(name, pri, with_errno)                                                              \
	void name(const char *fmt, ...)                                                            \
	{                                                                                          \
		va_list ap;                                                                        \
		if (pri == LOG_DEBUG && !log_debug_on)                                             \
			return;                                                                    \
		va_start(ap, fmt);                                                                 \
		vlog(pri, with_errno, fmt, ap);                                                    \
		va_end(ap);                                                                        \
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
	else if (log_dest == LOG_TO_STDERR)
		fprintf(stderr, "%s: %s\n", log_ident, line);
	else
		emit(LOG_INFO, line); /* the line says its severity itself */
}
