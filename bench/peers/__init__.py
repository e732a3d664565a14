"""turnlog side by side with LangGraph and DBOS on the same agent loop (see run.py)."""
