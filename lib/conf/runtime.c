/*
 * runtime.c - the machine around the configuration (see runtime.h).
 *
 * Permissions are judged from the file's owner, group and mode against the
 * service user's uid and primary gid, as the kernel would for that user
 * (supplementary groups aside: the service user has none by default).
 */
#include "config.h"

#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime.h"
#include "util/sbuf.h"

struct ctx {
	const struct conf *c;
	const struct passwd *pw;
	runtime_report fn;
	void *arg;
	size_t n;
};

static void report(struct ctx *x, const char *fix, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
report(struct ctx *x, const char *fix, const char *fmt, ...)
{
	struct sbuf b;
	va_list ap;

	sbuf_init(&b, 1024);
	va_start(ap, fmt);
	sbuf_vaddf(&b, fmt, ap);
	va_end(ap);
	x->fn(x->arg, sbuf_str(&b), fix);
	sbuf_free(&b);
	x->n++;
}

/* may - whether the service user has mode bit r (4), w (2) or x (1) on st */
static bool
may(const struct passwd *pw, const struct stat *st, unsigned bit)
{
	if (pw->pw_uid == 0)
		return true;
	if (st->st_uid == pw->pw_uid)
		return (st->st_mode & (bit << 6)) != 0;
	if (st->st_gid == pw->pw_gid)
		return (st->st_mode & (bit << 3)) != 0;
	return (st->st_mode & bit) != 0;
}

static void
secret(struct ctx *x, const char *what, const char *path)
{
	struct stat st;
	char fix[600];

	if (path == NULL || stat(path, &st) != 0)
		return; /* conf_load() reports a missing file */
	if (!may(x->pw, &st, 4)) {
		snprintf(fix, sizeof(fix), "chown %s %s", x->c->user, path);
		report(x, fix,
		       "%s %s cannot be read by the service user %s (the transport "
		       "and the milter after a reload run as it)",
		       what, path, x->c->user);
	}
}

static void
state_dir(struct ctx *x)
{
	const char *d = x->c->state_dir;
	struct stat st;
	char fix[600];

	if (stat(d, &st) != 0) {
		snprintf(fix, sizeof(fix), "mkdir -p %s && chown %s %s && chmod 750 %s", d,
		         x->c->user, d, d);
		report(x, fix, "state_dir %s: %s", d, strerror(errno));
		return;
	}
	if (!S_ISDIR(st.st_mode)) {
		report(x, "give state_dir a directory", "state_dir %s is not a directory", d);
		return;
	}
	if (!may(x->pw, &st, 2) || !may(x->pw, &st, 1)) {
		snprintf(fix, sizeof(fix), "chown %s %s", x->c->user, d);
		report(x, fix,
		       "state_dir %s is not writable by the service user %s (the store, "
		       "the journal and the token cache live there)",
		       d, x->c->user);
	}
}

size_t
runtime_check(const struct conf *c, unsigned flags, runtime_report fn, void *arg)
{
	struct ctx x = {c, NULL, fn, arg, 0};
	char fix[600];
	size_t i;

	x.pw = getpwnam(c->user);
	if (x.pw == NULL) {
		snprintf(fix, sizeof(fix),
		         "useradd --system --home-dir %s --shell "
		         "/usr/sbin/nologin %s, or set user = to the account to use",
		         c->state_dir, c->user);
		report(&x, fix, "the service user %s does not exist", c->user);
	} else {
		state_dir(&x);
		if (flags & RUNTIME_SECRETS) {
			for (i = 0; i < c->n_apps; i++) {
				secret(&x, "client_secret_file", c->apps[i].secret_file);
				secret(&x, "key_file", c->apps[i].key_file);
			}
			for (i = 0; i < c->n_mailboxes; i++)
				secret(&x, "password_file", c->mailboxes[i].password_file);
			for (i = 0; i < c->n_connectors; i++)
				secret(&x, "key_file", c->connectors[i].key_file);
			secret(&x, "route_key_file", c->route_key_file);
			secret(&x, "redis_password_file", c->store.redis_password_file);
		}
	}
	if (c->transport.sendmail != NULL && access(c->transport.sendmail, X_OK) != 0) {
		snprintf(fix, sizeof(fix),
		         "install the MTA's sendmail command, or set transport "
		         "{ sendmail } to it");
		report(&x, fix,
		       "transport { sendmail } %s cannot be run (%s): delivery reports "
		       "for partly refused mail would fail",
		       c->transport.sendmail, strerror(errno));
	}
	return x.n;
}
