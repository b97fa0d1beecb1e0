"""No password on screen: masking text, the commands' output, and the libraries' log lines.

`mask_text` masks a URL's password: `scheme://user:password@` and a `password=` (also
`passwd=`, `pwd=`) in its query string. `MaskedStream` masks everything a command
writes to stdout and stderr (the CLI wraps both, in every process, workers included:
tracebacks, warnings and third-party prints too). The logging filters cover the log
records of MLflow, Optuna, SQLAlchemy and urllib3 wherever they are written (also from
Python, where no stream is wrapped), their tracebacks included, and MLflow's "View run
... at: URL" lines are turned off for a URL with a password.
"""

import contextlib
import logging
import os
import re
import sys

# scheme://user:password@ -> scheme://user:***@ (any scheme, any text around it)
_CREDENTIALS = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@]*):(?P<password>[^\s@/]+)@")
# ?password=... or &password=... (libpq, SQLAlchemy's query arguments; ODBC's pwd); not
# one masked already, nor the ")", "]", "," or "." that ends a URL in a sentence
_QUERY = re.compile(r"(?P<head>[?&;](?:password|passwd|pwd)=)(?!\*\*\*)"
                    r"(?P<password>[^&;#\s'\"]*[^&;#\s'\"),.\]])", re.IGNORECASE)
_LOGGERS = ("", "mlflow", "optuna", "sqlalchemy", "urllib3", "alembic")
_BLANKS = " \t\r\n"


def mask_text(text):
    """`text` with every URL password in it (user:password@, ?password=) replaced by ***."""
    text = _CREDENTIALS.sub(lambda m: f"{m.group('head')}:***@", str(text))
    return _QUERY.sub(lambda m: f"{m.group('head')}***", text)


class MaskingFilter(logging.Filter):
    """A logging filter that masks passwords in a record: its message (and arguments),
    its traceback and its stack."""

    def filter(self, record):
        message = record.getMessage()
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:  # what Formatter.format would write
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_text(record.exc_text)
        if record.stack_info:
            record.stack_info = mask_text(record.stack_info)
        return True


class MaskedStream:
    """A text stream that writes `mask_text` of what it is given to `stream`. A URL never
    spans a blank, so the text after the last blank waits for the next write or flush
    (a URL printed in two pieces is masked whole)."""

    def __init__(self, stream):
        self.stream, self._held = stream, ""

    def write(self, text):
        pending = self._held + text
        cut = max(pending.rfind(blank) for blank in _BLANKS) + 1
        self._held = pending[cut:]
        if cut:
            self.stream.write(mask_text(pending[:cut]))
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if self._held:
            held, self._held = self._held, ""
            self.stream.write(mask_text(held))
        self.stream.flush()

    def __getattr__(self, name):  # fileno, isatty, encoding, ...
        return getattr(self.stream, name)


@contextlib.contextmanager
def masked_output():
    """`sys.stdout` and `sys.stderr` are `MaskedStream`s inside the block."""
    streams = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = MaskedStream(sys.stdout), MaskedStream(sys.stderr)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = streams


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
