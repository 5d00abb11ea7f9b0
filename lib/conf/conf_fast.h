/*
 * conf_fast.h - how the configuration loader's builders read a section,
 * whoever parsed it: libconfuse, or conf_fast.c's reader of the titled
 * sections.  Internal to the conf module (conf_build.h includes it); a
 * header of its own so that tests/fuzz/fuzz_conf_fast.c can hold the two
 * readers to each other without the loader's private parts.
 */
#ifndef M3_CONF_FAST_H
#define M3_CONF_FAST_H

#include <confuse.h>
#include <stddef.h>

#include "util/util.h"

/* A value as written, with where it was written. */
struct locstr {
	char *s;
	const char *file;
	int line;
	int len; /* conf_fast.c's values: the bytes of s (terminated once read) */
};

/* A section as the builders read it: one libconfuse parsed (cfg), or one
 * conf_fast.c read (fast).  A NULL struct sec * reads as an empty section. */
struct fast_opt {
	const char *name; /* the schema's */
	struct locstr *v; /* its values; their strings are in the text read */
	unsigned n;
};
struct fast_sec {
	struct fast_opt *opt;
	unsigned n;
};
struct sec {
	cfg_t *cfg;
	const struct fast_sec *fast;
};

/* sec_size - how many values an option has (0: not given) */
unsigned sec_size(const struct sec *s, const char *name);
/* sec_value - the i-th value of an option, NULL past the last */
const struct locstr *sec_value(const struct sec *s, const char *name, unsigned i);
/* fast_read - a titled top-level section (text: its bytes, the name to the
 * closing brace, title blanked, comments blanked; line: the name's) of
 * kind, whose options are schema, into *out in arena: 1, and then each
 * value is terminated in the text itself, which must outlive *out; 0 if
 * the section is outside the subset conf_fast.c reads (libconfuse reads
 * it; the text is as it was).  With arena NULL, only whether it would be
 * taken (1) or not (0): the text is left as it was, *out NULL. */
int fast_read(char *text, size_t len, int line, const char *kind, const cfg_opt_t *schema,
              const char *file, struct arena *arena, struct fast_sec **out);

/* conf_schema - the options of a titled top-level section kind, NULL if none */
const cfg_opt_t *conf_schema(const char *kind);

#endif
