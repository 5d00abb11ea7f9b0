/*
 * cmd_routekey.c - m365ctl route-key [--rotate]: make the key that signs
 * the route header (routekey.h), or put a new one in front.
 *
 * Without --rotate it only creates a missing file (and says what a present
 * one holds), so install scripts may run it every time.  As root, the file
 * is given to the service user, who reads it in the milter (after a reload)
 * and in the transport; mode 0600 either way.
 */
#include "config.h"

#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "conf/routekey.h"

static int
usage(void)
{
	fprintf(stderr, "usage: m365ctl [-c FILE] route-key [--rotate]\n");
	return 2;
}

int
cmd_route_key(const char *conf_file, int argc, char **argv)
{
	static const struct option opts[] = {{"rotate", no_argument, NULL, 'r'},
	                                     {"help", no_argument, NULL, 'h'},
	                                     {NULL, 0, NULL, 0}};
	struct diag diag = {0};
	struct conf *conf;
	struct passwd *pw = NULL;
	struct stat st;
	bool rotate = false, exists;
	struct routekey_err err;
	size_t i;
	int c, rc = 1;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'r')
			rotate = true;
		else
			return usage();
	}
	if (optind != argc)
		return usage();
	/* The key is made before the rest is filled in (a package's first
	 * install, with a sample whose secrets do not exist yet): only the
	 * file's syntax and where route_key_file is matter here. */
	conf = conf_load_flags(conf_file, &diag, CONF_NO_ROUTE_KEYS | CONF_NO_FILES);
	if (conf == NULL) {
		for (i = 0; i < diag.n; i++)
			fprintf(stderr, "%s\n", diag.lines[i]);
		diag_free(&diag);
		return 1;
	}
	diag_free(&diag);
	if (conf->route_key_file == NULL) {
		fprintf(stderr, "m365ctl: no route_key_file (this cannot happen)\n");
		goto out;
	}
	exists = lstat(conf->route_key_file, &st) == 0;
	if (exists && !rotate) {
		struct arena *a = arena_new();
		struct route_key *keys;
		size_t n;
		if (a == NULL || route_keys_read(conf->route_key_file, a, &keys, &n, &err) < 0) {
			fprintf(stderr, "m365ctl: %s\n", a ? err.msg : "out of memory");
			arena_free(a);
			goto out;
		}
		printf("%s holds %zu key(s); key %s signs (--rotate makes a new one)\n",
		       conf->route_key_file, n, keys[0].id);
		arena_free(a);
		rc = 0;
		goto out;
	}
	if (geteuid() == 0) {
		pw = getpwnam(conf->user);
		if (pw == NULL)
			fprintf(stderr,
			        "m365ctl: warning: service user %s does not exist; the key "
			        "stays root's until you run: chown %s %s\n",
			        conf->user, conf->user, conf->route_key_file);
	}
	if (route_keys_write(conf->route_key_file, rotate ? 1 : 0, pw ? pw->pw_uid : 0,
	                     pw ? pw->pw_gid : 0, &err) < 0) {
		fprintf(stderr, "m365ctl: %s\n", err.msg);
		goto out;
	}
	/* Read back exactly as the milter and the transport will. */
	{
		struct arena *a = arena_new();
		struct route_key *keys;
		size_t n = 0;

		if (a == NULL || route_keys_read(conf->route_key_file, a, &keys, &n, &err) < 0 ||
		    n == 0) {
			fprintf(stderr, "m365ctl: wrote %s, but it does not read back: %s\n",
			        conf->route_key_file, a ? err.msg : "out of memory");
			arena_free(a);
			goto out;
		}
		if (rotate && n > 1)
			printf("%s: key %s signs from the milter's next reload (SIGHUP); key %s "
			       "still verifies mail it signed: rotate again once the queue holds "
			       "none\n",
			       conf->route_key_file, keys[0].id, keys[1].id);
		else
			printf("created %s: key %s signs; reload m365-milter (SIGHUP) to use it\n",
			       conf->route_key_file, keys[0].id);
		arena_free(a);
	}
	rc = 0;
out:
	conf_free(conf);
	return rc;
}
