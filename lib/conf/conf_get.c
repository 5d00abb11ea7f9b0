/*
 * conf_get.c - the typed getters of the configuration loader: each reads
 * one located string (conf_build.h) and types it (numbers, booleans,
 * enumerations, paths, lists, addresses, limits), reporting a problem at
 * the exact file and line; and the look-ups the rest of the code uses.
 */
#include "config.h"

#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf_build.h"
#include "util/log.h"
#include "util/util.h"

static void vdiag(struct build *b, bool error, struct conf_loc loc, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

static void
vdiag(struct build *b, bool error, struct conf_loc loc, const char *fmt, va_list ap)
{
	char msg[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (loc.line > 0)
		diag_add(b->diag, error, "%s:%d: %s: %s", loc.file, loc.line,
		         error ? "error" : "warning", msg);
	else /* about the file as a whole (a default, not a line) */
		diag_add(b->diag, error, "%s: %s: %s", loc.file, error ? "error" : "warning", msg);
}

void
berr(struct build *b, struct conf_loc loc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdiag(b, true, loc, fmt, ap);
	va_end(ap);
}

void
bwarn(struct build *b, struct conf_loc loc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdiag(b, false, loc, fmt, ap);
	va_end(ap);
}

/* Where the section being built opens. */
struct conf_loc
sec_loc(struct build *b, const struct sec *sec)
{
	struct conf_loc loc;

	loc.file = b->at_file != NULL ? b->at_file : b->main_file;
	loc.line = b->at != NULL                     ? b->at->line
	           : sec != NULL && sec->cfg != NULL ? sec->cfg->line
	                                             : 0;
	return loc;
}

const char *
sec_title(struct build *b)
{
	return arena_strdup(b->conf->arena, b->at != NULL ? b->at->title : "");
}

const struct locstr *
get(const struct sec *sec, const char *name)
{
	return sec_value(sec, name, 0);
}

struct conf_loc
vloc(struct build *b, const struct locstr *ls)
{
	struct conf_loc loc = {arena_strdup(b->conf->arena, ls->file), ls->line};
	return loc;
}

const char *
get_str(struct build *b, const struct sec *sec, const char *name, const char *def)
{
	const struct locstr *ls = get(sec, name);
	return arena_strdup(b->conf->arena, ls ? ls->s : def);
}

int
get_uint(struct build *b, const struct sec *sec, const char *name, unsigned long def,
         unsigned long min, unsigned long max, unsigned long *out)
{
	const struct locstr *ls = get(sec, name);
	char *end;
	unsigned long v;

	*out = def;
	if (ls == NULL)
		return 0;
	errno = 0;
	v = strtoul(ls->s, &end, 10);
	if (ls->s[0] < '0' || ls->s[0] > '9' || *end != '\0' || errno != 0) {
		berr(b, vloc(b, ls), "%s: \"%s\" is not a number", name, ls->s);
		return -1;
	}
	if (v < min || v > max) {
		berr(b, vloc(b, ls), "%s: %lu is out of range (%lu..%lu)", name, v, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

int
get_bool(struct build *b, const struct sec *sec, const char *name, bool def, bool *out)
{
	static const char *yes[] = {"true", "yes", "on"};
	static const char *no[] = {"false", "no", "off"};
	const struct locstr *ls = get(sec, name);
	size_t i;

	*out = def;
	if (ls == NULL)
		return 0;
	for (i = 0; i < NELEM(yes); i++) {
		if (m3_casecmp(ls->s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (m3_casecmp(ls->s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	berr(b, vloc(b, ls), "%s: \"%s\" is not true or false", name, ls->s);
	return -1;
}

int
get_enum(struct build *b, const struct sec *sec, const char *name, const struct enum_name *names,
         int def, int *out)
{
	const struct locstr *ls = get(sec, name);
	char choices[256] = "";
	size_t i;

	*out = def;
	if (ls == NULL)
		return 0;
	for (i = 0; names[i].name != NULL; i++) {
		if (m3_casecmp(ls->s, names[i].name) == 0) {
			*out = names[i].value;
			return 0;
		}
		if (i > 0)
			m3_strlcat(choices, " | ", sizeof(choices));
		m3_strlcat(choices, names[i].name, sizeof(choices));
	}
	berr(b, vloc(b, ls), "%s: \"%s\" is not one of %s", name, ls->s, choices);
	return -1;
}

/* get_path - a file name; a relative one starts at the main file's directory */
const char *
get_path(struct build *b, const struct sec *sec, const char *name, struct conf_loc *loc)
{
	const struct locstr *ls = get(sec, name);
	char *p;

	if (ls == NULL)
		return NULL;
	if (loc != NULL)
		*loc = vloc(b, ls);
	if (ls->s[0] == '/' || ls->s[0] == '\0')
		return arena_strdup(b->conf->arena, ls->s);
	if (asprintf(&p, "%s/%s", b->conf->dir, ls->s) < 0)
		return NULL;
	{
		const char *r = arena_strdup(b->conf->arena, p);
		free(p);
		return r;
	}
}

/*
 * check_file - the file exists and is a regular file; a secret one must not
 * be readable or writable by group or others (as ssh insists for keys).
 */
void
check_file(struct build *b, struct conf_loc loc, const char *opt, const char *path, bool secret)
{
	struct stat st;

	if (b->flags & CONF_NO_FILES)
		return;
	if (stat(path, &st) < 0) {
		berr(b, loc, "%s: %s: %s", opt, path, strerror(errno));
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		berr(b, loc, "%s: %s: not a regular file", opt, path);
		return;
	}
	if (secret && (st.st_mode & 077) != 0)
		berr(b, loc,
		     "%s: %s: mode %04o lets group or others at a secret; "
		     "run: chmod 600 %s",
		     opt, path, (unsigned)(st.st_mode & 07777), path);
}

/* A list of strings, each checked by fn (which reports), copied to the arena. */
const char **
get_list(struct build *b, const struct sec *sec, const char *name, size_t *n,
         int (*check)(struct build *, const struct locstr *, const char *))
{
	size_t i, count = sec_size(sec, name);
	const char **out;

	*n = 0;
	if (count == 0)
		return NULL;
	out = arena_alloc(b->conf->arena, count * sizeof(*out));
	if (out == NULL)
		return NULL;
	for (i = 0; i < count; i++) {
		const struct locstr *ls = sec_value(sec, name, (unsigned)i);
		if (check != NULL && check(b, ls, name) < 0)
			continue;
		out[(*n)++] = arena_strdup(b->conf->arena, ls->s);
	}
	return out;
}

int
check_addr_pattern(struct build *b, const struct locstr *ls, const char *name)
{
	struct addr_err e;

	if (addr_pattern_check(ls->s, &e) < 0) {
		berr(b, vloc(b, ls), "%s: \"%s\" is not an address pattern: %s", name, ls->s,
		     e.msg);
		return -1;
	}
	return 0;
}

int
check_domain_pattern(struct build *b, const struct locstr *ls, const char *name)
{
	struct addr_err e;

	if (domain_pattern_check(ls->s, &e) < 0) {
		berr(b, vloc(b, ls), "%s: \"%s\" is not a domain: %s", name, ls->s, e.msg);
		return -1;
	}
	return 0;
}

int
parse_addr_value(struct build *b, struct conf_loc loc, const char *what, const char *s,
                 struct addr *a)
{
	struct addr_err e;

	if (addr_parse_path(s, strlen(s), false, a, &e) < 0) {
		berr(b, loc, "%s: \"%s\" is not a valid address: %s", what, s, e.msg);
		return -1;
	}
	return 0;
}

/* A reference to a tenant: named, or implied when there is only one. */
const struct tenant *
ref_tenant(struct build *b, const struct sec *sec, struct conf_loc loc)
{
	const struct locstr *ls = get(sec, "tenant");
	const struct tenant *t;

	if (ls == NULL) {
		if (b->conf->n_tenants == 1)
			return &b->conf->tenants[0];
		if (b->conf->n_tenants > 1)
			berr(b, loc,
			     "there are several tenants: say which "
			     "with tenant = \"NAME\"");
		return NULL;
	}
	t = find_tenant(b->conf, ls->s);
	if (t == NULL)
		berr(b, vloc(b, ls), "tenant \"%s\" is not defined", ls->s);
	return t;
}

int
limit_parse(const char *s, struct limit *l, const char **err)
{
	char *end;
	unsigned long count, n, mult;

	if (*s < '0' || *s > '9') {
		*err = "expected COUNT/WINDOW, e.g. 30/60s or 10000/24h";
		return -1;
	}
	errno = 0;
	count = strtoul(s, &end, 10);
	if (errno != 0 || *end != '/' || end[1] < '0' || end[1] > '9') {
		*err = "expected COUNT/WINDOW, e.g. 30/60s or 10000/24h";
		return -1;
	}
	n = strtoul(end + 1, &end, 10);
	switch (*end) {
	case 's':
		mult = 1;
		break;
	case 'm':
		mult = 60;
		break;
	case 'h':
		mult = 3600;
		break;
	case 'd':
		mult = 86400;
		break;
	default:
		*err = "the window needs a unit: s, m, h or d (e.g. 60s)";
		return -1;
	}
	if (end[1] != '\0' || errno != 0 || n > 7 * 86400 || n * mult > 7 * 86400) {
		*err = "expected COUNT/WINDOW, e.g. 30/60s or 10000/24h";
		return -1;
	}
	l->count = count;
	l->window = n * mult;
	return 0;
}

const char *
limit_format(const struct limit *l, char *buf, size_t size)
{
	if (l->window % 86400 == 0 && l->window >= 86400 && l->window != 86400)
		snprintf(buf, size, "%lu/%lud", l->count, l->window / 86400);
	else if (l->window % 3600 == 0 && l->window >= 3600)
		snprintf(buf, size, "%lu/%luh", l->count, l->window / 3600);
	else
		snprintf(buf, size, "%lu/%lus", l->count, l->window);
	return buf;
}

int
get_limit(struct build *b, const struct sec *sec, const char *name, struct limit def,
          unsigned long max_count, unsigned long max_window, struct limit *out)
{
	const struct locstr *ls = get(sec, name);
	const char *err;
	struct limit l;

	*out = def;
	if (ls == NULL)
		return 0;
	if (limit_parse(ls->s, &l, &err) < 0) {
		berr(b, vloc(b, ls), "%s: \"%s\": %s", name, ls->s, err);
		return -1;
	}
	if (l.count < 1 || l.count > max_count || l.window < 1 || l.window > max_window) {
		berr(b, vloc(b, ls), "%s: \"%s\" is out of range (count 1..%lu, window 1s..%lus)",
		     name, ls->s, max_count, max_window);
		return -1;
	}
	if (l.count * def.window > def.count * l.window)
		bwarn(b, vloc(b, ls),
		      "%s: %s allows more than Exchange Online's %lu per %lus; "
		      "Microsoft will throttle or refuse the excess",
		      name, ls->s, def.count, def.window);
	*out = l;
	return 0;
}
