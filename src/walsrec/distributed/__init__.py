"""The Dask back end."""
