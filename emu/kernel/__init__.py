"""The core kernel: kallsyms, fault events, calls run on the CPUs and the schedules across them (kernel/)."""
