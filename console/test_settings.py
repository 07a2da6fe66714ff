"""Settings for the test suite: the real settings, read with a test environment.

Each run gets its own data directory (generated keys, the SQLite test database, mail,
sandboxes), so tests stay out of ./var and concurrent runs on one machine out of each
other's way. Invocation records and logs are flushed by the tests themselves
(get_sink().flush()), in the test's own thread and transaction, not by a background thread.
"""

import os
import tempfile

os.environ.setdefault("STRATUS_DATA_DIR", tempfile.mkdtemp(prefix="stratus-test-"))
os.environ.setdefault("STRATUS_RECORDS_FLUSH_INTERVAL_S", "0")

from console.settings import *  # noqa: E402, F403
