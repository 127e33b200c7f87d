"""Specification of bot.text.slack_markup: Slack markup made plain text for the model."""

from __future__ import annotations

import pytest

from bot.text.slack_markup import mentioned_user_ids, slack_to_plain

USER_NAMES = {"U111": "Alice", "U222": "Bob Smith", "W333": "Enterprise Eve"}
BOT = "UBOT"


# ---------------------------------------------------------------------------
# slack_to_plain
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("slack", "plain"),
    [
        pytest.param("hello there", "hello there", id="plain text unchanged"),
        pytest.param("<@U111> hi", "@Alice hi", id="known user"),
        pytest.param("ask <@W333>", "ask @Enterprise Eve", id="enterprise user"),
        pytest.param("ask <@U999>", "ask @U999", id="unknown user keeps id"),
        pytest.param("<@U999|carol> hi", "@carol hi", id="user with label"),
        pytest.param("in <#C123|general>", "in #general", id="channel with name"),
        pytest.param("in <#C123>", "in #C123", id="channel without name"),
        pytest.param("<!here> look", "@here look", id="here"),
        pytest.param("<!channel> look", "@channel look", id="channel broadcast"),
        pytest.param("<!everyone> look", "@everyone look", id="everyone"),
        pytest.param("<!here|@here> look", "@here look", id="broadcast with label"),
        pytest.param("<!subteam^S123|@team> ping", "@team ping", id="user group"),
        pytest.param("<!subteam^S123> ping", "@S123 ping", id="user group without label"),
        pytest.param(
            "due <!date^1392734382^{date_short}|Feb 18, 2014>", "due Feb 18, 2014", id="date"
        ),
        pytest.param(
            "see <https://x.y/a|the docs>", "see the docs (https://x.y/a)", id="labelled link"
        ),
        pytest.param("see <https://x.y/a|https://x.y/a>", "see https://x.y/a", id="label is url"),
        pytest.param("see <https://x.y/a>", "see https://x.y/a", id="bare link"),
        pytest.param("see <http://x.y|x.y>", "see http://x.y", id="label is url sans scheme"),
        pytest.param("mail <mailto:a@b.c|a@b.c>", "mail a@b.c", id="mailto"),
        pytest.param("mail <mailto:a@b.c>", "mail a@b.c", id="mailto without label"),
        pytest.param(
            "mail <mailto:a@b.c|Alice>", "mail Alice (a@b.c)", id="mailto with other label"
        ),
        pytest.param("a &lt; b &gt; c &amp; d", "a < b > c & d", id="unescape entities"),
        pytest.param("&amp;lt;", "&lt;", id="ampersand unescaped last"),
        pytest.param("<https://x.y?a=1&amp;b=2>", "https://x.y?a=1&b=2", id="entities in link"),
        pytest.param("  padded \n", "padded", id="outer whitespace stripped"),
        pytest.param("<@U111> and <@U222>", "@Alice and @Bob Smith", id="several users"),
    ],
)
def test_slack_to_plain(slack: str, plain: str) -> None:
    assert slack_to_plain(slack, user_names=USER_NAMES, bot_user_id=BOT) == plain


@pytest.mark.parametrize(
    ("slack", "plain"),
    [
        pytest.param("<@UBOT> what is X?", "what is X?", id="leading mention"),
        pytest.param("<@UBOT>: what is X?", "what is X?", id="leading mention with colon"),
        pytest.param("<@UBOT>, what is X?", "what is X?", id="leading mention with comma"),
        pytest.param("<@UBOT|assistant> hi", "hi", id="labelled mention"),
        pytest.param("what is X? <@UBOT>", "what is X?", id="trailing mention"),
        pytest.param("hey <@UBOT> what is X", "hey what is X", id="mention mid sentence"),
        pytest.param("hey <@UBOT>, what is X", "hey, what is X", id="mention before comma"),
        pytest.param("thanks <@UBOT>!", "thanks!", id="mention before punctuation"),
        pytest.param("<@UBOT> <@UBOT> twice", "twice", id="repeated mention"),
        pytest.param("first\n<@UBOT> second", "first\nsecond", id="mention at line start"),
        pytest.param("<@UBOT> ask <@U111>", "ask @Alice", id="other mentions kept"),
        pytest.param("<@UBOT>", "", id="only the mention"),
    ],
)
def test_slack_to_plain_removes_bot_mention(slack: str, plain: str) -> None:
    assert slack_to_plain(slack, user_names=USER_NAMES, bot_user_id=BOT) == plain


def test_slack_to_plain_without_bot_id_keeps_every_mention() -> None:
    assert slack_to_plain("<@UBOT> hi", user_names={"UBOT": "Bot"}) == "@Bot hi"


@pytest.mark.parametrize(
    ("slack", "ids"),
    [
        pytest.param("no mentions", [], id="none"),
        pytest.param("<@U111> hi", ["U111"], id="one"),
        pytest.param("<@U222> <@W333> <@U111>", ["U222", "W333", "U111"], id="in order"),
        pytest.param("<@U111> <@U222> <@U111>", ["U111", "U222"], id="no duplicates"),
        pytest.param("<@U111|alice>", ["U111"], id="labelled"),
        pytest.param("<#C123> <!here> <!subteam^S1|@t>", [], id="not users"),
    ],
)
def test_mentioned_user_ids(slack: str, ids: list[str]) -> None:
    assert mentioned_user_ids(slack) == ids
