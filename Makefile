# pgvalet - one GNU Makefile for the binary, tests, sanitizers, fuzzing and benchmarks.
#
#   make            build/pgvalet (release)
#   make test       install deps, build, unit tests, fuzz-corpus replay, integration tests,
#                   the Python package's tests (on SQLAlchemy 1.4, then 2.0)
#   make asan       the same suites under ASan+UBSan (build/asan/)
#   make fuzz       libFuzzer targets (clang), 60 s each by default
#   make bench      pgbench: direct Postgres vs PgBouncer vs pgvalet, one run
#   make demo       throwaway Postgres + proxy + a short workload
#   make soak       consistency soak: 5 min of readers/writers checked for stale reads

BUILD   ?= release
PYTHON  ?= /usr/bin/python3
O       := build$(if $(filter release,$(BUILD)),,/$(BUILD))
PKGS    := openssl inih libxxhash libpq hiredis libmicrohttpd
# libpg_query.so carries its own protobuf-c runtime: only the headers are needed.
HDR_PKGS := libprotobuf-c
CC      ?= gcc

WARN    := -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
           -Wmissing-prototypes -Wold-style-definition -Wpointer-arith \
           -Wwrite-strings -Wformat=2 -Wundef -Wvla -Werror
CSTD    := -std=c11 -D_GNU_SOURCE
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) $(HDR_PKGS) 2>/dev/null)
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
LDLIBS  := $(PKG_LIBS) -lpg_query -lpthread

SRC     := $(shell find src -name '*.c' ! -name main.c | sort)
OBJ     := $(SRC:%.c=$(O)/%.o)
LIB     := $(O)/libpgvalet.a
UNIT_SRC := $(shell find tests/unit -name 'test_*.c' 2>/dev/null | sort)
UNIT_BIN := $(patsubst %.c,$(O)/%,$(UNIT_SRC))

# pgvalet._l1, the Python package's in-process cache: the proxy's store and
# tag hashing (src/cache) in a CPython extension, always a release build
# (it is loaded by /usr/bin/python3, which has no sanitizer runtime).
PY_INCLUDE := $(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_paths()['include'])")
PY_EXT     := $(shell $(PYTHON) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")
L1_EXT     := python/pgvalet/_l1$(PY_EXT)
L1_SRC     := python/pgvalet/_l1.c src/cache/store.c

.PHONY: all test unit integration asan fuzz fuzz-replay symbols bench bench-cache bench-tier demo soak clean deps
all: $(O)/pgvalet $(L1_EXT)

$(L1_EXT): $(L1_SRC) src/cache/store.h src/cache/tags.h src/core/qlist.h
	$(CC) $(CSTD) $(WARN) -Wno-missing-prototypes -O2 -g -fPIC -shared -fvisibility=hidden \
	  -fno-strict-aliasing -Isrc -I$(PY_INCLUDE) -o $@ $(L1_SRC) -lxxhash -lpthread

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# The dashboard's page is embedded with .incbin (src/http/page.c).
$(O)/src/http/page.o: src/http/page/dashboard.html

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

# The Python package's suite runs twice: on Debian's SQLAlchemy 1.4 and on 2.0
# (scripts/fetch-sqlalchemy2; PGVALET_TEST_SQLALCHEMY makes the suite refuse to
# run on any other version than the lane's).
SA2_DIR := build/deps/sqlalchemy2

$(SA2_DIR)/sqlalchemy/__init__.py: scripts/fetch-sqlalchemy2
	bash scripts/fetch-sqlalchemy2 $(SA2_DIR)
	@touch $@

integration: $(O)/pgvalet $(SA2_DIR)/sqlalchemy/__init__.py
	PGVALET_BINARY=$(abspath $(O)/pgvalet) $(PYTHON) -m pytest -q tests/integration $(PYTEST_ARGS)
	PGVALET_BINARY=$(abspath $(O)/pgvalet) PYTHONPATH=python PGVALET_TEST_SQLALCHEMY=1.4 \
	  $(PYTHON) -m pytest -q tests/python $(PYTEST_ARGS)
	PGVALET_BINARY=$(abspath $(O)/pgvalet) PYTHONPATH=python:$(SA2_DIR) PGVALET_TEST_SQLALCHEMY=2.0 \
	  $(PYTHON) -m pytest -q -p no:cacheprovider tests/python $(PYTEST_ARGS)

test: deps
	$(MAKE) all symbols
	$(MAKE) unit fuzz-replay
	$(MAKE) integration

asan: deps
	$(MAKE) BUILD=asan all unit fuzz-replay
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(MAKE) BUILD=asan integration

bench: deps all $(O)/bench/cache_policy
	$(PYTHON) bench/run.py --binary $(abspath $(O)/pgvalet)
	$(O)/bench/cache_policy $(BENCH_CACHE_ARGS)
	$(PYTHON) bench/python_bench.py --binary $(abspath $(O)/pgvalet)

# Result-cache policy benchmark: S3-FIFO store vs LRU/FIFO, get throughput.
$(O)/bench/cache_policy: bench/cache_policy.c $(LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDOPT) -o $@ $< $(LIB) $(LDLIBS) -lm

bench-cache: $(O)/bench/cache_policy
	$(O)/bench/cache_policy $(BENCH_CACHE_ARGS)

# Shared result tier (--cache-tier): tier hits vs local hits vs Postgres.
bench-tier: deps all
	$(PYTHON) bench/tier.py --binary $(abspath $(O)/pgvalet)

demo: deps all
	bash scripts/demo $(abspath $(O)/pgvalet)

# Consistency soak: throwaway Postgres + pgvalet --workers 2 + tests/consistency.py,
# SOAK_SECONDS (300) with 16 readers, 8 writers, 1000 rows; non-zero on any stale read.
soak: deps all
	bash tests/soak/run-consistency.sh $(abspath $(O)/pgvalet)

clean:
	rm -rf build $(L1_EXT)

# ---- fuzzing -----------------------------------------------------------------
# make fuzz          clang + libFuzzer + ASan/UBSan, each target FUZZ_SECONDS
# make fuzz-replay   gcc build of each target + replay_main.c against $(LIB),
#                    run over its committed corpus (no libFuzzer needed)
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_TARGETS := fuzz_msg fuzz_sqlclass fuzz_scram fuzz_pgurl fuzz_analysis fuzz_pgoutput \
                fuzz_events fuzz_json fuzz_fingerprint fuzz_indexcols fuzz_plan \
                fuzz_scram_client fuzz_redisurl fuzz_admin
FUZZ_CFLAGS  := $(CSTD) $(WARN) -O1 -g -fno-omit-frame-pointer \
                -fsanitize=address,undefined -fno-sanitize-recover=all \
                -Isrc -Itests/fuzz $(PKG_CFLAGS)
FUZZ_LIBS    := $(PKG_LIBS) -lpg_query -lpthread

# The library sources each target needs, compiled with clang (coverage
# instrumentation included) into build/fuzz/, not taken from the gcc .a.
fuzz_msg_SRC      := src/proto/msg.c src/net/buf.c
fuzz_sqlclass_SRC := src/pool/sqlclass.c
fuzz_scram_SRC    := src/proto/scram.c
fuzz_pgurl_SRC    := src/core/pgurl.c
fuzz_analysis_SRC := src/analysis/shape.c src/analysis/shape_pred.c
fuzz_pgoutput_SRC := src/invalidate/pgoutput.c src/proto/msg.c src/net/buf.c
fuzz_events_SRC   := src/invalidate/events.c
fuzz_json_SRC     := src/http/json.c
fuzz_fingerprint_SRC := src/observe/fingerprint.c src/analysis/shape.c src/analysis/shape_pred.c
fuzz_indexcols_SRC := src/analysis/indexcols.c src/analysis/shape.c src/analysis/shape_pred.c
fuzz_plan_SRC     := src/cache/plan.c src/analysis/catalog.c src/analysis/shape.c \
                     src/analysis/shape_pred.c src/core/pgconn.c src/core/log.c \
                     src/core/pgurl.c
fuzz_scram_client_SRC := src/proto/scram.c
fuzz_redisurl_SRC := src/core/redis.c
# admin.c reads every module it shows (SHOW CACHE, SHOW ADVICE...): those
# and what they call, though the target runs them all switched off.
fuzz_admin_SRC    := src/pool/admin.c src/proto/msg.c src/net/buf.c \
                     src/cache/store.c src/cache/tier.c src/core/redis.c \
                     src/core/log.c src/core/pgconn.c src/core/pgurl.c \
                     src/invalidate/stream.c src/invalidate/pgoutput.c \
                     src/invalidate/push.c src/invalidate/events.c \
                     src/net/unixsock.c src/observe/stats.c \
                     src/observe/advisor.c src/observe/audit.c \
                     src/observe/indexer.c src/observe/jsonbuf.c \
                     src/observe/nplus1.c src/analysis/catalog.c \
                     src/analysis/indexcols.c src/analysis/shape.c \
                     src/analysis/shape_pred.c

build/fuzz/src/%.o: src/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

define FUZZ_RULES
build/fuzz/$(1): tests/fuzz/$(1).c tests/fuzz/fuzz.h $$($(1)_SRC:%.c=build/fuzz/%.o)
	@mkdir -p $$(dir $$@)
	$$(FUZZ_CC) $$(FUZZ_CFLAGS) -fsanitize=fuzzer -o $$@ $$< \
	  $$(filter %.o,$$^) $$(FUZZ_LIBS)

$(O)/fuzz-replay/$(1): tests/fuzz/$(1).c tests/fuzz/replay_main.c tests/fuzz/fuzz.h $$(LIB)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(CFLAGS) -Itests/fuzz $$(LDOPT) -o $$@ $$< tests/fuzz/replay_main.c \
	  $$(LIB) $$(LDLIBS)
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call FUZZ_RULES,$(t))))

# New inputs go to build/fuzz/corpus/<t> (the committed seeds stay as they
# are); crashes to build/fuzz/artifacts/.  Targets run one after another.
fuzz: deps $(FUZZ_TARGETS:%=build/fuzz/%)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  mkdir -p build/fuzz/corpus/$$t build/fuzz/artifacts; \
	  echo "== $$t: $(FUZZ_SECONDS) s"; \
	  build/fuzz/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=build/fuzz/artifacts/$$t- \
	    build/fuzz/corpus/$$t tests/fuzz/corpus/$$t; \
	done

fuzz-replay: $(FUZZ_TARGETS:%=$(O)/fuzz-replay/%)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  $(O)/fuzz-replay/$$t tests/fuzz/corpus/$$t; \
	done

# Our symbols must not be exported: libpg_query exports the PG parser's
# internals and an exported name of ours would interpose on them.  (Its
# data (protobuf descriptors...) shows up here too, copied in by copy
# relocations: names libpg_query itself defines are not ours.)
symbols: $(O)/pgvalet
	@lib=$$(ldd $(O)/pgvalet | awk '/libpg_query/ {print $$3}'); \
	theirs=$$( [ -n "$$lib" ] && nm -D --defined-only $$lib | awk '{print $$3}'); \
	bad=$$(nm -D --defined-only $(O)/pgvalet | awk '$$2 ~ /^[TDB]$$/ && $$3 !~ /@/ {print $$3}' | \
	  grep -vxF "$$theirs" || true); \
	if [ -n "$$bad" ]; then echo "exported symbols: $$bad"; exit 1; fi

FUZZ_OBJ := $(patsubst %.c,build/fuzz/%.o,$(sort $(foreach t,$(FUZZ_TARGETS),$($(t)_SRC))))
-include $(FUZZ_OBJ:.o=.d)

-include $(OBJ:.o=.d) $(O)/src/main.d
