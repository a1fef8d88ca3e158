/* config.h — a GPT-NeoX config.json as a struct.
 *
 * Reads the keys transformers 4.x writes (rotary_pct, rotary_emb_base) and
 * the ones 5.x writes (rope_parameters.partial_rotary_factor, rope_theta);
 * everything the forward pass depends on is validated here so the model
 * code can trust it. */
#ifndef TUNEPIPE_CONFIG_H
#define TUNEPIPE_CONFIG_H

typedef struct {
    int vocab_size;            /* V */
    int hidden_size;           /* C */
    int num_layers;            /* L */
    int num_heads;             /* NH */
    int head_dim;              /* hd = C / NH */
    int intermediate_size;     /* I (4C in Pythia) */
    int rotary_ndims;          /* int(hd * rotary_pct), even, <= hd */
    double rotary_pct;
    double rotary_base;        /* rotary_emb_base / rope_theta */
    double layer_norm_eps;
    double initializer_range;
    int max_positions;         /* max_position_embeddings */
    int use_parallel_residual; /* x + attn(ln1(x)) + mlp(ln2(x)) when 1 */
    int tie_word_embeddings;   /* embed_out shares gpt_neox.embed_in */
    int eos_token_id;          /* -1 when the config names none */
    int bos_token_id;          /* -1 when the config names none */
} neox_config;

/* Parses config.json text; on any problem (not JSON, a missing or
 * out-of-range key, an activation other than exact "gelu") returns 0 and
 * writes a one-line reason into err. */
int config_parse(const char *json, neox_config *cfg, char *err, int errlen);
/* Reads and parses path; returns 0 with "path: reason" in err on failure
 * (a file that cannot be read ends the process: read_file in io.h). */
int config_load(const char *path, neox_config *cfg, char *err, int errlen);

#endif
