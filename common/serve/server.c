/* server.c — see server.h. */
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/cli.h"

typedef struct {
    const server_config *cfg;
    serve_model *models;
    int nmodels;
    scheduler sched;
    int draining;
    int open;                   /* requests begun and not yet answered */
} server;

/* One connection's request: its body, read up to max_body. */
typedef struct {
    utf8_buf body;
    int too_large;
} conn;

/* A streamed answer: the request, and the event being written. */
typedef struct {
    server *srv;
    serve_request req;
    api_call call;
    char *out;
    size_t out_len, out_off, sent;
    int first, ended;
} sse;

static enum MHD_Result reply(struct MHD_Connection *c, unsigned status, const char *type, char *body) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, "Cache-Control", "no-store");
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned status, char *body) {
    return reply(c, status, "application/json", body);
}

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned status, const char *message,
                                   const char *type, const char *code) {
    return reply_json(c, status, api_error(message, type, NULL, code));
}

/* The next event of a stream into s->out; 0 when the stream has ended. */
static int next_event(sse *s) {
    serve_request *r = &s->req;
    pthread_mutex_lock(&r->mu);
    while (r->ready == s->sent && !r->finished) pthread_cond_wait(&r->cv, &r->mu);
    size_t n = r->ready - s->sent;
    char *text = n ? xmalloc(n) : NULL;
    if (n) memcpy(text, r->text.data + s->sent, n);
    int finished = r->finished && r->ready == s->sent + n;
    const char *reason = r->finish_reason;
    pthread_mutex_unlock(&r->mu);
    free(s->out);
    s->out = NULL;
    utf8_buf ev = {0};
    if (n || s->first) {
        char *e = api_chunk(&s->call, text, n, s->first, NULL);
        utf8_buf_append(&ev, e, strlen(e));
        free(e);
        s->first = 0;
        s->sent += n;
    }
    free(text);
    if (finished) {
        char *e = api_chunk(&s->call, NULL, 0, 0, reason);
        utf8_buf_append(&ev, e, strlen(e));
        utf8_buf_append(&ev, "data: [DONE]\n\n", 14);
        free(e);
        s->ended = 1;
    }
    s->out = ev.data;
    s->out_len = ev.len;
    s->out_off = 0;
    return 1;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *buf, size_t max) {
    sse *s = cls;
    (void)pos;
    while (s->out_off == s->out_len) {
        if (s->ended) return MHD_CONTENT_READER_END_OF_STREAM;
        next_event(s);
    }
    size_t n = s->out_len - s->out_off < max ? s->out_len - s->out_off : max;
    memcpy(buf, s->out + s->out_off, n);
    s->out_off += n;
    return (ssize_t)n;
}

/* The response is gone (sent, or the client left): let go of the request. */
static void sse_free(void *cls) {
    sse *s = cls;
    scheduler_cancel(&s->req);
    request_free(&s->req);
    free(s->out);
    free(s);
}

static int authorized(server *srv, struct MHD_Connection *c) {
    const char *key = srv->cfg->api_key;
    if (!key) return 1;
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncmp(h, "Bearer ", 7)) return 0;
    h += 7;
    size_t n = strlen(key), m = strlen(h);
    unsigned diff = n != m;
    for (size_t i = 0; i < n && i < m; i++) diff |= (unsigned char)(key[i] ^ h[i]); /* no early exit */
    return !diff;
}

static enum MHD_Result generate(server *srv, struct MHD_Connection *c, conn *k, int chat) {
    if (k->too_large) {
        char msg[96];
        snprintf(msg, sizeof msg, "the request body is larger than %zu bytes", srv->cfg->max_body);
        return reply_error(c, MHD_HTTP_CONTENT_TOO_LARGE, msg, "invalid_request_error", "request_too_large");
    }
    if (__atomic_load_n(&srv->draining, __ATOMIC_ACQUIRE))
        return reply_error(c, MHD_HTTP_SERVICE_UNAVAILABLE, "the server is shutting down", "server_error", NULL);
    sse *s = xcalloc(1, sizeof *s);
    s->srv = srv;
    s->first = 1;
    request_init(&s->req);
    char *err = NULL;
    int status = api_parse(k->body.data ? k->body.data : "", k->body.len, chat, srv->models, srv->nmodels,
                           &srv->cfg->limits, &s->req, &s->call, &err);
    if (!status && scheduler_submit(&srv->sched, &s->req) != 0) {
        status = MHD_HTTP_TOO_MANY_REQUESTS;
        err = api_error("too many requests waiting; try again later", "rate_limit_error", NULL, "rate_limit_exceeded");
    }
    if (status) {
        request_free(&s->req);
        free(s);
        return reply_json(c, (unsigned)status, err);
    }
    if (s->call.stream) {
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, sse_read, s, sse_free);
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-store");
        enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        return ok;
    }
    serve_request *r = &s->req;
    pthread_mutex_lock(&r->mu);
    while (!r->finished) pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
    char *body = api_response(&s->call, r);
    request_free(r);
    free(s);
    return reply_json(c, MHD_HTTP_OK, body);
}

static enum MHD_Result route(server *srv, struct MHD_Connection *c, const char *url, const char *method, conn *k) {
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    if (!strcmp(url, "/") || !strcmp(url, "/index.html")) {
        if (!get) return reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET", "invalid_request_error", NULL);
        char *page = xmalloc(serve_page_len + 1);
        memcpy(page, serve_page, serve_page_len);
        page[serve_page_len] = '\0';
        return reply(c, MHD_HTTP_OK, "text/html; charset=utf-8", page);
    }
    if (!strcmp(url, "/health")) {
        int draining = __atomic_load_n(&srv->draining, __ATOMIC_ACQUIRE);
        return reply_json(c, draining ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK,
                          xstrdup(draining ? "{\"status\":\"draining\"}" : "{\"status\":\"ok\"}"));
    }
    int models = !strcmp(url, "/v1/models"), compl = !strcmp(url, "/v1/completions"),
        chat = !strcmp(url, "/v1/chat/completions");
    if (!models && !compl && !chat)
        return reply_error(c, MHD_HTTP_NOT_FOUND, "no such endpoint", "invalid_request_error", "unknown_url");
    if (!authorized(srv, c))
        return reply_error(c, MHD_HTTP_UNAUTHORIZED, "a valid API key is needed (Authorization: Bearer KEY)",
                           "invalid_request_error", "invalid_api_key");
    if (models) {
        if (!get) return reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use GET", "invalid_request_error", NULL);
        return reply_json(c, MHD_HTTP_OK, api_models(srv->models, srv->nmodels));
    }
    if (!post) return reply_error(c, MHD_HTTP_METHOD_NOT_ALLOWED, "use POST", "invalid_request_error", NULL);
    return generate(srv, c, k, chat);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **state) {
    server *srv = cls;
    (void)version;
    conn *k = *state;
    if (!k) {
        *state = xcalloc(1, sizeof(conn));
        __atomic_add_fetch(&srv->open, 1, __ATOMIC_ACQ_REL);
        return MHD_YES;
    }
    if (*upload_size) { /* more of the body: kept up to the bound, the rest read and dropped */
        if (k->body.len + *upload_size > srv->cfg->max_body) k->too_large = 1;
        else utf8_buf_append(&k->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    return route(srv, c, url, method, k);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **state, enum MHD_RequestTerminationCode why) {
    server *srv = cls;
    (void)c, (void)why;
    conn *k = *state;
    if (!k) return;
    __atomic_sub_fetch(&srv->open, 1, __ATOMIC_ACQ_REL);
    utf8_buf_free(&k->body);
    free(k);
    *state = NULL;
}

static int is_loopback(const struct sockaddr *a) {
    if (a->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
    if (a->sa_family == AF_INET6) return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)a)->sin6_addr);
    return 0;
}

/* A listening socket on host:port, or -1 with the reason in err;
 * *loopback tells whether only this machine reaches it. */
static int listen_on(const char *host, const char *port, int *loopback, int *bound_port, char *err, int errlen) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc) return fail_message(err, errlen, "--host %s --port %s: %s", host, port, gai_strerror(rc)), -1;
    int fd = -1, why = 0;
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0) continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 128) != 0) {
            why = errno;
            close(fd);
            fd = -1;
            continue;
        }
        *loopback = is_loopback(a->ai_addr);
    }
    freeaddrinfo(res);
    if (fd < 0) return fail_message(err, errlen, "cannot listen on %s port %s: %s", host, port, strerror(why)), -1;
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    *bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

void server_block_signals(void) {
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN); /* a closed connection is an error for that connection alone */
}

int server_run(const server_config *cfg, serve_model *models, int nmodels, char *err, int errlen) {
    server srv = {.cfg = cfg, .models = models, .nmodels = nmodels};
    int loopback = 0, port;
    int fd = listen_on(cfg->host, cfg->port, &loopback, &port, err, errlen);
    if (fd < 0) return -1;
    if (!loopback && !cfg->api_key) {
        close(fd);
        return fail_message(err, errlen, "--host %s is reachable beyond this machine: give --api-key", cfg->host), -1;
    }
    if (cfg->port_file) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s.tmp", cfg->port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, cfg->port_file) != 0) {
            close(fd);
            return fail_message(err, errlen, "%s: %s", cfg->port_file, strerror(errno)), -1;
        }
    }
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    if (scheduler_start(&srv.sched, models, nmodels, cfg->queue)) {
        close(fd);
        return fail_message(err, errlen, "cannot start the decoding thread"), -1;
    }
    unsigned timeout = (unsigned)cfg->limits.timeout + 30;
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC, 0, NULL, NULL, on_request,
        &srv, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_LIMIT, (unsigned)cfg->max_connections,
        MHD_OPTION_CONNECTION_TIMEOUT, timeout, MHD_OPTION_NOTIFY_COMPLETED, on_completed, &srv,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024, MHD_OPTION_END);
    if (!d) {
        scheduler_stop(&srv.sched);
        close(fd);
        return fail_message(err, errlen, "cannot start the HTTP server on %s port %d", cfg->host, port), -1;
    }
    if (isatty(STDERR_FILENO)) fprintf(stderr, "%s: serving http://%s:%d/\n", prog_name, cfg->host, port);
    int sig;
    sigwait(&stop, &sig);
    /* Drain: no new connections or requests; those in flight finish, up to the time limit. */
    __atomic_store_n(&srv.draining, 1, __ATOMIC_RELEASE);
    int lfd = MHD_quiesce_daemon(d);
    double until = now_seconds() + cfg->limits.timeout + 5;
    while ((scheduler_in_flight(&srv.sched) > 0 || __atomic_load_n(&srv.open, __ATOMIC_ACQUIRE) > 0) &&
           now_seconds() < until)
        usleep(20000);
    MHD_stop_daemon(d);
    if (lfd >= 0) close(lfd);
    scheduler_stop(&srv.sched);
    return 0;
}
