/* server.h — neox-serve's HTTP side on libmicrohttpd: the routes, the API
 * key, request bodies read up to a bound, server-sent events, and a drain
 * of the requests in flight on SIGTERM or SIGINT.
 *
 * One thread per connection (at most max_connections): it reads the
 * body, parses and queues the request, then blocks on the request's
 * channel, writing the events of a stream as its text arrives. */
#ifndef TUNEPIPE_SERVER_H
#define TUNEPIPE_SERVER_H

#include "api.h"
#include "scheduler.h"

typedef struct {
    const char *host, *port;
    const char *port_file;      /* the bound port written here (for --port 0) */
    const char *api_key;        /* NULL: none asked */
    size_t max_body;            /* bytes of a request body at most */
    int max_connections;
    int queue;                  /* requests waiting for a slot at most */
    api_limits limits;
} server_config;

/* The page at / (web/index.html, embedded at build time). */
extern const unsigned char serve_page[];
extern const unsigned int serve_page_len;

/* Call first: SIGTERM and SIGINT are then taken by server_run alone, by
 * sigwait, never by the threads that loading a model starts. */
void server_block_signals(void);
/* Binds, serves until SIGTERM or SIGINT, drains and returns 0; -1 with the
 * reason in err when it cannot start (a host it cannot bind, say). The
 * models are loaded, their generators not yet. */
int server_run(const server_config *cfg, serve_model *models, int nmodels, char *err, int errlen);

#endif
