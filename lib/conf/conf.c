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
#include <malloc.h>
#include <pwd.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "conf_build.h"
#include "conf_text.h"
#include "util/log.h"
#include "routekey.h"
#include "util/util.h"

/* Located strings ----------------------------------------------------------- */

/* The file being parsed, and the line its piece starts after (a chunk of
 * sections, below); libconfuse's parser is not reentrant anyway. */
static const char *parsing_file = "?";
static int parsing_line0;

static int
loc_parse(cfg_t *cfg, cfg_opt_t *opt, const char *value, void *result)
{
	struct locstr *ls = calloc(1, sizeof(*ls));

	(void)opt;
	if (ls == NULL)
		return -1;
	ls->s = strdup(value);
	/* The name parse_one() gave, which outlives every value. */
	ls->file = parsing_file;
	ls->line = cfg->line + parsing_line0;
	if (ls->s == NULL) {
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
		free(ls);
	}
}

#define OPT(name)  CFG_PTR_CB(name, NULL, CFGF_NODEFAULT, loc_parse, loc_free)
#define LIST(name) CFG_PTR_LIST_CB(name, NULL, CFGF_NODEFAULT, loc_parse, loc_free)
/* Titled in the file, untitled for libconfuse: conf_text.c takes the title
 * out (libconfuse's search for an earlier section of the same title is a
 * scan per section) and the loader pairs sections with their marks. */
#define SECTION(name, opts) CFG_SEC(name, opts, CFGF_MULTI)
static const char *const titled_kinds[] = {"tenant",    "app",    "mailbox", "connector",
                                           "submitter", "domain", NULL};

/* The schema ---------------------------------------------------------------- */

static cfg_opt_t milter_opts[] = {OPT("socket"),          OPT("pid_file"),
                                  OPT("on_error"),        OPT("timeout"),
                                  OPT("messages_action"), OPT("recipients_action"),
                                  OPT("metrics_listen"),  OPT("require_spf_pass"),
                                  OPT("max_recipients"),  CFG_END()};

static cfg_opt_t store_opts[] = {OPT("backend"),
                                 OPT("path"),
                                 OPT("journal_path"),
                                 OPT("size"),
                                 OPT("redis_host"),
                                 OPT("redis_port"),
                                 OPT("redis_db"),
                                 OPT("redis_password_file"),
                                 OPT("prefix"),
                                 OPT("on_error"),
                                 CFG_END()};

static cfg_opt_t transport_opts[] = {OPT("helo_name"),
                                     OPT("ca_file"),
                                     OPT("max_size"),
                                     OPT("graph_max_size"),
                                     OPT("timeout_connect"),
                                     OPT("timeout_greeting"),
                                     OPT("timeout_command"),
                                     OPT("timeout_data"),
                                     OPT("timeout_block"),
                                     OPT("timeout_dot"),
                                     OPT("pacing_wait"),
                                     OPT("direct_send_tls"),
                                     OPT("local_submitter"),
                                     OPT("sendmail"),
                                     OPT("token_margin"),
                                     OPT("token_timeout"),
                                     OPT("unverified_route"),
                                     OPT("session_idle"),
                                     OPT("session_reuse_limit"),
                                     CFG_END()};

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
	/* Its own arena: nothing of it belongs in the configuration. */
	struct arena *tmp = arena_new();
	struct strindex *seen = tmp ? strindex_new(tmp, t->n_marks, true) : NULL;
	size_t i, first, nl, tl;

	if (seen == NULL) {
		arena_free(tmp);
		return;
	}
	for (i = 0; i < t->n_marks; i++) {
		const struct sec_mark *m = &t->marks[i];
		char key[sizeof(m->name) + SEC_TITLE_MAX];
		struct conf_loc loc = {file, m->line};

		if (m->depth != 0)
			continue;
		/* the kind (a keyword), NUL, the title (case folded) */
		nl = strlen(m->name);
		tl = strlen(m->title);
		if (nl + 1 + tl > sizeof(key))
			continue;
		memcpy(key, m->name, nl);
		key[nl] = '\0';
		memcpy(key + nl + 1, m->title, tl);
		if (strindex_put(seen, key, nl + 1 + tl, i, &first) != 1)
			continue;
		if (m->has_title)
			berr(b, loc, "%s \"%s\" is defined twice (first at line %d)", m->name,
			     m->title, t->marks[first].line);
		else
			berr(b, loc, "section %s is given twice (first at line %d)", m->name,
			     t->marks[first].line);
	}
	arena_free(tmp);
}

static void
check_cross(struct build *b)
{
	struct conf *c = b->conf;

	/* Accepted domains, client blocks, logins and subjects claimed twice
	 * are found as the indexes are built (conf_index.c). */
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
	         cfg && cfg->filename ? cfg->filename : "?", cfg ? cfg->line + parsing_line0 : 0,
	         msg);
}

static int
read_file(const char *path, char **data, size_t *len, struct build *b)
{
	FILE *fp = fopen(path, "r");
	struct stat before;
	char *buf;
	size_t n;

	if (fp == NULL) {
		diag_add(b->diag, true, "%s: error: cannot open: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fileno(fp), &before) < 0)
		memset(&before, 0, sizeof(before));
	buf = malloc(MAX_CONF_FILE + 1);
	if (buf == NULL) {
		fclose(fp);
		return -1;
	}
	if (before.st_size > 0 && before.st_size <= MAX_CONF_FILE)
		prefault(buf, (size_t)before.st_size + 1);
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
	if (b->flags & CONF_SNAPSHOT)
		conf_source_read(b->conf, path, &before, buf, n);
	*data = buf;
	*len = n;
	return 0;
}

/*
 * A file is given to libconfuse in pieces: one with everything but the
 * titled top-level sections (the globals, milter, store, transport), then
 * the titled sections CHUNK at a time, each piece a copy of the file's
 * bytes with the rest blanked (newlines kept) and its line numbers shifted
 * back into place.  libconfuse grows a section list by one realloc() per
 * section, which copies the list each time; in pieces, that cost stays
 * proportional to the file.  Sections keep their file order across pieces.
 */
#define CHUNK 128

struct parsed {
	cfg_t *root;    /* the globals, and the untitled sections */
	cfg_t **pieces; /* the titled sections conf_fast.c left, in file order */
	size_t n;
	struct sec *by_mark;   /* libconfuse's titled top-level sections, by mark index */
	bool *taken;           /* by mark index: a section conf_fast.c reads */
	const cfg_opt_t *opts; /* the file's schema */
	struct arena *fast;    /* the one section conf_fast.c has read (build_one) */
};

static void
parsed_free(struct parsed *p)
{
	size_t i;

	if (p->root != NULL)
		cfg_free(p->root);
	for (i = 0; i < p->n; i++)
		cfg_free(p->pieces[i]);
	free(p->pieces);
	free(p->by_mark);
	free(p->taken);
	if (p->fast != NULL)
		arena_free(p->fast);
	memset(p, 0, sizeof(*p));
}

/* kind_index - a titled kind's index in titled_kinds (conf_text's
 * sec_mark.kind), -1 for another name */
static int
kind_index(const char *name)
{
	int k;

	for (k = 0; titled_kinds[k] != NULL; k++)
		if (strcmp(titled_kinds[k], name) == 0)
			return k;
	return -1;
}

/* a titled top-level section, closed */
static bool
is_titled_top(const struct sec_mark *m)
{
	return m->kind >= 0 && m->end > m->start;
}

/* schema_in - the options of section kind in a file read with opts, NULL
 * if that file may not hold it (a mailbox in the domain file) */
static const cfg_opt_t *
schema_in(const cfg_opt_t *opts, const char *kind)
{
	const cfg_opt_t *o;

	for (o = opts; o->name != NULL; o++)
		if (o->type == CFGT_SEC && strcmp(o->name, kind) == 0)
			return o->subopts;
	return NULL;
}

const cfg_opt_t *
conf_schema(const char *kind)
{
	return schema_in(main_opts, kind);
}

/* elide - what libconfuse is not to see, appended at dst + *o: its
 * newlines (lines stays true), or one space if it has none (a separator
 * stays one); libconfuse's lexer no longer walks the bytes.  The count
 * comes from the marks, not from the bytes, which conf_fast.c may have
 * changed (it terminates the values of the sections it takes in place). */
static void
elide(char *dst, size_t *o, int lines)
{
	if (lines <= 0)
		dst[(*o)++] = ' ';
	for (; lines > 0; lines--)
		dst[(*o)++] = '\n';
}

/* parse_text - one piece through libconfuse (line0: lines before it); NULL on error */
static cfg_t *
parse_text(const char *path, cfg_opt_t *opts, char *text, size_t len, int line0)
{
	cfg_t *cfg = cfg_init(opts, CFGF_NONE);
	FILE *fp;
	int rc;

	if (cfg == NULL)
		return NULL;
	cfg_set_error_function(cfg, cfg_errfn);
	/* cfg_parse_fp() keeps a filename set beforehand: messages name it. */
	free(cfg->filename);
	cfg->filename = strdup(path);
	fp = fmemopen(text, len ? len : 1, "r");
	if (fp == NULL || cfg->filename == NULL) {
		if (fp != NULL)
			fclose(fp);
		cfg_free(cfg);
		return NULL;
	}
	parsing_file = path;
	parsing_line0 = line0;
	rc = len ? cfg_parse_fp(cfg, fp) : CFG_SUCCESS;
	parsing_line0 = 0;
	fclose(fp);
	if (rc != CFG_SUCCESS) {
		cfg_free(cfg);
		return NULL;
	}
	return cfg;
}

/* parse_pieces - the titled sections, CHUNK at a time, into p->pieces */
static int
parse_pieces(const char *path, cfg_opt_t *opts, const struct conf_text *t, struct parsed *p)
{
	const struct sec_mark **top;
	size_t n = 0, i, j, k;
	int rc = 0;

	top = malloc((t->n_marks ? t->n_marks : 1) * sizeof(*top));
	if (top == NULL)
		return -1;
	for (i = 0; i < t->n_marks; i++)
		if (is_titled_top(&t->marks[i]) && !p->taken[i])
			top[n++] = &t->marks[i];
	p->pieces = calloc(n / CHUNK + 1, sizeof(*p->pieces));
	for (i = 0; p->pieces != NULL && i < n && rc == 0; i = j) {
		size_t from = top[i]->start, len;
		char *text;

		j = i + CHUNK < n ? i + CHUNK : n;
		text = malloc(top[j - 1]->end - from + CHUNK + 1); /* a space per gap */
		if (text == NULL) {
			rc = -1;
			break;
		}
		for (k = i, len = 0; k < j; k++) {
			if (k > i) /* what lies between them is in the root */
				elide(text, &len, top[k]->line - top[k - 1]->end_line);
			memcpy(text + len, t->buf + top[k]->start, top[k]->end - top[k]->start);
			len += top[k]->end - top[k]->start;
		}
		text[len] = '\0';
		p->pieces[p->n] = parse_text(path, opts, text, len, top[i]->line - 1);
		free(text);
		if (p->pieces[p->n] == NULL)
			rc = -1;
		else
			p->n++;
	}
	free(top);
	return p->pieces == NULL ? -1 : rc;
}

/*
 * take_fast - which titled top-level sections conf_fast.c takes: only
 * looked at here; each is read as it is built (build_one), into one
 * scratch arena used again for the next, so what the fast reader holds is
 * one section, not a copy of the file's values (10,000 mailboxes: some
 * 6 MB less memory to fault in, which is most of a load's cost).
 */
static int
take_fast(const char *path, const struct conf_text *t, struct parsed *p)
{
	size_t i;

	p->by_mark = calloc(t->n_marks ? t->n_marks : 1, sizeof(*p->by_mark));
	p->taken = calloc(t->n_marks ? t->n_marks : 1, sizeof(*p->taken));
	p->fast = arena_new();
	if (p->by_mark == NULL || p->taken == NULL || p->fast == NULL)
		return -1;
	for (i = 0; i < t->n_marks; i++) {
		const struct sec_mark *m = &t->marks[i];
		const cfg_opt_t *schema = schema_in(p->opts, m->name);
		struct fast_sec *fs;
		/* A kind this file may not hold is libconfuse's, which says so. */
		p->taken[i] = is_titled_top(m) && schema != NULL &&
		              fast_read(t->buf + m->start, m->end - m->start, m->line, m->name,
		                        schema, path, NULL, &fs) == 1;
	}
	return 0;
}

/* pair_pieces - each section libconfuse read with its mark, in file order;
 * -1 (reported) if the two readings of the file disagree */
static int
pair_pieces(struct build *b, const char *path, const struct conf_text *t, struct parsed *p)
{
	const char *const *k;
	size_t i;

	for (k = titled_kinds; *k != NULL; k++) {
		size_t piece = 0, j = 0, marks = 0, read = 0;
		if (schema_in(p->opts, *k) == NULL)
			continue; /* not this file's: libconfuse refused it already */
		for (i = 0; i < p->n; i++)
			read += cfg_size(p->pieces[i], *k);
		for (i = 0; i < t->n_marks; i++) {
			const struct sec_mark *m = &t->marks[i];
			if (!is_titled_top(m) || p->taken[i] || m->kind != (int)(k - titled_kinds))
				continue;
			marks++;
			while (piece < p->n && j >= cfg_size(p->pieces[piece], *k))
				piece++, j = 0;
			if (piece < p->n)
				p->by_mark[i].cfg =
				    cfg_getnsec(p->pieces[piece], *k, (unsigned)j++);
		}
		if (marks != read) {
			diag_add(b->diag, true,
			         "%s: error: %zu %s sections found, but libconfuse read %zu; "
			         "please report this file",
			         path, marks, *k, read);
			return -1;
		}
	}
	return 0;
}

/* parse_one - comments out, then libconfuse, in pieces; -1 on a syntax error */
static int
parse_one(struct build *b, const char *path, cfg_opt_t *opts, struct conf_text *text,
          struct parsed *p)
{
	char *data, *rest;
	size_t len, i, at, n;
	int rc;

	memset(p, 0, sizeof(*p));
	p->opts = opts;
	if (read_file(path, &data, &len, b) < 0)
		return -1;
	if (memchr(data, '\0', len) != NULL) {
		diag_add(b->diag, true, "%s: error: contains a NUL byte", path);
		free(data);
		return -1;
	}
	rc = conf_text_adopt(data, len, titled_kinds, text);
	if (rc < 0)
		return -1;
	rest = malloc(text->len + 1);
	if (rest == NULL)
		return -1;
	for (i = 0, at = 0, n = 0; i < text->n_marks; i++) {
		const struct sec_mark *m = &text->marks[i];
		if (!is_titled_top(m))
			continue;
		memcpy(rest + n, text->buf + at, m->start - at);
		n += m->start - at;
		elide(rest, &n, m->end_line - m->line);
		at = m->end;
	}
	memcpy(rest + n, text->buf + at, text->len - at);
	n += text->len - at;
	rest[n] = '\0';
	/* An unclosed section stays in the root, whose errors come first. */
	p->root = parse_text(path, opts, rest, n, 0);
	free(rest);
	if (p->root != NULL && text->open_depth > 0) {
		/* libconfuse 3.3 takes the end of the file as closing braces. */
		diag_add(b->diag, true,
		         "%s:%d: error: section %s opened here is never closed "
		         "(missing '}')",
		         path, text->open_line, text->open_name);
		parsed_free(p);
		return -1;
	}
	if (p->root == NULL || take_fast(path, text, p) < 0 ||
	    parse_pieces(path, opts, text, p) < 0 || pair_pieces(b, path, text, p) < 0) {
		parsed_free(p);
		return -1;
	}
	return 0;
}

/* count_marks - how many titled top-level sections of a kind a file holds */
static size_t
count_marks(const struct conf_text *t, const char *name)
{
	int kind = kind_index(name);
	size_t i, n = 0;

	for (i = 0; i < t->n_marks; i++)
		if (is_titled_top(&t->marks[i]) && t->marks[i].kind == kind)
			n++;
	return n;
}

/* named - the mark names its section, else the error (the section is skipped) */
static bool
named(struct build *b, const struct sec_mark *m, const char *file)
{
	struct conf_loc loc = {file, m->line};

	if (!m->has_title)
		berr(b, loc, "%s needs a name: %s \"NAME\" { ... }", m->name, m->name);
	else if (m->title_long)
		berr(b, loc, "%s \"%.40s...\": the name is longer than %zu characters", m->name,
		     m->title, (size_t)SEC_TITLE_MAX - 2);
	else
		return true;
	return false;
}

/* build_one - the section of mark i as the builders read it: libconfuse's,
 * or read now by conf_fast.c (in place of the one before it) */
static bool
build_one(struct build *b, struct parsed *p, const struct conf_text *t, size_t i, const char *file,
          struct sec *s)
{
	const struct sec_mark *m = &t->marks[i];
	struct fast_sec *fs;

	*s = p->by_mark[i];
	if (!p->taken[i])
		return s->cfg != NULL;
	arena_reset(p->fast);
	if (fast_read(t->buf + m->start, m->end - m->start, m->line, m->name,
	              schema_in(p->opts, m->name), file, p->fast, &fs) != 1) {
		berr(b, (struct conf_loc){file, m->line},
		     "%s: cannot be read again (out of memory, or a bug: please report this file)",
		     m->name);
		return false;
	}
	s->fast = fs;
	return true;
}

/* BUILD_FROM - build every section of a kind that one file holds, appended to arr */
#define BUILD_FROM(p, text, file, kname, arr, count, fn)                                           \
	do {                                                                                       \
		size_t i_;                                                                         \
		int k_ = kind_index(kname);                                                        \
		for (i_ = 0; (p)->by_mark != NULL && c->arr != NULL && i_ < (text)->n_marks;       \
		     i_++) {                                                                       \
			const struct sec_mark *m_ = &(text)->marks[i_];                            \
			struct sec s_;                                                             \
			if (!is_titled_top(m_) || m_->kind != k_ || !named(&b, m_, file) ||        \
			    !build_one(&b, (p), (text), i_, file, &s_))                            \
				continue;                                                          \
			b.at = m_;                                                                 \
			b.at_file = file;                                                          \
			fn(&b, &s_, &c->arr[c->count++]);                                          \
		}                                                                                  \
		b.at = NULL;                                                                       \
		b.at_file = NULL;                                                                  \
	} while (0)

#define BUILD_ALL(kind, arr, count, fn)                                                            \
	do {                                                                                       \
		size_t all_ = count_marks(&b.main_text, kind);                                     \
		c->arr = all_ ? arena_alloc(c->arena, all_ * sizeof(*c->arr)) : NULL;              \
		BUILD_FROM(&main_p, &b.main_text, b.main_file, kind, arr, count, fn);              \
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
	struct parsed main_p = {0}, dom_p = {0};
	struct sec root_sec = {NULL, NULL};
	const struct sec *root = NULL;
	const struct locstr *df;
	char *slash;
	size_t n_dom, text_len;

	memset(&b, 0, sizeof(b));
	b.diag = diag;
	b.flags = flags;
	cur_build = &b;
	/* A snapshot's region, if its address is free; conf_snap_write()
	 * refuses a configuration that is not in one. */
	arena = (flags & CONF_SNAPSHOT) ? conf_snap_arena() : NULL;
	if (arena == NULL)
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
	if (flags & CONF_SNAPSHOT) {
		/* Before any file is read: the file system's clock (conf_snap.c) */
		struct timespec t0;
		clock_gettime(CLOCK_REALTIME_COARSE, &t0);
		c->sources_t0_s = t0.tv_sec;
		c->sources_t0_ns = t0.tv_nsec;
	}
	c->file = b.main_file = arena_strdup(arena, path);
	slash = strrchr(c->file, '/');
	/* In the arena, as every string of a snapshot must be (conf_snap.c). */
	c->dir = slash ? arena_strndup(arena, c->file, (size_t)(slash - c->file))
	               : arena_strdup(arena, ".");
	if (c->dir != NULL && c->dir[0] == '\0')
		c->dir = arena_strdup(arena, "/");

	if (parse_one(&b, path, main_opts, &b.main_text, &main_p) < 0)
		goto out;
	root_sec.cfg = main_p.root;
	root = &root_sec;
	df = get(root, "domain_file");
	if (df != NULL) {
		c->domain_file = get_path(&b, root, "domain_file", NULL);
		b.domain_file = c->domain_file;
		if (parse_one(&b, c->domain_file, domain_file_opts, &b.domain_text, &dom_p) < 0)
			goto out;
	}
	check_duplicates(&b, &b.main_text, b.main_file);
	if (dom_p.root != NULL)
		check_duplicates(&b, &b.domain_text, b.domain_file);

	build_globals(&b, root);
	build_store(&b, root);
	/* Order matters: each kind refers only to kinds built before it. */
	BUILD_ALL("tenant", tenants, n_tenants, build_tenant);
	index_tenants(&b);
	BUILD_ALL("app", apps, n_apps, build_app);
	index_apps(&b);
	BUILD_ALL("connector", connectors, n_connectors, build_connector);
	index_connectors(&b);
	BUILD_ALL("mailbox", mailboxes, n_mailboxes, build_mailbox);
	index_mailboxes(&b);

	n_dom = count_marks(&b.main_text, "domain") + count_marks(&b.domain_text, "domain");
	c->domains = n_dom ? arena_alloc(arena, n_dom * sizeof(*c->domains)) : NULL;
	BUILD_FROM(&main_p, &b.main_text, b.main_file, "domain", domains, n_domains, build_domain);
	if (dom_p.root != NULL)
		BUILD_FROM(&dom_p, &b.domain_text, b.domain_file, "domain", domains, n_domains,
		           build_domain);
	index_domains(&b);
	BUILD_ALL("submitter", submitters, n_submitters, build_submitter);
	index_submitters(&b);
	build_transport(&b, root);
	check_cross(&b);
out:
	parsed_free(&main_p);
	parsed_free(&dom_p);
	text_len = b.main_text.len + b.domain_text.len;
	conf_text_free(&b.main_text);
	conf_text_free(&b.domain_text);
	cur_build = NULL;
	/* What libconfuse built for a large file (some 25 times its size) is
	 * free now; give it back to the system, or a daemon keeps it all its
	 * life: at 10,000 mailboxes the milter held 59 MB, 21 MB after this. */
	if (text_len > 256 * 1024)
		malloc_trim(0);
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
