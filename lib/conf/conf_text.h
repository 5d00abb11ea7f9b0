/*
 * conf_text.h - configuration text before libconfuse: comments blanked out
 * (line numbers preserved) and the line where each section opens.
 * Internal to the conf module.  Pure; returns -1 only on allocation failure.
 */
#ifndef M3_CONF_TEXT_H
#define M3_CONF_TEXT_H

#include <stdbool.h>
#include <stddef.h>

struct sec_mark {
	char name[32];   /* "mailbox" */
	char title[330]; /* "scanner@contoso.com" (unescaped) */
	bool has_title;
	int line;  /* line of the section's name */
	int depth; /* 0 for top-level sections */
};

struct conf_text {
	char *buf; /* NUL-terminated, comments replaced by spaces */
	size_t len;
	struct sec_mark *marks;
	size_t n_marks, cap_marks;
	int open_depth; /* sections still open at the end (0 if well formed) */
	int open_line;  /* where the innermost of them opened */
	char open_name[32];
};

/* conf_text_prepare - copy data, blank out comments, find section openings */
int conf_text_prepare(const char *data, size_t len, struct conf_text *t);
/* conf_text_free - release */
void conf_text_free(struct conf_text *t);
/* conf_text_find - the (skip+1)-th section named name with that title (any title if NULL) */
const struct sec_mark *conf_text_find(const struct conf_text *t, const char *name,
                                      const char *title, size_t skip);

#endif
