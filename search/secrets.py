"""No password on screen: masking text and the log lines of the libraries we call.

`mask_text` masks what we print ourselves; the filters cover what others print: MLflow's
"View run ... at: URL" lines (printed with the URL as given, password included, after
every run of an HTTP tracking server), exception messages that quote a URL, and log
records of MLflow, Optuna, SQLAlchemy and urllib3.
"""

import logging
import os
import re

# scheme://user:password@ -> scheme://user:***@ (any scheme, any text around it)
_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):(?P<password>[^\s@/]+)@")
_LOGGERS = ("", "mlflow", "optuna", "sqlalchemy", "urllib3", "alembic")


def mask_text(text):
    """`text` with the password of every `scheme://user:password@` in it replaced by ***."""
    return _CREDENTIALS.sub(lambda m: f"{m.group('head')}:***@", str(text))


class MaskingFilter(logging.Filter):
    """A logging filter that masks passwords in a record's message (and its arguments)."""

    def filter(self, record):
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def guard_output(uri):
    """Before MLflow is used with `uri`: if it carries a password, stop MLflow printing
    run URLs, and mask passwords in the records every library handler writes."""
    if mask_text(uri) != uri:
        os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    handlers = [h for name in _LOGGERS for h in logging.getLogger(name).handlers]
    for handler in [*handlers, logging.lastResort]:
        if handler is not None:
            if not any(isinstance(f, MaskingFilter) for f in handler.filters):
                handler.addFilter(MaskingFilter())
