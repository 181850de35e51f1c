"""Neural networks: graph IR, int8 quantization, reference interpreter, import/export."""
