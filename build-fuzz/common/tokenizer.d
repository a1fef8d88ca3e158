build-fuzz/common/tokenizer.o: common/tokenizer.c common/tokenizer.h \
  common/utf8.h common/tokenizer_internal.h common/cli.h \
  common/utf8_nfc.h /usr/include/cjson/cJSON.h

common/tokenizer.h:

common/utf8.h:

common/tokenizer_internal.h:

common/cli.h:

common/utf8_nfc.h:

/usr/include/cjson/cJSON.h:
