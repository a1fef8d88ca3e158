build-fuzz/tests/fuzz/fuzz_stream.o: tests/fuzz/fuzz_stream.c \
  tests/fuzz/fuzz.h common/cli.h common/stream.h

tests/fuzz/fuzz.h:

common/cli.h:

common/stream.h:
