"""Guest memory: physical frames, the address layout, vmalloc and access through the page tables (mm/)."""
