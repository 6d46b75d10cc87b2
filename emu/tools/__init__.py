"""Front ends: the arena-emu command, the debugger and its prompt, the gdb server, scenarios."""
