"""OpenAI webhook events received (bot/webhooks.py): one row per `webhook-id`, so an event
delivered twice, to this process or another, is acted on once."""

from __future__ import annotations

from sqlalchemy import Float, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from bot.store.models import Base


class WebhookEvent(Base):
    __tablename__ = "openai_webhook_events"
    __table_args__ = (Index("ix_openai_webhook_events_received_at", "received_at"),)

    webhook_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64))
    object_id: Mapped[str] = mapped_column(String(128))
    """The response (or other object) the event is about."""
    received_at: Mapped[float] = mapped_column(Float)
