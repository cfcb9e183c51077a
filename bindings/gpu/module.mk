# kx.gpu: GPU partitions (ledger, OpenCL device probe, Lua binding).
KX_SRCS   += bindings/gpu/ledger.c
