/* replay.c — runs a fuzz harness over stored inputs without libFuzzer, so
 * the corpus and the regression inputs are checked by `make test` with the
 * ordinary compiler (and, in `make check-asan`, under the sanitizers).
 *
 *   NAME-replay FILE_OR_DIR...
 *
 * Each input runs in its own forked child, which ends like a tool would:
 * exit 0 (accepted) or exit 1 after a message on stderr (rejected:
 * fuzz_reject). Anything else is a finding: a signal (crash, abort from a failed
 * property or a sanitizer), another exit status (a sanitizer's), exit 1
 * without a message, or running past the time limit (a hang). Prints one
 * A regression input may state its expected outcome in its name: one
 * called accept-* must exit 0, one called reject-* must exit 1.
 * Prints one TAP-friendly line per finding and a summary; exits 1 when there was any.
 * With FUZZ_SHOW=1 in the environment it also shows how each input ended
 * (its exit status and the message). */
#include "fuzz.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/cli.h"
#include "base/io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

#define TIME_LIMIT_SECONDS 60

static int stderr_fd;  /* the children's stderr, kept to show with a finding */
static size_t ninputs, nfindings;

/* The last lines the child wrote on stderr, for the report. */
static void show_child_stderr(void) {
    size_t len;
    char *text = fuzz_fd_read(stderr_fd, &len);
    const char *from = text;
    int lines = 0;
    for (const char *p = text + len; p > text; p--)
        if (p[-1] == '\n' && ++lines > 40) { from = p; break; }
    for (const char *line = from; *line;) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        fprintf(stderr, "#   %.*s\n", (int)n, line);
        fflush(stderr);
        line += n + (nl != NULL);
    }
    free(text);
}

static void run_one(const char *path) {
    size_t size;
    char *data = read_file(path, &size);
    if (ftruncate(stderr_fd, 0) != 0) die("ftruncate: %m");
    lseek(stderr_fd, 0, SEEK_SET);
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) die("fork: %m");
    if (pid == 0) {
        dup2(stderr_fd, STDERR_FILENO);
        alarm(TIME_LIMIT_SECONDS);
        LLVMFuzzerTestOneInput((const uint8_t *)data, size);
        exit(0);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) die("waitpid: %m");
    free(data);
    ninputs++;
    off_t said = lseek(stderr_fd, 0, SEEK_END);
    const char *slash = strrchr(path, '/'), *base = slash ? slash + 1 : path;
    char why[128] = "";
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
        snprintf(why, sizeof why, "ran longer than %d s (a hang?)", TIME_LIMIT_SECONDS);
    else if (WIFSIGNALED(status))
        snprintf(why, sizeof why, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else if (WEXITSTATUS(status) == 1 && said == 0)
        snprintf(why, sizeof why, "exit 1 without a message");
    else if (WEXITSTATUS(status) > 1)
        snprintf(why, sizeof why, "exit status %d (a sanitizer's report?)", WEXITSTATUS(status));
    else if (strncmp(base, "accept-", 7) == 0 && WEXITSTATUS(status) != 0)
        snprintf(why, sizeof why, "rejected, but its name says it is to be accepted");
    else if (strncmp(base, "reject-", 7) == 0 && WEXITSTATUS(status) != 1)
        snprintf(why, sizeof why, "accepted, but its name says it is to be rejected");
    if (!*why) {
        if (getenv("FUZZ_SHOW")) {
            fprintf(stderr, "# %s: exit %d\n", path, WEXITSTATUS(status));
            show_child_stderr();
        }
        return;
    }
    nfindings++;
    fprintf(stderr, "# %s: %s\n", path, why);
    show_child_stderr();
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* A file, or every file of a directory (sorted, not recursive). */
static void run_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) die("%s: %m", path);
    if (!S_ISDIR(st.st_mode)) {
        run_one(path);
        return;
    }
    DIR *dir = opendir(path);
    if (!dir) die("%s: %m", path);
    char **names = NULL;
    size_t n = 0;
    for (struct dirent *e; (e = readdir(dir));) {
        if (e->d_name[0] == '.') continue;
        names = xrealloc(names, (n + 1) * sizeof *names);
        size_t len = strlen(path) + strlen(e->d_name) + 2;
        names[n] = xmalloc(len);
        snprintf(names[n++], len, "%s/%s", path, e->d_name);
    }
    closedir(dir);
    qsort(names, n, sizeof *names, by_name);
    for (size_t i = 0; i < n; i++) {
        if (stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) run_one(names[i]);
        free(names[i]);
    }
    free(names);
}

int main(int argc, char **argv) {
    cli_init(argv[0]);
    if (argc < 2) usage_error("usage: %s FILE_OR_DIR...", argv[0]);
    fuzz_replaying = 1;
    if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);
    stderr_fd = fuzz_memfd(NULL, 0);
    for (int i = 1; i < argc; i++) run_path(argv[i]);
    printf("%zu inputs, %zu findings\n", ninputs, nfindings);
    checked_fflush(stdout);
    return nfindings ? 1 : 0;
}
