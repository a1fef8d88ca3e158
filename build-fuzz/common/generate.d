build-fuzz/common/generate.o: common/generate.c common/generate.h \
  common/kvcache.h common/model.h common/config.h common/rng.h \
  common/sampler.h common/cli.h

common/generate.h:

common/kvcache.h:

common/model.h:

common/config.h:

common/rng.h:

common/sampler.h:

common/cli.h:
