/*
 * conf_text.h - configuration text before libconfuse: comments blanked out
 * (line numbers preserved), the line where each section opens, and the
 * titles of top-level sections taken out of libconfuse's sight (see
 * conf_text.c for why).  Internal to the conf module.  Pure; returns -1
 * only on allocation failure.
 */
#ifndef M3_CONF_TEXT_H
#define M3_CONF_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* The longest title kept (longer ones are reported, title_long). */
#define SEC_TITLE_MAX 330

struct sec_mark {
	char name[32];     /* "mailbox" */
	const char *title; /* "scanner@contoso.com" (unescaped); "" if none */
	bool has_title;
	bool title_long;   /* longer than title can hold (a name too long) */
	int line;          /* line of the section's name */
	int end_line;      /* line of its closing brace */
	int depth;         /* 0 for top-level sections */
	int kind;          /* a top-level one's index in titled, else -1 */
	size_t start, end; /* its bytes: the name up to the closing brace (end 0: open) */
};

struct conf_text {
	char *buf; /* NUL-terminated, comments replaced by spaces */
	size_t len;
	struct sec_mark *marks;
	size_t n_marks, cap_marks;
	struct arena *titles; /* where the marks' titles are */
	int open_depth;       /* sections still open at the end (0 if well formed) */
	int open_line;        /* where the innermost of them opened */
	char open_name[32];
};

/* conf_text_prepare - copy data, blank out comments, find section openings;
 * the titles of top-level sections named in titled (NULL-terminated, may be
 * NULL) are blanked too, so that libconfuse reads them as untitled */
int conf_text_prepare(const char *data, size_t len, const char *const *titled, struct conf_text *t);
/* conf_text_adopt - the same on buf itself (len bytes, room for one more),
 * which t owns from now on, whatever the outcome */
int conf_text_adopt(char *buf, size_t len, const char *const *titled, struct conf_text *t);
/* conf_text_free - release */
void conf_text_free(struct conf_text *t);
/* conf_text_top - the top-level sections named name, in order, into *out
 * (malloc'd, the caller frees); their count, or (size_t)-1 out of memory */
size_t conf_text_top(const struct conf_text *t, const char *name, const struct sec_mark ***out);

#endif
