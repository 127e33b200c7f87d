"""The turn engine: one assistant turn at a time per conversation, from messages to answer.

- `states`: the turn's states and outcomes, and its key at the assistant API.
- `runner`: the state machine (queued → running → posting → done), each step stored first.
- `prompt`: what the assistant is asked (the messages, the thread's history, files).
- `delivery`: what Slack shows (the working indicator, the streamed or posted answer).
- `retry`: the one retry policy, shared with the dispatcher.
"""
