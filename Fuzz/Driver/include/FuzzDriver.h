#include <stddef.h>
#include <stdint.h>

/// Runs libFuzzer (LLVMFuzzerRunDriver, from -sanitize=fuzzer's runtime) on `test`, with the
/// command line's options and corpus folders.
int imgbench_fuzz_main(int argc, char **argv, int (*test)(const uint8_t *data, size_t size));
