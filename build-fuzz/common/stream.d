build-fuzz/common/stream.o: common/stream.c common/stream.h common/cli.h \
  common/io.h

common/stream.h:

common/cli.h:

common/io.h:
