build-fuzz/common/sampler.o: common/sampler.c common/sampler.h \
  common/rng.h common/cli.h

common/sampler.h:

common/rng.h:

common/cli.h:
