"""The AutoML search over the cures for dying ReLU (`keras-relu search`)."""


class UsageError(ValueError):
    """Bad input from the user: the CLI prints it on one line and exits with status 2."""
