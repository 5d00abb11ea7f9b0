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
 * Comment syntax (as libconfuse documents it): "#" outside a quoted string
 * starts a comment; "//" and "/ *" start one at the beginning of a token
 * (so https://login.microsoftonline.com, unquoted, is not a comment).
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "conf_text.h"
#include "util/util.h"

enum tok { T_NONE, T_WORD, T_STR, T_OPEN, T_CLOSE, T_EQ, T_OTHER };

enum state {
	S_NAME,  /* expecting an option or section name */
	S_AFTER, /* after a name: '=', '{', a title, or '(' */
	S_TITLE, /* after a title: '{' */
	S_VALUE, /* after '=': a value or '{' (list) */
	S_LIST,  /* inside a value list */
	S_CALL,  /* inside a function call's parentheses */
};

static int
add_mark(struct conf_text *t, const char *name, const char *title, int line, int depth)
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
	m3_strlcpy(m->name, name, sizeof(m->name));
	m3_strlcpy(m->title, title ? title : "", sizeof(m->title));
	m->has_title = title != NULL;
	m->line = line;
	m->depth = depth;
	return 0;
}

int
conf_text_prepare(const char *data, size_t len, struct conf_text *t)
{
	char name[64] = "", title[sizeof(t->marks->title)] = "";
	char tokbuf[sizeof(title)];
	enum state st = S_NAME;
	int line = 1, name_line = 0, depth = 0;
	size_t stack[16], stack_n = 0; /* marks of the open sections */
	size_t i = 0;
	char *b;

	memset(t, 0, sizeof(*t));
	t->buf = b = malloc(len + 1);
	if (b == NULL)
		return -1;
	memcpy(b, data, len);
	b[len] = '\0';
	t->len = len;

	while (i < len) {
		enum tok tok = T_NONE;
		size_t tl = 0;
		char ch = b[i];

		if (ch == '\n') {
			line++;
			i++;
			continue;
		}
		if (ch == ' ' || ch == '\t' || ch == '\r') {
			i++;
			continue;
		}
		if (ch == '#' || (ch == '/' && i + 1 < len && b[i + 1] == '/')) {
			while (i < len && b[i] != '\n')
				b[i++] = ' ';
			continue;
		}
		if (ch == '/' && i + 1 < len && b[i + 1] == '*') {
			b[i++] = ' ';
			b[i++] = ' ';
			while (i < len && !(b[i] == '*' && i + 1 < len && b[i + 1] == '/')) {
				if (b[i] == '\n')
					line++;
				else
					b[i] = ' ';
				i++;
			}
			if (i < len) {
				b[i++] = ' ';
				b[i++] = ' ';
			}
			continue;
		}
		if (ch == '"' || ch == '\'') {
			char q = ch;
			i++;
			while (i < len && b[i] != q) {
				if (b[i] == '\\' && i + 1 < len) {
					i++;
					if (b[i] == '\n')
						line++;
					else if (tl + 1 < sizeof(tokbuf))
						tokbuf[tl++] = b[i];
					i++;
					continue;
				}
				if (b[i] == '\n')
					line++;
				if (tl + 1 < sizeof(tokbuf))
					tokbuf[tl++] = b[i];
				i++;
			}
			i++; /* closing quote (libconfuse reports a missing one) */
			tok = T_STR;
		} else if (strchr("{}()=+,", ch) != NULL) {
			if (ch == '+' && i + 1 < len && b[i + 1] == '=')
				i++;
			i++;
			tok = ch == '{'                ? T_OPEN
			      : ch == '}'              ? T_CLOSE
			      : ch == '=' || ch == '+' ? T_EQ
			                               : T_OTHER;
			tokbuf[0] = ch;
			tl = 1;
		} else {
			/* An unquoted word; '/' inside it is not a comment. */
			while (i < len && strchr(" \t\r\n#\"'={}()+,", b[i]) == NULL) {
				if (tl + 1 < sizeof(tokbuf))
					tokbuf[tl++] = b[i];
				i++;
			}
			tok = T_WORD;
		}
		tokbuf[tl] = '\0';

		switch (st) {
		case S_NAME:
			if (tok == T_WORD) {
				m3_strlcpy(name, tokbuf, sizeof(name));
				name_line = line;
				st = S_AFTER;
			} else if (tok == T_CLOSE && depth > 0) {
				depth--;
				stack_n = stack_n > 0 ? stack_n - 1 : 0;
			}
			break;
		case S_AFTER:
			if (tok == T_EQ) {
				st = S_VALUE;
			} else if (tok == T_OPEN) {
				if (add_mark(t, name, NULL, name_line, depth) < 0)
					return -1;
				if (stack_n < NELEM(stack))
					stack[stack_n++] = t->n_marks - 1;
				depth++;
				st = S_NAME;
			} else if (tok == T_WORD || tok == T_STR) {
				m3_strlcpy(title, tokbuf, sizeof(title));
				st = S_TITLE;
			} else if (tok == T_OTHER && tokbuf[0] == '(') {
				st = S_CALL;
			} else {
				st = S_NAME;
			}
			break;
		case S_TITLE:
			if (tok == T_OPEN) {
				if (add_mark(t, name, title, name_line, depth) < 0)
					return -1;
				if (stack_n < NELEM(stack))
					stack[stack_n++] = t->n_marks - 1;
				depth++;
			}
			st = S_NAME;
			break;
		case S_VALUE:
			st = tok == T_OPEN ? S_LIST : S_NAME;
			break;
		case S_LIST:
			if (tok == T_CLOSE)
				st = S_NAME;
			break;
		case S_CALL:
			if (tok == T_OTHER && tokbuf[0] == ')')
				st = S_NAME;
			break;
		}
	}
	t->open_depth = depth;
	if (depth > 0 && stack_n > 0) {
		const struct sec_mark *m = &t->marks[stack[stack_n - 1]];
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
	memset(t, 0, sizeof(*t));
}

const struct sec_mark *
conf_text_find(const struct conf_text *t, const char *name, const char *title, size_t skip)
{
	size_t i;

	for (i = 0; i < t->n_marks; i++) {
		const struct sec_mark *m = &t->marks[i];
		if (strcmp(m->name, name) != 0)
			continue;
		if (title != NULL && m3_casecmp(m->title, title) != 0)
			continue;
		if (skip-- == 0)
			return m;
	}
	return NULL;
}
