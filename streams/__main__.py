"""`python -m streams` runs a session worker (same as `turnlog worker session`)."""

from streams.cli import worker_session

if __name__ == "__main__":
    worker_session()
