/*
 * conf_snap.c - the compiled configuration: a snapshot of a loaded
 * configuration that a pipe(8) delivery maps instead of parsing the text.
 *
 * Why: pipe(8) starts a process per delivery, and reading and validating
 * the text costs in proportion to its size (libconfuse's own work per
 * section: about 30 us a mailbox, 0.35 s at 10,000 mailboxes).  Mapping a
 * snapshot costs the same at 10 mailboxes as at 20,000.
 *
 * How: `m365ctl check-config` loads the configuration into a region arena
 * (util.h), one mapping at SNAP_BASE that holds the whole struct conf
 * with every pointer into itself.  After the checks it writes the bytes in
 * use to FILE.snap beside the configuration file (4 KiB of header first).
 * A reader maps them back at SNAP_BASE (MAP_FIXED_NOREPLACE: never over
 * anything), so every pointer holds without relocation; if the address is
 * taken, the text is read as before.
 *
 * What makes it safe to use:
 *   - freshness: the header names every file the load read (the main file,
 *     domain_file, route_key_file) with its device, inode, size, mtime and
 *     ctime (which no one can set back), and its SHA-256.  Any stat field
 *     that differs makes the reader hash the file: the same content is
 *     still fresh (a touch), other content is stale and the text is read.
 *     The load itself records them (conf_source_read: the stat before the
 *     read and the digest of the bytes parsed), so a file changed while
 *     the check ran is never taken for what was checked.  A file changed
 *     just before the check has no stat recorded (racy()): readers hash
 *     it every time, slower but right.
 *   - layout: the header holds CONF_LAYOUT, a digest of the headers that
 *     define the structures (conf_layout.h, made by the build): a snapshot
 *     from another build is stale.
 *   - pointers: before writing, every aligned word of the region is
 *     checked not to point into any other mapping of the writer (a string
 *     literal, the heap): such a pointer would be garbage in the reader.
 *     One found means a bug; the snapshot is not written and the text is
 *     read, slower but right.
 *   - trust: a snapshot holds pointers a reader follows, so it is as
 *     trusted as the configuration itself: the reader takes it only if its
 *     owner is root or the configuration's owner and neither group nor
 *     others may write it.  It is written with the configuration's owner
 *     and, since it holds the route keys, readable besides only through
 *     the route key owner's primary group (snap_mode).
 *
 * Validation: what conf_load() checked stays checked, except that the
 * files the configuration names (password, key and certificate files) are
 * not looked at again per delivery: one that went away fails the delivery
 * with its own clear error, as it would between a load and its use.
 */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "conf.h"
#include "conf_layout.h"
#include "util/log.h"
#include "util/util.h"

#define SNAP_BASE    ((void *)(uintptr_t)0x3a5c00000000ULL)
#define SNAP_RESERVE ((size_t)1 << 30)
#define SNAP_HDR     4096
#define SNAP_MAGIC   "M3CSNAP1"
#define SNAP_FILES   3
#define SNAP_MAX_SRC (16u << 20) /* MAX_CONF_FILE; a route key file is far smaller */

struct snap_file {
	char path[1024];
	uint64_t dev, ino, size;
	int64_t mtime_s, mtime_ns, ctime_s, ctime_ns;
	unsigned char sha[SHA256_DIGEST_LENGTH];
};

struct snap_hdr {
	char magic[8];
	char layout[72];
	uint64_t base, used, conf_off;
	uint32_t n_files;
	struct snap_file f[SNAP_FILES];
};

_Static_assert(sizeof(struct snap_hdr) <= SNAP_HDR, "snapshot header exceeds its page");

void
conf_snap_path(const char *conf_path, char *buf, size_t size)
{
	snprintf(buf, size, "%s.snap", conf_path);
}

struct arena *
conf_snap_arena(void)
{
	return arena_new_region(SNAP_BASE, SNAP_RESERVE);
}

/* sha_file - the SHA-256 of path's content (at most SNAP_MAX_SRC bytes) */
static int
sha_file(const char *path, unsigned char out[SHA256_DIGEST_LENGTH])
{
	unsigned char buf[65536];
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	size_t total = 0;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = -1;

	if (fd < 0 || ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out;
	while ((n = read(fd, buf, sizeof(buf))) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		total += (size_t)(n < 0 ? 0 : n);
		if (n < 0 || total > SNAP_MAX_SRC || EVP_DigestUpdate(ctx, buf, (size_t)n) != 1)
			goto out;
	}
	if (EVP_DigestFinal_ex(ctx, out, NULL) == 1)
		rc = 0;
out:
	if (fd >= 0)
		close(fd);
	EVP_MD_CTX_free(ctx);
	return rc;
}

static void
stamp(struct snap_file *f, const struct stat *st)
{
	f->dev = (uint64_t)st->st_dev;
	f->ino = (uint64_t)st->st_ino;
	f->size = (uint64_t)st->st_size;
	f->mtime_s = st->st_mtim.tv_sec;
	f->mtime_ns = st->st_mtim.tv_nsec;
	f->ctime_s = st->st_ctim.tv_sec;
	f->ctime_ns = st->st_ctim.tv_nsec;
}

/* Sources: what a CONF_SNAPSHOT load read ---------------------------------------- */

static struct conf_source *
new_source(struct conf *c, const char *path, const struct stat *st)
{
	struct conf_source *s;

	if (c->n_sources == CONF_SOURCES) {
		c->sources_unsure = true;
		return NULL;
	}
	s = &c->sources[c->n_sources++];
	s->path = arena_strdup(c->arena, path);
	s->dev = (unsigned long long)st->st_dev;
	s->ino = (unsigned long long)st->st_ino;
	s->size = (unsigned long long)st->st_size;
	s->mtime_s = st->st_mtim.tv_sec;
	s->mtime_ns = st->st_mtim.tv_nsec;
	s->ctime_s = st->st_ctim.tv_sec;
	s->ctime_ns = st->st_ctim.tv_nsec;
	return s;
}

void
conf_source_read(struct conf *c, const char *path, const struct stat *before, const void *buf,
                 size_t len)
{
	struct conf_source *s = new_source(c, path, before);
	unsigned int n = 0;

	/* The bytes the parser got: a change after the stat shows as a
	 * digest that no longer matches, never as a fresh snapshot. */
	if (s != NULL && EVP_Digest(buf, len, s->sha, &n, EVP_sha256(), NULL) != 1)
		c->sources_unsure = true;
}

void
conf_source_file(struct conf *c, const char *path, const struct stat *before)
{
	struct conf_source *s = new_source(c, path, before);
	struct stat after;

	/* Read (by its own reader) between the two stats: the same stats,
	 * the same content. */
	if (s == NULL || sha_file(path, s->sha) < 0 || stat(path, &after) < 0 ||
	    (unsigned long long)after.st_dev != s->dev || after.st_mtim.tv_sec != s->mtime_s ||
	    (unsigned long long)after.st_ino != s->ino ||
	    (unsigned long long)after.st_size != s->size || after.st_ctim.tv_sec != s->ctime_s ||
	    after.st_ctim.tv_nsec != s->ctime_ns || after.st_mtim.tv_nsec != s->mtime_ns)
		c->sources_unsure = true;
}

/* The writer ------------------------------------------------------------------------ */

/*
 * racy - whether a source's stat cannot vouch for its content: a change
 * after the load read it could have left every stat field as it was.
 * Such a file's stat is not recorded, and every reader compares its
 * digest instead (as git does with a racily clean index).
 *
 * A file's time stamps come from the kernel's coarse real-time clock,
 * truncated to the file system's granularity.  The load read the clock
 * (sources_t0) before reading any file, so any change after the read is
 * stamped at or after t0; a stamp well before t0 (10 ms, more than the
 * granularity of any file system with sub-second stamps) can therefore
 * never be repeated by a later change.  Stamps with no sub-second part
 * (1 s or 2 s file systems, or an unlucky instant) get the old rule: two
 * seconds older than now, and so do files on a network file system,
 * stamped by another machine's clock (stamped_here).
 */
static bool
older_than(long long s, long long ns, long long t_s, long long t_ns, long long margin_ns)
{
	if (s < t_s - 10 || s > t_s + 10) /* far from t: no arithmetic to overflow */
		return s < t_s;
	return (t_s - s) * 1000000000LL + (t_ns - ns) > margin_ns;
}

/*
 * stamped_here - whether the file system stamps path from this machine's
 * clock (a local file system).  On NFS, CIFS, FUSE and the like the stamp
 * comes from a server, whose tick and clock are not ours: the 2 s rule.
 */
static bool
stamped_here(const char *path)
{
	static const unsigned long local[] = {
	    0xEF53UL,     /* ext2, ext3, ext4 */
	    0x58465342UL, /* xfs */
	    0x9123683EUL, /* btrfs */
	    0x01021994UL, /* tmpfs */
	    0x794C7630UL, /* overlayfs (a container's root) */
	    0x2FC12FC1UL, /* zfs */
	    0xF2F52010UL, /* f2fs */
	    0x858458F6UL, /* ramfs */
	};
	struct statfs sf;
	size_t i;

	if (statfs(path, &sf) < 0)
		return false;
	for (i = 0; i < sizeof(local) / sizeof(local[0]); i++)
		if ((unsigned long)sf.f_type == local[i])
			return true;
	return false;
}

static bool
racy(const struct conf *c, const struct conf_source *src)
{
	long long now = (long long)time(NULL);

	if (src->mtime_ns != 0 && src->ctime_ns != 0 && c->sources_t0_s != 0 &&
	    stamped_here(src->path))
		return !(older_than(src->mtime_s, src->mtime_ns, c->sources_t0_s, c->sources_t0_ns,
		                    10000000LL) &&
		         older_than(src->ctime_s, src->ctime_ns, c->sources_t0_s, c->sources_t0_ns,
		                    10000000LL));
	return src->mtime_s + 2 >= now || src->ctime_s + 2 >= now;
}

static int
write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

struct range {
	uintptr_t lo, hi;
	char name[64]; /* the mapping's file or [heap], for the message */
};

/*
 * other_mappings - the writer's mappings other than [base, base+size)
 * that a pointer in the configuration could point into: readable ones,
 * but not an anonymous mapping of 1 GiB or more - a sanitizer's shadow
 * memory spans terabytes, where two adjacent ints (a timeout beside an
 * enum) read as one word would look like a pointer; nothing the loader
 * allocates lives there.  max is reached: the list is incomplete (n ==
 * max), which the caller treats as a failure.
 */
static size_t
other_mappings(struct range *r, size_t max, uintptr_t base, size_t size)
{
	FILE *fp = fopen("/proc/self/maps", "r");
	char line[512], perms[8];
	size_t n = 0;

	if (fp == NULL)
		return 0;
	while (n < max && fgets(line, sizeof(line), fp) != NULL) {
		unsigned long lo, hi;
		const char *name;
		if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3)
			continue;
		if (lo >= base && hi <= base + size)
			continue;
		name = strrchr(line, ' ');
		name = name != NULL ? name + 1 : "";
		if (perms[0] != 'r' || (name[0] == '\n' && hi - lo >= (1UL << 30)))
			continue;
		r[n].lo = lo;
		r[n].hi = hi;
		m3_strlcpy(r[n].name, name, sizeof(r[n].name));
		r[n].name[strcspn(r[n].name, "\n")] = '\0';
		n++;
	}
	fclose(fp);
	return n;
}

/* stray_pointer - whether a word in the region points into another
 * mapping; if one does, why says where */
static bool
stray_pointer(const void *base, size_t used, size_t reserve, char *why, size_t size)
{
	static struct range r[512];
	size_t n = other_mappings(r, 512, (uintptr_t)base, reserve), i, k;
	const uintptr_t *w = base;

	if (n == 0 || n == 512) {
		snprintf(why, size, "cannot read all of /proc/self/maps to check the snapshot");
		return true;
	}
	for (i = 0; i < used / sizeof(*w); i++)
		for (k = 0; k < n; k++)
			if (w[i] >= r[k].lo && w[i] < r[k].hi) {
				snprintf(why, size,
				         "a pointer out of the snapshot at offset %zu, into %s (a "
				         "bug: please report)",
				         i * sizeof(*w),
				         r[k].name[0] ? r[k].name : "anonymous memory");
				return true;
			}
	return false;
}

/* snap_mode - the snapshot's owner (the configuration's: the reader
 * trusts no other but root), its group and mode: it holds the route keys,
 * so only the route key file's owner may read it besides (through its
 * primary group, the service user's own on a packaged system); without a
 * route key, the configuration's group and mode */
static int
snap_mode(const struct conf *c, uid_t *uid, gid_t *gid, mode_t *mode)
{
	struct stat cst, kst;
	const struct passwd *pw;

	if (stat(c->file, &cst) < 0)
		return -1;
	*uid = cst.st_uid;
	*gid = cst.st_gid;
	*mode = cst.st_mode & 0644;
	if (c->route_key_file != NULL && stat(c->route_key_file, &kst) == 0) {
		*mode = 0600;
		if (kst.st_uid != cst.st_uid && (pw = getpwuid(kst.st_uid)) != NULL) {
			*gid = pw->pw_gid;
			*mode = 0640;
		}
	}
	return 0;
}

int
conf_snap_write(const struct conf *c, char *why, size_t size)
{
	struct snap_hdr *h;
	const void *base;
	size_t used;
	char path[PATH_MAX + 8], tmp[PATH_MAX + 32];
	uid_t uid;
	gid_t gid;
	mode_t mode;
	int fd = -1, rc = -1;

	arena_region(c->arena, &base, &used);
	if (base != SNAP_BASE || used == 0 || c->file[0] != '/') {
		snprintf(why, size, "the configuration was not loaded for a snapshot");
		return -1;
	}
	if (stray_pointer(base, used, SNAP_RESERVE, why, size))
		return -1;
	h = calloc(1, SNAP_HDR);
	if (h == NULL) {
		snprintf(why, size, "out of memory");
		return -1;
	}
	memcpy(h->magic, SNAP_MAGIC, 8);
	m3_strlcpy(h->layout, CONF_LAYOUT, sizeof(h->layout));
	h->base = (uint64_t)(uintptr_t)base;
	h->used = used;
	h->conf_off = (uint64_t)((const char *)c - (const char *)base);
	if (c->sources_unsure || c->n_sources == 0 || strcmp(c->sources[0].path, c->file) != 0) {
		snprintf(why, size, "a file changed while it was read; run the check again");
		goto out;
	}
	for (h->n_files = 0; h->n_files < c->n_sources; h->n_files++) {
		const struct conf_source *src = &c->sources[h->n_files];
		struct snap_file *f = &h->f[h->n_files];
		if (strlen(src->path) >= sizeof(f->path)) {
			snprintf(why, size, "%s: a name too long for the snapshot", src->path);
			goto out;
		}
		m3_strlcpy(f->path, src->path, sizeof(f->path));
		memcpy(f->sha, src->sha, sizeof(f->sha));
		if (racy(c, src))
			continue;
		f->dev = src->dev;
		f->ino = src->ino;
		f->size = src->size;
		f->mtime_s = src->mtime_s;
		f->mtime_ns = src->mtime_ns;
		f->ctime_s = src->ctime_s;
		f->ctime_ns = src->ctime_ns;
	}
	if (snap_mode(c, &uid, &gid, &mode) < 0) {
		snprintf(why, size, "%s: %s", c->file, strerror(errno));
		goto out;
	}
	conf_snap_path(c->file, path, sizeof(path));
	snprintf(tmp, sizeof(tmp), "%s.%ld.tmp", path, (long)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		snprintf(why, size, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	if (write_all(fd, h, SNAP_HDR) < 0 || write_all(fd, base, used) < 0 ||
	    (geteuid() == 0 && fchown(fd, uid, gid) < 0) || fchmod(fd, mode) < 0 || fsync(fd) < 0) {
		snprintf(why, size, "%s: %s", tmp, strerror(errno));
		goto out;
	}
	if (close(fd) < 0 || rename(tmp, path) < 0) {
		fd = -1;
		snprintf(why, size, "%s: %s", path, strerror(errno));
		goto out;
	}
	fd = -1;
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (rc < 0)
		unlink(tmp);
	free(h);
	return rc;
}

/* The reader ------------------------------------------------------------------------ */

static bool
fresh(const struct snap_file *f)
{
	struct snap_file now;
	struct stat st;

	if (stat(f->path, &st) < 0)
		return false;
	stamp(&now, &st);
	if (now.dev == f->dev && now.ino == f->ino && now.size == f->size &&
	    now.mtime_s == f->mtime_s && now.mtime_ns == f->mtime_ns && now.ctime_s == f->ctime_s &&
	    now.ctime_ns == f->ctime_ns)
		return true;
	/* Touched, copied, restored, or changed just before the check (its
	 * stat was not recorded): the content decides. */
	log_debug("%s: stat differs from the snapshot's: comparing its content", f->path);
	return sha_file(f->path, now.sha) == 0 && memcmp(now.sha, f->sha, sizeof(now.sha)) == 0;
}

struct conf *
conf_snap_load(const char *conf_path, char *why, size_t size)
{
	char real[PATH_MAX], path[PATH_MAX + 8];
	struct snap_hdr *h = NULL;
	struct stat st, cst;
	struct conf *c = NULL;
	size_t mapped;
	void *p;
	uint32_t i;
	int fd;

	why[0] = '\0';
	if (realpath(conf_path, real) == NULL || stat(real, &cst) < 0) {
		snprintf(why, size, "%s: %s", conf_path, strerror(errno));
		return NULL;
	}
	conf_snap_path(real, path, sizeof(path));
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		snprintf(why, size, "%s: %s", path, strerror(errno));
		return NULL;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) ||
	    (st.st_uid != 0 && st.st_uid != cst.st_uid) || (st.st_mode & 022) != 0) {
		snprintf(why, size,
		         "%s: not trusted (owner root or the configuration's, written by "
		         "no one else)",
		         path);
		goto out;
	}
	h = malloc(SNAP_HDR);
	if (h == NULL || pread(fd, h, SNAP_HDR, 0) != SNAP_HDR ||
	    memcmp(h->magic, SNAP_MAGIC, 8) != 0 || h->base != (uint64_t)(uintptr_t)SNAP_BASE ||
	    h->used == 0 || h->used > SNAP_RESERVE || (uint64_t)st.st_size != SNAP_HDR + h->used ||
	    h->conf_off + sizeof(*c) > h->used || h->n_files == 0 || h->n_files > SNAP_FILES) {
		snprintf(why, size, "%s: not a snapshot of this format", path);
		goto out;
	}
	h->layout[sizeof(h->layout) - 1] = '\0';
	if (strcmp(h->layout, CONF_LAYOUT) != 0) {
		snprintf(why, size, "%s: written by another build", path);
		goto out;
	}
	for (i = 0; i < h->n_files; i++) {
		h->f[i].path[sizeof(h->f[i].path) - 1] = '\0';
		if (!fresh(&h->f[i])) {
			snprintf(why, size, "%s changed since the snapshot", h->f[i].path);
			goto out;
		}
	}
	if (strcmp(h->f[0].path, real) != 0) {
		snprintf(why, size, "%s: made for %s", path, h->f[0].path);
		goto out;
	}
	mapped = (size_t)h->used;
	p = mmap(SNAP_BASE, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED_NOREPLACE, fd,
	         SNAP_HDR);
	if (p == MAP_FAILED || p != SNAP_BASE) {
		if (p != MAP_FAILED)
			munmap(p, mapped);
		snprintf(why, size, "%s: its address is taken in this process", path);
		goto out;
	}
	c = (struct conf *)((char *)p + h->conf_off);
	if (arena_adopt_region(p, mapped) == NULL || (void *)c->arena != p) {
		munmap(p, mapped);
		c = NULL;
		snprintf(why, size, "%s: damaged", path);
	}
out:
	free(h);
	close(fd);
	return c;
}

struct conf *
conf_load_fast(const char *path, bool *from_snapshot)
{
	char why[PATH_MAX + 128];
	struct conf *c = conf_snap_load(path, why, sizeof(why));

	*from_snapshot = c != NULL;
	if (c != NULL)
		return c;
	/* No snapshot is the ordinary case before the first check-config:
	 * only a debug line. */
	log_debug("configuration snapshot not used: %s", why);
	return conf_load_logged(path, false);
}
