build-fuzz/common/gemm_avx512.o: common/gemm_avx512.c \
  common/gemm_internal.h

common/gemm_internal.h:
