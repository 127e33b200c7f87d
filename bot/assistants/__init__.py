"""The assistant APIs behind one Protocol (`base`); `factory.make_backend` picks the one the
settings name. Empty on purpose: importing `bot.assistants.base` loads no SDK."""
