"""Keep tracebacks of user-caused errors out of Prefect's run logs.

Prefect logs every exception a task or flow raises with its traceback. For a MallardError (bad
spec, bad data) the message already says everything; the traceback would only bury it. Bugs
keep their tracebacks.
"""

from __future__ import annotations

import logging

from mallard.core.errors import MallardError

PREFECT_RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs")


class DropUserErrorTraceback(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], MallardError):
            record.exc_info = None
            record.exc_text = None
        return True


def install() -> None:
    for name in PREFECT_RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, DropUserErrorTraceback) for f in logger.filters):
            logger.addFilter(DropUserErrorTraceback())
