/* stream.c — the neox token stream: zstd frames of chunks; see stream.h
 * and man/man5/neox-stream.5 for the layout. */
#include "stream.h"
#include "base/cli.h"
#include "base/io.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zstd.h>

#define STREAM_MAGIC "NEOXTOKS"
#define STREAM_VERSION 1u
#define HEADER_BYTES 16      /* magic, u32 version, u32 flags */
#define RECORD_TAG "RECD"    /* then u32 body length, body */
#define END_TAG "ENDS"       /* then u64 record count: the writer closed cleanly */
#define END_BYTES 12
#define FLUSH_BYTES (1u << 20)
#define FLUSH_SECONDS 1.0

/* ---- little-endian helpers ---------------------------------------------- */

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* ---- reading ------------------------------------------------------------ */

struct stream_reader {
    int fd;
    const char *name;
    ZSTD_DCtx *dctx;
    unsigned char *in;       /* compressed input buffer */
    ZSTD_inBuffer zin;
    size_t frame_left;       /* ZSTD_decompressStream's last hint: 0 = at a frame end */
    int out_full;            /* the last call filled its output: it may hold more */
    unsigned char *out;      /* decompressed bytes, unread are out[start..end) */
    size_t cap, start, end;
    uint64_t bytes_in;
    uint64_t nrecords;
    uint64_t stream_start;   /* nrecords when the current stream's header came */
    int eof, in_stream;      /* in_stream: a header was read, its end marker not yet */
    char *err;               /* stream_read's caller's buffer */
    int errlen;
};

/* "name: record N: what" into the caller's buffer; returns -1. */
static int reader_fail(stream_reader *sr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int reader_fail(stream_reader *sr, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    unsigned long long n = (unsigned long long)sr->nrecords + 1;
    if (strcmp(sr->name, "-") == 0) fail_message(sr->err, sr->errlen, "record %llu: %s", n, msg);
    else fail_message(sr->err, sr->errlen, "%s: record %llu: %s", sr->name, n, msg);
    return -1;
}

stream_reader *stream_reader_open(int fd, const char *name) {
    stream_reader *sr = xcalloc(1, sizeof *sr);
    sr->fd = fd;
    sr->name = name;
    sr->dctx = ZSTD_createDCtx();
    if (!sr->dctx) out_of_memory("out of memory");
    sr->in = xmalloc(ZSTD_DStreamInSize());
    sr->cap = ZSTD_DStreamOutSize() * 2;
    sr->out = xmalloc(sr->cap);
    return sr;
}

/* Refills compressed input; 0 at end of input, -1 on an error. */
static int reader_fill_input(stream_reader *sr) {
    ssize_t r = io_read(sr->fd, sr->in, ZSTD_DStreamInSize(), sr->name);
    if (r == 0) return 0;
    if (sr->bytes_in == 0 && (r < 4 || get_u32(sr->in) != ZSTD_MAGICNUMBER)) {
        /* Find out whether it looks like text to give a useful hint. */
        int text = 1;
        for (ssize_t i = 0; i < r && i < 256; i++)
            if (sr->in[i] < 9 || (sr->in[i] > 13 && sr->in[i] < 32)) text = 0;
        return reader_fail(sr, "not a neox token stream (%s)",
                    text ? "input is text: tokenize it with bpe-encode first" : "no zstd frame at the start");
    }
    sr->bytes_in += (uint64_t)r;
    sr->zin = (ZSTD_inBuffer){sr->in, (size_t)r, 0};
    return 1;
}

/* Makes at least want unread decompressed bytes available; returns 0 when
 * input ended first (the caller decides whether that is clean), -1 on an
 * error. */
static int reader_need(stream_reader *sr, size_t want) {
    while (sr->end - sr->start < want) {
        if (sr->start > 0) {
            memmove(sr->out, sr->out + sr->start, sr->end - sr->start);
            sr->end -= sr->start;
            sr->start = 0;
        }
        /* Grow with the data actually decompressed, not with want: a
         * truncated record claiming 200 MB must not allocate 200 MB. */
        if (sr->cap - sr->end < ZSTD_DStreamOutSize()) {
            sr->cap *= 2;
            sr->out = xrealloc(sr->out, sr->cap);
        }
        if (sr->zin.pos == sr->zin.size && !sr->out_full) {
            if (sr->eof) return 0;
            int got = reader_fill_input(sr);
            if (got < 0) return -1;
            if (!got) {
                sr->eof = 1;
                if (sr->bytes_in == 0) return reader_fail(sr, "empty input (a token stream always has a header)");
                if (sr->frame_left != 0) return reader_fail(sr, "truncated zstd frame (input ended mid-frame)");
                return 0;
            }
        }
        ZSTD_outBuffer zout = {sr->out, sr->cap, sr->end};
        size_t ret = ZSTD_decompressStream(sr->dctx, &zout, &sr->zin);
        if (ZSTD_isError(ret)) return reader_fail(sr, "corrupt zstd frame: %s", ZSTD_getErrorName(ret));
        sr->frame_left = ret;
        sr->out_full = zout.pos == zout.size;
        sr->end = zout.pos;
    }
    return 1;
}

/* 0, or -1 on an error. */
static int reader_header(stream_reader *sr) {
    int got = reader_need(sr, HEADER_BYTES);
    if (got <= 0) return got < 0 ? -1 : reader_fail(sr, "truncated stream header");
    const unsigned char *h = sr->out + sr->start;
    if (memcmp(h, STREAM_MAGIC, 8) != 0) return reader_fail(sr, "wrong magic: not a neox token stream");
    uint32_t version = get_u32(h + 8);
    if (version != STREAM_VERSION)
        return reader_fail(sr, "unsupported stream version %u (this tool reads version %u)", version, STREAM_VERSION);
    if (get_u32(h + 12) != 0) return reader_fail(sr, "unknown stream header flags 0x%x", get_u32(h + 12));
    sr->start += HEADER_BYTES;
    sr->in_stream = 1;
    sr->stream_start = sr->nrecords;
    return 0;
}

/* Parses a record body of len bytes into r, validating every field; 0, or
 * -1 on an error. */
static int reader_parse(stream_reader *sr, const unsigned char *p, size_t len, record *r) {
    const unsigned char *end = p + len;
#define NEED(k) do { if ((size_t)(end - p) < (size_t)(k)) return reader_fail(sr, "corrupt record: fields run past its length"); } while (0)
    NEED(12);
    record_clear(r);
    r->id = (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
    unsigned nseg = p[8];
    if (nseg > STREAM_MAX_SEGMENTS) return reader_fail(sr, "corrupt record: %u segments (at most %d)", nseg, STREAM_MAX_SEGMENTS);
    p += 12;
    for (unsigned i = 0; i < nseg; i++) {
        NEED(1);
        unsigned name_len = *p++;
        if (name_len == 0 || name_len > STREAM_MAX_NAME) return reader_fail(sr, "corrupt record: bad segment name length %u", name_len);
        NEED(name_len + 14);
        char name[STREAM_MAX_NAME + 1];
        memcpy(name, p, name_len);
        name[name_len] = '\0';
        for (unsigned k = 0; k < name_len; k++)
            if (!((name[k] >= 'a' && name[k] <= 'z') || (name[k] >= '0' && name[k] <= '9') || name[k] == '_'))
                return reader_fail(sr, "corrupt record: bad segment name");
        if (record_find(r, name)) return reader_fail(sr, "corrupt record: segment '%s' twice", name);
        p += name_len;
        uint8_t pad_side = p[0], trunc_side = p[1];
        uint32_t n = get_u32(p + 2), pad = get_u32(p + 6), trunc = get_u32(p + 10);
        p += 14;
        if (pad_side > SIDE_RIGHT || trunc_side > SIDE_RIGHT) return reader_fail(sr, "corrupt record: bad side in segment '%s'", name);
        if (pad > n || (pad > 0) != (pad_side != SIDE_NONE))
            return reader_fail(sr, "corrupt record: segment '%s' has inconsistent padding", name);
        if ((trunc > 0) != (trunc_side != SIDE_NONE))
            return reader_fail(sr, "corrupt record: segment '%s' has inconsistent truncation", name);
        NEED((size_t)n * 4);
        segment *s = record_segment(r, name); /* not NULL: nseg was checked */
        segment_reserve(s, n);
        for (uint32_t k = 0; k < n; k++) s->ids[k] = get_u32(p + 4 * (size_t)k);
        s->n = n;
        s->pad = pad;
        s->pad_side = pad_side;
        s->trunc = trunc;
        s->trunc_side = trunc_side;
        p += (size_t)n * 4;
    }
    if (p != end) return reader_fail(sr, "corrupt record: %zu bytes past its last segment", (size_t)(end - p));
    return 0;
#undef NEED
}

int stream_read(stream_reader *sr, record *r, char *err, int errlen) {
    sr->err = err;
    sr->errlen = errlen;
    for (;;) {
        int got = reader_need(sr, 4);
        if (got < 0) return -1;
        if (!got) {
            if (sr->end != sr->start) return reader_fail(sr, "truncated record");
            if (sr->in_stream)
                return reader_fail(sr, "truncated stream: input ended without the end marker (the writer did not finish)");
            return 0;
        }
        const unsigned char *p = sr->out + sr->start;
        if (!sr->in_stream) { /* the first or a concatenated stream's header */
            if (reader_header(sr) < 0) return -1;
            continue;
        }
        if (memcmp(p, END_TAG, 4) == 0) {
            if ((got = reader_need(sr, END_BYTES)) <= 0) return got < 0 ? -1 : reader_fail(sr, "truncated end marker");
            p = sr->out + sr->start + 4;
            uint64_t count = (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32;
            if (count != sr->nrecords - sr->stream_start)
                return reader_fail(sr, "end marker counts %llu records, the stream had %llu", (unsigned long long)count,
                            (unsigned long long)(sr->nrecords - sr->stream_start));
            sr->start += END_BYTES;
            sr->in_stream = 0;
            continue;
        }
        if (memcmp(p, RECORD_TAG, 4) != 0) return reader_fail(sr, "corrupt record: bad chunk tag");
        if ((got = reader_need(sr, 8)) <= 0) return got < 0 ? -1 : reader_fail(sr, "truncated record");
        uint32_t len = get_u32(sr->out + sr->start + 4);
        if (len > STREAM_MAX_RECORD_BYTES) return reader_fail(sr, "corrupt record: claims %u bytes", len);
        if ((got = reader_need(sr, 8 + (size_t)len)) <= 0) return got < 0 ? -1 : reader_fail(sr, "truncated record");
        if (reader_parse(sr, sr->out + sr->start + 8, len, r) < 0) return -1;
        sr->start += 8 + (size_t)len;
        sr->nrecords++;
        return 1;
    }
}

uint64_t stream_records_read(const stream_reader *sr) { return sr->nrecords; }

void stream_reader_close(stream_reader *sr) {
    if (!sr) return;
    ZSTD_freeDCtx(sr->dctx);
    free(sr->in);
    free(sr->out);
    free(sr);
}

/* ---- writing ------------------------------------------------------------ */

struct stream_writer {
    int fd;
    ZSTD_CCtx *cctx;
    unsigned char *pending;  /* serialized chunks of the frame being built */
    size_t len, cap;
    unsigned char *frame;
    size_t frame_cap;
    double last_flush;
    uint64_t nrecords;
};

static void writer_reserve(stream_writer *sw, size_t more) {
    if (sw->len + more <= sw->cap) return;
    while (sw->cap < sw->len + more) sw->cap *= 2;
    sw->pending = xrealloc(sw->pending, sw->cap);
}

static void writer_idle(void *ctx) {
    stream_writer *sw = ctx;
    if (sw->len) stream_flush(sw);
}

stream_writer *stream_writer_open(int fd, int force, char *err, int errlen) {
    if (isatty(fd) && !force) {
        fail_message(err, errlen, "refusing to write a binary token stream to a terminal (pipe it into a tool, or use -f)");
        return NULL;
    }
    stream_writer *sw = xcalloc(1, sizeof *sw);
    sw->fd = fd;
    sw->cctx = ZSTD_createCCtx();
    if (!sw->cctx) out_of_memory("out of memory");
    ZSTD_CCtx_setParameter(sw->cctx, ZSTD_c_compressionLevel, 3);
    ZSTD_CCtx_setParameter(sw->cctx, ZSTD_c_checksumFlag, 1);
    sw->cap = 1 << 16;
    sw->pending = xmalloc(sw->cap);
    memcpy(sw->pending, STREAM_MAGIC, 8);
    put_u32(sw->pending + 8, STREAM_VERSION);
    put_u32(sw->pending + 12, 0);
    sw->len = HEADER_BYTES;
    sw->last_flush = now_seconds();
    io_set_idle_hook(writer_idle, sw);
    return sw;
}

int stream_write(stream_writer *sw, const record *r, char *err, int errlen) {
    size_t body = 12;
    for (int i = 0; i < r->nseg; i++) body += 1 + strlen(r->seg[i].name) + 14 + (size_t)r->seg[i].n * 4;
    if (body > STREAM_MAX_RECORD_BYTES) {
        fail_message(err, errlen, "record %llu: too large for a token stream (%zu bytes)", (unsigned long long)r->id, body);
        return -1;
    }
    writer_reserve(sw, 8 + body);
    unsigned char *p = sw->pending + sw->len;
    memcpy(p, RECORD_TAG, 4);
    put_u32(p + 4, (uint32_t)body);
    put_u32(p + 8, (uint32_t)r->id);
    put_u32(p + 12, (uint32_t)(r->id >> 32));
    p[16] = (unsigned char)r->nseg;
    p[17] = p[18] = p[19] = 0;
    p += 20;
    for (int i = 0; i < r->nseg; i++) {
        const segment *s = &r->seg[i];
        size_t name_len = strlen(s->name);
        *p++ = (unsigned char)name_len;
        memcpy(p, s->name, name_len);
        p += name_len;
        p[0] = s->pad_side;
        p[1] = s->trunc_side;
        put_u32(p + 2, s->n);
        put_u32(p + 6, s->pad);
        put_u32(p + 10, s->trunc);
        p += 14;
        for (uint32_t k = 0; k < s->n; k++, p += 4) put_u32(p, s->ids[k]);
    }
    sw->len += 8 + body;
    sw->nrecords++;
    if (sw->len >= FLUSH_BYTES || now_seconds() - sw->last_flush >= FLUSH_SECONDS) stream_flush(sw);
    return 0;
}

void stream_flush(stream_writer *sw) {
    size_t bound = ZSTD_compressBound(sw->len);
    if (bound > sw->frame_cap) {
        sw->frame_cap = bound;
        sw->frame = xrealloc(sw->frame, bound);
    }
    size_t n = ZSTD_compress2(sw->cctx, sw->frame, sw->frame_cap, sw->pending, sw->len);
    /* Into a buffer of ZSTD_compressBound: only its workspace's allocation can fail. */
    if (ZSTD_isError(n)) out_of_memory("zstd compression failed: %s", ZSTD_getErrorName(n));
    write_all(sw->fd, sw->frame, n);
    sw->len = 0;
    sw->last_flush = now_seconds();
}

void stream_writer_close(stream_writer *sw) {
    if (!sw) return;
    writer_reserve(sw, END_BYTES);
    memcpy(sw->pending + sw->len, END_TAG, 4);
    put_u32(sw->pending + sw->len + 4, (uint32_t)sw->nrecords);
    put_u32(sw->pending + sw->len + 8, (uint32_t)(sw->nrecords >> 32));
    sw->len += END_BYTES;
    stream_flush(sw);
    io_set_idle_hook(NULL, NULL);
    ZSTD_freeCCtx(sw->cctx);
    free(sw->pending);
    free(sw->frame);
    free(sw);
}
