build-fuzz/common/tokenizer_maps.o: common/tokenizer_maps.c \
  common/tokenizer_internal.h common/tokenizer.h common/utf8.h \
  common/cli.h

common/tokenizer_internal.h:

common/tokenizer.h:

common/utf8.h:

common/cli.h:
