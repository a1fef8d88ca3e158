/* utf8_class.h — the character classes of the GPT-2 pre-tokenizer regex:
 * \p{L}, \p{N}, \s and everything else, as Hugging Face tokenizers sees them. */
#ifndef TUNEPIPE_UTF8_CLASS_H
#define TUNEPIPE_UTF8_CLASS_H

#include <stdint.h>

enum char_class { CC_OTHER = 0, CC_LETTER, CC_NUMBER, CC_SPACE };

/* The class of a code point beyond ASCII (see ascii_class for ASCII). */
enum char_class unicode_class(uint32_t cp);

extern const unsigned char ascii_class[128];

static inline enum char_class char_class_of(uint32_t cp) {
    return cp < 128 ? (enum char_class)ascii_class[cp] : unicode_class(cp);
}

#endif
