/* neox-serve — GPT-NeoX models behind an OpenAI-compatible HTTP API, with a
 * page at / to ask them questions. */
#include "base/cli.h"
#include "kernels/blas.h"
#include "kernels/gemm.h"
#include "nn/model_io.h"
#include "serve/server.h"

#include <getopt.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char usage[] =
    "Usage: neox-serve -m [NAME=]DIR [-m [NAME=]DIR]... [OPTION]...\n"
    "Serve the GPT-NeoX models in the DIRs over HTTP: OpenAI's /v1/completions,\n"
    "/v1/chat/completions (streamed as server-sent events on request), /v1/models,\n"
    "/health, and at / a page that asks every model the same question. A model's\n"
    "id is NAME, else DIR's last component.\n"
    "\n"
    "  -m, --model [NAME=]DIR    a model directory (config.json and safetensors;\n"
    "                            its tokenizer.json and prompt_template.txt when\n"
    "                            present)\n"
    "      --host HOST           address to listen on (default 127.0.0.1); beyond\n"
    "                            loopback only with --api-key\n"
    "      --port PORT           port (default 8080; 0: any free one)\n"
    "      --port-file FILE      write the port listened on to FILE\n"
    "      --api-key KEY         require \"Authorization: Bearer KEY\" on /v1/\n"
    "      --dtype fp32|bf16     the products, as neox-gen's --dtype\n"
    "      --parallel N          requests decoded together per model (default 16)\n"
    "      --queue N             requests waiting for a slot at most; more get 429\n"
    "                            (default 64)\n"
    "      --max-tokens N        the most max_tokens a request may ask (default 1024)\n"
    "      --default-max-tokens N  max_tokens when a request gives none (default 100)\n"
    "      --max-prompt N        prompt tokens at most (default: the model's positions)\n"
    "      --max-body BYTES      request body at most (default 1048576)\n"
    "      --timeout S           seconds a request may take, waiting included\n"
    "                            (default 300); then it ends with what it has\n"
    "      --template TEXT       the prompt template of chat messages for models\n"
    "                            without prompt_template.txt (default:\n"
    "                            \"### Question:\\n{question}\\n\\n### Answer:\")\n"
    "  -h, --help                show this help and exit\n"
    "      --version             show the version and exit\n"
    "\n"
    "SIGTERM or SIGINT stops taking requests, finishes those in flight and exits 0.\n";

static void load(serve_model *sm, const char *arg, int bf16, const char *template, int parallel) {
    memset(sm, 0, sizeof *sm);
    const char *eq = strchr(arg, '=');
    char *dir;
    if (eq && eq > arg && !memchr(arg, '/', (size_t)(eq - arg))) {
        sm->name = strndup(arg, (size_t)(eq - arg));
        dir = xstrdup(eq + 1);
    } else {
        dir = xstrdup(arg);
        size_t n = strlen(dir);
        while (n > 1 && dir[n - 1] == '/') dir[--n] = '\0';
        char *copy = xstrdup(dir);
        sm->name = xstrdup(basename(copy));
        free(copy);
    }
    sm->dir = dir;
    char err[ERR_MAX];
    if (!(bf16 ? model_load_bf16(&sm->m, dir, err, sizeof err) : model_load(&sm->m, dir, err, sizeof err)))
        die("%s", err);
    char *path = xmalloc(strlen(dir) + 16);
    sprintf(path, "%s/tokenizer.json", dir);
    if (access(path, R_OK) != 0) {
        free(path);
        path = data_file("tokenizer.json");
    }
    sm->tok = tokenizer_open(path, err, sizeof err);
    if (!sm->tok) die("%s", err);
    free(path);
    pthread_mutex_init(&sm->tok_lock, NULL);
    char *recorded;
    if (!template_read_dir(dir, &recorded, err, sizeof err)) die("%s", err);
    sm->template_text = recorded ? recorded : xstrdup(template);
    if (template_parse(&sm->tmpl, "--template", sm->template_text, err, sizeof err)) die("%s", err);
    gen_opts go = {.batch = parallel, .max_new = 100, .eos_id = sm->m.cfg.eos_token_id,
                   .sampling = {.temperature = 1, .top_p = 1, .repetition_penalty = 1}};
    generator_init(&sm->g, &sm->m, &go);
}

static void unload(serve_model *sm) {
    generator_free(&sm->g);
    template_free(&sm->tmpl);
    free(sm->template_text);
    tokenizer_free(sm->tok);
    pthread_mutex_destroy(&sm->tok_lock);
    model_free(&sm->m);
    free(sm->name);
    free(sm->dir);
}

int main(int argc, char **argv) {
    cli_init("neox-serve");
    blas_setup(argv);
    server_config cfg = {.host = "127.0.0.1", .port = "8080", .max_body = 1 << 20, .queue = 64,
                         .limits = {.max_tokens = 1024, .default_max_tokens = 100, .max_prompt = 1 << 30,
                                    .timeout = 300}};
    const char *dirs[16], *template = TEMPLATE_DEFAULT;
    int ndirs = 0, bf16 = 0, parallel = 16;
    enum { OPT_HOST = 256, OPT_PORT, OPT_PORT_FILE, OPT_KEY, OPT_DTYPE, OPT_PARALLEL, OPT_QUEUE, OPT_MAX_TOKENS,
           OPT_DEFAULT_MAX, OPT_MAX_PROMPT, OPT_MAX_BODY, OPT_TIMEOUT, OPT_TEMPLATE, OPT_VERSION };
    static const struct option opts[] = {
        {"model", required_argument, 0, 'm'},          {"host", required_argument, 0, OPT_HOST},
        {"port", required_argument, 0, OPT_PORT},      {"port-file", required_argument, 0, OPT_PORT_FILE},
        {"api-key", required_argument, 0, OPT_KEY},    {"dtype", required_argument, 0, OPT_DTYPE},
        {"parallel", required_argument, 0, OPT_PARALLEL}, {"queue", required_argument, 0, OPT_QUEUE},
        {"max-tokens", required_argument, 0, OPT_MAX_TOKENS},
        {"default-max-tokens", required_argument, 0, OPT_DEFAULT_MAX},
        {"max-prompt", required_argument, 0, OPT_MAX_PROMPT}, {"max-body", required_argument, 0, OPT_MAX_BODY},
        {"timeout", required_argument, 0, OPT_TIMEOUT}, {"template", required_argument, 0, OPT_TEMPLATE},
        {"help", no_argument, 0, 'h'},                 {"version", no_argument, 0, OPT_VERSION},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "m:h", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            if (ndirs == (int)(sizeof dirs / sizeof *dirs)) usage_error("at most 16 models");
            dirs[ndirs++] = optarg;
            break;
        case OPT_HOST: cfg.host = optarg; break;
        case OPT_PORT: parse_long("--port", optarg, 0, 65535); cfg.port = optarg; break;
        case OPT_PORT_FILE: cfg.port_file = optarg; break;
        case OPT_KEY:
            if (!*optarg) usage_error("--api-key: empty");
            cfg.api_key = optarg;
            break;
        case OPT_DTYPE:
            if (strcmp(optarg, "fp32") && strcmp(optarg, "bf16")) usage_error("--dtype: fp32 or bf16");
            bf16 = optarg[0] == 'b';
            break;
        case OPT_PARALLEL: parallel = (int)parse_long("--parallel", optarg, 1, 256); break;
        case OPT_QUEUE: cfg.queue = (int)parse_long("--queue", optarg, 0, 1 << 16); break;
        case OPT_MAX_TOKENS: cfg.limits.max_tokens = (int)parse_long("--max-tokens", optarg, 0, 1 << 20); break;
        case OPT_DEFAULT_MAX: cfg.limits.default_max_tokens = (int)parse_long("--default-max-tokens", optarg, 0, 1 << 20); break;
        case OPT_MAX_PROMPT: cfg.limits.max_prompt = (int)parse_long("--max-prompt", optarg, 1, 1 << 30); break;
        case OPT_MAX_BODY: cfg.max_body = (size_t)parse_long("--max-body", optarg, 64, 1L << 30); break;
        case OPT_TIMEOUT: cfg.limits.timeout = parse_double("--timeout", optarg, 0.001, 86400); break;
        case OPT_TEMPLATE: {
            prompt_template check;
            char why[ERR_MAX];
            if (template_parse(&check, "--template", optarg, why, sizeof why)) usage_error("%s", why);
            template_free(&check);
            template = optarg;
            break;
        }
        case 'h': print_help_and_exit(usage);
        case OPT_VERSION: print_version_and_exit();
        default: usage_error("unknown option");
        }
    }
    if (!ndirs) usage_error("no model: give -m DIR");
    if (optind < argc) usage_error("unexpected argument '%s'", argv[optind]);
    if (cfg.limits.default_max_tokens > cfg.limits.max_tokens)
        cfg.limits.default_max_tokens = cfg.limits.max_tokens;
    cfg.max_connections = cfg.queue + parallel * ndirs + 32;
    if (bf16 && !gemm_bf16_available()) bf16 = 0;
    server_block_signals();
    serve_model *models = xcalloc((size_t)ndirs, sizeof *models);
    for (int i = 0; i < ndirs; i++) {
        load(&models[i], dirs[i], bf16, template, parallel);
        for (int j = 0; j < i; j++)
            if (!strcmp(models[i].name, models[j].name))
                usage_error("two models named '%s': give them names, -m NAME=DIR", models[i].name);
    }
    char err[ERR_MAX];
    int status = server_run(&cfg, models, ndirs, err, sizeof err);
    if (status < 0) die("%s", err);
    for (int i = 0; i < ndirs; i++) unload(&models[i]);
    free(models);
    return status;
}
