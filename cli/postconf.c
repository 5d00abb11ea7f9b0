/*
 * postconf.c - ask Postfix about its own configuration by running
 * postconf(1), the one interface Postfix promises for that (it honours
 * MAIL_CONFIG, so a private instance is read the same way).  No shell: the
 * arguments go to execvp() as they are.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

#define POSTCONF_MAX (1024 * 1024) /* postconf -M of a large master.cf */

int
cli_postconf(const char *const args[], struct sbuf *out)
{
	char *argv[16];
	char buf[4096];
	size_t n = 0;
	ssize_t r;
	pid_t pid;
	int p[2], status, fd;

	argv[n++] = (char *)"postconf";
	for (; args[n - 1] != NULL && n < 15; n++)
		argv[n] = (char *)args[n - 1];
	argv[n] = NULL;
	sbuf_init(out, POSTCONF_MAX);
	if (pipe(p) < 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -1;
	}
	if (pid == 0) {
		dup2(p[1], STDOUT_FILENO);
		fd = open("/dev/null", O_RDWR);
		if (fd >= 0) {
			dup2(fd, STDIN_FILENO);
			dup2(fd, STDERR_FILENO);
		}
		close(p[0]);
		close(p[1]);
		/* Where Debian and a source install put it, whatever PATH says. */
		setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin:/usr/local/sbin", 0);
		execvp("postconf", argv);
		_exit(127);
	}
	close(p[1]);
	for (;;) {
		r = read(p[0], buf, sizeof(buf));
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		if (sbuf_add(out, buf, (size_t)r) < 0) {
			kill(pid, SIGTERM);
			break;
		}
	}
	close(p[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	if (out->failed || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		sbuf_free(out);
		return -1;
	}
	return 0;
}

int
cli_postconf_value(const char *name, char *val, size_t len)
{
	const char *args[] = {"-h", name, NULL};
	struct sbuf out;
	const char *s;
	size_t n;

	if (cli_postconf(args, &out) < 0)
		return -1;
	s = sbuf_str(&out);
	n = strcspn(s, "\n");
	if (n == 0 || n >= len) {
		sbuf_free(&out);
		return -1;
	}
	memcpy(val, s, n);
	val[n] = '\0';
	sbuf_free(&out);
	return 0;
}
