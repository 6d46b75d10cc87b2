"""The assembler front end: GNU as's dialect, the kernel's .S macros, keystone for the encoding."""
