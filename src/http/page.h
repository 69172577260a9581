/*
 * page.h - the dashboard's one page (src/http/page/dashboard.html: inline
 * CSS and JS, no CDN), embedded in the binary at build time.
 */
#ifndef PGVALET_HTTP_PAGE_H
#define PGVALET_HTTP_PAGE_H

/* NUL-terminated HTML. */
extern const char dashboard_page[];

#endif
