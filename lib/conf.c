/*
 * conf.c - the configuration schema (libconfuse) and the build of the
 * struct conf snapshot: every value typed, every reference resolved, every
 * rule checked, each problem reported with its file and line.
 *
 * Every option is declared once, in the tables below, as a "located
 * string": libconfuse hands each raw value to loc_parse(), which records the
 * file and line it came from.  Typing (numbers, booleans, enumerations,
 * addresses) happens here afterwards, so that every message can name the
 * exact line.  Defaults live in the build functions next to their checks.
 */
#include "config.h"

#include <confuse.h>
#include <pwd.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf.h"
#include "conf_text.h"
#include "log.h"
#include "routekey.h"
#include "util.h"

/* Defaults (Exchange Online's published limits; m365relay.conf(5)). */
#define DEF_USER	      "m365relay"
#define DEF_STATE_DIR	      "/var/lib/m365relay"
#define DEF_ROUTE_KEY_FILE    "route.key" /* next to the main file */
/* Under Postfix's queue directory: a chrooted smtpd reaches it as
 * unix:m365relay/milter.sock, and so does one that is not chrooted. */
#define DEF_MILTER_SOCKET     "unix:/var/spool/postfix/m365relay/milter.sock"
#define DEF_PID_FILE	      "/run/m365relay/m365-milter.pid"
#define DEF_MILTER_TIMEOUT    300
#define DEF_STORE_MB	      64
#define DEF_REDIS_HOST	      "127.0.0.1"
#define DEF_REDIS_PORT	      6379
#define DEF_REDIS_PREFIX      "m365relay:"
#define DEF_MAX_SIZE	      36700160 /* 35 MiB, Exchange Online's default */
#define DEF_TIMEOUT_CONNECT   30       /* RFC 5321 4.5.3.2, and ours */
#define DEF_TIMEOUT_GREETING  300
#define DEF_TIMEOUT_COMMAND   300
#define DEF_TIMEOUT_DATA      120
#define DEF_TIMEOUT_BLOCK     180
#define DEF_TIMEOUT_DOT	      600
#define DEF_PACING_WAIT	      120
#define DEF_SENDMAIL	      "/usr/sbin/sendmail"
#define DEF_TOKEN_MARGIN      300
#define DEF_TOKEN_TIMEOUT     30
#define DEF_SMTP_HOST	      "smtp.office365.com"
#define DEF_SMTP_PORT	      587
#define DEF_MX_PORT	      25
#define DEF_AUTHORITY	      "https://login.microsoftonline.com"
#define DEF_SCOPE	      "https://outlook.office365.com/.default"
#define DEF_MESSAGES	      {30, 60}
#define DEF_RECIPIENTS	      {10000, 86400}
#define DEF_SESSIONS	      3
#define DEF_RCPT_PER_MESSAGE  500
#define DEF_MAX_RECIPIENTS    10000 /* per message at SMTP: Postfix splits deliveries */
#define MAX_SESSIONS	      3    /* Exchange Online: a 4th session gets 432 4.3.2 */
#define MAX_RCPT_PER_MESSAGE  1000 /* Exchange Online's customizable maximum */
#define MAX_CONF_FILE	      (1024 * 1024)

/* Located strings ----------------------------------------------------------- */

/* The file being parsed; libconfuse's parser is not reentrant anyway. */
static const char *parsing_file = "?";

struct locstr {
	char *s;
	char *file;
	int line;
};

static int
loc_parse(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	struct locstr *ls = calloc(1, sizeof(*ls));

	(void)opt;
	if (ls == NULL)
		return -1;
	ls->s = strdup(value);
	/* Sections that exist before parsing (milter) have no file name. */
	ls->file = strdup(cfg->filename ? cfg->filename : parsing_file);
	ls->line = cfg->line;
	if (ls->s == NULL || ls->file == NULL) {
		free(ls->s);
		free(ls->file);
		free(ls);
		return -1;
	}
	*(void **)result = ls;
	return 0;
}

static void
loc_free(void *p)
{
	struct locstr *ls = p;

	if (ls != NULL) {
		free(ls->s);
		free(ls->file);
		free(ls);
	}
}

#define OPT(name)  CFG_PTR_CB(name, NULL, CFGF_NODEFAULT, loc_parse, loc_free)
#define LIST(name) CFG_PTR_LIST_CB(name, NULL, CFGF_NODEFAULT, loc_parse, loc_free)
#define SECTION(name, opts) CFG_SEC(name, opts, CFGF_MULTI | CFGF_TITLE)

/* The schema ---------------------------------------------------------------- */

static cfg_opt_t milter_opts[] = {
	OPT("socket"),		OPT("pid_file"),	  OPT("on_error"),
	OPT("timeout"),		OPT("messages_action"),	  OPT("recipients_action"),
	OPT("metrics_listen"),	OPT("require_spf_pass"), OPT("max_recipients"), CFG_END()};

static cfg_opt_t store_opts[] = {
	OPT("backend"),	   OPT("path"),	      OPT("size"),
	OPT("redis_host"), OPT("redis_port"), OPT("redis_db"),
	OPT("redis_password_file"), OPT("prefix"), OPT("on_error"),
	CFG_END()};

static cfg_opt_t transport_opts[] = {
	OPT("helo_name"),	OPT("ca_file"),		 OPT("max_size"),
	OPT("timeout_connect"), OPT("timeout_greeting"), OPT("timeout_command"),
	OPT("timeout_data"),	OPT("timeout_block"),	 OPT("timeout_dot"),
	OPT("pacing_wait"),	OPT("direct_send_tls"),	 OPT("local_submitter"),
	OPT("sendmail"),	OPT("token_margin"),	 OPT("token_timeout"),
	OPT("unverified_route"),
	CFG_END()};

static cfg_opt_t tenant_opts[] = {
	LIST("accepted_domains"), OPT("mx_endpoint"), OPT("mx_port"),
	OPT("egress_ip"),	  OPT("direct_send"), OPT("smtp_host"),
	OPT("smtp_port"),	  OPT("authority"),   OPT("tenant_id"),
	OPT("scope"),		  CFG_END()};

static cfg_opt_t app_opts[] = {
	OPT("tenant"),	 OPT("client_id"),     OPT("client_secret_file"),
	OPT("certificate_file"), OPT("key_file"), OPT("assertion"),
	CFG_END()};

static cfg_opt_t mailbox_opts[] = {
	OPT("auth"),	 OPT("app"),	    OPT("password_file"),
	LIST("send_as"), OPT("messages"),   OPT("recipients"),
	OPT("sessions"), OPT("recipients_per_message"), CFG_END()};

static cfg_opt_t connector_opts[] = {
	OPT("tenant"), OPT("type"), OPT("certificate_file"), OPT("key_file"),
	CFG_END()};

static cfg_opt_t submitter_opts[] = {
	LIST("clients"),	  LIST("sasl_logins"), LIST("cert_subjects"),
	OPT("domain"),		  OPT("mailbox"),      LIST("envelope_senders"),
	LIST("send_as"),	  CFG_END()};

static cfg_opt_t domain_opts[] = {
	OPT("mode"),	  OPT("default_sender"),      OPT("mailbox"),
	OPT("connector"), OPT("rewrite_header_from"), CFG_END()};

static cfg_opt_t main_opts[] = {
	OPT("user"),
	OPT("state_dir"),
	OPT("route_key_file"),
	OPT("log_file"),
	OPT("domain_file"),
	CFG_SEC("milter", milter_opts, CFGF_NONE),
	CFG_SEC("store", store_opts, CFGF_NONE),
	CFG_SEC("transport", transport_opts, CFGF_NONE),
	SECTION("tenant", tenant_opts),
	SECTION("app", app_opts),
	SECTION("mailbox", mailbox_opts),
	SECTION("connector", connector_opts),
	SECTION("submitter", submitter_opts),
	SECTION("domain", domain_opts),
	CFG_END()};

static cfg_opt_t domain_file_opts[] = {SECTION("domain", domain_opts),
				       CFG_END()};

/* Diagnostics ---------------------------------------------------------------- */

void
diag_add(struct diag *d, bool error, const char *fmt, ...)
{
	va_list ap;
	char *line;

	if (d->n == d->cap) {
		size_t cap = d->cap ? d->cap * 2 : 16;
		char **l = realloc(d->lines, cap * sizeof(*l));
		bool *e;
		if (l == NULL)
			return;
		d->lines = l;
		e = realloc(d->is_error, cap * sizeof(*e));
		if (e == NULL)
			return;
		d->is_error = e;
		d->cap = cap;
	}
	va_start(ap, fmt);
	if (vasprintf(&line, fmt, ap) < 0) /* NOLINT: checked by diag_add's attribute */
		line = NULL;
	va_end(ap);
	if (line == NULL)
		return;
	d->lines[d->n] = line;
	d->is_error[d->n] = error;
	d->n++;
	if (error)
		d->n_errors++;
	else
		d->n_warnings++;
}

void
diag_free(struct diag *d)
{
	size_t i;

	for (i = 0; i < d->n; i++)
		free(d->lines[i]);
	free(d->lines);
	free(d->is_error);
	memset(d, 0, sizeof(*d));
}

/* The build context ----------------------------------------------------------- */

struct build {
	struct conf *conf;
	struct diag *diag;
	struct conf_text main_text, domain_text;
	const char *main_file, *domain_file;
	int errors_before;
	unsigned flags; /* CONF_* */
};

static void berr(struct build *b, struct conf_loc loc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void bwarn(struct build *b, struct conf_loc loc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void vdiag(struct build *b, bool error, struct conf_loc loc,
		  const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

static void
vdiag(struct build *b, bool error, struct conf_loc loc, const char *fmt,
      va_list ap)
{
	char msg[1024];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (loc.line > 0)
		diag_add(b->diag, error, "%s:%d: %s: %s", loc.file, loc.line,
			 error ? "error" : "warning", msg);
	else /* about the file as a whole (a default, not a line) */
		diag_add(b->diag, error, "%s: %s: %s", loc.file, error ? "error" : "warning", msg);
}

static void
berr(struct build *b, struct conf_loc loc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdiag(b, true, loc, fmt, ap);
	va_end(ap);
}

static void
bwarn(struct build *b, struct conf_loc loc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vdiag(b, false, loc, fmt, ap);
	va_end(ap);
}

/* Where a section of this kind and title opens (its first definition). */
static struct conf_loc
sec_loc(struct build *b, cfg_t *sec, const char *kind)
{
	const char *title = cfg_title(sec);
	const struct sec_mark *m;
	struct conf_loc loc;

	loc.file = arena_strdup(b->conf->arena,
				sec->filename ? sec->filename : b->main_file);
	loc.line = sec->line;
	if (b->domain_file != NULL && sec->filename != NULL &&
	    strcmp(sec->filename, b->domain_file) == 0)
		m = conf_text_find(&b->domain_text, kind, title, 0);
	else
		m = conf_text_find(&b->main_text, kind, title, 0);
	if (m != NULL)
		loc.line = m->line;
	return loc;
}

static const struct locstr *
get(cfg_t *sec, const char *name)
{
	return cfg_size(sec, name) > 0 ? cfg_getptr(sec, name) : NULL;
}

static struct conf_loc
vloc(struct build *b, const struct locstr *ls)
{
	struct conf_loc loc = {arena_strdup(b->conf->arena, ls->file), ls->line};
	return loc;
}

static const char *
get_str(struct build *b, cfg_t *sec, const char *name, const char *def)
{
	const struct locstr *ls = get(sec, name);
	return arena_strdup(b->conf->arena, ls ? ls->s : def);
}

static int
get_uint(struct build *b, cfg_t *sec, const char *name, unsigned long def,
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
		berr(b, vloc(b, ls), "%s: %lu is out of range (%lu..%lu)", name,
		     v, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static int
get_bool(struct build *b, cfg_t *sec, const char *name, bool def, bool *out)
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

struct enum_name {
	const char *name;
	int value;
};

static int
get_enum(struct build *b, cfg_t *sec, const char *name,
	 const struct enum_name *names, int def, int *out)
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
	berr(b, vloc(b, ls), "%s: \"%s\" is not one of %s", name, ls->s,
	     choices);
	return -1;
}

/* get_path - a file name; a relative one starts at the main file's directory */
static const char *
get_path(struct build *b, cfg_t *sec, const char *name, struct conf_loc *loc)
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
static void
check_file(struct build *b, struct conf_loc loc, const char *opt,
	   const char *path, bool secret)
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

/*
 * load_route_keys - the keys of route_key_file (routekey.h).  Without the
 * option, "route.key" next to the main file is used when it exists; when
 * it does not, routes go unsigned (a warning: nothing is refused, the
 * transport then decides every message again).  The milter reads the file
 * again at each reload, as the service user, so the file must be that
 * user's (a root-owned 0600 key would work at start and fail the reload).
 */
static void
load_route_keys(struct build *b, cfg_t *root, struct conf *c)
{
	struct conf_loc loc = {b->main_file, 0};
	char err[512];
	struct stat st;
	bool given;

	c->route_key_file = get_path(b, root, "route_key_file", &loc);
	given = c->route_key_file != NULL;
	if (!given) {
		char *p;
		if (asprintf(&p, "%s/%s", c->dir, DEF_ROUTE_KEY_FILE) < 0)
			return;
		c->route_key_file = arena_strdup(c->arena, p);
		free(p);
		if (c->route_key_file == NULL)
			return;
		if (b->flags & (CONF_NO_ROUTE_KEYS | CONF_NO_FILES))
			return;
		if (lstat(c->route_key_file, &st) < 0 && errno == ENOENT) {
			bwarn(b, loc, "no route key (%s): the milter's routes are not "
				      "signed and the transport decides every message again; "
				      "run: m365ctl route-key", c->route_key_file);
			c->route_key_file = NULL;
			return;
		}
	}
	if (b->flags & (CONF_NO_ROUTE_KEYS | CONF_NO_FILES))
		return;
	check_file(b, loc, "route_key_file", c->route_key_file, true);
	if (route_keys_read(c->route_key_file, c->arena, &c->route_keys, &c->n_route_keys,
			    err, sizeof(err)) < 0) {
		berr(b, loc, "route_key_file: %s", err);
		return;
	}
	if (geteuid() == 0 && stat(c->route_key_file, &st) == 0) {
		const struct passwd *pw = getpwnam(c->user);
		if (pw != NULL && st.st_uid != pw->pw_uid)
			berr(b, loc, "route_key_file: %s: owned by uid %u, but the milter "
				     "(after a reload) and the transport read it as %s; run: "
				     "chown %s %s", c->route_key_file, (unsigned)st.st_uid,
			     c->user, c->user, c->route_key_file);
	}
}

/* A list of strings, each checked by fn (which reports), copied to the arena. */
static const char **
get_list(struct build *b, cfg_t *sec, const char *name, size_t *n,
	 int (*check)(struct build *, const struct locstr *, const char *))
{
	size_t i, count = cfg_size(sec, name);
	const char **out;

	*n = 0;
	if (count == 0)
		return NULL;
	out = arena_alloc(b->conf->arena, count * sizeof(*out));
	if (out == NULL)
		return NULL;
	for (i = 0; i < count; i++) {
		const struct locstr *ls = cfg_getnptr(sec, name, (unsigned)i);
		if (check != NULL && check(b, ls, name) < 0)
			continue;
		out[(*n)++] = arena_strdup(b->conf->arena, ls->s);
	}
	return out;
}

static int
check_addr_pattern(struct build *b, const struct locstr *ls, const char *name)
{
	struct addr_err e;

	if (addr_pattern_check(ls->s, &e) < 0) {
		berr(b, vloc(b, ls), "%s: \"%s\" is not an address pattern: %s",
		     name, ls->s, e.msg);
		return -1;
	}
	return 0;
}

static int
check_domain_pattern(struct build *b, const struct locstr *ls,
		     const char *name)
{
	struct addr_err e;

	if (domain_pattern_check(ls->s, &e) < 0) {
		berr(b, vloc(b, ls), "%s: \"%s\" is not a domain: %s", name,
		     ls->s, e.msg);
		return -1;
	}
	return 0;
}

static int
parse_addr_value(struct build *b, struct conf_loc loc, const char *what,
		 const char *s, struct addr *a)
{
	struct addr_err e;

	if (addr_parse_path(s, strlen(s), false, a, &e) < 0) {
		berr(b, loc, "%s: \"%s\" is not a valid address: %s", what, s,
		     e.msg);
		return -1;
	}
	return 0;
}

/* Lookups --------------------------------------------------------------------- */

#define FIND_BY_NAME(fn, type, arr, n)                                         \
	static const type *fn(const struct conf *conf, const char *name)      \
	{                                                                      \
		size_t i;                                                      \
		for (i = 0; i < conf->n; i++)                                  \
			if (conf->arr[i].name != NULL &&                       \
			    strcmp(conf->arr[i].name, name) == 0)              \
				return &conf->arr[i];                          \
		return NULL;                                                   \
	}

FIND_BY_NAME(find_tenant, struct tenant, tenants, n_tenants)
FIND_BY_NAME(find_app, struct app, apps, n_apps)
FIND_BY_NAME(find_connector, struct connector, connectors, n_connectors)

const struct tenant *
conf_tenant_of_domain(const struct conf *conf, const char *domain)
{
	size_t i, j;

	for (i = 0; i < conf->n_tenants; i++)
		for (j = 0; j < conf->tenants[i].n_accepted; j++)
			if (domain_match(conf->tenants[i].accepted[j], domain))
				return &conf->tenants[i];
	return NULL;
}

const struct mailbox_conf *
conf_mailbox(const struct conf *conf, const struct addr *a)
{
	size_t i;

	for (i = 0; i < conf->n_mailboxes; i++)
		if (conf->mailboxes[i].name != NULL &&
		    addr_equal(&conf->mailboxes[i].addr, a))
			return &conf->mailboxes[i];
	return NULL;
}

const struct domain_policy *
conf_domain(const struct conf *conf, const char *name)
{
	size_t i;

	for (i = 0; i < conf->n_domains; i++)
		if (conf->domains[i].name != NULL &&
		    m3_casecmp(conf->domains[i].name, name) == 0)
			return &conf->domains[i];
	return NULL;
}

/* A reference to a tenant: named, or implied when there is only one. */
static const struct tenant *
ref_tenant(struct build *b, cfg_t *sec, struct conf_loc loc)
{
	const struct locstr *ls = get(sec, "tenant");
	const struct tenant *t;

	if (ls == NULL) {
		if (b->conf->n_tenants == 1)
			return &b->conf->tenants[0];
		if (b->conf->n_tenants > 1)
			berr(b, loc, "there are several tenants: say which "
				     "with tenant = \"NAME\"");
		return NULL;
	}
	t = find_tenant(b->conf, ls->s);
	if (t == NULL)
		berr(b, vloc(b, ls), "tenant \"%s\" is not defined", ls->s);
	return t;
}

/* Names and enumerations ---------------------------------------------------- */

static const struct enum_name mode_names[] = {
	{"auto", MODE_AUTO},
	{"smtp-auth", MODE_SMTP_AUTH},
	{"direct-send", MODE_DIRECT_SEND},
	{"relay", MODE_RELAY},
	{NULL, 0}};

static const struct enum_name auth_names[] = {
	{"oauth", AUTH_OAUTH}, {"basic", AUTH_BASIC}, {NULL, 0}};

static const struct enum_name alg_names[] = {
	{"ps256", ASSERTION_PS256}, {"rs256", ASSERTION_RS256}, {NULL, 0}};

static const struct enum_name connector_names[] = {
	{"certificate", CONNECTOR_CERTIFICATE}, {"ip", CONNECTOR_IP}, {NULL, 0}};

static const struct enum_name backend_names[] = {
	{"lmdb", STORE_BACKEND_LMDB}, {"redis", STORE_BACKEND_REDIS}, {NULL, 0}};

static const struct enum_name unverified_names[] = {
	{"decide", UNVERIFIED_DECIDE}, {"defer", UNVERIFIED_DEFER}, {NULL, 0}};

static const struct enum_name tls_names[] = {
	{"required", TLS_REQUIRED}, {"opportunistic", TLS_OPPORTUNISTIC}, {NULL, 0}};

static const struct enum_name fail_names[] = {{"tempfail", FAIL_TEMPFAIL},
					      {"accept", FAIL_ACCEPT},
					      {"reject", FAIL_REJECT},
					      {NULL, 0}};

const char *
mode_name(enum mode mode)
{
	size_t i;

	for (i = 0; mode_names[i].name != NULL; i++)
		if (mode_names[i].value == (int)mode)
			return mode_names[i].name;
	return "unknown";
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
	if (end[1] != '\0' || errno != 0 || n > 7 * 86400 ||
	    n * mult > 7 * 86400) {
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
	if (l->window % 86400 == 0 && l->window >= 86400 &&
	    l->window != 86400)
		snprintf(buf, size, "%lu/%lud", l->count, l->window / 86400);
	else if (l->window % 3600 == 0 && l->window >= 3600)
		snprintf(buf, size, "%lu/%luh", l->count, l->window / 3600);
	else
		snprintf(buf, size, "%lu/%lus", l->count, l->window);
	return buf;
}

static int
get_limit(struct build *b, cfg_t *sec, const char *name, struct limit def,
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
	if (l.count < 1 || l.count > max_count || l.window < 1 ||
	    l.window > max_window) {
		berr(b, vloc(b, ls),
		     "%s: \"%s\" is out of range (count 1..%lu, window 1s..%lus)",
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

/* Sections ---------------------------------------------------------------------- */

static void
build_globals(struct build *b, cfg_t *root)
{
	struct conf *c = b->conf;
	cfg_t *m = cfg_size(root, "milter") ? cfg_getsec(root, "milter") : NULL;
	unsigned long timeout = DEF_MILTER_TIMEOUT;
	int v = FAIL_TEMPFAIL;
	const struct locstr *ls;

	c->user = get_str(b, root, "user", DEF_USER);
	c->state_dir = get_str(b, root, "state_dir", DEF_STATE_DIR);
	c->log_file = get_path(b, root, "log_file", NULL);
	load_route_keys(b, root, c);
	c->milter.socket = DEF_MILTER_SOCKET;
	c->milter.pid_file = DEF_PID_FILE;
	c->milter.on_error = FAIL_TEMPFAIL;
	c->milter.messages_action = FAIL_ACCEPT;
	c->milter.recipients_action = FAIL_ACCEPT;
	c->milter.timeout = DEF_MILTER_TIMEOUT;
	c->milter.max_recipients = DEF_MAX_RECIPIENTS;
	if (m == NULL)
		return;
	c->milter.socket = get_str(b, m, "socket", DEF_MILTER_SOCKET);
	ls = get(m, "socket");
	if (ls != NULL && strncmp(ls->s, "unix:", 5) != 0 &&
	    strncmp(ls->s, "local:", 6) != 0 && strncmp(ls->s, "inet:", 5) != 0 &&
	    strncmp(ls->s, "inet6:", 6) != 0)
		berr(b, vloc(b, ls),
		     "socket: \"%s\" must be unix:/path or inet:port@host", ls->s);
	/* Absent: the default; "": none (inet: sockets only want that). */
	c->milter.pid_file = get_path(b, m, "pid_file", NULL);
	if (c->milter.pid_file == NULL)
		c->milter.pid_file = DEF_PID_FILE;
	else if (c->milter.pid_file[0] == '\0')
		c->milter.pid_file = NULL;
	get_enum(b, m, "on_error", fail_names, FAIL_TEMPFAIL, &v);
	c->milter.on_error = (enum fail_action)v;
	v = FAIL_ACCEPT;
	get_enum(b, m, "messages_action", fail_names, FAIL_ACCEPT, &v);
	c->milter.messages_action = (enum fail_action)v;
	v = FAIL_ACCEPT;
	get_enum(b, m, "recipients_action", fail_names, FAIL_ACCEPT, &v);
	c->milter.recipients_action = (enum fail_action)v;
	ls = get(m, "metrics_listen");
	if (ls != NULL) {
		const char *colon = strrchr(ls->s, ':');
		char *end;
		unsigned long port = colon ? strtoul(colon + 1, &end, 10) : 0;
		if (colon == NULL || colon == ls->s || port == 0 || port > 65535 || *end != '\0')
			berr(b, vloc(b, ls), "metrics_listen: \"%s\" must be ADDRESS:PORT "
					     "(e.g. 127.0.0.1:9365)", ls->s);
		else
			c->milter.metrics_listen = arena_strdup(b->conf->arena, ls->s);
	}
	get_uint(b, m, "timeout", DEF_MILTER_TIMEOUT, 1, 3600, &timeout);
	c->milter.timeout = (int)timeout;
	get_uint(b, m, "max_recipients", DEF_MAX_RECIPIENTS, 1, 1000000, &timeout);
	c->milter.max_recipients = (unsigned)timeout;
	get_bool(b, m, "require_spf_pass", false, &c->milter.require_spf_pass);
}

static void
build_store(struct build *b, cfg_t *root)
{
	struct store_conf *st = &b->conf->store;
	cfg_t *sec = cfg_size(root, "store") ? cfg_getsec(root, "store") : NULL;
	struct conf_loc floc;
	unsigned long v;
	int e = STORE_BACKEND_LMDB;
	char *p;

	st->size_mb = DEF_STORE_MB;
	st->redis_port = DEF_REDIS_PORT;
	st->prefix = DEF_REDIS_PREFIX;
	st->on_error = FAIL_TEMPFAIL;
	if (asprintf(&p, "%s/store.mdb", b->conf->state_dir) >= 0) {
		st->path = arena_strdup(b->conf->arena, p);
		free(p);
	}
	if (sec == NULL)
		return;
	get_enum(b, sec, "backend", backend_names, STORE_BACKEND_LMDB, &e);
	st->backend = (enum store_backend_kind)e;
	if (get(sec, "path") != NULL)
		st->path = get_path(b, sec, "path", NULL);
	get_uint(b, sec, "size", st->size_mb, 1, 65536, &v);
	st->size_mb = v;
	st->redis_host = get_str(b, sec, "redis_host", DEF_REDIS_HOST);
	get_uint(b, sec, "redis_port", st->redis_port, 1, 65535, &v);
	st->redis_port = (unsigned)v;
	get_uint(b, sec, "redis_db", 0, 0, 1024, &v);
	st->redis_db = (unsigned)v;
	st->redis_password_file = get_path(b, sec, "redis_password_file", &floc);
	if (st->redis_password_file != NULL)
		check_file(b, floc, "redis_password_file", st->redis_password_file, true);
	st->prefix = get_str(b, sec, "prefix", st->prefix);
	e = FAIL_TEMPFAIL;
	get_enum(b, sec, "on_error", fail_names, FAIL_TEMPFAIL, &e);
	st->on_error = (enum fail_action)e;
}

/* A timeout in seconds: 1 s to an hour. */
static int
get_timeout(struct build *b, cfg_t *sec, const char *name, int def)
{
	unsigned long v;

	get_uint(b, sec, name, (unsigned long)def, 1, 3600, &v);
	return (int)v;
}

/* After the submitters: local_submitter refers to one. */
static void
build_transport(struct build *b, cfg_t *root)
{
	struct transport_conf *t = &b->conf->transport;
	cfg_t *sec = cfg_size(root, "transport") ? cfg_getsec(root, "transport") : NULL;
	const struct locstr *ls;
	struct conf_loc floc;
	unsigned long v;
	int e = TLS_REQUIRED;
	size_t i;

	t->max_size = DEF_MAX_SIZE;
	t->timeout_connect = DEF_TIMEOUT_CONNECT;
	t->timeout_greeting = DEF_TIMEOUT_GREETING;
	t->timeout_command = DEF_TIMEOUT_COMMAND;
	t->timeout_data = DEF_TIMEOUT_DATA;
	t->timeout_block = DEF_TIMEOUT_BLOCK;
	t->timeout_dot = DEF_TIMEOUT_DOT;
	t->pacing_wait = DEF_PACING_WAIT;
	t->sendmail = DEF_SENDMAIL;
	t->token_margin = DEF_TOKEN_MARGIN;
	t->token_timeout = DEF_TOKEN_TIMEOUT;
	if (sec == NULL)
		return;
	t->helo_name = get_str(b, sec, "helo_name", NULL);
	ls = get(sec, "helo_name");
	if (ls != NULL) {
		struct addr_err ae;
		if (addr_parse_domain(ls->s, strlen(ls->s), &ae) < 0)
			berr(b, vloc(b, ls), "helo_name: \"%s\" is not a host name: %s",
			     ls->s, ae.msg);
	}
	t->ca_file = get_path(b, sec, "ca_file", &floc);
	if (t->ca_file != NULL)
		check_file(b, floc, "ca_file", t->ca_file, false);
	get_uint(b, sec, "max_size", t->max_size, 1024, 157286400, &v);
	t->max_size = v;
	t->timeout_connect = get_timeout(b, sec, "timeout_connect", t->timeout_connect);
	t->timeout_greeting = get_timeout(b, sec, "timeout_greeting", t->timeout_greeting);
	t->timeout_command = get_timeout(b, sec, "timeout_command", t->timeout_command);
	t->timeout_data = get_timeout(b, sec, "timeout_data", t->timeout_data);
	t->timeout_block = get_timeout(b, sec, "timeout_block", t->timeout_block);
	t->timeout_dot = get_timeout(b, sec, "timeout_dot", t->timeout_dot);
	get_uint(b, sec, "pacing_wait", (unsigned long)t->pacing_wait, 0, 3600, &v);
	t->pacing_wait = (int)v;
	get_enum(b, sec, "direct_send_tls", tls_names, TLS_REQUIRED, &e);
	t->direct_send_tls = (enum tls_policy)e;
	e = UNVERIFIED_DECIDE;
	get_enum(b, sec, "unverified_route", unverified_names, UNVERIFIED_DECIDE, &e);
	t->unverified_route = (enum unverified_action)e;
	ls = get(sec, "local_submitter");
	if (ls != NULL) {
		for (i = 0; i < b->conf->n_submitters; i++)
			if (strcmp(b->conf->submitters[i].name, ls->s) == 0)
				t->local_submitter = &b->conf->submitters[i];
		if (t->local_submitter == NULL)
			berr(b, vloc(b, ls), "submitter \"%s\" is not defined", ls->s);
	}
	t->sendmail = get_str(b, sec, "sendmail", t->sendmail);
	t->token_margin = get_timeout(b, sec, "token_margin", t->token_margin);
	t->token_timeout = get_timeout(b, sec, "token_timeout", t->token_timeout);
}

/*
 * need_name - an endpoint must be a DNS name: Microsoft's certificates name
 * smtp.office365.com, *.mail.protection.outlook.com and the login host, so
 * an IP address fails TLS verification and every delivery would defer; and
 * Microsoft's addresses change ("IP addresses are not supported").
 */
static void
need_name(struct build *b, const struct locstr *ls, const char *opt, const char *host,
	  size_t n, const char *name)
{
	struct ipaddr ip;
	char h[64];

	if (n == 0 || n >= sizeof(h))
		return;
	memcpy(h, host, n);
	h[n] = '\0';
	if (ip_parse(h, &ip) == 0)
		berr(b, vloc(b, ls),
		     "%s: \"%s\" is an IP address: Microsoft's certificate names %s, so "
		     "TLS verification would fail and every delivery defer; write the name",
		     opt, ls->s, name);
}

static void
build_tenant(struct build *b, cfg_t *sec, struct tenant *t)
{
	unsigned long port;
	const struct locstr *ls;
	size_t i;

	t->name = arena_strdup(b->conf->arena, cfg_title(sec));
	t->loc = sec_loc(b, sec, "tenant");
	t->accepted = get_list(b, sec, "accepted_domains", &t->n_accepted,
			       check_domain_pattern);
	if (cfg_size(sec, "accepted_domains") == 0)
		berr(b, t->loc,
		     "tenant \"%s\": accepted_domains is missing (the domains "
		     "verified in Microsoft 365)",
		     t->name);
	for (i = 0; i < t->n_accepted; i++)
		m3_lower((char *)t->accepted[i]);
	t->mx_endpoint = get_str(b, sec, "mx_endpoint", NULL);
	ls = get(sec, "mx_endpoint");
	if (ls != NULL) {
		struct addr_err e;
		if (addr_parse_domain(ls->s, strlen(ls->s), &e) < 0)
			berr(b, vloc(b, ls), "mx_endpoint: \"%s\" is not a host name: %s",
			     ls->s, e.msg);
		need_name(b, ls, "mx_endpoint", ls->s, strlen(ls->s),
			  "<domain>-<tld>.mail.protection.outlook.com");
	}
	get_uint(b, sec, "mx_port", DEF_MX_PORT, 1, 65535, &port);
	t->mx_port = (unsigned)port;
	ls = get(sec, "egress_ip");
	if (ls != NULL) {
		struct ipaddr ip;
		if (ip_parse(ls->s, &ip) < 0)
			berr(b, vloc(b, ls), "egress_ip: \"%s\" is not an IP address",
			     ls->s);
		t->egress_ip = arena_strdup(b->conf->arena, ls->s);
	}
	get_bool(b, sec, "direct_send", true, &t->direct_send);
	t->smtp_host = get_str(b, sec, "smtp_host", DEF_SMTP_HOST);
	ls = get(sec, "smtp_host");
	if (ls != NULL)
		need_name(b, ls, "smtp_host", ls->s, strlen(ls->s), DEF_SMTP_HOST);
	get_uint(b, sec, "smtp_port", DEF_SMTP_PORT, 1, 65535, &port);
	t->smtp_port = (unsigned)port;
	t->authority = get_str(b, sec, "authority", DEF_AUTHORITY);
	ls = get(sec, "authority");
	if (ls != NULL && strncmp(ls->s, "https://", 8) != 0)
		berr(b, vloc(b, ls), "authority: \"%s\" must be an https:// URL",
		     ls->s);
	else if (ls != NULL) {
		const char *h = ls->s + 8;
		size_t n = h[0] == '[' ? strcspn(h, "]") + 1 : strcspn(h, ":/");
		need_name(b, ls, "authority", h, n, "login.microsoftonline.com");
	}
	t->scope = get_str(b, sec, "scope", DEF_SCOPE);
	t->tenant_id = get_str(b, sec, "tenant_id", NULL);
	if (t->tenant_id == NULL) {
		for (i = 0; i < t->n_accepted; i++)
			if (t->accepted[i][0] != '*') {
				t->tenant_id = t->accepted[i];
				break;
			}
	}
}

static void
build_app(struct build *b, cfg_t *sec, struct app *a)
{
	struct conf_loc floc;
	int v = ASSERTION_PS256;

	a->name = arena_strdup(b->conf->arena, cfg_title(sec));
	a->loc = sec_loc(b, sec, "app");
	a->tenant = ref_tenant(b, sec, a->loc);
	a->client_id = get_str(b, sec, "client_id", NULL);
	if (a->client_id == NULL)
		berr(b, a->loc, "app \"%s\": client_id is missing", a->name);
	a->secret_file = get_path(b, sec, "client_secret_file", &floc);
	if (a->secret_file != NULL)
		check_file(b, floc, "client_secret_file", a->secret_file, true);
	a->certificate_file = get_path(b, sec, "certificate_file", &floc);
	if (a->certificate_file != NULL)
		check_file(b, floc, "certificate_file", a->certificate_file, false);
	a->key_file = get_path(b, sec, "key_file", &floc);
	if (a->key_file != NULL)
		check_file(b, floc, "key_file", a->key_file, true);
	get_enum(b, sec, "assertion", alg_names, ASSERTION_PS256, &v);
	a->assertion = (enum assertion_alg)v;
	if (a->secret_file != NULL && a->certificate_file != NULL)
		berr(b, a->loc,
		     "app \"%s\": give client_secret_file or certificate_file, "
		     "not both",
		     a->name);
	else if (a->secret_file == NULL && a->certificate_file == NULL)
		berr(b, a->loc,
		     "app \"%s\": needs client_secret_file or certificate_file "
		     "and key_file",
		     a->name);
	else if (a->certificate_file != NULL && a->key_file == NULL)
		berr(b, a->loc, "app \"%s\": certificate_file needs key_file",
		     a->name);
}

static void
build_connector(struct build *b, cfg_t *sec, struct connector *k)
{
	struct conf_loc floc;
	int v = CONNECTOR_CERTIFICATE;

	k->name = arena_strdup(b->conf->arena, cfg_title(sec));
	k->loc = sec_loc(b, sec, "connector");
	k->tenant = ref_tenant(b, sec, k->loc);
	if (get(sec, "type") == NULL)
		berr(b, k->loc, "connector \"%s\": type is missing (certificate | ip)",
		     k->name);
	get_enum(b, sec, "type", connector_names, CONNECTOR_CERTIFICATE, &v);
	k->kind = (enum connector_kind)v;
	k->certificate_file = get_path(b, sec, "certificate_file", &floc);
	if (k->certificate_file != NULL)
		check_file(b, floc, "certificate_file", k->certificate_file, false);
	k->key_file = get_path(b, sec, "key_file", &floc);
	if (k->key_file != NULL)
		check_file(b, floc, "key_file", k->key_file, true);
	if (k->kind == CONNECTOR_CERTIFICATE &&
	    (k->certificate_file == NULL || k->key_file == NULL))
		berr(b, k->loc,
		     "connector \"%s\": a certificate connector needs "
		     "certificate_file and key_file",
		     k->name);
	if (k->kind == CONNECTOR_IP && k->certificate_file != NULL)
		bwarn(b, k->loc,
		      "connector \"%s\": an IP connector ignores certificate_file",
		      k->name);
	if (k->kind == CONNECTOR_IP && k->tenant != NULL &&
	    k->tenant->egress_ip == NULL)
		bwarn(b, k->loc,
		      "connector \"%s\": an IP connector relies on the tenant's "
		      "egress_ip, which is not set",
		      k->name);
}

static void
build_mailbox(struct build *b, cfg_t *sec, struct mailbox_conf *m)
{
	const struct limit def_msg = DEF_MESSAGES, def_rcpt = DEF_RECIPIENTS;
	const struct locstr *app = get(sec, "app");
	struct conf_loc floc;
	unsigned long v;
	int auth;

	m->name = arena_strdup(b->conf->arena, cfg_title(sec));
	m->loc = sec_loc(b, sec, "mailbox");
	if (parse_addr_value(b, m->loc, "mailbox", m->name, &m->addr) == 0) {
		m->tenant = conf_tenant_of_domain(b->conf, m->addr.domain);
		if (m->tenant == NULL)
			berr(b, m->loc,
			     "mailbox \"%s\": %s is not an accepted domain of "
			     "any tenant",
			     m->name, m->addr.domain);
	}
	m->password_file = get_path(b, sec, "password_file", &floc);
	if (m->password_file != NULL)
		check_file(b, floc, "password_file", m->password_file, true);
	auth = app != NULL ? AUTH_OAUTH : m->password_file ? AUTH_BASIC : -1;
	get_enum(b, sec, "auth", auth_names, auth, &auth);
	if (app != NULL) {
		m->app = find_app(b->conf, app->s);
		if (m->app == NULL)
			berr(b, vloc(b, app), "app \"%s\" is not defined", app->s);
	}
	if (auth < 0) {
		berr(b, m->loc,
		     "mailbox \"%s\": give app = \"NAME\" (OAuth) or "
		     "password_file (Basic)",
		     m->name);
	} else if (auth == AUTH_OAUTH && app == NULL) {
		berr(b, m->loc, "mailbox \"%s\": auth = oauth needs app = \"NAME\"",
		     m->name);
	} else if (auth == AUTH_BASIC && m->password_file == NULL) {
		berr(b, m->loc, "mailbox \"%s\": auth = basic needs password_file",
		     m->name);
	} else if (auth == AUTH_BASIC) {
		bwarn(b, m->loc,
		      "mailbox \"%s\" uses Basic authentication, which Microsoft "
		      "turns off by default at the end of 2026; use an app (OAuth)",
		      m->name);
	}
	m->auth = auth == AUTH_BASIC ? AUTH_BASIC : AUTH_OAUTH;
	if (m->app != NULL && m->tenant != NULL && m->app->tenant != NULL &&
	    m->app->tenant != m->tenant)
		berr(b, m->loc, "mailbox \"%s\" is in tenant \"%s\" but app \"%s\" "
				"belongs to tenant \"%s\"",
		     m->name, m->tenant->name, m->app->name, m->app->tenant->name);
	m->send_as = get_list(b, sec, "send_as", &m->n_send_as, check_addr_pattern);
	get_limit(b, sec, "messages", def_msg, 10000, 86400, &m->messages);
	get_limit(b, sec, "recipients", def_rcpt, 1000000, 7 * 86400,
		  &m->recipients);
	get_uint(b, sec, "sessions", DEF_SESSIONS, 1, MAX_SESSIONS, &v);
	m->sessions = (unsigned)v;
	get_uint(b, sec, "recipients_per_message", DEF_RCPT_PER_MESSAGE, 1,
		 MAX_RCPT_PER_MESSAGE, &v);
	m->recipients_per_message = (unsigned)v;
}

/* mailbox_may_send_as - the mailbox itself, or one of its Send As patterns */
static bool
mailbox_may_send_as(const struct mailbox_conf *m, const struct addr *a)
{
	size_t i;

	if (addr_equal(&m->addr, a))
		return true;
	for (i = 0; i < m->n_send_as; i++)
		if (addr_match(m->send_as[i], a))
			return true;
	return false;
}

static void
build_domain(struct build *b, cfg_t *sec, struct domain_policy *d)
{
	const struct locstr *ls;
	struct addr_err e;
	int mode = MODE_AUTO;

	d->name = arena_strdup(b->conf->arena, cfg_title(sec));
	d->loc = sec_loc(b, sec, "domain");
	if (addr_parse_domain(d->name, strlen(d->name), &e) < 0) {
		berr(b, d->loc, "domain \"%s\" is not a domain name: %s", d->name,
		     e.msg);
		return;
	}
	d->tenant = conf_tenant_of_domain(b->conf, d->name);
	if (d->tenant == NULL)
		berr(b, d->loc,
		     "domain \"%s\" is not an accepted domain of any tenant",
		     d->name);
	get_enum(b, sec, "mode", mode_names, MODE_AUTO, &mode);
	d->mode = (enum mode)mode;
	get_bool(b, sec, "rewrite_header_from", false, &d->rewrite_header_from);

	ls = get(sec, "default_sender");
	if (ls == NULL) {
		berr(b, d->loc, "domain \"%s\": default_sender is missing",
		     d->name);
	} else if (parse_addr_value(b, vloc(b, ls), "default_sender", ls->s,
				    &d->default_sender) == 0 &&
		   d->tenant != NULL &&
		   conf_tenant_of_domain(b->conf, d->default_sender.domain) !=
			   d->tenant) {
		berr(b, vloc(b, ls),
		     "default_sender: %s is outside the accepted domains of "
		     "tenant \"%s\"",
		     ls->s, d->tenant->name);
	}
	ls = get(sec, "mailbox");
	if (ls != NULL) {
		struct addr a;
		if (parse_addr_value(b, vloc(b, ls), "mailbox", ls->s, &a) == 0) {
			d->mailbox = conf_mailbox(b->conf, &a);
			if (d->mailbox == NULL)
				berr(b, vloc(b, ls), "mailbox \"%s\" is not defined",
				     ls->s);
		}
	}
	ls = get(sec, "connector");
	if (ls != NULL) {
		d->connector = find_connector(b->conf, ls->s);
		if (d->connector == NULL)
			berr(b, vloc(b, ls), "connector \"%s\" is not defined",
			     ls->s);
		else if (d->tenant != NULL && d->connector->tenant != d->tenant)
			berr(b, vloc(b, ls),
			     "connector \"%s\" belongs to another tenant",
			     ls->s);
	}

	/* Every domain must have a way to deliver. */
	if (d->mode == MODE_SMTP_AUTH && d->mailbox == NULL && get(sec, "mailbox") == NULL)
		berr(b, d->loc, "domain \"%s\": mode smtp-auth needs mailbox",
		     d->name);
	if (d->mode == MODE_RELAY && d->connector == NULL && get(sec, "connector") == NULL)
		berr(b, d->loc, "domain \"%s\": mode relay needs connector",
		     d->name);
	if (d->tenant != NULL && !d->tenant->direct_send &&
	    (d->mode == MODE_DIRECT_SEND ||
	     (d->mode == MODE_AUTO && get(sec, "mailbox") == NULL &&
	      get(sec, "connector") == NULL)))
		berr(b, d->loc,
		     "domain \"%s\": tenant \"%s\" refuses Direct Send "
		     "(direct_send = false); give the domain a mailbox or a "
		     "connector",
		     d->name, d->tenant->name);
	if (d->mailbox != NULL && !addr_is_null(&d->default_sender) &&
	    !mailbox_may_send_as(d->mailbox, &d->default_sender))
		berr(b, d->loc,
		     "domain \"%s\": mailbox %s has no Send As on the default "
		     "sender; Microsoft would answer 5.7.60 / 5.2.252 SendAsDenied",
		     d->name, d->mailbox->name);
}

static int
check_cidr_item(struct build *b, const struct locstr *ls, const char *name)
{
	struct cidr c;
	const char *err;

	if (cidr_parse(ls->s, &c, &err) < 0) {
		berr(b, vloc(b, ls), "%s: \"%s\" is not a valid CIDR: %s", name,
		     ls->s, err);
		return -1;
	}
	return 0;
}

static void
build_submitter(struct build *b, cfg_t *sec, struct submitter *s)
{
	const struct locstr *ls;
	const char **cl;
	size_t i, n;

	s->name = arena_strdup(b->conf->arena, cfg_title(sec));
	s->loc = sec_loc(b, sec, "submitter");
	cl = get_list(b, sec, "clients", &n, check_cidr_item);
	s->clients = n ? arena_alloc(b->conf->arena, n * sizeof(*s->clients))
		       : NULL;
	for (i = 0; i < n && s->clients != NULL; i++) {
		const char *err;
		if (cidr_parse(cl[i], &s->clients[i], &err) == 0)
			s->n_clients++;
	}
	s->sasl_logins = get_list(b, sec, "sasl_logins", &s->n_sasl_logins, NULL);
	s->cert_subjects =
		get_list(b, sec, "cert_subjects", &s->n_cert_subjects, NULL);
	if (cfg_size(sec, "clients") + cfg_size(sec, "sasl_logins") +
		    cfg_size(sec, "cert_subjects") == 0)
		berr(b, s->loc,
		     "submitter \"%s\": give clients, sasl_logins or "
		     "cert_subjects, or it can never be recognised",
		     s->name);
	s->envelope_senders = get_list(b, sec, "envelope_senders",
				       &s->n_envelope_senders,
				       check_addr_pattern);
	s->send_as = get_list(b, sec, "send_as", &s->n_send_as,
			      check_addr_pattern);
	if (cfg_size(sec, "envelope_senders") == 0) {
		s->envelope_senders = s->send_as;
		s->n_envelope_senders = s->n_send_as;
	}
	ls = get(sec, "domain");
	if (ls != NULL) {
		s->domain = conf_domain(b->conf, ls->s);
		if (s->domain == NULL)
			berr(b, vloc(b, ls), "domain \"%s\" is not defined", ls->s);
	} else if (b->conf->n_domains == 1) {
		s->domain = &b->conf->domains[0];
	} else {
		berr(b, s->loc, "submitter \"%s\": domain = \"NAME\" is missing",
		     s->name);
	}
	ls = get(sec, "mailbox");
	if (ls != NULL) {
		struct addr a;
		if (parse_addr_value(b, vloc(b, ls), "mailbox", ls->s, &a) == 0) {
			s->mailbox = conf_mailbox(b->conf, &a);
			if (s->mailbox == NULL)
				berr(b, vloc(b, ls), "mailbox \"%s\" is not defined",
				     ls->s);
		}
	}
}

/* Cross-section rules ----------------------------------------------------------- */

static void
check_duplicates(struct build *b, const struct conf_text *t, const char *file)
{
	static const char *kinds[] = {"tenant", "app", "mailbox", "connector",
				      "submitter", "domain", "milter", "store",
				      "transport"};
	size_t i, j, k;

	for (k = 0; k < NELEM(kinds); k++) {
		for (i = 0; i < t->n_marks; i++) {
			const struct sec_mark *m = &t->marks[i];
			if (m->depth != 0 || strcmp(m->name, kinds[k]) != 0)
				continue;
			for (j = 0; j < i; j++) {
				const struct sec_mark *p = &t->marks[j];
				if (p->depth == 0 && strcmp(p->name, m->name) == 0 &&
				    m3_casecmp(p->title, m->title) == 0) {
					struct conf_loc loc = {file, m->line};
					if (m->has_title)
						berr(b, loc,
						     "%s \"%s\" is defined twice "
						     "(first at line %d)",
						     m->name, m->title, p->line);
					else
						berr(b, loc,
						     "section %s is given twice "
						     "(first at line %d)",
						     m->name, p->line);
					break;
				}
			}
		}
	}
}

static void
check_cross(struct build *b)
{
	struct conf *c = b->conf;
	size_t i, j, k, l;

	/* An accepted domain belongs to one tenant. */
	for (i = 0; i < c->n_tenants; i++)
		for (j = 0; j < c->tenants[i].n_accepted; j++)
			for (k = i + 1; k < c->n_tenants; k++)
				for (l = 0; l < c->tenants[k].n_accepted; l++)
					if (m3_casecmp(c->tenants[i].accepted[j],
						       c->tenants[k].accepted[l]) == 0)
						berr(b, c->tenants[k].loc,
						     "accepted domain %s is in "
						     "tenant \"%s\" and tenant \"%s\"",
						     c->tenants[k].accepted[l],
						     c->tenants[i].name,
						     c->tenants[k].name);
	/* A client block, login or subject names one submitter. */
	for (i = 0; i < c->n_submitters; i++) {
		const struct submitter *s = &c->submitters[i];
		for (k = i + 1; k < c->n_submitters; k++) {
			const struct submitter *t = &c->submitters[k];
			for (j = 0; j < s->n_clients; j++)
				for (l = 0; l < t->n_clients; l++)
					if (cidr_equal(&s->clients[j], &t->clients[l])) {
						char ip[64];
						ip_format(&t->clients[l].net, ip, sizeof(ip));
						berr(b, t->loc,
						     "submitter \"%s\": client "
						     "%s/%u is already submitter \"%s\"",
						     t->name, ip, t->clients[l].prefix,
						     s->name);
					}
			for (j = 0; j < s->n_sasl_logins; j++)
				for (l = 0; l < t->n_sasl_logins; l++)
					if (m3_casecmp(s->sasl_logins[j],
						       t->sasl_logins[l]) == 0)
						berr(b, t->loc,
						     "submitter \"%s\": SASL login "
						     "\"%s\" is already submitter \"%s\"",
						     t->name, t->sasl_logins[l],
						     s->name);
			for (j = 0; j < s->n_cert_subjects; j++)
				for (l = 0; l < t->n_cert_subjects; l++)
					if (strcmp(s->cert_subjects[j],
						   t->cert_subjects[l]) == 0)
						berr(b, t->loc,
						     "submitter \"%s\": certificate "
						     "subject \"%s\" is already "
						     "submitter \"%s\"",
						     t->name, t->cert_subjects[l],
						     s->name);
		}
	}
	if (c->n_tenants == 0)
		berr(b, (struct conf_loc){c->file, 1},
		     "no tenant is defined: add tenant \"NAME\" { accepted_domains "
		     "= {...} }");
	if (c->n_submitters == 0)
		bwarn(b, (struct conf_loc){c->file, 1},
		      "no submitter is defined: every client will be refused");
}

/* Parsing --------------------------------------------------------------------- */

static struct build *cur_build; /* for the libconfuse error callback */

static void cfg_errfn(cfg_t *cfg, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));

static void
cfg_errfn(cfg_t *cfg, const char *fmt, va_list ap)
{
	char msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	diag_add(cur_build->diag, true, "%s:%d: error: %s",
		 cfg && cfg->filename ? cfg->filename : "?", cfg ? cfg->line : 0,
		 msg);
}

static int
read_file(const char *path, char **data, size_t *len, struct build *b)
{
	FILE *fp = fopen(path, "r");
	char *buf;
	size_t n;

	if (fp == NULL) {
		diag_add(b->diag, true, "%s: error: cannot open: %s", path,
			 strerror(errno));
		return -1;
	}
	buf = malloc(MAX_CONF_FILE + 1);
	if (buf == NULL) {
		fclose(fp);
		return -1;
	}
	n = fread(buf, 1, MAX_CONF_FILE + 1, fp);
	if (ferror(fp)) {
		diag_add(b->diag, true, "%s: error: cannot read: %s", path,
			 strerror(errno));
		fclose(fp);
		free(buf);
		return -1;
	}
	fclose(fp);
	if (n > MAX_CONF_FILE) {
		diag_add(b->diag, true, "%s: error: larger than %d bytes", path,
			 MAX_CONF_FILE);
		free(buf);
		return -1;
	}
	*data = buf;
	*len = n;
	return 0;
}

/* parse_one - comments out, then libconfuse; NULL on a syntax error */
static cfg_t *
parse_one(struct build *b, const char *path, cfg_opt_t *opts,
	  struct conf_text *text)
{
	char *data;
	size_t len;
	cfg_t *cfg;
	FILE *fp;
	int rc;

	if (read_file(path, &data, &len, b) < 0)
		return NULL;
	if (memchr(data, '\0', len) != NULL) {
		diag_add(b->diag, true, "%s: error: contains a NUL byte", path);
		free(data);
		return NULL;
	}
	rc = conf_text_prepare(data, len, text);
	free(data);
	if (rc < 0)
		return NULL;
	cfg = cfg_init(opts, CFGF_NONE);
	if (cfg == NULL)
		return NULL;
	cfg_set_error_function(cfg, cfg_errfn);
	/* cfg_parse_fp() keeps a filename set beforehand: messages name it. */
	free(cfg->filename);
	cfg->filename = strdup(path);
	fp = fmemopen(text->buf, text->len ? text->len : 1, "r");
	if (fp == NULL || cfg->filename == NULL) {
		if (fp != NULL)
			fclose(fp);
		cfg_free(cfg);
		return NULL;
	}
	parsing_file = path;
	rc = text->len ? cfg_parse_fp(cfg, fp) : CFG_SUCCESS;
	parsing_file = "?";
	fclose(fp);
	if (rc == CFG_SUCCESS && text->open_depth > 0) {
		/* libconfuse 3.3 takes the end of the file as closing braces. */
		diag_add(b->diag, true,
			 "%s:%d: error: section %s opened here is never closed "
			 "(missing '}')",
			 path, text->open_line, text->open_name);
		rc = CFG_PARSE_ERROR;
	}
	if (rc != CFG_SUCCESS) {
		cfg_free(cfg);
		return NULL;
	}
	return cfg;
}

#define BUILD_ALL(root, kind, arr, n, fn)                                       \
	do {                                                                   \
		size_t i_, cnt_ = cfg_size(root, kind);                        \
		c->arr = cnt_ ? arena_alloc(c->arena, cnt_ * sizeof(*c->arr))  \
			      : NULL;                                          \
		for (i_ = 0; i_ < cnt_ && c->arr != NULL; i_++)                \
			fn(&b, cfg_getnsec(root, kind, (unsigned)i_),          \
			   &c->arr[c->n++]);                                   \
	} while (0)

struct conf *
conf_load(const char *path, struct diag *diag)
{
	return conf_load_flags(path, diag, 0);
}

struct conf *
conf_load_flags(const char *path, struct diag *diag, unsigned flags)
{
	struct build b;
	struct conf *c;
	struct arena *arena;
	cfg_t *root = NULL, *dom = NULL;
	const struct locstr *df;
	char *slash;
	size_t i, n_dom;

	memset(&b, 0, sizeof(b));
	b.diag = diag;
	b.flags = flags;
	cur_build = &b;
	arena = arena_new();
	if (arena == NULL)
		return NULL;
	c = arena_alloc(arena, sizeof(*c));
	if (c == NULL) {
		arena_free(arena);
		return NULL;
	}
	c->arena = arena;
	b.conf = c;
	c->file = b.main_file = arena_strdup(arena, path);
	slash = strrchr(c->file, '/');
	c->dir = slash ? arena_strndup(arena, c->file, (size_t)(slash - c->file))
		       : ".";
	if (c->dir[0] == '\0')
		c->dir = "/";

	root = parse_one(&b, path, main_opts, &b.main_text);
	if (root == NULL)
		goto out;
	df = get(root, "domain_file");
	if (df != NULL) {
		c->domain_file = get_path(&b, root, "domain_file", NULL);
		b.domain_file = c->domain_file;
		dom = parse_one(&b, c->domain_file, domain_file_opts,
				&b.domain_text);
		if (dom == NULL)
			goto out;
	}
	check_duplicates(&b, &b.main_text, b.main_file);
	if (dom != NULL)
		check_duplicates(&b, &b.domain_text, b.domain_file);

	build_globals(&b, root);
	build_store(&b, root);
	/* Order matters: each kind refers only to kinds built before it. */
	BUILD_ALL(root, "tenant", tenants, n_tenants, build_tenant);
	BUILD_ALL(root, "app", apps, n_apps, build_app);
	BUILD_ALL(root, "connector", connectors, n_connectors, build_connector);
	BUILD_ALL(root, "mailbox", mailboxes, n_mailboxes, build_mailbox);

	n_dom = cfg_size(root, "domain") + (dom ? cfg_size(dom, "domain") : 0);
	c->domains = n_dom ? arena_alloc(arena, n_dom * sizeof(*c->domains)) : NULL;
	for (i = 0; i < cfg_size(root, "domain") && c->domains; i++)
		build_domain(&b, cfg_getnsec(root, "domain", (unsigned)i),
			     &c->domains[c->n_domains++]);
	for (i = 0; dom && i < cfg_size(dom, "domain") && c->domains; i++)
		build_domain(&b, cfg_getnsec(dom, "domain", (unsigned)i),
			     &c->domains[c->n_domains++]);
	/* A domain named in both files: the main file's marks do not see it. */
	for (i = 0; i < c->n_domains; i++) {
		size_t j;
		for (j = 0; j < i; j++)
			if (c->domains[i].name && c->domains[j].name &&
			    m3_casecmp(c->domains[i].name, c->domains[j].name) == 0 &&
			    strcmp(c->domains[i].loc.file, c->domains[j].loc.file) != 0)
				berr(&b, c->domains[i].loc,
				     "domain \"%s\" is defined twice (first at %s:%d)",
				     c->domains[i].name, c->domains[j].loc.file,
				     c->domains[j].loc.line);
	}
	BUILD_ALL(root, "submitter", submitters, n_submitters, build_submitter);
	build_transport(&b, root);
	check_cross(&b);
out:
	if (root != NULL)
		cfg_free(root);
	if (dom != NULL)
		cfg_free(dom);
	conf_text_free(&b.main_text);
	conf_text_free(&b.domain_text);
	cur_build = NULL;
	if (diag->n_errors > 0 || root == NULL) {
		if (diag->n_errors == 0)
			diag_add(diag, true, "%s: error: cannot load", path);
		arena_free(arena);
		return NULL;
	}
	return c;
}

struct conf *
conf_load_logged(const char *path, bool warnings)
{
	struct diag diag = {0};
	struct conf *conf = conf_load(path, &diag);
	size_t i;

	for (i = 0; i < diag.n; i++)
		if (diag.is_error[i] || warnings)
			log_line(diag.is_error[i], diag.lines[i]);
	diag_free(&diag);
	return conf;
}

void
conf_free(struct conf *conf)
{
	if (conf != NULL)
		arena_free(conf->arena);
}
