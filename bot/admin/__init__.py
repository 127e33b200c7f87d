"""Running the bot for a whole organization: admins, channel settings, usage and budgets.

Pure parts, tested as tables: `commands` (the `/assistant` parser), `prices` (cost of a turn),
`budgets` (may this message be answered?), `report` (usage figures as text, CSV, JSON).
I/O around them: `store` (the tables), `service` (what the listeners and the turn engine
call), `cli` (`python -m bot usage`).
"""
