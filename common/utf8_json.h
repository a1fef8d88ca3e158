/* utf8_json.h — the exact bytes of a JSON string member. cJSON returns
 * strings NUL-terminated, so a "\u0000" escape would silently cut one short;
 * this decodes the member again from the line when that matters. */
#ifndef TUNEPIPE_UTF8_JSON_H
#define TUNEPIPE_UTF8_JSON_H

#include <stddef.h>

#include "utf8.h"

/* Whether the JSON text holds a \u0000 escape (then cJSON's strings may be
 * cut short). */
int json_has_nul_escape(const char *json, size_t len);

/* Appends the decoded value of the first top-level member called key of the
 * JSON object in json (already validated, e.g. by cJSON) to out. Returns 0,
 * or -1 when there is no such member or its value is not a string. */
int json_member_string(const char *json, size_t len, const char *key, utf8_buf *out);

#endif
