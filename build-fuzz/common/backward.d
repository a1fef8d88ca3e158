build-fuzz/common/backward.o: common/backward.c common/backward.h \
  common/gemm.h common/model.h common/config.h common/cli.h \
  common/parallel.h

common/backward.h:

common/gemm.h:

common/model.h:

common/config.h:

common/cli.h:

common/parallel.h:
