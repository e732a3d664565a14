"""A2A: turnlog's agents as Agent2Agent endpoints (`turnlog a2a serve`).

`server` maps the protocol onto sessions and turns through the public Python client:
each agent of the agent file is an A2A agent at `/agents/<name>/` (its card at
`/agents/<name>/.well-known/agent-card.json`), an A2A context is a session, a task is a
turn. The client side (a remote A2A agent as a delegate, `delegates = ["a2a:<url>"]`)
runs in the session worker: `streams.a2a`.
"""
