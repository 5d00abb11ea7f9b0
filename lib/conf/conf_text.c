/*
 * conf_text.c - prepare configuration text for libconfuse.
 *
 * Why this exists: the libconfuse shipped by Debian 12 (3.3) counts every
 * comment line twice and refuses a comment inside a list, so its line
 * numbers drift in any annotated file.  We blank comments out ourselves
 * (keeping every newline, so lines stay true) before libconfuse sees the
 * text.  The same pass notes where each section opens ("mailbox \"x\" {"),
 * which libconfuse does not record, so that messages about a section and
 * about duplicate names point at the right line.
 *
 * It also takes the titles of top-level sections (mailbox "x" { ... }) out
 * of libconfuse's sight: libconfuse looks for an earlier section with the
 * same title each time a titled section opens, a scan of every section
 * before it, so a file of 10,000 mailboxes cost 10,000^2/2 string
 * comparisons.  The title is blanked in the text (its newlines kept), the
 * schema declares those sections untitled, and the loader pairs the N-th
 * section libconfuse returns with the N-th mark of that name here.
 *
 * Comment syntax (as libconfuse documents it): "#" outside a quoted string
 * starts a comment; "//" and "/ *" start one at the beginning of a token
 * (so https://login.microsoftonline.com, unquoted, is not a comment).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "conf_text.h"
#include "util/util.h"

enum tok { T_WORD, T_STR, T_OPEN, T_CLOSE, T_EQ, T_OTHER };

enum state {
	S_NAME,  /* expecting an option or section name */
	S_AFTER, /* after a name: '=', '{', a title, or '(' */
	S_TITLE, /* after a title: '{' */
	S_VALUE, /* after '=': a value or '{' (list) */
	S_LIST,  /* inside a value list */
	S_CALL,  /* inside a function call's parentheses */
};

static int
add_mark(struct conf_text *t, const char *name, const char *title, bool title_long, int line,
         int depth)
{
	struct sec_mark *m;

	if (t->n_marks == t->cap_marks) {
		size_t cap = t->cap_marks ? t->cap_marks * 2 : 16;
		m = realloc(t->marks, cap * sizeof(*m));
		if (m == NULL)
			return -1;
		t->marks = m;
		t->cap_marks = cap;
	}
	m = &t->marks[t->n_marks++];
	memset(m, 0, sizeof(*m));
	m3_strlcpy(m->name, name, sizeof(m->name));
	m->title = "";
	if (title != NULL && (m->title = arena_strdup(t->titles, title)) == NULL)
		return -1;
	m->has_title = title != NULL;
	m->title_long = title != NULL && title_long;
	m->line = line;
	m->depth = depth;
	return 0;
}

/* The text being read: comments are blanked in place as they are passed. */
struct lex {
	char *b;
	size_t len, i;
	int line;
};

/* blank - at white space or a comment: step over it (a comment blanked,
 * its newlines kept); false when the cursor is at a token */
static bool
blank(struct lex *lx)
{
	char *b = lx->b, ch = b[lx->i];
	size_t len = lx->len;

	if (ch == '\n') {
		lx->line++;
		lx->i++;
	} else if (ch == ' ' || ch == '\t' || ch == '\r') {
		lx->i++;
	} else if (ch == '#' || (ch == '/' && lx->i + 1 < len && b[lx->i + 1] == '/')) {
		while (lx->i < len && b[lx->i] != '\n')
			b[lx->i++] = ' ';
	} else if (ch == '/' && lx->i + 1 < len && b[lx->i + 1] == '*') {
		b[lx->i++] = ' ';
		b[lx->i++] = ' ';
		while (lx->i < len &&
		       !(b[lx->i] == '*' && lx->i + 1 < len && b[lx->i + 1] == '/')) {
			if (b[lx->i] == '\n')
				lx->line++;
			else
				b[lx->i] = ' ';
			lx->i++;
		}
		if (lx->i < len) {
			b[lx->i++] = ' ';
			b[lx->i++] = ' ';
		}
	} else {
		return false;
	}
	return true;
}

/* token - the token at the cursor into tok (cut to size, unescaped) */
static enum tok
token(struct lex *lx, char *tok, size_t size)
{
	char *b = lx->b, ch = b[lx->i];
	size_t len = lx->len, tl = 0;
	enum tok kind;

	if (ch == '"' || ch == '\'') {
		lx->i++;
		while (lx->i < len && b[lx->i] != ch) {
			bool escaped = b[lx->i] == '\\' && lx->i + 1 < len;
			if (escaped)
				lx->i++;
			if (b[lx->i] == '\n')
				lx->line++;
			/* an escaped newline continues the line; a bare one is kept */
			if (!(escaped && b[lx->i] == '\n') && tl + 1 < size)
				tok[tl++] = b[lx->i];
			lx->i++;
		}
		lx->i++; /* closing quote (libconfuse reports a missing one) */
		kind = T_STR;
	} else if (strchr("{}()=+,", ch) != NULL) {
		if (ch == '+' && lx->i + 1 < len && b[lx->i + 1] == '=')
			lx->i++;
		lx->i++;
		kind = ch == '{'                ? T_OPEN
		       : ch == '}'              ? T_CLOSE
		       : ch == '=' || ch == '+' ? T_EQ
		                                : T_OTHER;
		tok[tl++] = ch;
	} else {
		/* An unquoted word; '/' inside it is not a comment. */
		while (lx->i < len && strchr(" \t\r\n#\"'={}()+,", b[lx->i]) == NULL) {
			if (tl + 1 < size)
				tok[tl++] = b[lx->i];
			lx->i++;
		}
		kind = T_WORD;
	}
	tok[tl] = '\0';
	return kind;
}

/* Where the section grammar is. */
struct parse {
	enum state st;
	char name[64], title[SEC_TITLE_MAX];
	int name_line, depth;
	size_t stack[16], stack_n;     /* marks of the open sections */
	size_t title_start, title_end; /* the title's bytes in the text */
	size_t name_start;             /* where the section's name starts */
	const char *const *titled;     /* top-level kinds whose titles go */
};

/* the token just read, in the text */
struct span {
	size_t start, end;
};

/* titled_kind - the section opening is of a titled kind: its index, else -1 */
static int
titled_kind(const struct parse *ps)
{
	int k;

	for (k = 0; ps->depth == 0 && ps->titled != NULL && ps->titled[k] != NULL; k++)
		if (strcmp(ps->titled[k], ps->name) == 0)
			return k;
	return -1;
}

/* open_section - a section opens: its mark, and it is on the stack */
static int
open_section(struct conf_text *t, struct parse *ps, const char *title)
{
	bool title_long = title != NULL && strlen(title) >= sizeof(ps->title) - 1;
	int kind = titled_kind(ps);

	if (title != NULL && kind >= 0) {
		size_t i;
		for (i = ps->title_start; i < ps->title_end; i++)
			if (t->buf[i] != '\n')
				t->buf[i] = ' ';
	}
	if (add_mark(t, ps->name, title, title_long, ps->name_line, ps->depth) < 0)
		return -1;
	t->marks[t->n_marks - 1].start = ps->name_start;
	t->marks[t->n_marks - 1].kind = kind;
	if (ps->stack_n < NELEM(ps->stack))
		ps->stack[ps->stack_n++] = t->n_marks - 1;
	ps->depth++;
	return 0;
}

/* step - one token through the section grammar; -1 out of memory */
static int
step(struct conf_text *t, struct parse *ps, enum tok tok, const char *text, int line,
     struct span at)
{
	switch (ps->st) {
	case S_NAME:
		if (tok == T_WORD) {
			m3_strlcpy(ps->name, text, sizeof(ps->name));
			ps->name_line = line;
			ps->name_start = at.start;
			ps->st = S_AFTER;
		} else if (tok == T_CLOSE && ps->depth > 0) {
			ps->depth--;
			if (ps->stack_n > 0 && ps->stack_n == (size_t)ps->depth + 1) {
				t->marks[ps->stack[ps->stack_n - 1]].end = at.end;
				t->marks[ps->stack[ps->stack_n - 1]].end_line = line;
			}
			ps->stack_n = ps->stack_n > 0 ? ps->stack_n - 1 : 0;
		}
		return 0;
	case S_AFTER:
		ps->st = tok == T_EQ                        ? S_VALUE
		         : tok == T_WORD || tok == T_STR    ? S_TITLE
		         : tok == T_OTHER && text[0] == '(' ? S_CALL
		                                            : S_NAME;
		if (ps->st == S_TITLE) {
			m3_strlcpy(ps->title, text, sizeof(ps->title));
			ps->title_start = at.start;
			ps->title_end = at.end;
		}
		return tok == T_OPEN ? open_section(t, ps, NULL) : 0;
	case S_TITLE:
		ps->st = S_NAME;
		return tok == T_OPEN ? open_section(t, ps, ps->title) : 0;
	case S_VALUE:
		ps->st = tok == T_OPEN ? S_LIST : S_NAME;
		return 0;
	case S_LIST:
		if (tok == T_CLOSE)
			ps->st = S_NAME;
		return 0;
	case S_CALL:
		if (tok == T_OTHER && text[0] == ')')
			ps->st = S_NAME;
		return 0;
	}
	return 0;
}

int
conf_text_prepare(const char *data, size_t len, const char *const *titled, struct conf_text *t)
{
	char *buf = malloc(len + 1);

	if (buf == NULL) {
		memset(t, 0, sizeof(*t));
		return -1;
	}
	memcpy(buf, data, len);
	return conf_text_adopt(buf, len, titled, t);
}

int
conf_text_adopt(char *buf, size_t len, const char *const *titled, struct conf_text *t)
{
	struct parse ps;
	struct lex lx;
	char tok[sizeof(ps.title)];

	memset(t, 0, sizeof(*t));
	memset(&ps, 0, sizeof(ps));
	ps.st = S_NAME;
	ps.titled = titled;
	t->buf = buf;
	t->titles = arena_new();
	if (t->titles == NULL)
		return -1;
	t->buf[len] = '\0';
	t->len = len;
	lx.b = t->buf;
	lx.len = len;
	lx.i = 0;
	lx.line = 1;
	while (lx.i < len) {
		enum tok kind;
		struct span at;
		if (blank(&lx))
			continue;
		at.start = lx.i;
		kind = token(&lx, tok, sizeof(tok));
		at.end = lx.i < len ? lx.i : len;
		if (step(t, &ps, kind, tok, lx.line, at) < 0)
			return -1;
	}
	t->open_depth = ps.depth;
	if (ps.depth > 0 && ps.stack_n > 0) {
		const struct sec_mark *m = &t->marks[ps.stack[ps.stack_n - 1]];
		t->open_line = m->line;
		m3_strlcpy(t->open_name, m->name, sizeof(t->open_name));
	}
	return 0;
}

void
conf_text_free(struct conf_text *t)
{
	free(t->buf);
	free(t->marks);
	if (t->titles != NULL)
		arena_free(t->titles);
	memset(t, 0, sizeof(*t));
}

size_t
conf_text_top(const struct conf_text *t, const char *name, const struct sec_mark ***out)
{
	size_t i, n = 0;

	*out = malloc((t->n_marks ? t->n_marks : 1) * sizeof(**out));
	if (*out == NULL)
		return (size_t)-1;
	for (i = 0; i < t->n_marks; i++)
		if (t->marks[i].depth == 0 && strcmp(t->marks[i].name, name) == 0)
			(*out)[n++] = &t->marks[i];
	return n;
}
