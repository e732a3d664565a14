"""`.venv/bin/python -m bench.peers`: see run.py."""

from bench.peers.run import main

main()
