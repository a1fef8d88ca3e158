build-fuzz/common/trainer.o: common/trainer.c common/trainer.h \
  common/backward.h common/gemm.h common/model.h common/config.h \
  common/dataset.h common/optim.h common/cli.h common/ops.h \
  common/parallel.h

common/trainer.h:

common/backward.h:

common/gemm.h:

common/model.h:

common/config.h:

common/dataset.h:

common/optim.h:

common/cli.h:

common/ops.h:

common/parallel.h:
