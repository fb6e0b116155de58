"""What a finished output folder is read back into: its manifest, verify and repair, prompt statistics, dataset card, report and gallery."""
