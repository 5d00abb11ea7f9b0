/*
 * daemon.c - m365-milter's process life, top to bottom:
 *
 *   bind the socket (as root) -> detach -> pid file -> drop to the service
 *   user -> supervisor, which runs the libmilter worker as a child.
 *
 * Why a supervisor: libmilter owns SIGHUP (its signal thread treats it as
 * "stop"), and a second thread waiting for the same signal in the same
 * process would race it.  So the supervisor, a separate process, receives
 * SIGHUP, checks the file, and asks the worker to reload with SIGUSR1,
 * which libmilter leaves alone; both reload all or nothing (snapshot.c).  SIGTERM
 * and SIGINT are passed on and the supervisor exits once the worker has
 * finished its sessions.  A worker that dies any other way is restarted:
 * the listening socket stays open in the supervisor, so the MTA only sees
 * the sessions that were in flight fail (and answers its
 * milter_default_action, tempfail as we tell administrators to set it).
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util/log.h"
#include "milter.h"
#include "util/util.h"

#define RESTART_DELAY 1 /* seconds between worker restarts */

static const char *conf_file;

/* unix_socket_path - the file of a unix:/local: socket, or NULL */
static const char *
unix_socket_path(const char *sock)
{
	if (strncmp(sock, "unix:", 5) == 0)
		return sock + 5;
	if (strncmp(sock, "local:", 6) == 0)
		return sock + 6;
	if (sock[0] == '/')
		return sock;
	return NULL;
}

/*
 * make_parent_dir - create the directory of the unix socket or of the pid
 * file if it is missing (a package, tmpfiles or systemd's RuntimeDirectory=
 * usually has), owned by the service user so that the milter can remove
 * its files when it stops.  Only the last component: a missing
 * /var/spool/postfix means Postfix is not installed, which is said.
 */
static int
make_parent_dir(const char *sock, const struct passwd *pw, const char *what)
{
	char dir[4096];
	char *slash;
	struct stat st;

	m3_strlcpy(dir, sock, sizeof(dir));
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return 0;
	*slash = '\0';
	if (stat(dir, &st) == 0)
		return 0;
	if (mkdir(dir, 0750) < 0) {
		log_err("cannot create %s for the %s", dir, what);
		return -1;
	}
	if (pw != NULL && chown(dir, pw->pw_uid, pw->pw_gid) < 0)
		log_warn("chown %s", dir);
	return 0;
}

/*
 * lock_pid_file - open and lock the pid file before anything else, so that
 * a second m365-milter stops here instead of taking over (and, when it
 * stops, removing) the first one's socket.  The file lives in a directory
 * the service user owns, and we are still root: never follow a symlink,
 * never truncate anything but a plain file of ours with one link.  Returns
 * the descriptor (kept open: the lock lives as long as the supervisor).
 */
static int
lock_pid_file(const char *path, const struct passwd *pw)
{
	struct stat st;
	char buf[32];
	ssize_t n;
	int fd;

	fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0) {
		log_err("pid file %s%s", path,
		        errno == ELOOP ? " is a symbolic link; remove it" : "");
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_nlink != 1 ||
	    (st.st_uid != geteuid() && (pw == NULL || st.st_uid != pw->pw_uid))) {
		log_errx("pid file %s: not a plain file of ours (one link, owned by us); "
		         "remove it",
		         path);
		close(fd);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		n = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[n > 0 ? n : 0] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		log_errx("already running (pid %s, %s): not starting a second one",
		         buf[0] ? buf : "?", path);
		close(fd);
		return -1;
	}
	return fd;
}

/* write_pid - our pid into the locked file (after detach: the pid is final) */
static void
write_pid(int fd, const char *path)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());

	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, (size_t)n, 0) != n)
		log_warn("pid file %s", path);
}

static int
detach(void)
{
	pid_t pid = fork();
	int fd;

	if (pid < 0) {
		log_err("fork");
		return -1;
	}
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		log_warn("setsid");
	if (chdir("/") < 0)
		log_warn("chdir /");
	fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, 0);
		dup2(fd, 1);
		dup2(fd, 2);
		if (fd > 2)
			close(fd);
	}
	return 0;
}

static int
drop_privileges(const struct passwd *pw)
{
	if (pw == NULL)
		return 0;
	if (pw->pw_uid == 0) {
		log_warnx("running as root: set user = to an unprivileged account");
		return 0;
	}
	if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 ||
	    setuid(pw->pw_uid) < 0) {
		log_err("cannot become user %s", pw->pw_name);
		return -1;
	}
	if (setuid(0) == 0) { /* the drop must be permanent */
		log_errx("could regain root after dropping privileges");
		return -1;
	}
	return 0;
}

/* Worker --------------------------------------------------------------------------- */

/* The worker's housekeeping thread: reloads on SIGUSR1, and flushes the
 * store's counters to disk once a second (lib/store/store_lmdb.c: their
 * commits skip the flush, so a machine crash loses at most that second). */
static void *
reload_thread(void *arg)
{
	const struct timespec second = {1, 0};
	sigset_t set;

	(void)arg;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	for (;;) {
		int sig = sigtimedwait(&set, NULL, &second);
		if (sig == SIGUSR1) {
			log_reopen(); /* a rotated log_file */
			snap_reload(conf_file, true);
		} else if (sig < 0 && errno == EAGAIN) {
			mstore_flush();
		}
	}
	return NULL;
}

static void
worker(void)
{
	sigset_t set;
	pthread_t tid;

	/* Die with the supervisor, even if it is killed outright. */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() == 1)
		_exit(0);
	/* The require_spf_pass look-ups, here rather than in the supervisor. */
	if (snap_worker_init() < 0) {
		log_errx("worker: no configuration, or out of memory");
		_exit(1);
	}
	/* The reload thread starts while every signal is still blocked (the
	 * supervisor's mask), so that it only ever takes SIGUSR1: a SIGTERM
	 * landing on it would kill the worker outright instead of letting
	 * libmilter stop it cleanly. */
	if (pthread_create(&tid, NULL, reload_thread, NULL) != 0) {
		log_errx("cannot start the reload thread");
		_exit(1);
	}
	pthread_detach(tid);
	/* SIGUSR1 stays blocked here: only reload_thread takes it. */
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGCHLD);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	{
		struct snapshot *snap = snap_get();
		if (snap != NULL) {
			metrics_start(snap->conf); /* a failure is logged, not fatal */
			snap_put(snap);
		}
	}
	_exit(milter_run() == 0 ? 0 : 1);
}

static pid_t
spawn_worker(void)
{
	pid_t pid = fork();

	if (pid < 0) {
		log_err("fork");
		return -1;
	}
	if (pid == 0)
		worker();
	return pid;
}

/* Supervisor -------------------------------------------------------------------------- */

static int
supervise(void)
{
	sigset_t set;
	pid_t child;
	int stopping = 0, sig, status;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGCHLD);
	child = spawn_worker();
	if (child < 0)
		return 1;
	log_info("started (worker %ld)", (long)child);
	for (;;) {
		if (sigwait(&set, &sig) != 0)
			continue;
		switch (sig) {
		case SIGHUP:
			/*
			 * Validate here first: a broken file is reported once
			 * and the worker is left alone.  The supervisor keeps
			 * the good snapshot for any worker it restarts.
			 */
			log_reopen(); /* a rotated log_file */
			log_info("SIGHUP: reloading %s", conf_file);
			if (snap_reload(conf_file, false) == 0 && child > 0)
				kill(child, SIGUSR1);
			break;
		case SIGTERM:
		case SIGINT:
			if (stopping++ == 0) {
				log_info("stopping");
				if (child > 0)
					kill(child, SIGTERM);
			}
			if (child <= 0)
				return 0;
			break;
		case SIGCHLD:
			while (child > 0 && waitpid(child, &status, WNOHANG) == child) {
				child = 0;
				if (stopping)
					return 0;
				if (WIFSIGNALED(status))
					log_errx("worker killed by signal %d; restarting",
					         WTERMSIG(status));
				else
					log_errx("worker exited with status %d; restarting",
					         WEXITSTATUS(status));
				sleep(RESTART_DELAY);
				child = spawn_worker();
				if (child > 0)
					log_info("worker %ld started", (long)child);
			}
			break;
		}
	}
}

int
daemon_run(const struct daemon_opts *o, struct conf *conf)
{
	const char *path = unix_socket_path(conf->milter.socket);
	struct passwd *pw = NULL;
	char *pid_file = NULL, *sock_path = NULL;
	sigset_t set;
	int rc, pid_fd = -1;

	conf_file = o->conf_file;
	if (geteuid() == 0) {
		pw = getpwnam(conf->user);
		if (pw == NULL) {
			log_errx("user \"%s\" does not exist: create it (useradd "
			         "--system %s) or set user = in %s",
			         conf->user, conf->user, conf_file);
			goto fail;
		}
	}
	/*
	 * Block the signals the supervisor waits for before any thread or
	 * child exists, so that none of them is lost or taken by default.
	 */
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);

	if (milter_register() < 0)
		goto fail;
	if (path != NULL && make_parent_dir(path, pw, "milter socket") < 0)
		goto fail;
	if (conf->milter.pid_file != NULL) {
		if (make_parent_dir(conf->milter.pid_file, pw, "pid file") < 0)
			goto fail;
		pid_file = strdup(conf->milter.pid_file);
		if (pid_file == NULL || (pid_fd = lock_pid_file(pid_file, pw)) < 0) {
			free(pid_file);
			pid_file = NULL; /* not ours to remove */
			goto fail;
		}
	}
	umask(0117); /* the unix socket: 0660, owner and group only */
	if (milter_open(conf) < 0)
		goto fail;
	/* lchown: the directory is the service user's, and a symlink put in
	 * place of the socket must not hand it another file. */
	if (path != NULL && pw != NULL && lchown(path, pw->pw_uid, pw->pw_gid) < 0)
		log_warn("chown %s", path);
	if (!o->foreground && detach() < 0)
		goto fail;
	umask(022);
	/* A reload frees conf: keep what is needed at exit. */
	if (path != NULL)
		sock_path = strdup(path);
	if (pid_fd >= 0)
		write_pid(pid_fd, pid_file);
	if (drop_privileges(pw) < 0)
		goto fail;
	snap_init(conf);
	rc = supervise();
	snap_shutdown();
	if (pid_file != NULL && unlink(pid_file) < 0)
		log_warn("pid file %s", pid_file);
	if (pid_fd >= 0)
		close(pid_fd);
	if (sock_path != NULL && unlink(sock_path) < 0 && errno != ENOENT)
		log_warn("socket %s", sock_path);
	free(pid_file);
	free(sock_path);
	log_info("stopped");
	return rc;
fail:
	/* Not yet handed to the snapshot: ours to free. */
	if (pid_file != NULL)
		unlink(pid_file);
	if (pid_fd >= 0)
		close(pid_fd);
	free(pid_file);
	free(sock_path);
	conf_free(conf);
	return 1;
}
