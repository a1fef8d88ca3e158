/* io.h — input helpers: reading whole fds, a line reader, and the idle hook
 * that lets a tool's output frames go out before it waits for more input
 * (so `bpe-encode --text | neox-gen | ...` answers each line as typed). */
#ifndef TUNEPIPE_IO_H
#define TUNEPIPE_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* One hook per process: called before a read() that would block. The
 * stream writer installs itself here. */
void io_set_idle_hook(void (*fn)(void *), void *ctx);
/* read() that first calls the idle hook when no input is ready; retries on
 * EINTR; dies with the reason on error (name names the input). */
ssize_t io_read(int fd, void *buf, size_t n, const char *name);

/* Opens path for reading ("-" is stdin); dies with the reason. */
int open_input(const char *path);

typedef struct line_reader line_reader;
line_reader *line_reader_open(int fd, const char *name);
/* The next line without its '\n' (a final line without '\n' counts too),
 * NUL-terminated, valid until the next call; *len its length. NULL at end.
 * Dies on a line containing a NUL byte (binary input). */
char *line_reader_next(line_reader *lr, size_t *len);
/* 1-based number of the line last returned. */
uint64_t line_reader_lineno(const line_reader *lr);
void line_reader_close(line_reader *lr);

/* Reads a whole file into memory (NUL-terminated); dies with the reason. */
char *read_file(const char *path, size_t *len);

#endif
