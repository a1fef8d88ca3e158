build-fuzz/common/report.o: common/report.c common/report.h \
  common/evalset.h common/metrics.h common/losslog.h common/cli.h \
  common/html.h common/svgplot.h /usr/include/cjson/cJSON.h

common/report.h:

common/evalset.h:

common/metrics.h:

common/losslog.h:

common/cli.h:

common/html.h:

common/svgplot.h:

/usr/include/cjson/cJSON.h:
