/*
 * page.c - embeds page/dashboard.html as dashboard_page (NUL-terminated)
 * with the assembler's .incbin; the Makefile makes page.o depend on the
 * HTML file.  Paths are relative to the repository root, where make runs.
 */
#include "http/page.h"

__asm__(".section .rodata\n"
	".global dashboard_page\n"
	".hidden dashboard_page\n"
	".type dashboard_page, @object\n"
	"dashboard_page:\n"
	".incbin \"src/http/page/dashboard.html\"\n"
	".byte 0\n"
	".size dashboard_page, . - dashboard_page\n"
	".previous\n");
