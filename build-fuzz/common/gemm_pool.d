build-fuzz/common/gemm_pool.o: common/gemm_pool.c common/gemm_pool.h \
  common/cli.h

common/gemm_pool.h:

common/cli.h:
