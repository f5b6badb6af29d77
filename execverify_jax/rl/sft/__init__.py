"""SFT warm-up: the trainer, its loss and traced rationales."""
