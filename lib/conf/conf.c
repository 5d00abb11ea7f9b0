/*
 * conf.c - the configuration schema (libconfuse), reading and parsing the
 * files, the checks across sections, and the diagnostics: the driver of
 * the build of the struct conf snapshot, in which every value is typed,
 * every reference resolved, every rule checked, each problem reported with
 * its file and line.
 *
 * Every option is declared once, in the tables below, as a "located
 * string": libconfuse hands each raw value to loc_parse(), which records the
 * file and line it came from.  Typing happens afterwards (conf_get.c), one
 * builder per section (conf_sections.c), so that every message can name
 * the exact line.  Every default is written once, in conf_build.h.
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
#include "conf_build.h"
#include "conf_text.h"
#include "util/log.h"
#include "routekey.h"
#include "util/util.h"

/* Located strings ----------------------------------------------------------- */

/* The file being parsed; libconfuse's parser is not reentrant anyway. */
static const char *parsing_file = "?";

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

#define OPT(name)           CFG_PTR_CB(name, NULL, CFGF_NODEFAULT, loc_parse, loc_free)
#define LIST(name)          CFG_PTR_LIST_CB(name, NULL, CFGF_NODEFAULT, loc_parse, loc_free)
#define SECTION(name, opts) CFG_SEC(name, opts, CFGF_MULTI | CFGF_TITLE)

/* The schema ---------------------------------------------------------------- */

static cfg_opt_t milter_opts[] = {OPT("socket"),          OPT("pid_file"),
                                  OPT("on_error"),        OPT("timeout"),
                                  OPT("messages_action"), OPT("recipients_action"),
                                  OPT("metrics_listen"),  OPT("require_spf_pass"),
                                  OPT("max_recipients"),  CFG_END()};

static cfg_opt_t store_opts[] = {OPT("backend"),
                                 OPT("path"),
                                 OPT("size"),
                                 OPT("redis_host"),
                                 OPT("redis_port"),
                                 OPT("redis_db"),
                                 OPT("redis_password_file"),
                                 OPT("prefix"),
                                 OPT("on_error"),
                                 CFG_END()};

static cfg_opt_t transport_opts[] = {
    OPT("helo_name"),       OPT("ca_file"),          OPT("max_size"),
    OPT("graph_max_size"),  OPT("timeout_connect"),  OPT("timeout_greeting"),
    OPT("timeout_command"), OPT("timeout_data"),     OPT("timeout_block"),
    OPT("timeout_dot"),     OPT("pacing_wait"),      OPT("direct_send_tls"),
    OPT("local_submitter"), OPT("sendmail"),         OPT("token_margin"),
    OPT("token_timeout"),   OPT("unverified_route"), CFG_END()};

static cfg_opt_t tenant_opts[] = {LIST("accepted_domains"),
                                  OPT("mx_endpoint"),
                                  OPT("mx_port"),
                                  OPT("egress_ip"),
                                  OPT("direct_send"),
                                  OPT("smtp_host"),
                                  OPT("smtp_port"),
                                  OPT("authority"),
                                  OPT("tenant_id"),
                                  OPT("scope"),
                                  OPT("graph_endpoint"),
                                  OPT("graph_scope"),
                                  OPT("hve_host"),
                                  OPT("hve_port"),
                                  CFG_END()};

static cfg_opt_t app_opts[] = {OPT("tenant"),
                               OPT("client_id"),
                               OPT("client_secret_file"),
                               OPT("certificate_file"),
                               OPT("key_file"),
                               OPT("assertion"),
                               CFG_END()};

static cfg_opt_t mailbox_opts[] = {OPT("auth"),
                                   OPT("app"),
                                   OPT("password_file"),
                                   LIST("send_as"),
                                   OPT("messages"),
                                   OPT("recipients"),
                                   OPT("sessions"),
                                   OPT("recipients_per_message"),
                                   OPT("smtp_auth"),
                                   OPT("hve"),
                                   CFG_END()};

static cfg_opt_t connector_opts[] = {OPT("tenant"), OPT("type"), OPT("certificate_file"),
                                     OPT("key_file"), CFG_END()};

static cfg_opt_t submitter_opts[] = {
    LIST("clients"), LIST("sasl_logins"),      LIST("cert_subjects"), OPT("domain"),
    OPT("mailbox"),  LIST("envelope_senders"), LIST("send_as"),       CFG_END()};

static cfg_opt_t domain_opts[] = {OPT("mode"),      OPT("default_sender"),      OPT("mailbox"),
                                  OPT("connector"), OPT("rewrite_header_from"), CFG_END()};

static cfg_opt_t main_opts[] = {OPT("user"),
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

static cfg_opt_t domain_file_opts[] = {SECTION("domain", domain_opts), CFG_END()};

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

/* Cross-section rules ----------------------------------------------------------- */

static void
check_duplicates(struct build *b, const struct conf_text *t, const char *file)
{
	static const char *kinds[] = {"tenant", "app",    "mailbox", "connector", "submitter",
	                              "domain", "milter", "store",   "transport"};
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
						     c->tenants[k].accepted[l], c->tenants[i].name,
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
						     t->name, ip, t->clients[l].prefix, s->name);
					}
			for (j = 0; j < s->n_sasl_logins; j++)
				for (l = 0; l < t->n_sasl_logins; l++)
					if (m3_casecmp(s->sasl_logins[j], t->sasl_logins[l]) == 0)
						berr(b, t->loc,
						     "submitter \"%s\": SASL login "
						     "\"%s\" is already submitter \"%s\"",
						     t->name, t->sasl_logins[l], s->name);
			for (j = 0; j < s->n_cert_subjects; j++)
				for (l = 0; l < t->n_cert_subjects; l++)
					if (strcmp(s->cert_subjects[j], t->cert_subjects[l]) == 0)
						berr(b, t->loc,
						     "submitter \"%s\": certificate "
						     "subject \"%s\" is already "
						     "submitter \"%s\"",
						     t->name, t->cert_subjects[l], s->name);
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
	         cfg && cfg->filename ? cfg->filename : "?", cfg ? cfg->line : 0, msg);
}

static int
read_file(const char *path, char **data, size_t *len, struct build *b)
{
	FILE *fp = fopen(path, "r");
	char *buf;
	size_t n;

	if (fp == NULL) {
		diag_add(b->diag, true, "%s: error: cannot open: %s", path, strerror(errno));
		return -1;
	}
	buf = malloc(MAX_CONF_FILE + 1);
	if (buf == NULL) {
		fclose(fp);
		return -1;
	}
	n = fread(buf, 1, MAX_CONF_FILE + 1, fp);
	if (ferror(fp)) {
		diag_add(b->diag, true, "%s: error: cannot read: %s", path, strerror(errno));
		fclose(fp);
		free(buf);
		return -1;
	}
	fclose(fp);
	if (n > MAX_CONF_FILE) {
		diag_add(b->diag, true, "%s: error: larger than %d bytes", path, MAX_CONF_FILE);
		free(buf);
		return -1;
	}
	*data = buf;
	*len = n;
	return 0;
}

/* parse_one - comments out, then libconfuse; NULL on a syntax error */
static cfg_t *
parse_one(struct build *b, const char *path, cfg_opt_t *opts, struct conf_text *text)
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

#define BUILD_ALL(root, kind, arr, n, fn)                                                          \
	do {                                                                                       \
		size_t i_, cnt_ = cfg_size(root, kind);                                            \
		c->arr = cnt_ ? arena_alloc(c->arena, cnt_ * sizeof(*c->arr)) : NULL;              \
		for (i_ = 0; i_ < cnt_ && c->arr != NULL; i_++)                                    \
			fn(&b, cfg_getnsec(root, kind, (unsigned)i_), &c->arr[c->n++]);            \
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
	c->dir = slash ? arena_strndup(arena, c->file, (size_t)(slash - c->file)) : ".";
	if (c->dir[0] == '\0')
		c->dir = "/";

	root = parse_one(&b, path, main_opts, &b.main_text);
	if (root == NULL)
		goto out;
	df = get(root, "domain_file");
	if (df != NULL) {
		c->domain_file = get_path(&b, root, "domain_file", NULL);
		b.domain_file = c->domain_file;
		dom = parse_one(&b, c->domain_file, domain_file_opts, &b.domain_text);
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
