"""Export, load, top-k, fold-in, batch prediction and the HTTP service."""
