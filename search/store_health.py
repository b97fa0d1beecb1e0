"""A store lost in the middle of a search: one clear line and exit status 1.

The study storage (a database, or a `keras-relu storage-proxy`) and the MLflow tracking
server are checked before any work starts (`search.stores`). When one of them goes away
later, the code that notices raises `StoreLost` with a line that names the store; the
command prints that line and exits 1 instead of a traceback or MLflow's minutes of
retries.
"""


class StoreLost(RuntimeError):
    """The study storage or the tracking server stopped answering during a search."""
