/* fuzz_config.c — config.json parsing (common/config.h).
 *
 * Properties: config_parse never crashes; it either fails with a reason
 * or returns a config the model code can trust (the invariants
 * config.h promises hold). */
#include "fuzz.h"

#include "base/cli.h"
#include "nn/config.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *json = fuzz_cstr(data, size);
    neox_config c;
    char err[256];
    memset(err, 0x55, sizeof err);
    if (config_parse(json, &c, err, sizeof err)) {
        FUZZ_CHECK(c.vocab_size > 0 && c.hidden_size > 0 && c.num_layers > 0 && c.num_heads > 0 &&
                       c.intermediate_size > 0 && c.max_positions > 0,
                   "non-positive size");
        FUZZ_CHECK(c.head_dim * c.num_heads == c.hidden_size, "head_dim x heads != hidden_size");
        FUZZ_CHECK(c.rotary_ndims >= 0 && c.rotary_ndims <= c.head_dim && c.rotary_ndims % 2 == 0,
                   "rotary_ndims %d with head_dim %d", c.rotary_ndims, c.head_dim);
        FUZZ_CHECK(c.eos_token_id >= -1 && c.eos_token_id < c.vocab_size, "eos_token_id %d", c.eos_token_id);
        FUZZ_CHECK(c.bos_token_id >= -1 && c.bos_token_id < c.vocab_size, "bos_token_id %d", c.bos_token_id);
        FUZZ_CHECK(c.layer_norm_eps >= 0 && c.rotary_base >= 1, "eps or rotary base out of range");
    } else {
        size_t n = strnlen(err, sizeof err);
        FUZZ_CHECK(n > 0 && n < sizeof err, "no reason, or one not terminated");
        fuzz_reject(err);
    }
    free(json);
    return 0;
}
