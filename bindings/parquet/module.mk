# Parquet writer/reader: a C unit of its own, used by bindings/opendc.
DEBS        += libzstd-dev libsnappy-dev zlib1g-dev
STATIC_LIBS += zstd z
KX_SRCS += bindings/parquet/parquet.c bindings/parquet/pqpages.c bindings/parquet/pqread.c \
           bindings/parquet/pqcolumn.c \
           bindings/parquet/thrift.c bindings/parquet/rle.c bindings/parquet/snappy_dl.c
KX_LIBS += -lzstd -lz

# Tests read Parquet files back with hyparquet (npm), a reader kxrun did not
# write, installed from tests/opendc/package-lock.json into $(BUILD)/node.
PQ_NODE_DIR := $(BUILD)/node
TEST_DEPS   += $(PQ_NODE_DIR)/.installed $(BUILD)/tests/pqgen

$(PQ_NODE_DIR)/.installed: tests/opendc/package.json tests/opendc/package-lock.json
	@mkdir -p $(PQ_NODE_DIR)
	@cp tests/opendc/package.json tests/opendc/package-lock.json $(PQ_NODE_DIR)/
	@command -v npm >/dev/null || { echo "make: npm not found: the Parquet tests need node and npm (hyparquet)" >&2; exit 1; }
	@cd $(PQ_NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error >npm.log 2>&1 || \
	    { cat npm.log >&2; echo "make: npm ci in $(PQ_NODE_DIR) failed: installing hyparquet (the tests' independent Parquet reader) needs the npm registry once" >&2; exit 1; }
	@touch $@

$(BUILD)/tests/pqgen: tests/opendc/pqgen.c $(BUILD)/libkx.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/libkx.a $(KX_LIBS)
