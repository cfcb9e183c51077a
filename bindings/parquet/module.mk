# Parquet writer/reader: a C unit of its own, used by bindings/opendc.
KX_SRCS += bindings/parquet/parquet.c bindings/parquet/pqread.c \
           bindings/parquet/thrift.c bindings/parquet/rle.c
KX_LIBS += -lzstd -lsnappy -lz
