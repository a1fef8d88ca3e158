/* utf8_class.h — the character classes of the GPT-2 pre-tokenizer regex:
 * \p{L}, \p{N}, \s and everything else, as Hugging Face tokenizers sees them. */
#ifndef TUNEPIPE_UTF8_CLASS_H
#define TUNEPIPE_UTF8_CLASS_H

#include <stdint.h>

enum char_class { CC_OTHER = 0, CC_LETTER, CC_NUMBER, CC_SPACE };

/* The class of a code point beyond ASCII (see byte_class for ASCII). */
enum char_class unicode_class(uint32_t cp);

/* The class of each byte below 0x80 (an ASCII character), CC_NOT_ASCII for
 * the others. */
#define CC_NOT_ASCII 4
extern const unsigned char byte_class[256];

#endif
