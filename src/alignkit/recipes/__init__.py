"""One module per command, each read top to bottom: load config, models and data; train; save."""
