build-fuzz/common/kvcache.o: common/kvcache.c common/kvcache.h \
  common/model.h common/config.h common/cli.h common/gemv.h common/ops.h

common/kvcache.h:

common/model.h:

common/config.h:

common/cli.h:

common/gemv.h:

common/ops.h:
