# tunepipe — instruction-tune GPT-NeoX / Pythia models with Unix pipes.
#
#   make            build the tools into bin/
#   make check      install missing build dependencies, build, run all tests
#   make demo       the main job (see pipelines/)
#   make serve      the demo's base and fine-tuned models in a browser (neox-serve)
#   make bench      benchmarks
#   make install PREFIX=/usr/local

PREFIX ?= /usr/local
BINDIR = $(PREFIX)/bin
MANDIR = $(PREFIX)/share/man
DATADIR = $(PREFIX)/share/tunepipe
LIBDIR = $(PREFIX)/lib/tunepipe

CC ?= cc
# Built on the machine that runs it, so tune for it; ARCH= to override.
ARCH ?= -march=native
OPT ?= -O2
CFLAGS ?= $(OPT) -g $(ARCH)
WARN = -Wall -Wextra -Wshadow -Wno-unused-parameter
CPPFLAGS += -std=c11 -D_GNU_SOURCE -Icommon -I/usr/include/cjson \
            -DTUNEPIPE_DATADIR='"$(DATADIR)"' -DTUNEPIPE_SRCDATA='"$(CURDIR)/data"' \
            -DTUNEPIPE_LIBDIR='"$(LIBDIR)"' -DTUNEPIPE_CUDA_LIB='"$(CURDIR)/$(BUILD)/libtunepipe-cuda.so"'
LDLIBS = -lcjson -lutf8proc -lzstd -lopenblas -lm -lpthread -ldl

# BUILD= lets the sanitizer build live beside the normal one.
BUILD ?= build
BIN ?= bin

TOOLS = jsonl-split bpe-encode pad-trunc neox-train neox-gen strip-prompt eval-compare neox-serve
COMMON_SRC = $(wildcard common/*/*.c)
COMMON_OBJ = $(COMMON_SRC:%.c=$(BUILD)/%.o)
UNIT_SRC = $(wildcard tests/unit/*.c)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%.t)
BENCH_SRC = $(wildcard bench/*.c)
BENCH_BIN = $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)

# The GPU backend: common/cuda/*.cu into a shared object that the tools
# load at run time (they never link CUDA). Skipped where nvcc is absent.
NVCC ?= $(shell command -v nvcc || echo /usr/local/cuda/bin/nvcc)
CUDA_LIBDIR ?= $(abspath $(dir $(NVCC))../lib64)
NVCCFLAGS ?= -O3 -std=c++17 -Xcompiler -fPIC -Icommon \
             -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90
CUDA_SRC = $(wildcard common/cuda/*.cu)
CUDA_OBJ = $(CUDA_SRC:%.cu=$(BUILD)/%.o)
CUDA_LIB = $(if $(wildcard $(NVCC)),$(BUILD)/libtunepipe-cuda.so)

.PHONY: all check test deps install uninstall clean bench bf16-curve check-asan check-gpu bench-gpu gpu-bundle
.DELETE_ON_ERROR:
# Keep the object files of tools and tests (make would delete them as
# intermediates, and rebuild them every time).
.SECONDARY:

all: $(TOOLS:%=$(BIN)/%) $(UNIT_BIN) $(BENCH_BIN) $(CUDA_LIB)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -MMD -MP -c -o $@ $<

$(BUILD)/libtunepipe.a: $(COMMON_OBJ)
	rm -f $@
	ar rcs $@ $^

$(BIN)/%: $(BUILD)/cmd/%.o $(BUILD)/libtunepipe.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# neox-serve: libmicrohttpd, and web/index.html embedded as a C array
# (od, no xxd needed) so the binary serves its page alone.
$(BIN)/neox-serve: $(BUILD)/cmd/neox-serve.o $(BUILD)/web/page.o $(BUILD)/libtunepipe.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lmicrohttpd

$(BUILD)/web/page.c: web/index.html
	@mkdir -p $(@D)
	{ echo 'const unsigned char serve_page[] = {'; od -An -v -tx1 $< | sed 's/\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '0x00};'; echo "const unsigned int serve_page_len = $$(wc -c <$<);"; } >$@

$(BUILD)/web/page.o: $(BUILD)/web/page.c
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/tests/%.t: $(BUILD)/tests/unit/%.o $(BUILD)/libtunepipe.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/bench/%.o $(BUILD)/libtunepipe.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# common/cuda/*.cu (variables above)
$(BUILD)/common/cuda/%.o: common/cuda/%.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/libtunepipe-cuda.so: $(CUDA_OBJ)
	$(NVCC) -shared -cudart static -o $@ $^ -L$(CUDA_LIBDIR) -lcublas -lcublasLt -Xlinker -rpath=$(CUDA_LIBDIR)

# GPU tests: linked with the CPU library (their reference) and the .so.
GPU_SRC = $(wildcard tests/gpu/*.c)
GPU_BIN = $(GPU_SRC:tests/gpu/%.c=$(BUILD)/tests/gpu/%.t)

$(BUILD)/tests/gpu/%.t: $(BUILD)/tests/gpu/%.o $(BUILD)/libtunepipe.a $(BUILD)/libtunepipe-cuda.so
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.o %.a,$^) -L$(BUILD) -ltunepipe-cuda \
	  -Wl,-rpath,'$$ORIGIN/../..' $(LDLIBS)

# Builds and runs the GPU tests (each skips itself without a GPU):
# cuda_ops.t, each op against its CPU twin; fidelity.t, the model, trainer
# and decoder on cuda against the Hugging Face oracle (TUNEPIPE_DEVICE=cpu
# runs its checks on the CPU); the scripts tests/gpu/t*.sh, such as a
# checkpoint resumed on the other device. Then neox-gen's tests with every
# tool on the GPU (TUNEPIPE_DEVICE=cuda).
GPU_SH = $(sort $(wildcard tests/gpu/t*.sh))
ifneq ($(CUDA_LIB),)
check-gpu: all $(GPU_BIN)
	TUNEPIPE_BIN=$(CURDIR)/$(BIN) TUNEPIPE_BUILD=$(CURDIR)/$(BUILD) \
	  prove --exec '' $(GPU_BIN) $(GPU_SH)
	@if nvidia-smi -L >/dev/null 2>&1; then \
	  TUNEPIPE_DEVICE=cuda TUNEPIPE_BIN=$(CURDIR)/$(BIN) TUNEPIPE_BUILD=$(CURDIR)/$(BUILD) \
	    prove --exec '' tests/t40-neox-gen.sh; \
	else echo "check-gpu: no GPU here, the tools' tests on cuda skipped"; fi

# The GPU against Hugging Face + PyTorch on the same card (scripts/bench-gpu.sh).
bench-gpu: all
	@scripts/bench-gpu.sh

# For a GPU machine without a compiler: the tools, tests and libraries in
# gpu-bundle/, which scripts/gpu-run.sh there uses (GPU tests, then bench-gpu).
gpu-bundle:
	@scripts/gpu-bundle.sh
else
check-gpu bench-gpu gpu-bundle:
	@echo "$@: skipped, no nvcc at $(NVCC)"
endif

# Open MPI, for neox-train's data parallelism only (common/train/dist.c):
# make deps installs libopenmpi-dev. A neox-train no launcher started
# never initializes MPI, but needs the library to load.
MPI_CFLAGS := $(shell mpicc --showme:compile 2>/dev/null || pkg-config --cflags ompi-c 2>/dev/null)
MPI_LIBS := $(shell mpicc --showme:link 2>/dev/null || pkg-config --libs ompi-c 2>/dev/null)
ifeq ($(MPI_LIBS),)
$(BUILD)/common/train/dist.o:
	@echo "Open MPI not found (no mpicc, no pkg-config ompi-c): run make deps, or apt-get install libopenmpi-dev openmpi-bin" >&2
	@exit 1
endif
$(BUILD)/common/train/dist.o: CPPFLAGS += $(MPI_CFLAGS)
$(BIN)/neox-train: LDLIBS += $(MPI_LIBS)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

deps:
	@scripts/deps.sh

# Shell tests find the tools through TUNEPIPE_BIN and unit tests through
# TUNEPIPE_BUILD; every test prints TAP, prove prints the summary.
test: all
	TUNEPIPE_BIN=$(CURDIR)/$(BIN) TUNEPIPE_BUILD=$(CURDIR)/$(BUILD) \
	  prove --exec '' $(sort $(wildcard tests/t*.sh)) $(UNIT_BIN)

check: deps
	@$(MAKE) --no-print-directory test
	@$(MAKE) --no-print-directory check-asan

# The same suite under AddressSanitizer and UndefinedBehaviorSanitizer, in
# its own build directory. Slow fidelity tests skip themselves here
# (TUNEPIPE_SANITIZE is set).
check-asan:
	@$(MAKE) --no-print-directory BUILD=build-asan BIN=build-asan/bin OPT=-O1 \
	  CFLAGS='-O1 -g $(ARCH) -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer' \
	  LDFLAGS='-fsanitize=address,undefined' \
	  TUNEPIPE_SANITIZE=1 test

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(DATADIR)
	install -m 755 $(TOOLS:%=$(BIN)/%) $(DESTDIR)$(BINDIR)
	install -m 644 man/man1/*.1 $(DESTDIR)$(MANDIR)/man1
	install -m 644 man/man5/*.5 $(DESTDIR)$(MANDIR)/man5
	install -m 644 data/* $(DESTDIR)$(DATADIR)
	$(if $(CUDA_LIB),install -d $(DESTDIR)$(LIBDIR) && install -m 755 $(CUDA_LIB) $(DESTDIR)$(LIBDIR))

# Speed of each stage on this machine: one table, medians (scripts/bench.sh).
bench: deps
	@$(MAKE) --no-print-directory all
	@scripts/bench.sh

# bf16 training against fp32: 50 steps on lamini from the same random weights,
# the loss curves compared step by step (scripts/bf16-curve.sh; ~10 minutes).
bf16-curve: deps
	@$(MAKE) --no-print-directory all
	@scripts/bf16-curve.sh

uninstall:
	rm -f $(TOOLS:%=$(DESTDIR)$(BINDIR)/%) $(DESTDIR)$(MANDIR)/man1/$(TOOLS:%=%.1) \
	  $(DESTDIR)$(MANDIR)/man5/neox-stream.5
	rm -rf $(DESTDIR)$(DATADIR) $(DESTDIR)$(LIBDIR)

clean:
	rm -rf build build-asan build-gpu gpu-bundle bin

-include pipelines/*.mk
