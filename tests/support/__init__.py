"""What the tests share, and only the tests (nothing here ships in the wheel):

poll         wait_until: poll a condition (sync or async) until it holds or a deadline
harness      worker processes (`python -m turnlog worker session`) started, killed and
             read back; the committed log's invariants (seq gaps, lost inputs, doubles)
live         an in-process live stack (worker + effects on a scripted model) and a
             tailing reader of a topic
projections  running the projector in-process until caught up, scratch databases
synthetic    synthetic session logs for projector tests and benchmarks
"""
