build-fuzz/common/optim.o: common/optim.c common/optim.h common/cli.h \
  common/parallel.h

common/optim.h:

common/cli.h:

common/parallel.h:
