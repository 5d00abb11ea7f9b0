/*
 * conf_fast.c - the titled sections most files are made of, read without
 * libconfuse; and the accessors the builders read every section through.
 *
 * Why: libconfuse builds a cfg_t for each section (its own copy of the
 * option table, a value list per option, a strdup per name), about 25
 * times the file's size in small allocations: at 10,000 mailboxes and
 * 4,000 submitters that was half of check-config's 0.36 s.  The sections
 * that make a file large (mailbox, submitter, domain, ...) hold only
 * "name = value" and "name = { v, v }" lines.
 *
 * What it reads: a strict subset of libconfuse's grammar.  Option names
 * from the section's schema, each once; "=" (never "+="); values quoted
 * with no backslash, "$" or newline inside, or unquoted from letters,
 * digits and "._-@:/" followed by a delimiter; lists in braces without a
 * trailing comma, or one value alone.  Anything else - another character,
 * an unknown or repeated option, a syntax error - sends the whole section
 * to libconfuse, as before, which then reads it (or reports it) with its
 * own words.  So a section this file reads means exactly what it means to
 * libconfuse: tests/fuzz/fuzz_conf_fast.c holds every section it takes to
 * that, value by value and line by line.
 */
#include "config.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "conf_build.h"
#include "util/util.h"

/* The accessors ----------------------------------------------------------- */

static const struct fast_opt *
fast_find(const struct fast_sec *fs, const char *name)
{
	unsigned i;

	for (i = 0; i < fs->n; i++)
		if (strcmp(fs->opt[i].name, name) == 0)
			return &fs->opt[i];
	return NULL;
}

unsigned
sec_size(const struct sec *s, const char *name)
{
	const struct fast_opt *o;

	if (s == NULL)
		return 0;
	if (s->fast == NULL)
		return s->cfg != NULL ? cfg_size(s->cfg, name) : 0;
	o = fast_find(s->fast, name);
	return o != NULL ? o->n : 0;
}

const struct locstr *
sec_value(const struct sec *s, const char *name, unsigned i)
{
	const struct fast_opt *o;

	if (i >= sec_size(s, name))
		return NULL;
	if (s->fast == NULL)
		return cfg_getnptr(s->cfg, name, i);
	o = fast_find(s->fast, name);
	return &o->v[i];
}

/* The reader -------------------------------------------------------------- */

struct rd {
	char *p, *end;
	int line;
	struct arena *arena;
	const char *file;
};

/* ws - skip blanks and newlines; false at a character outside the subset's
 * (a carriage return, a form feed: libconfuse's lexer eats them silently) */
static bool
ws(struct rd *r)
{
	for (; r->p < r->end; r->p++) {
		if (*r->p == '\n')
			r->line++;
		else if (*r->p != ' ' && *r->p != '\t')
			return ((unsigned char)*r->p >= 0x20 && *r->p != 0x7f) ||
			       (*r->p & 0x80) != 0;
	}
	return true;
}

static bool
word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-' || c == '@' || c == ':' || c == '/';
}

static bool
delimiter(const struct rd *r)
{
	return r->p == r->end || *r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '=' ||
	       *r->p == '{' || *r->p == '}' || *r->p == ',';
}

/* word - an unquoted token of the subset at r->p: its length, 0 if none */
static size_t
word(struct rd *r)
{
	char *s = r->p;

	while (r->p < r->end && word_char(*r->p)) {
		if (*r->p == '/' && r->p + 1 < r->end && (r->p[1] == '/' || r->p[1] == '*'))
			return 0; /* a comment to libconfuse */
		r->p++;
	}
	if (r->p == s || !delimiter(r))
		return 0;
	return (size_t)(r->p - s);
}

/* value - one value of the subset (quoted or unquoted) into *ls, its bytes
 * still in the text (ls->len says how many); false if outside */
static bool
value(struct rd *r, struct locstr *ls)
{
	char *s;
	size_t n;

	if (r->p < r->end && *r->p == '"') {
		s = ++r->p;
		while (r->p < r->end && *r->p != '"') {
			if (*r->p == '\\' || *r->p == '$' || *r->p == '\n')
				return false;
			r->p++;
		}
		if (r->p == r->end)
			return false;
		n = (size_t)(r->p++ - s);
	} else {
		s = r->p;
		n = word(r);
		if (n == 0)
			return false;
	}
	if (n > INT_MAX)
		return false;
	ls->s = s;
	ls->len = (int)n;
	ls->file = r->file;
	ls->line = r->line;
	return true;
}

/* The values of one option as they are read: on the stack up to a point. */
struct vals {
	struct locstr stack[8], *v;
	unsigned n, cap;
};

/* keep - make room for one more value: its place, NULL out of memory */
static struct locstr *
keep(struct vals *vs)
{
	if (vs->n == vs->cap) {
		struct locstr *nv;
		if (vs->cap > UINT_MAX / 4)
			return NULL;
		nv = malloc(vs->cap * 2 * sizeof(*nv));
		if (nv == NULL)
			return NULL;
		memcpy(nv, vs->v, vs->n * sizeof(*nv));
		if (vs->v != vs->stack)
			free(vs->v);
		vs->v = nv;
		vs->cap *= 2;
	}
	return &vs->v[vs->n];
}

/* one value into vs; false if outside */
static bool
one(struct rd *r, struct vals *vs)
{
	struct locstr *ls = keep(vs);

	if (ls == NULL || !value(r, ls))
		return false;
	vs->n++;
	return true;
}

/* one option's "= value" or "= { v, ... }" into o; false if outside */
static bool
option_value(struct rd *r, bool list, struct fast_opt *o)
{
	struct vals vs;
	bool ok = false;

	vs.v = vs.stack;
	vs.n = 0;
	vs.cap = NELEM(vs.stack);
	if (!ws(r) || r->p == r->end || *r->p != '=')
		goto out;
	r->p++;
	if (!ws(r) || r->p == r->end)
		goto out;
	if (list && *r->p == '{') {
		r->p++;
		if (!ws(r) || r->p == r->end)
			goto out;
		if (*r->p != '}')
			for (;;) {
				if (!one(r, &vs) || !ws(r) || r->p == r->end)
					goto out;
				if (*r->p == '}')
					break;
				if (*r->p != ',')
					goto out;
				r->p++;
				if (!ws(r) || r->p == r->end || *r->p == '}')
					goto out; /* a trailing comma */
			}
		r->p++;
	} else if (!one(r, &vs))
		goto out;
	o->n = vs.n;
	if (r->arena == NULL) { /* only looking */
		o->v = NULL;
		ok = true;
		goto out;
	}
	o->v = vs.n ? arena_alloc(r->arena, vs.n * sizeof(*o->v)) : NULL;
	if (vs.n > 0 && o->v == NULL)
		goto out;
	if (vs.n > 0)
		memcpy(o->v, vs.v, vs.n * sizeof(*vs.v));
	ok = true;
out:
	if (vs.v != vs.stack)
		free(vs.v);
	return ok;
}

int
fast_read(char *text, size_t len, int line, const char *kind, const cfg_opt_t *schema,
          const char *file, struct arena *arena, struct fast_sec **out)
{
	struct rd r = {text, text + len, line, arena, file};
	struct fast_opt opt[16];
	const cfg_opt_t *so;
	size_t klen = strlen(kind), n;
	unsigned n_opt = 0, i, j;
	struct fast_sec *fs;

	*out = NULL;
	/* "kind", the blanked title, "{" ... "}" */
	if (len < klen + 2 || memcmp(text, kind, klen) != 0 || text[len - 1] != '}')
		return 0;
	r.p += klen;
	r.end--;
	if (!ws(&r) || r.p == r.end || *r.p != '{')
		return 0;
	r.p++;
	for (;;) {
		const char *name;
		if (!ws(&r))
			return 0;
		if (r.p == r.end)
			break;
		name = r.p;
		n = word(&r);
		if (n == 0)
			return 0;
		for (so = schema; so->name != NULL; so++)
			if (strlen(so->name) == n && memcmp(so->name, name, n) == 0)
				break;
		if (so->name == NULL || so->type != CFGT_PTR || n_opt == NELEM(opt))
			return 0;
		for (i = 0; i < n_opt; i++)
			if (strcmp(opt[i].name, so->name) == 0)
				return 0; /* given twice: libconfuse's rules */
		opt[n_opt].name = so->name;
		if (!option_value(&r, (so->flags & CFGF_LIST) != 0, &opt[n_opt]))
			return 0;
		n_opt++;
	}
	if (arena == NULL)
		return 1; /* it would be taken */
	fs = arena_alloc(arena, sizeof(*fs));
	if (fs == NULL ||
	    (n_opt > 0 && (fs->opt = arena_alloc(arena, n_opt * sizeof(*opt))) == NULL))
		return 0; /* libconfuse's, then */
	if (n_opt > 0)
		memcpy(fs->opt, opt, n_opt * sizeof(*opt));
	fs->n = n_opt;
	/* Taken: each value ends where it is, on its closing quote or the
	 * delimiter after it, none of which is read again (the section is
	 * not libconfuse's), so its bytes need no copy. */
	for (i = 0; i < n_opt; i++)
		for (j = 0; j < opt[i].n; j++)
			opt[i].v[j].s[opt[i].v[j].len] = '\0';
	*out = fs;
	return 1;
}
