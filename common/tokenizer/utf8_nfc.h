/* utf8_nfc.h — Unicode NFC exactly as Hugging Face tokenizers applies it. */
#ifndef TUNEPIPE_UTF8_NFC_H
#define TUNEPIPE_UTF8_NFC_H

#include <stddef.h>

#include "utf8.h"

/* s is valid UTF-8. Returns 0 when s is already in NFC (out untouched), else
 * appends NFC(s) to out and returns 1. Thread-safe. */
int utf8_nfc(const char *s, size_t n, utf8_buf *out);

#endif
