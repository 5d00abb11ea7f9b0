/*
 * fuzz_conf_fast.c - libFuzzer target holding lib/conf/conf_fast.c to
 * libconfuse: the input goes through the same pre-pass as a file
 * (conf_text_prepare); for each titled top-level section the fast reader
 * takes, libconfuse must read the same text without an error, and give
 * every option of the section's schema the same values, in the same order,
 * each at the same line.  A section the fast reader refuses is libconfuse's
 * alone (as in a load): its bytes must be as they were.
 *
 *   tests/fuzz/fuzz_conf_fast -max_total_time=60 tests/fuzz/corpus/conf_fast
 */
#include "config.h"

#include <confuse.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf_fast.h"
#include "conf/conf_text.h"
#include "util/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const kinds[] = {"tenant",    "app",    "mailbox", "connector",
                                    "submitter", "domain", NULL};

static void silent(cfg_t *cfg, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

static void
silent(cfg_t *cfg, const char *fmt, va_list ap)
{
	(void)cfg;
	(void)fmt;
	(void)ap;
}

/* the section of mark m as libconfuse reads it in a load: everything
 * before it elided to its newlines (counted in the input: the sections
 * before it had their values terminated in place), then the section's
 * bytes as they were before fast_read terminated its own (buf) */
static void
compare(const uint8_t *data, const char *buf, const struct sec_mark *m, const struct fast_sec *fs)
{
	const cfg_opt_t *schema = conf_schema(m->name), *o;
	cfg_opt_t root[] = {CFG_SEC(m->name, (cfg_opt_t *)schema, CFGF_MULTI), CFG_END()};
	struct sec fast = {NULL, fs};
	char *text = malloc(m->end + 1);
	size_t i, n = 0;
	cfg_t *cfg, *sec;
	FILE *fp;

	if (text == NULL)
		return;
	for (i = 0; i < m->start; i++)
		if (data[i] == '\n')
			text[n++] = '\n';
	text[n++] = ' ';
	memcpy(text + n, buf + m->start, m->end - m->start);
	n += m->end - m->start;
	cfg = cfg_init(root, CFGF_NONE);
	fp = fmemopen(text, n, "r");
	if (cfg == NULL || fp == NULL)
		abort();
	cfg_set_error_function(cfg, silent);
	if (cfg_parse_fp(cfg, fp) != CFG_SUCCESS || cfg_size(cfg, m->name) != 1)
		abort(); /* the fast reader took what libconfuse refuses */
	sec = cfg_getnsec(cfg, m->name, 0);
	for (o = schema; o->name != NULL; o++) {
		unsigned k, count = cfg_size(sec, o->name);
		if (sec_size(&fast, o->name) != count)
			abort();
		for (k = 0; k < count; k++) {
			const struct locstr *a = cfg_getnptr(sec, o->name, k);
			const struct locstr *b = sec_value(&fast, o->name, k);
			if (a == NULL || b == NULL || strcmp(a->s, b->s) != 0 || a->line != b->line)
				abort();
		}
	}
	fclose(fp);
	cfg_free(cfg);
	free(text);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conf_text t;
	size_t i;

	if (size > 16384 || memchr(data, '\0', size) != NULL)
		return 0;
	if (conf_text_prepare((const char *)data, size, kinds, &t) < 0)
		return 0;
	for (i = 0; i < t.n_marks; i++) {
		const struct sec_mark *m = &t.marks[i];
		const char *const *k;
		struct fast_sec *fs;
		struct arena *a;
		char *before;
		int looked;

		for (k = kinds; *k != NULL && strcmp(*k, m->name) != 0; k++)
			;
		if (m->depth != 0 || m->end <= m->start || *k == NULL)
			continue;
		a = arena_new();
		before = malloc(m->end);
		if (a == NULL || before == NULL)
			abort();
		memcpy(before, t.buf, m->end);
		/* looking (the loader's first pass) changes nothing, says the same */
		looked = fast_read(t.buf + m->start, m->end - m->start, m->line, m->name,
		                   conf_schema(m->name), "f", NULL, &fs);
		if (memcmp(before, t.buf, m->end) != 0)
			abort();
		if (fast_read(t.buf + m->start, m->end - m->start, m->line, m->name,
		              conf_schema(m->name), "f", a, &fs) != looked)
			abort();
		if (looked == 1)
			compare(data, before, m, fs);
		else if (memcmp(before, t.buf, m->end) != 0)
			abort(); /* a section left to libconfuse must be left as it was */
		free(before);
		arena_free(a);
	}
	conf_text_free(&t);
	return 0;
}
