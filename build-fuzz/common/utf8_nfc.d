build-fuzz/common/utf8_nfc.o: common/utf8_nfc.c common/utf8_nfc.h \
  common/utf8.h common/cli.h

common/utf8_nfc.h:

common/utf8.h:

common/cli.h:
