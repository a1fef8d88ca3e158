build-fuzz/common/dataset.o: common/dataset.c common/dataset.h \
  common/cli.h common/rng.h common/stream.h

common/dataset.h:

common/cli.h:

common/rng.h:

common/stream.h:
