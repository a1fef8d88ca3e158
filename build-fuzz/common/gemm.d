build-fuzz/common/gemm.o: common/gemm.c common/gemm.h common/cli.h \
  common/gemm_internal.h common/gemm_pool.h

common/gemm.h:

common/cli.h:

common/gemm_internal.h:

common/gemm_pool.h:
