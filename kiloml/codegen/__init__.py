"""C code generation: literals, the library layout and its files."""
