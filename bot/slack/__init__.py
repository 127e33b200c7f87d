"""Slack's Web API as the bot uses it, one module per job:

- `client`: the Web API client, its shared session, timeout and retry handlers;
- `errors`: the one classifier of Slack's errors, `best_effort` calls, and who retries what;
- `gateway`: `SlackGateway`, each call with its workspace's token: posting, updating,
  streaming, the assistant pane's status and title;
- `threads`: reading a thread within Slack's limits, finding the bot's own messages;
- `files`: downloading shared files within size and time caps, uploading images.
"""
