"""Reading inputs and writing an output folder: sources and their formats, read limits, the ledger, the lease, writers and safe reruns."""
