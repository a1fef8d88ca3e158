/* api.h — the OpenAI-compatible API's JSON: a completion or chat request
 * checked and turned into a serve_request, the responses, the streamed
 * chunks and the error bodies. */
#ifndef TUNEPIPE_API_H
#define TUNEPIPE_API_H

#include <stddef.h>

#include "scheduler.h"

typedef struct {
    int max_tokens;             /* the most a request may ask for */
    int default_max_tokens;
    int max_prompt;             /* prompt tokens at most */
    double timeout;             /* seconds a request may take */
} api_limits;

/* What a response needs besides the request's channel. */
typedef struct {
    int chat, stream;
    const char *model;          /* its id */
    long created;
    char id[40];
} api_call;

/* Checks body [n] of POST /v1/completions (chat 0) or /v1/chat/completions
 * (chat 1) and fills r (request_init'd) and c. Returns 0, or the HTTP
 * status with the error body (malloc'd) in *err. */
int api_parse(const char *body, size_t n, int chat, serve_model *models, int nmodels,
              const api_limits *lim, serve_request *r, api_call *c, char **err);

/* {"error":{...}} in OpenAI's shape, malloc'd. */
char *api_error(const char *message, const char *type, const char *param, const char *code);
/* The whole response of a finished request, malloc'd. */
char *api_response(const api_call *c, const serve_request *r);
/* One server-sent event, "data: {...}\n\n", malloc'd: text [n] (role first
 * for chat), or the last chunk with the finish reason when reason is set. */
char *api_chunk(const api_call *c, const char *text, size_t n, int first, const char *reason);
/* GET /v1/models. */
char *api_models(const serve_model *models, int nmodels);

#endif
