# gptq-eora — build, test, bench, demo.
# Each top-level directory is a small library; tools/ wires them into one CLI.
# BUILD may be overridden (e.g. make BUILD=build/alt) so that parallel builds do not race.

CC      ?= gcc
BUILD   ?= build
BIN     ?= bin
CSTD    := -std=c11 -D_GNU_SOURCE
# -Wno-psabi: calib/vec_math.h passes 64-byte vectors between always-inlined functions (no ABI)
WARN    := -Wall -Wextra -Werror -Wno-unused-parameter -Wno-psabi
OPT     ?= -O2 -g
CFLAGS  += $(CSTD) $(WARN) $(OPT) -fopenmp -I. -I/usr/include/x86_64-linux-gnu/openblas-pthread
LDLIBS  += -lopenblas -llapacke -lyaml -lcjson -lpcre2-8 -lutf8proc -lz -lm -fopenmp

LIB_DIRS := io calib gptq eora
LIB_SRC  := $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c)) $(filter-out tools/main.c,$(wildcard tools/*.c))
LIB_OBJ  := $(patsubst %.c,$(BUILD)/%.o,$(LIB_SRC))
TEST_SRC := $(wildcard tests/test_*.c)
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
BENCH_SRC := $(wildcard tools/bench/*.c)

# MPI=1: bin/gptq-eora built with mpicc, tools/dist.c on Open MPI (docs/mpi.md); the default
# build stays MPI-free, and tests/test_mpi.c (which needs mpirun) is built only with MPI=1.
ifeq ($(MPI),1)
CC      := mpicc
CFLAGS  += -DGPTQ_EORA_MPI
else
TEST_SRC := $(filter-out tests/test_mpi.c,$(TEST_SRC))
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
endif
MPIRUN  ?= mpirun --allow-run-as-root --oversubscribe

.PHONY: all test test-asan test-mpi bench demo clean lint
all: $(BIN)/gptq-eora

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  CC      $<"
	@$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

# The forward pass's own kernels (register-tiled products, softmax, SiLU) may fuse multiply-adds:
# FMA halves their arithmetic on AVX2/AVX-512 clones. Everything else keeps C's separate
# roundings (the GPTQ solver matches GPTQModel bit for bit).
$(BUILD)/calib/attention.o $(BUILD)/calib/deltanet.o $(BUILD)/calib/norms.o: CFLAGS += -ffp-contract=fast

$(BUILD)/libgptqeora.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BIN)/gptq-eora: $(BUILD)/tools/main.o $(BUILD)/libgptqeora.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(BUILD)/tests/testlib.o $(BUILD)/tests/testutil.o $(BUILD)/libgptqeora.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/tools/bench/%.o $(BUILD)/libgptqeora.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $^ -o $@ $(LDLIBS)

# Test runner: every tests/test_*.c is one binary; tests/run.sh sums their counts and
# ends with the line "N passed, N failed". T=substring filters test names.
test: $(BIN)/gptq-eora $(TEST_BIN)
	@BIN=$(BIN) BUILD=$(BUILD) sh tests/run.sh $(TEST_BIN)

# Same suite under AddressSanitizer + UndefinedBehaviorSanitizer, in its own build tree.
test-asan:
	TEST_SKIP_SLOW=1 $(MAKE) BUILD=build/asan BIN=build/asan/bin OPT="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  LDLIBS="$(LDLIBS) -fsanitize=address,undefined" test

# Multi-process runs: the MPI build in build/mpi, checked against this (MPI-free) build's binary.
test-mpi: $(BIN)/gptq-eora
	$(MAKE) MPI=1 BUILD=build/mpi BIN=build/mpi/bin build/mpi/bin/gptq-eora build/mpi/tests/test_mpi
	@REF_BIN=$(BIN) BIN=build/mpi/bin BUILD=build/mpi MPIRUN="$(MPIRUN)" sh tests/run.sh build/mpi/tests/test_mpi

bench: $(BIN)/gptq-eora $(patsubst tools/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC))
	@for b in $(patsubst tools/bench/%.c,$(BUILD)/bench/%,$(BENCH_SRC)); do echo "== $$b"; $$b || exit 1; done

demo: $(BIN)/gptq-eora
	sh tools/demo.sh

clean:
	rm -rf build $(BIN) demo-out

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
.SECONDARY:
