/* utf8_json.h — the exact bytes of a JSON string member. cJSON returns
 * strings and member names NUL-terminated, so a "\u0000" escape would
 * silently cut one short; this finds and decodes the member again from the
 * text when that matters. */
#ifndef TUNEPIPE_UTF8_JSON_H
#define TUNEPIPE_UTF8_JSON_H

#include <stddef.h>

#include "utf8.h"

/* 1 when the JSON text holds a \u0000 escape (then cJSON's strings may be
 * cut short), -1 when it holds a \u escape without four hex digits (which
 * cJSON reads as U+0000 too, where Python's json refuses it), else 0. */
int json_has_nul_escape(const char *json, size_t len);

/* The last top-level member exactly named key of the JSON object in json
 * (already validated, e.g. by cJSON; a duplicate name means the last one, as
 * in Python's json): returns its position among the members (0: the first)
 * with *value the offset of its value, or -1 when there is none. Whitespace
 * and a leading byte-order mark are skipped as cJSON skips them. */
long json_last_member(const char *json, size_t len, const char *key, size_t *value);

/* Appends the decoded JSON string at json[at] to out. Returns 0, or -1 when
 * no string starts there. */
int json_string_at(const char *json, size_t len, size_t at, utf8_buf *out);

/* Both: appends the decoded value of the last member called key. Returns 0,
 * or -1 when there is no such member or its value is not a string. */
int json_member_string(const char *json, size_t len, const char *key, utf8_buf *out);

#endif
