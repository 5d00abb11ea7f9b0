/*
 * cmd_check.c - m365ctl check-config: load the configuration the way the
 * daemons do and print every error and warning, gcc style.
 */
#include "config.h"

#include <stdio.h>

#include "cli.h"

struct conf *
cli_load(const char *conf_file, int quiet_ok)
{
	struct diag diag = {0};
	struct conf *conf = conf_load(conf_file, &diag);
	size_t i;

	for (i = 0; i < diag.n; i++)
		fprintf(stderr, "%s\n", diag.lines[i]);
	if (conf == NULL)
		fprintf(stderr, "%s: %zu error%s, configuration not usable\n",
			conf_file, diag.n_errors, diag.n_errors == 1 ? "" : "s");
	else if (!quiet_ok)
		printf("configuration OK%s\n",
		       diag.n_warnings ? " (with warnings)" : "");
	diag_free(&diag);
	return conf;
}

int
cmd_check_config(const char *conf_file, int argc, char **argv)
{
	struct conf *conf;

	(void)argv;
	if (argc != 1) {
		fprintf(stderr, "usage: m365ctl [-c FILE] check-config\n");
		return 2;
	}
	conf = cli_load(conf_file, 0);
	if (conf == NULL)
		return 1;
	conf_free(conf);
	return 0;
}
