# pgvalet - one GNU Makefile for the binary, tests, sanitizers, fuzzing and benchmarks.
#
#   make            build/pgvalet (release)
#   make test       install deps, build, unit tests, fuzz-corpus replay, integration tests
#   make asan       the same suites under ASan+UBSan (build/asan/)
#   make fuzz       libFuzzer targets (clang), 60 s each by default
#   make bench      pgbench: direct Postgres vs PgBouncer vs pgvalet, one run
#   make demo       throwaway Postgres + proxy + a short workload

BUILD   ?= release
PYTHON  ?= /usr/bin/python3
O       := build$(if $(filter release,$(BUILD)),,/$(BUILD))
PKGS    := openssl inih libxxhash
CC      ?= gcc

WARN    := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -Wold-style-definition -Wpointer-arith \
           -Wwrite-strings -Wformat=2 -Wundef -Wvla -Werror
CSTD    := -std=c11 -D_GNU_SOURCE
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)

ifeq ($(BUILD),release)
OPT     := -O2 -g -fno-omit-frame-pointer -fstack-protector-strong \
           -D_FORTIFY_SOURCE=2 -fPIE
LDOPT   := -pie -Wl,-z,relro,-z,now
else ifeq ($(BUILD),asan)
OPT     := -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all \
           -fno-omit-frame-pointer
LDOPT   := -fsanitize=address,undefined
endif

CFLAGS  := $(CSTD) $(WARN) $(OPT) -fvisibility=hidden -Isrc $(PKG_CFLAGS) -MMD -MP
LDLIBS  := $(PKG_LIBS) -lpthread

SRC     := $(shell find src -name '*.c' ! -name main.c | sort)
OBJ     := $(SRC:%.c=$(O)/%.o)
LIB     := $(O)/libpgvalet.a
UNIT_SRC := $(shell find tests/unit -name 'test_*.c' 2>/dev/null | sort)
UNIT_BIN := $(patsubst %.c,$(O)/%,$(UNIT_SRC))

.PHONY: all test unit integration asan fuzz fuzz-replay bench demo soak clean deps
all: $(O)/pgvalet

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIB): $(OBJ)
	@rm -f $@
	ar rcs $@ $^

$(O)/pgvalet: $(O)/src/main.o $(LIB)
	$(CC) $(LDOPT) -o $@ $^ $(LDLIBS)

$(O)/tests/unit/%: tests/unit/%.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDOPT) -o $@ $< $(LIB) $(LDLIBS) -lcmocka

deps:
	@bash scripts/install-deps

unit: $(UNIT_BIN)
	@set -e; for t in $(UNIT_BIN); do echo "== $$t"; $$t; done

integration: $(O)/pgvalet
	PGVALET_BINARY=$(abspath $(O)/pgvalet) $(PYTHON) -m pytest -q tests/integration $(PYTEST_ARGS)

test: deps
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) integration

asan: deps
	$(MAKE) BUILD=asan all unit
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(MAKE) BUILD=asan integration

bench: deps all
	$(PYTHON) bench/run.py --binary $(abspath $(O)/pgvalet)

demo: deps all
	bash scripts/demo $(abspath $(O)/pgvalet)

clean:
	rm -rf build

-include $(OBJ:.o=.d) $(O)/src/main.d
