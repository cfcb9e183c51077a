# OpenDC export and verification of CTS traces (kx.opendc); uses
# bindings/parquet for the files.
DEBS        += nodejs python3
KX_SRCS += bindings/opendc/export.c bindings/opendc/cts.c bindings/opendc/verify.c \
           bindings/opendc/odutil.c bindings/opendc/samples.c \
           bindings/opendc/lopendc.c
LUAOPEN += kx.opendc
