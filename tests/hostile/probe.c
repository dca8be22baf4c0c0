/* The isolation probe: runs inside the sandbox as a judged C program and checks, from
 * the inside, the properties the sandbox promises. One line per property, "PASS name"
 * or "FAIL name: detail". tests/tests/hostile.rs expects every line to be PASS. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/utsname.h>
#include <unistd.h>

extern char **environ;

static void check(const char *name, int ok, const char *detail) {
    if (ok) printf("PASS %s\n", name);
    else printf("FAIL %s: %s\n", name, detail);
}

/* The value of "Key:" in /proc/self/status, or "" */
static const char *status_field(const char *key) {
    static char line[512];
    static char value[512];
    value[0] = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return value;
    size_t k = strlen(key);
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, k) == 0 && line[k] == ':') {
            char *v = line + k + 1;
            while (*v == ' ' || *v == '\t') v++;
            v[strcspn(v, "\n")] = 0;
            snprintf(value, sizeof value, "%s", v);
            break;
        }
    }
    fclose(f);
    return value;
}

static int absent(const char *path) {
    struct stat st;
    return lstat(path, &st) < 0 && errno == ENOENT;
}

static int mount_flag(const char *path, unsigned long flag) {
    struct statvfs s;
    return statvfs(path, &s) == 0 && (s.f_flag & flag) == flag;
}

static int writable(const char *dir) {
    char p[256];
    snprintf(p, sizeof p, "%s/judge-hostile-probe", dir);
    int fd = open(p, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) return 0;
    int ok = write(fd, "x", 1) == 1;
    close(fd);
    unlink(p);
    return ok;
}

static int rlimit_is(int res, rlim_t soft_max, rlim_t hard_max) {
    struct rlimit r;
    return getrlimit(res, &r) == 0 && r.rlim_cur != RLIM_INFINITY && r.rlim_max != RLIM_INFINITY &&
           r.rlim_cur <= soft_max && r.rlim_max <= hard_max;
}

int main(void) {
    char d[512];
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    getresuid(&ru, &eu, &su);
    getresgid(&rg, &eg, &sg);
    snprintf(d, sizeof d, "uid %u %u %u", ru, eu, su);
    check("uid-not-root", ru != 0 && eu != 0 && su != 0, d);
    snprintf(d, sizeof d, "gid %u %u %u", rg, eg, sg);
    check("gid-not-root", rg != 0 && eg != 0 && sg != 0, d);
    gid_t groups[64];
    int ng = getgroups(64, groups);
    snprintf(d, sizeof d, "%d supplementary groups", ng);
    check("no-supplementary-groups", ng == 0, d);

    const char *caps[] = {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"};
    for (int i = 0; i < 5; i++) {
        const char *v = status_field(caps[i]);
        char name[32];
        snprintf(name, sizeof name, "%s-zero", caps[i]);
        check(name, strcmp(v, "0000000000000000") == 0, v);
    }
    check("no-new-privs", strcmp(status_field("NoNewPrivs"), "1") == 0, status_field("NoNewPrivs"));
    check("seccomp-filter", strcmp(status_field("Seccomp"), "2") == 0, status_field("Seccomp"));
    check("no-new-privs-prctl", prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1, "prctl says 0");

    /* pid 1 is the sandbox's init, our parent, and only the run's processes are visible. */
    snprintf(d, sizeof d, "ppid %d", getppid());
    check("parent-is-init", getppid() == 1, d);
    int pids = 0;
    DIR *proc = opendir("/proc");
    if (proc) {
        struct dirent *e;
        while ((e = readdir(proc)))
            if (e->d_name[0] >= '0' && e->d_name[0] <= '9') pids++;
        closedir(proc);
    }
    snprintf(d, sizeof d, "%d processes visible", pids);
    /* Only the program itself: init runs as root and /proc hides other uids. */
    check("few-processes-visible", pids >= 1 && pids <= 2, d);

    /* Network: only lo, in /proc/net/dev (two header lines, then one per interface). */
    FILE *nd = fopen("/proc/net/dev", "r");
    int ifaces = 0, only_lo = nd != NULL;
    char line[512];
    d[0] = 0;
    if (nd) {
        for (int n = 0; fgets(line, sizeof line, nd); n++) {
            if (n < 2) continue;
            char name[64];
            if (sscanf(line, " %63[^:]", name) == 1) {
                ifaces++;
                if (strcmp(name, "lo") != 0) {
                    only_lo = 0;
                    snprintf(d, sizeof d, "interface %s", name);
                }
            }
        }
        fclose(nd);
    }
    check("only-loopback", only_lo && ifaces == 1, d[0] ? d : "no /proc/net/dev or no lo");

    struct utsname u;
    uname(&u);
    check("hostname-judge", strcmp(u.nodename, "judge") == 0, u.nodename);

    /* The cgroup namespace hides the host's cgroup tree: every line ends in ":/". */
    FILE *cg = fopen("/proc/self/cgroup", "r");
    int cg_ok = cg != NULL;
    d[0] = 0;
    if (cg) {
        while (fgets(line, sizeof line, cg)) {
            line[strcspn(line, "\n")] = 0;
            size_t n = strlen(line);
            if (n < 2 || strcmp(line + n - 2, ":/") != 0) {
                cg_ok = 0;
                snprintf(d, sizeof d, "%s", line);
            }
        }
        fclose(cg);
    }
    check("cgroup-namespace", cg_ok, d);

    check("root-read-only", mount_flag("/", ST_RDONLY), "/ is writable");
    check("usr-read-only", mount_flag("/usr", ST_RDONLY | ST_NOSUID), "/usr is writable or suid");
    check("box-read-only", mount_flag("/box", ST_RDONLY | ST_NOSUID), "/box is writable or suid");
    check("box-not-writable", !writable("/box"), "created a file in /box");
    check("tmp-writable", writable("/tmp"), "cannot write /tmp");
    check("tmp-nosuid-nodev", mount_flag("/tmp", ST_NOSUID | ST_NODEV), "/tmp allows suid or devices");
    check("dev-shm-writable", writable("/dev/shm"), "cannot write /dev/shm");
    check("dev-shm-noexec", mount_flag("/dev/shm", ST_NOSUID | ST_NODEV | ST_NOEXEC), "/dev/shm allows exec");
    check("dev-read-only", mount_flag("/dev", ST_RDONLY), "/dev is writable");
    check("proc-nosuid-noexec", mount_flag("/proc", ST_NOSUID | ST_NODEV | ST_NOEXEC), "/proc flags");

    const char *gone[] = {"/etc/shadow", "/etc/passwd", "/root", "/home", "/var", "/sys", "/run", "/mnt", "/dev/tty",
                          "/dev/mem", "/dev/kmsg", "/dev/sda", "/dev/vda", "/proc/1/root/etc/shadow"};
    for (int i = 0; i < (int)(sizeof gone / sizeof *gone); i++) {
        char name[128];
        snprintf(name, sizeof name, "absent %s", gone[i]);
        struct stat st;
        errno = 0;
        int ok = absent(gone[i]) || (strncmp(gone[i], "/proc/", 6) == 0 && stat(gone[i], &st) < 0 && errno == EACCES);
        check(name, ok, errno ? strerror(errno) : "it exists");
    }

    /* The mount table says nothing of the host: each mount's root within its filesystem
     * is "/" or the tail of the path the run sees it at (a bind of /usr is "/usr" on both
     * sides; a bind of the host's /dev/null, in a user namespace, "/null"), and no host
     * home or toolchain directory appears anywhere in it. */
    FILE *mi = fopen("/proc/self/mountinfo", "r");
    int mi_ok = mi != NULL;
    d[0] = 0;
    if (mi) {
        char ml[4096];
        while (fgets(ml, sizeof ml, mi)) {
            ml[strcspn(ml, "\n")] = 0;
            char root[1024], point[1024];
            if (sscanf(ml, "%*s %*s %*s %1023s %1023s", root, point) != 2) continue;
            size_t rl = strlen(root), pl = strlen(point);
            int tail = rl <= pl && strcmp(point + pl - rl, root) == 0;
            int bad = (strcmp(root, "/") != 0 && !tail) || strstr(ml, "/root/") || strstr(ml, "/home/") ||
                      strstr(ml, "rustup") || strstr(ml, "agent-data") || strstr(ml, "/var/");
            if (bad) {
                mi_ok = 0;
                snprintf(d, sizeof d, "%.400s", ml);
            }
        }
        fclose(mi);
    }
    check("mountinfo-no-host-paths", mi_ok, d[0] ? d : "cannot read /proc/self/mountinfo");

    /* /dev holds exactly the harmless nodes. */
    const char *devs = " fd full null random shm stderr stdin stdout urandom zero ";
    int dev_ok = 1;
    d[0] = 0;
    DIR *dev = opendir("/dev");
    if (dev) {
        struct dirent *e;
        while ((e = readdir(dev))) {
            if (e->d_name[0] == '.') continue;
            char needle[300];
            snprintf(needle, sizeof needle, " %s ", e->d_name);
            if (!strstr(devs, needle)) {
                dev_ok = 0;
                snprintf(d, sizeof d, "/dev/%s", e->d_name);
            }
        }
        closedir(dev);
    } else {
        dev_ok = 0;
    }
    check("dev-minimal", dev_ok, d);

    /* Descriptors: only 0, 1, 2. */
    int extra = -1;
    for (int fd = 3; fd < 4096; fd++)
        if (fcntl(fd, F_GETFD) >= 0) { extra = fd; break; }
    snprintf(d, sizeof d, "descriptor %d is open", extra);
    check("only-fds-0-1-2", extra < 0 && fcntl(0, F_GETFD) >= 0 && fcntl(1, F_GETFD) >= 0 && fcntl(2, F_GETFD) >= 0, d);
    struct stat st0;
    check("stdin-regular-file", fstat(0, &st0) == 0 && S_ISREG(st0.st_mode), "stdin is not a file");

    /* Environment: exactly the language table's. */
    int env_ok = 1, nenv = 0;
    d[0] = 0;
    for (char **e = environ; *e; e++, nenv++)
        if (strcmp(*e, "PATH=/usr/bin:/bin") != 0 && strcmp(*e, "LANG=C.UTF-8") != 0) {
            env_ok = 0;
            snprintf(d, sizeof d, "%s", *e);
        }
    check("environment-minimal", env_ok && nenv == 2, d[0] ? d : "missing PATH or LANG");

    check("rlimit-core-zero", rlimit_is(RLIMIT_CORE, 0, 0), "RLIMIT_CORE not 0");
    check("rlimit-nofile", rlimit_is(RLIMIT_NOFILE, 4096, 4096), "RLIMIT_NOFILE unbounded");
    check("rlimit-fsize", rlimit_is(RLIMIT_FSIZE, 64 << 20, 64 << 20), "RLIMIT_FSIZE over 64 MiB");
    check("rlimit-cpu", rlimit_is(RLIMIT_CPU, 60, 60), "RLIMIT_CPU unbounded");
    check("rlimit-stack", rlimit_is(RLIMIT_STACK, (rlim_t)2 << 30, (rlim_t)2 << 30), "RLIMIT_STACK unbounded");
    check("rlimit-memlock-zero", rlimit_is(RLIMIT_MEMLOCK, 0, 0), "RLIMIT_MEMLOCK not 0");
    check("rlimit-msgqueue-zero", rlimit_is(RLIMIT_MSGQUEUE, 0, 0), "RLIMIT_MSGQUEUE not 0");
    return 0;
}
