build-fuzz/common/svgplot.o: common/svgplot.c common/svgplot.h \
  common/html.h

common/svgplot.h:

common/html.h:
