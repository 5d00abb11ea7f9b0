/*
 * testconf.h - build a configuration from text in a scratch directory for
 * unit tests (Check runs each test in its own process, so each gets its
 * own directory).  The secret and certificate files the test configs name
 * are created with safe modes.
 */
#ifndef M3_TESTCONF_H
#define M3_TESTCONF_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "conf/conf.h"

static char tc_dir[64];

static inline void
tc_write(const char *name, const char *text, mode_t mode)
{
	char path[256];
	FILE *fp;

	snprintf(path, sizeof(path), "%s/%s", tc_dir, name);
	fp = fopen(path, "w");
	if (fp == NULL) {
		perror(path);
		abort();
	}
	fputs(text, fp);
	fclose(fp);
	chmod(path, mode);
}

static inline const char *
tc_path(const char *name)
{
	static char path[256];
	snprintf(path, sizeof(path), "%s/%s", tc_dir, name);
	return path;
}

/* tc_load - write main (and domains, if any) and load; diag collects messages */
static inline struct conf *
tc_load(const char *main_text, const char *domain_text, struct diag *d)
{
	if (tc_dir[0] == '\0') {
		strcpy(tc_dir, "/tmp/m365test.XXXXXX");
		if (mkdtemp(tc_dir) == NULL) {
			perror("mkdtemp");
			abort();
		}
	}
	tc_write("app.secret", "s3cret\n", 0600);
	tc_write("ops.pw", "pw\n", 0600);
	tc_write("relay.crt", "not parsed by conf\n", 0644);
	tc_write("relay.key", "not parsed by conf\n", 0600);
	tc_write("main.conf", main_text, 0644);
	if (domain_text != NULL)
		tc_write("domains.conf", domain_text, 0644);
	return conf_load(tc_path("main.conf"), d);
}

static inline void
tc_cleanup(void)
{
	char cmd[128];

	if (tc_dir[0] != '\0') {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tc_dir);
		if (system(cmd) != 0)
			fprintf(stderr, "cleanup of %s failed\n", tc_dir);
		tc_dir[0] = '\0';
	}
}

/* tc_diag_has - whether some diagnostic contains needle */
static inline int
tc_diag_has(const struct diag *d, const char *needle)
{
	size_t i;
	for (i = 0; i < d->n; i++)
		if (strstr(d->lines[i], needle) != NULL)
			return 1;
	return 0;
}

static inline void
tc_diag_print(const struct diag *d)
{
	size_t i;
	for (i = 0; i < d->n; i++)
		fprintf(stderr, "  diag: %s\n", d->lines[i]);
}

#endif
