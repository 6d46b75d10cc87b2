"""The x86-64 CPU, its page tables and the kernel's fault path: arch/x86/ (mm/fault.c, mm/extable.c, kernel/)."""
