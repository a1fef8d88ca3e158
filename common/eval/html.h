/* html.h — escaping text for HTML and SVG output. */
#ifndef TUNEPIPE_HTML_H
#define TUNEPIPE_HTML_H

#include <stdio.h>

/* Writes s with & < > " ' replaced by character references. */
void html_escape(FILE *f, const char *s);

#endif
