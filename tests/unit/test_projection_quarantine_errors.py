"""Which errors blame the event (quarantine it), which the database being away or busy
(back off and try the same events again), and which our own schema or code (raise)."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from agents.errors import ContractError
from projections.quarantine import is_event_failure, is_transient

CASES = [
    # (exception, transient, the event's failure)
    (errors.RaiseException("a trigger refused the row"), False, True),
    (errors.CheckViolation("check"), False, True),
    (errors.NotNullViolation("null"), False, True),
    (errors.CharacterNotInRepertoire("invalid byte sequence 0x00"), False, True),
    (errors.NumericValueOutOfRange("too big"), False, True),
    (psycopg.DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes"), False, True),
    (ValueError("a value psycopg cannot dump"), False, True),
    (OverflowError("int too large"), False, True),
    (errors.AdminShutdown("terminating connection"), True, False),
    (errors.DeadlockDetected("deadlock"), True, False),
    (errors.QueryCanceled("statement timeout"), True, False),
    (errors.ReadOnlySqlTransaction("read-only standby"), True, False),
    (errors.TooManyConnections("too many"), True, False),
    (psycopg.OperationalError("server closed the connection unexpectedly"), True, False),
    (errors.UndefinedTable("relation projection_quarantine does not exist"), False, False),
    (errors.InsufficientPrivilege("permission denied"), False, False),
    (errors.InternalError_("internal"), False, False),
    (ContractError("our own invariant"), False, False),
    (KeyError("a defect"), False, False),
]


@pytest.mark.parametrize(
    ("exc", "transient", "blames_event"), CASES, ids=[type(c[0]).__name__ for c in CASES]
)
def test_errors_are_told_apart(exc: BaseException, transient: bool, blames_event: bool) -> None:
    assert is_transient(exc) is transient
    assert is_event_failure(exc) is blames_event
