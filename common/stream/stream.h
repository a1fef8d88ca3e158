/* stream.h — the neox token stream (see man/man5/neox-stream.5).
 *
 * A stream is a sequence of zstd frames. Decompressed, it is a sequence of
 * chunks: a stream header first, then records. A record carries the id of
 * its source line and named token segments ("question", "answer",
 * "generated", ...). Token ids are 32-bit. Padding and truncation are
 * explicit per-segment metadata: pad tokens are stored in ids[] (so the
 * stream shows them) but consumers skip them by count, never by value. */
#ifndef TUNEPIPE_STREAM_H
#define TUNEPIPE_STREAM_H

#include <stdint.h>
#include <stddef.h>

#define SEG_QUESTION "question"
#define SEG_ANSWER "answer"
#define SEG_GENERATED "generated"

#define STREAM_MAX_SEGMENTS 8
#define STREAM_MAX_NAME 31
/* Limits a reader enforces before allocating (a corrupt length can't
 * make it allocate gigabytes). */
#define STREAM_MAX_RECORD_BYTES (256u << 20)

enum side { SIDE_NONE = 0, SIDE_LEFT = 1, SIDE_RIGHT = 2 };

typedef struct {
    char name[STREAM_MAX_NAME + 1];
    uint32_t *ids;        /* n ids, padding included */
    uint32_t n, cap;
    uint32_t pad;         /* pad tokens: the first pad ids (SIDE_LEFT) or last (SIDE_RIGHT) */
    uint8_t pad_side;
    uint32_t trunc;       /* tokens pad-trunc cut away (not stored) */
    uint8_t trunc_side;   /* the end they were cut from */
} segment;

typedef struct {
    uint64_t id;          /* source line number, 1-based, kept through the pipeline */
    int nseg;
    segment seg[STREAM_MAX_SEGMENTS];
} record;

/* ---- records (stream_record.c) ------------------------------------------ */

/* Empties a record for reuse (keeps the buffers). */
void record_clear(record *r);
void record_free(record *r);
/* The segment called name, or NULL. */
segment *record_find(record *r, const char *name);
/* The segment called name, added empty at the end when missing; NULL
 * when the record already has STREAM_MAX_SEGMENTS others. */
segment *record_segment(record *r, const char *name);
/* Removes the segment called name, if present. */
void record_remove(record *r, const char *name);

void segment_clear(segment *s);
/* Room for n ids in all (the content stays). */
void segment_reserve(segment *s, uint32_t n);
void segment_push(segment *s, uint32_t id);
void segment_append(segment *s, const uint32_t *ids, uint32_t n);
/* The tokens without padding: returns a pointer into ids, *n their count. */
const uint32_t *segment_content(const segment *s, uint32_t *n);

/* ---- reading ----------------------------------------------------------- */
typedef struct stream_reader stream_reader;

/* Reads from fd; name is used in error messages ("-" for stdin). */
stream_reader *stream_reader_open(int fd, const char *name);
/* 1 when a record was read, 0 at a clean end of input, -1 on malformed
 * input (not a stream, wrong version, truncated or corrupt frame or
 * record) with "record N: what is wrong" in err (prefixed "name: " unless
 * the name is "-"; ERR_MAX bytes hold any). Not to be read again after -1.
 * A read error on fd ends the process (io_read). */
int stream_read(stream_reader *sr, record *r, char *err, int errlen);
/* Number of records read so far. */
uint64_t stream_records_read(const stream_reader *sr);
void stream_reader_close(stream_reader *sr);

/* ---- writing ----------------------------------------------------------- */
typedef struct stream_writer stream_writer;

/* Writes to fd. Refuses (NULL, the reason in err) when fd is a terminal
 * unless force. */
stream_writer *stream_writer_open(int fd, int force, char *err, int errlen);
/* Queues a record: 0, or -1 with the reason in err when the record is too
 * large for a stream. Frames are emitted when the tool is about to wait
 * for input (see io_idle_hook in io.h), when 1 MiB is buffered, when a
 * second has passed since the last frame, and at close; writing them
 * goes through write_all (cli.h). */
int stream_write(stream_writer *sw, const record *r, char *err, int errlen);
/* Ends the current frame and writes it out now. */
void stream_flush(stream_writer *sw);
/* Flushes and frees; does not close fd. */
void stream_writer_close(stream_writer *sw);

#endif
