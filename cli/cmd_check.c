/*
 * cmd_check.c - m365ctl check-config: load the configuration the way the
 * daemons do and print every error and warning, gcc style.
 */
#include "config.h"

#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "conf/runtime.h"

/*
 * cli_as_service_user - become the service user before touching state:
 * files m365ctl creates as root in state_dir (the store, its lock) would
 * lock the milter and the transport out of them.  No-op unless root.
 */
int
cli_as_service_user(const struct conf *conf)
{
	struct passwd *pw;

	if (geteuid() != 0)
		return 0;
	pw = getpwnam(conf->user);
	if (pw == NULL) {
		fprintf(stderr,
		        "m365ctl: the service user \"%s\" does not exist; refusing to "
		        "create state in %s as root (create the user, or run as it)\n",
		        conf->user, conf->state_dir);
		return -1;
	}
	if (pw->pw_uid == 0)
		return 0;
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0 || setuid(0) == 0) {
		fprintf(stderr, "m365ctl: cannot become %s\n", pw->pw_name);
		return -1;
	}
	return 0;
}

struct conf *
cli_load(const char *conf_file, int quiet_ok)
{
	struct diag diag = {0};
	struct conf *conf = conf_load(conf_file, &diag);
	size_t i;

	for (i = 0; i < diag.n; i++)
		fprintf(stderr, "%s\n", diag.lines[i]);
	if (conf == NULL)
		fprintf(stderr, "%s: %zu error%s, configuration not usable\n", conf_file,
		        diag.n_errors, diag.n_errors == 1 ? "" : "s");
	else if (!quiet_ok)
		printf("configuration OK%s\n", diag.n_warnings ? " (with warnings)" : "");
	diag_free(&diag);
	return conf;
}

static void
print_runtime(void *arg, const char *what, const char *fix)
{
	fprintf(stderr, "%s: error: %s\n    fix: %s\n", (const char *)arg, what, fix);
}

/*
 * compile - write the snapshot pipe(8) deliveries map (conf_snap.c); not
 * an error when it cannot be written: deliveries read the text then.
 */
static void
compile(const char *conf_file, const struct conf *conf)
{
	char why[PATH_MAX + 128], path[PATH_MAX + 8], real[PATH_MAX];

	/* Deliveries look for the snapshot beside the file's real path. */
	if (realpath(conf_file, real) == NULL || strcmp(real, conf_file) != 0) {
		printf("not compiled: give -c the configuration's real path, %s (pipe(8) "
		       "deliveries read the text)\n",
		       realpath(conf_file, real) != NULL ? real
		                                         : "absolute and without symbolic links");
		return;
	}
	if (conf_snap_write(conf, why, sizeof(why)) < 0) {
		printf("not compiled: %s (pipe(8) deliveries read the text)\n", why);
		return;
	}
	conf_snap_path(conf->file, path, sizeof(path));
	printf("compiled: %s (pipe(8) deliveries map it while the files it was made from are "
	       "unchanged)\n",
	       path);
}

int
cmd_check_config(const char *conf_file, int argc, char **argv)
{
	struct diag diag = {0};
	struct conf *conf;
	size_t n, i, warnings;
	bool no_compile = argc == 2 && strcmp(argv[1], "--no-compile") == 0;

	if (argc != 1 && !no_compile) {
		fprintf(stderr, "usage: m365ctl [-c FILE] check-config [--no-compile]\n");
		return 2;
	}
	conf = conf_load_flags(conf_file, &diag, no_compile ? 0 : CONF_SNAPSHOT);
	for (i = 0; i < diag.n; i++)
		fprintf(stderr, "%s\n", diag.lines[i]);
	warnings = diag.n_warnings;
	if (conf == NULL)
		fprintf(stderr, "%s: %zu error%s, configuration not usable\n", conf_file,
		        diag.n_errors, diag.n_errors == 1 ? "" : "s");
	diag_free(&diag);
	if (conf == NULL)
		return 1;
	/* The file is consistent; will the machine let the daemons run it? */
	n = runtime_check(conf, RUNTIME_SECRETS, print_runtime, (void *)conf_file);
	if (n > 0) {
		fprintf(stderr,
		        "%s: %zu error%s: the configuration loads, but would fail at "
		        "run time\n",
		        conf_file, n, n == 1 ? "" : "s");
	} else {
		printf("configuration OK%s\n", warnings ? " (with warnings)" : "");
		if (!no_compile)
			compile(conf_file, conf);
	}
	conf_free(conf);
	return n > 0 ? 1 : 0;
}
