import pytest

from apps.monitoring.levels import line_level, parse_level


@pytest.mark.parametrize(
    ("text", "level"),
    [
        # bracketed and bare words, any case
        ("[ERROR] boom", "error"),
        ("[ERROR]\t2024-05-01T10:00:00.000Z\t3f1c\tdivision by zero", "error"),  # AWS Lambda Python
        ("ERROR:root:payment failed", "error"),  # Python logging's default format
        ("ERROR: disk full", "error"),
        ("error something", "error"),
        ("  [warn] slow query", "warning"),
        ("WARNING:app:retrying", "warning"),
        ("WARN", "warning"),
        ("INFO started", "info"),
        ("info:app:ok", "info"),
        ("DEBUG x=1", "debug"),
        ("CRITICAL:root:out of memory", "critical"),
        ("FATAL cannot bind", "critical"),
        ("[Fatal] cannot bind", "critical"),
        # JSON object lines
        ('{"level": "error", "msg": "boom"}', "error"),
        ('{"levelname": "WARNING", "message": "slow"}', "warning"),
        ('{"level": 30, "msg": "pino info"}', "info"),
        ('{"level": 50, "msg": "pino error"}', "error"),
        ('{"level": "notice", "msg": "x"}', "info"),
        # nothing that says a level
        ("", ""),
        ("hello world", ""),
        ("Errors: 0", ""),
        ("INFORMATION follows", ""),
        ("Debugging session", ""),
        ("the ERROR is later in the line", ""),
        ("START RequestId: 3f1c Version: 4", ""),
        ('{"msg": "no level"}', ""),
        ('{"level": "loud"}', ""),
        ('{"level": true}', ""),
        ('["error"]', ""),
        ("{not json", ""),
    ],
)
def test_level_is_read_from_the_line_when_it_says_one(text: str, level: str) -> None:
    assert parse_level(text) == level


def test_a_line_nested_deeper_than_json_can_recurse_has_no_level():
    # A function prints it; the sink parses levels while writing: no RecursionError there.
    line = '{"a":' + "[" * 1900 + "]" * 1900 + "}"
    assert len(line) <= 4096
    assert parse_level(line) == ""


@pytest.mark.parametrize(
    ("text", "stream", "level"),
    [
        ("hello from print()", "stdout", "info"),  # print() says no level: info, so level=info finds it
        ("[ERROR] boom", "stdout", "error"),  # what the line says wins
        ("DEBUG x=1", "stdout", "debug"),
        ("Traceback (most recent call last):", "stderr", ""),  # stderr keeps only what it says
        ("WARNING:root:slow", "stderr", "warning"),
        ("START RequestId: 3f1c Version: 4", "system", ""),
    ],
)
def test_a_stored_line_gets_its_streams_default_when_it_says_no_level(text, stream, level):
    assert line_level(text, stream) == level
